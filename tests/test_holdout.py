"""The holdout and its lift (SPEC §2): who is held out, that nothing reaches them, and the
comparison of stats, on both databases; the interval against published figures."""

from __future__ import annotations

import json
import math
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError

from models.chains import export_chain, get_chain, import_chain, set_holdout
from models.db import Database
from models.errors import ChainmailError
from models.frequency_caps import FrequencyCaps
from models.holdout import holdout_bucket, is_held_out
from models.lift import (
    MIN_CONVERTED,
    MIN_GROUP_CUSTOMERS,
    Group,
    enough_data,
    lift,
    newcombe_interval,
    wilson_interval,
)
from models.migrate import alembic_config, upgrade
from models.orders import record_orders
from models.stats import chain_stats, stats_document
from models.tables import Chain, Delivery, EmailStatus, Step
from scheduler.claims import HOLD_OUT, Candidate, decide
from services.editing import stop_step, update_chain
from services.forecast import forecast_activation, wave_progress
from services.lifecycle import activate_chain
from tests.cli import chainmail
from tests.test_engine import START, Harness, add_customers, import_seed
from tests.test_engine import harness as harness  # the fixture
from tests.test_migrations import AT, customers_and_a_chain, upgraded_with
from tests.test_stats import T0, Shop

# --- The draw --------------------------------------------------------------------------


def test_the_draw_is_a_stable_hash_of_chain_and_customer() -> None:
    # sha256("7:42") = 6fb44d7d504d375b…: its first 8 bytes, big-endian, mod 10000. Written
    # out so that any change to the draw, which would move customers between groups, fails.
    assert holdout_bucket(7, 42) == int("6fb44d7d504d375b", 16) % 10_000
    assert holdout_bucket(7, 42) == holdout_bucket(7, 42)
    assert holdout_bucket(7, 42) != holdout_bucket(8, 42)
    assert not is_held_out(7, 42, 0)
    assert all(is_held_out(1, customer, 100) for customer in range(100))


def test_the_draw_is_uniform_enough_for_every_share() -> None:
    buckets = [holdout_bucket(3, customer) for customer in range(20_000)]
    for percent in (1, 5, 10, 25, 50):
        held = sum(bucket < percent * 100 for bucket in buckets)
        expected = 20_000 * percent / 100
        assert abs(held - expected) <= 3 * math.sqrt(expected * (1 - percent / 100))


def test_a_held_out_customer_waits_like_the_others_and_is_never_claimed() -> None:
    now = datetime(2026, 12, 1, 19, 0, tzinfo=UTC)  # 22:00 in Moscow
    quiet = (time(21, 0), time(9, 0))
    held = Candidate("sms", None, None, None, "Europe/Moscow", held_out=True)
    waiting = decide(held, now, quiet)
    assert waiting.action == "defer"
    assert waiting == decide(
        Candidate("sms", None, None, None, "Europe/Moscow", held_out=False), now, quiet
    )
    assert decide(held, now.replace(hour=7), quiet) == HOLD_OUT
    # Unsubscribed or not: assigned to its group all the same (intent to treat).
    unsubscribed = Candidate(
        "email", None, None, "unsubscribed from email", "Europe/Moscow", held_out=True
    )
    assert decide(unsubscribed, now, None) == HOLD_OUT


# --- The interval ------------------------------------------------------------------------

# Newcombe (1998), Table II, method 10 (score interval, no continuity correction):
# (x1, n1, x2, n2) → the 95 % interval of p1 - p2, to 4 places.
NEWCOMBE_TABLE_II = [
    ((56, 70, 48, 80), (0.0524, 0.3339)),
    ((9, 10, 3, 10), (0.1705, 0.8090)),
    ((5, 56, 0, 29), (-0.0381, 0.1926)),
    ((0, 10, 0, 20), (-0.1611, 0.2775)),
    ((0, 10, 0, 10), (-0.2775, 0.2775)),
    ((10, 10, 0, 20), (0.6791, 1.0)),
    ((10, 10, 0, 10), (0.6075, 1.0)),
]


@pytest.mark.parametrize(("counts", "expected"), NEWCOMBE_TABLE_II)
def test_the_interval_is_newcombes_method_10(
    counts: tuple[int, int, int, int], expected: tuple[float, float]
) -> None:
    low, high = newcombe_interval(*counts)
    assert (round(low, 4), round(high, 4)) == expected


def test_the_interval_matches_a_published_trial() -> None:
    # Perondi et al. 2004, high vs standard dose of epinephrine, 7/34 vs 1/34; Fagerland,
    # Lydersen & Laake, "Statistical Analysis of Contingency Tables" (2017), §4: the
    # Newcombe hybrid score interval is 0.0189 to 0.3404.
    low, high = newcombe_interval(7, 34, 1, 34)
    assert (round(low, 4), round(high, 4)) == (0.0189, 0.3404)


def _wilson_by_hand(x: int, n: int, z: float) -> tuple[float, float]:
    """The Wilson limits as the roots of (p̂ - p)² = z² p (1 - p) / n, solved apart."""
    p_hat = x / n
    a = 1 + z * z / n
    b = -(2 * p_hat + z * z / n)
    c = p_hat * p_hat
    root = math.sqrt(b * b - 4 * a * c)
    return (-b - root) / (2 * a), (-b + root) / (2 * a)


def test_the_lift_of_a_hand_computed_example() -> None:
    # 400 treated, 40 of whom ordered (52 orders, 5,200.00); 100 held out, 5 ordered
    # (6 orders, 600.00).
    treated = Group(customers=400, converted=40, orders=52, revenue=Decimal("5200.00"))
    held_out = Group(customers=100, converted=5, orders=6, revenue=Decimal("600.00"))
    found = lift(treated, held_out)
    assert found is not None
    z = 1.959963984540054
    l1, u1 = _wilson_by_hand(40, 400, z)
    l2, u2 = _wilson_by_hand(5, 100, z)
    assert wilson_interval(40, 400) == pytest.approx((l1, u1), abs=1e-12)
    assert wilson_interval(5, 100) == pytest.approx((l2, u2), abs=1e-12)
    # Wilson: 40/400 → 0.0743 to 0.1333; 5/100 → 0.0215 to 0.1118.
    assert (round(l1, 4), round(u1, 4), round(l2, 4), round(u2, 4)) == (
        0.0743,
        0.1333,
        0.0215,
        0.1118,
    )
    # D = 0.10 - 0.05; D - √((0.10 - l1)² + (u2 - 0.05)²), D + √((u1 - 0.10)² + (0.05 - l2)²).
    assert found.conversion_rate_delta == pytest.approx(0.05)
    low = 0.05 - math.sqrt((0.10 - l1) ** 2 + (u2 - 0.05) ** 2)
    high = 0.05 + math.sqrt((u1 - 0.10) ** 2 + (0.05 - l2) ** 2)
    assert found.ci95 == pytest.approx((low, high), abs=1e-12)
    # 0.05 - √(0.0257² + 0.0618²) = -0.0169; 0.05 + √(0.0333² + 0.0285²) = 0.0938.
    assert (round(low, 4), round(high, 4)) == (-0.0169, 0.0938)
    # (52/400 - 6/100) × 400 = 28 orders; (13.00 - 6.00) × 400 = 2,800.00.
    assert found.incremental_orders == pytest.approx(28.0)
    assert found.incremental_revenue == Decimal("2800.00")
    assert enough_data(treated, held_out)


def test_the_lift_needs_customers_in_both_groups_and_enough_orders() -> None:
    some = Group(
        customers=MIN_GROUP_CUSTOMERS, converted=MIN_CONVERTED, orders=10, revenue=Decimal(1)
    )
    nobody = Group(customers=0, converted=0, orders=0, revenue=Decimal(0))
    assert lift(some, nobody) is None
    assert lift(nobody, some) is None
    assert enough_data(some, Group(MIN_GROUP_CUSTOMERS, 0, 0, Decimal(0)))
    assert not enough_data(some, Group(MIN_GROUP_CUSTOMERS - 1, 0, 0, Decimal(0)))
    few = Group(
        customers=MIN_GROUP_CUSTOMERS, converted=MIN_CONVERTED - 1, orders=9, revenue=Decimal(1)
    )
    assert not enough_data(few, Group(MIN_GROUP_CUSTOMERS, 0, 0, Decimal(0)))


# --- Setting it -------------------------------------------------------------------------

HOLDOUT_CHAIN = """\
format: chainmail/1
name: Spring sale
holdout_percent: 10
steps:
  - name: Sale
    audience: {segments: [new-customers]}
    action: {channel: email, subject: "Sale", text: "-20% on everything"}
    schedule: {send: now}
    conversion: {goal: order, window_days: 7, min_amount: 100}
  - name: Reminder
    audience: {who: all}
    action: {channel: email, subject: "Last day", text: "The sale ends tonight"}
    schedule: {send: after, after: 1d}
"""


async def test_a_draft_takes_a_holdout_and_the_file_keeps_it(db: Database) -> None:
    chain_id = await import_seed(db, HOLDOUT_CHAIN)
    assert (await get_chain(db, chain_id)).holdout_percent == 10
    exported = await export_chain(db, chain_id)
    assert "utm: true\nholdout_percent: 10\nsteps:\n" in exported
    again = (await import_chain(db, exported, actor="test")).chain_id
    assert await export_chain(db, again) == exported
    await set_holdout(db, chain_id, 25, actor="test")
    assert (await get_chain(db, chain_id)).holdout_percent == 25
    for refused in (51, -1, "10", 12.5, True):
        with pytest.raises(ChainmailError) as caught:
            await set_holdout(db, chain_id, refused, actor="test")
        assert "is not a whole number of percent from 0 to 50" in str(caught.value)
    assert (await get_chain(db, chain_id)).holdout_percent == 25


async def test_once_activated_the_holdout_cannot_change_by_any_door(db: Database) -> None:
    await add_customers(db, {})
    chain_id = await import_seed(db, HOLDOUT_CHAIN)
    await activate_chain(db, chain_id, actor="test")
    with pytest.raises(ChainmailError) as caught:
        await set_holdout(db, chain_id, 20, actor="test")
    assert str(caught.value).startswith(
        f"the holdout of chain {chain_id} (10%) is fixed since its activation"
    )
    # The same value is no change, and a file that keeps it applies.
    await set_holdout(db, chain_id, 10, actor="test")
    await update_chain(db, chain_id, HOLDOUT_CHAIN.replace("Sale\n", "Big sale\n", 1), actor="t")
    with pytest.raises(ChainmailError) as refused:
        await update_chain(
            db,
            chain_id,
            HOLDOUT_CHAIN.replace("holdout_percent: 10", "holdout_percent: 0"),
            actor="test",
        )
    assert f"holdout_percent: the holdout of chain {chain_id} (10%)" in str(refused.value)
    assert (await get_chain(db, chain_id)).holdout_percent == 10


# --- Running it --------------------------------------------------------------------------


async def _customer_ids(db: Database, step_id: int, status: str | None = None) -> set[int]:
    async with db.session() as session:
        query = select(Delivery.customer_id).where(Delivery.step_id == step_id)
        if status is not None:
            query = query.where(Delivery.status == status)
        return set(await session.scalars(query))


async def _step_ids(db: Database, chain_id: int) -> list[int]:
    async with db.session() as session:
        return list(
            await session.scalars(
                select(Step.id).where(Step.chain_id == chain_id).order_by(Step.position)
            )
        )


def _addresses(harness: Harness) -> Counter[str]:
    return Counter(str(message["To"]) for message in harness.emails())


async def test_the_held_out_tenth_is_never_emailed_and_never_planned_into_step_two(
    harness: Harness,
) -> None:
    # Unsubscribed customers are drawn like everyone else: the groups stay comparable.
    unsubscribed = {"email_status": EmailStatus.UNSUBSCRIBED}
    ids = await add_customers(
        harness.db, *(unsubscribed if number < 40 else {} for number in range(500))
    )
    chain_id = await import_seed(harness.db, HOLDOUT_CHAIN)
    held = {customer for customer in ids if is_held_out(chain_id, customer, 10)}
    # 10 % of 500: within three standard deviations (√(500 × 0.1 × 0.9) ≈ 6.7) of 50.
    assert abs(len(held) - 50) <= 3 * math.sqrt(500 * 0.1 * 0.9)
    await activate_chain(harness.db, chain_id, actor="test", now=harness.clock())
    await harness.engine.tick()
    sale, reminder = await _step_ids(harness.db, chain_id)
    skipped = len(set(ids[:40]) - held)
    sent = 500 - len(held) - skipped
    assert await harness.statuses(1, chain_id) == {
        "sent": sent,
        "skipped": skipped,
        "held_out": len(held),
    }
    assert await _customer_ids(harness.db, sale, "held_out") == held
    emailed = _addresses(harness)
    held_addresses = {f"c{ids.index(customer)}@example.com" for customer in held}
    assert not held_addresses & set(emailed)
    assert sum(emailed.values()) == sent
    for row in await harness.deliveries(chain_id, 1):
        if row.status == "held_out":
            # The moment it would have gone, and nothing that says it went.
            assert (row.due_at, row.sent_at, row.triggered_at) == (START, None, None)
            assert (row.message_id, row.claimed_by, row.version) == (None, None, None)

    harness.clock.advance(days=1, seconds=1)
    await harness.engine.run_until_idle()
    # The reminder follows everyone the sale triggered for: not the skipped, not the held out.
    assert await harness.statuses(2, chain_id) == {"sent": sent}
    assert not (await _customer_ids(harness.db, reminder)) & held
    assert not held_addresses & set(_addresses(harness))
    stats = await chain_stats(harness.db, chain_id)
    main = stats.steps[0]
    assert (main.sent, main.skipped, main.held_out, main.coverage) == (
        sent,
        skipped,
        len(held),
        sent,
    )
    assert [(version.version, version.sent, version.skipped) for version in main.versions] == [
        (1, sent, skipped)
    ]
    progress = await wave_progress(harness.db, sale, harness.clock())
    assert (progress.done, progress.total, progress.held_out) == (500, 500, len(held))
    assert stats.holdout is not None
    # Intent to treat: the skipped are treated customers too.
    assert (stats.holdout.treated.customers, stats.holdout.held_out.customers) == (
        500 - len(held),
        len(held),
    )


# --- Counting it ---------------------------------------------------------------------------

# One step, half of it held out: groups of over a hundred from a few hundred customers.
HALF_HELD_OUT = (
    HOLDOUT_CHAIN.split("  - name: Reminder")[0]
    .replace("name: Spring sale", "name: Half and half")
    .replace("holdout_percent: 10", "holdout_percent: 50")
)


def _order(number: int, customer: int, at: datetime, amount: str = "150.00") -> dict[str, str]:
    return {
        "external_id": f"o{number}",
        "customer_external_id": f"c{customer}",
        "amount": amount,
        "created_at": at.isoformat(),
    }


async def test_the_groups_count_every_order_in_each_customers_window(harness: Harness) -> None:
    db = harness.db
    ids = await add_customers(db, *({} for _ in range(240)))
    chain_id = await import_seed(db, HALF_HELD_OUT)
    await activate_chain(db, chain_id, actor="test", now=harness.clock())
    await harness.engine.tick()
    numbers = {customer: number for number, customer in enumerate(ids)}
    held = [numbers[c] for c in ids if is_held_out(chain_id, c, 50)]
    treated = [numbers[c] for c in ids if not is_held_out(chain_id, c, 50)]
    assert min(len(held), len(treated)) >= MIN_GROUP_CUSTOMERS
    hour, day = timedelta(hours=1), timedelta(days=1)
    orders = [
        # Counted: twelve treated customers order in their window, one of them twice.
        *(_order(n, customer, START + hour) for n, customer in enumerate(treated[:12])),
        _order(100, treated[0], START + 6 * day, "1000.00"),
        # Not counted: before the moment, at the window's end, under the minimum.
        _order(101, treated[20], START - hour),
        _order(102, treated[21], START + 7 * day),
        _order(103, treated[22], START + hour, "99.99"),
        # Held out: four order in theirs (attributed to nothing: no message went), one after.
        *(_order(300 + n, customer, START + 2 * day) for n, customer in enumerate(held[:4])),
        _order(310, held[10], START + 8 * day),
    ]
    result = await record_orders(db, orders, START + 9 * day)
    assert result.created == len(orders)

    stats = await chain_stats(db, chain_id)
    holdout = stats.holdout
    assert holdout is not None
    expected_treated = Group(len(treated), 12, 13, Decimal("2800.00"))
    expected_held = Group(len(held), 4, 4, Decimal("600.00"))
    assert (holdout.treated, holdout.held_out) == (expected_treated, expected_held)
    assert (holdout.percent, holdout.window_days, holdout.min_amount) == (50, 7, Decimal(100))
    assert holdout.lift == lift(expected_treated, expected_held)
    assert holdout.enough_data
    # The step counts only what is attributed: no order of a held-out customer.
    assert stats.steps[0].orders == 0

    chain = stats_document(stats)["chain"]
    found = lift(expected_treated, expected_held)
    assert found is not None
    assert chain == {
        "id": chain_id,
        "name": "Half and half",
        "status": "finished",
        "holdout_percent": 50,
        "treated": {
            "customers": len(treated),
            "orders": 13,
            "revenue": "2800.00",
            "conversion_rate": round(12 / len(treated), 4),
        },
        "holdout": {
            "customers": len(held),
            "orders": 4,
            "revenue": "600.00",
            "conversion_rate": round(4 / len(held), 4),
        },
        "lift": {
            "conversion_rate_delta": round(12 / len(treated) - 4 / len(held), 4),
            "ci95": [
                round(bound, 4) for bound in newcombe_interval(12, len(treated), 4, len(held))
            ],
            "incremental_orders": round((13 / len(treated) - 4 / len(held)) * len(treated), 2),
            "incremental_revenue": f"{found.incremental_revenue:.2f}",
            "enough_data": True,
        },
    }
    assert found.incremental_revenue == (
        (Decimal("2800.00") / len(treated) - Decimal("600.00") / len(held)) * len(treated)
    ).quantize(Decimal("0.01"))

    # Up to a moment: the orders placed before it.
    early = await chain_stats(db, chain_id, until=START + day)
    assert early.holdout is not None
    assert (early.holdout.treated.orders, early.holdout.held_out.orders) == (12, 0)
    assert (early.holdout.treated.converted, early.holdout.held_out.converted) == (12, 0)
    # Over a period the groups are not narrowed: no holdout.
    assert (await chain_stats(db, chain_id, since=START)).holdout is None


async def test_a_chain_without_holdout_has_the_document_of_before(harness: Harness) -> None:
    await add_customers(harness.db, {})
    chain_id = await import_seed(harness.db)
    await activate_chain(harness.db, chain_id, actor="test", now=harness.clock())
    await harness.engine.tick()
    stats = await chain_stats(harness.db, chain_id)
    assert stats.holdout is None
    assert set(stats_document(stats)["chain"]) == {"id", "name", "status"}


async def test_an_empty_group_has_no_lift_and_rows_stopped_before_their_moment_count_nowhere(
    harness: Harness,
) -> None:
    await add_customers(harness.db, *({} for _ in range(30)))
    chain_id = await import_seed(
        harness.db,
        HALF_HELD_OUT.replace("schedule: {send: now}", "schedule: {send: after, after: 1d}"),
    )
    await activate_chain(harness.db, chain_id, actor="test", now=harness.clock())
    await stop_step(harness.db, chain_id, 1, actor="test", now=harness.clock())
    assert await harness.statuses(1, chain_id) == {"skipped": 30}
    stats = await chain_stats(harness.db, chain_id)
    assert stats.holdout is not None
    assert (stats.holdout.treated.customers, stats.holdout.held_out.customers) == (0, 0)
    assert stats_document(stats)["chain"]["lift"] == {
        "conversion_rate_delta": None,
        "ci95": None,
        "incremental_orders": None,
        "incremental_revenue": None,
        "enough_data": False,
    }


async def test_the_forecast_says_about_how_many_will_be_held_out(db: Database) -> None:
    await add_customers(db, *({} for _ in range(40)))
    chain_id = await import_seed(db, HOLDOUT_CHAIN)
    found = await forecast_activation(
        db, await get_chain(db, chain_id), now=START, caps=FrequencyCaps()
    )
    assert (found.audience, found.holdout_percent, found.held_out) == (40, 10, 4)


async def holdout_chain(db: Database, treated: int, held_out: int, *, ordered: int) -> int:
    """An active chain holding out `held_out` of its main step's customers: each group's
    first `ordered` customers ordered 100.00 a day after T0."""
    shop = Shop(db)
    chain_id, (main,) = await shop.chain(
        "Spring sale", [("email", {"goal": "order", "window_days": 7, "min_amount": 0})]
    )
    customers = await shop.customers(treated + held_out)
    moment = "'2026-03-01 09:00:00.000000'" if db.is_sqlite else "TIMESTAMPTZ '2026-03-01 09:00Z'"
    async with db.writer() as session:
        await session.execute(update(Chain).where(Chain.id == chain_id).values(holdout_percent=10))
        for number, customer in enumerate(customers):
            status, sent = ("sent", moment) if number < treated else ("held_out", "NULL")
            await session.execute(
                text(
                    "INSERT INTO deliveries (chain_id, step_id, customer_id, channel, status,"
                    " eligible_at, due_at, attempts, created_at, sent_at, triggered_at)"
                    f" VALUES ({chain_id}, {main}, {customer}, 'email', '{status}', {moment},"
                    f" {moment}, 0, {moment}, {sent}, {sent})"
                )
            )
    buyers = customers[:ordered] + customers[treated : treated + ordered]
    orders = [
        {
            "external_id": f"o{buyer}",
            "customer_external_id": f"c{buyer}",
            "amount": "100.00",
            "created_at": (T0 + timedelta(days=1)).isoformat(),
        }
        for buyer in buyers
    ]
    await record_orders(db, orders, T0 + timedelta(days=2))
    return chain_id


async def test_chainmail_stats_prints_the_comparison_and_its_json_document(
    db_url: str, db: Database, tmp_path: Path
) -> None:
    chain_id = await holdout_chain(db, 60, 8, ordered=2)
    done = chainmail(db_url, "stats", str(chain_id), "--json", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    document = json.loads(done.stdout)
    assert document == stats_document(await chain_stats(db, chain_id))
    assert list(document["chain"]) == [
        "id",
        "name",
        "status",
        "holdout_percent",
        "treated",
        "holdout",
        "lift",
    ]
    assert document["chain"]["holdout"] == {
        "customers": 8,
        "orders": 2,
        "revenue": "200.00",
        "conversion_rate": 0.25,
    }
    table = chainmail(db_url, "stats", str(chain_id), cwd=tmp_path)
    assert table.returncode == 0
    assert table.stdout.splitlines()[-4:] == [
        "holdout 10% of step 1, orders within 7 days of at least 0",
        "treated: 60 customers, 3.33% ordered, 2 orders, 200.00",
        "held out: 8 customers, 25.00% ordered, 2 orders, 200.00",
        "lift: not enough data yet",
    ]


# --- The migration ---------------------------------------------------------------------


async def test_the_migration_adds_the_status_and_takes_it_back_as_skipped(tmp_path: Path) -> None:
    rows = [
        *customers_and_a_chain(2),
        "INSERT INTO steps (id, chain_id, position, name, action, created_at, updated_at)"
        f""" VALUES (1, 1, 1, 'Sale', '{{"channel": "email"}}', {AT}, {AT})""",
        "INSERT INTO deliveries (id, chain_id, step_id, customer_id, channel, status,"
        " eligible_at, due_at, attempts, created_at, sent_at, triggered_at)"
        f" VALUES (7, 1, 1, 1, 'email', 'sent', {AT}, {AT}, 1, {AT}, {AT}, {AT})",
    ]
    db = await upgraded_with(tmp_path, "0011", rows)
    held = (
        "INSERT INTO deliveries (id, chain_id, step_id, customer_id, channel, status,"
        f" eligible_at, due_at, attempts, created_at) VALUES"
        f" (8, 1, 1, 2, 'email', 'held_out', {AT}, {AT}, 0, {AT})"
    )
    async with db.writer() as session:
        assert await session.scalar(text("SELECT holdout_percent FROM chains")) == 0
        await session.execute(text(held))
        with pytest.raises(IntegrityError):
            async with session.begin_nested():
                await session.execute(text(held.replace("(8,", "(9,").replace("held_out", "lost")))
    await db.dispose()
    url = db.url
    with ThreadPoolExecutor(1) as pool:
        pool.submit(command.downgrade, alembic_config(url), "0011").result()
    db = Database(url)
    async with db.session() as session:
        rows_back = await session.execute(text("SELECT id, status, reason FROM deliveries"))
        assert sorted(rows_back) == [(7, "sent", None), (8, "skipped", "held out")]
        integrity = await session.scalar(text("PRAGMA integrity_check"))
        assert integrity == "ok"
    await db.dispose()
    with ThreadPoolExecutor(1) as pool:
        pool.submit(upgrade, url).result()


async def test_each_groups_orders_are_read_as_they_stood_at_the_windows_end(
    db: Database,
) -> None:
    """As attribution reads a new order: cancelled within the window, it is no conversion;
    grown within it, it counts its grown amount; cancelled after it, it still counts."""
    chain_id = await holdout_chain(db, 3, 3, ordered=3)
    customers = sorted(await _held_out_or_not(db, chain_id))
    treated = [customer for customer, held in customers if not held]
    held_out = [customer for customer, held in customers if held]

    def update(customer: int, amount: str, status: str, days: float) -> dict[str, str]:
        return {
            "external_id": f"o{customer}",
            "customer_external_id": f"c{customer}",
            "amount": amount,
            "status": status,
            "updated_at": (T0 + timedelta(days=days)).isoformat(),
        }

    await record_orders(
        db,
        [
            update(treated[0], "100.00", "cancelled", 3),  # within the window: nothing
            update(treated[1], "150.00", "new", 4),  # grown within it: 150
            update(held_out[0], "100.00", "cancelled", 20),  # after it: still 100
        ],
        T0 + timedelta(days=21),
    )
    stats = await chain_stats(db, chain_id)
    assert stats.holdout is not None
    assert (stats.holdout.treated.orders, stats.holdout.treated.revenue) == (2, Decimal("250.00"))
    assert (stats.holdout.held_out.orders, stats.holdout.held_out.revenue) == (
        3,
        Decimal("300.00"),
    )


async def _held_out_or_not(db: Database, chain_id: int) -> list[tuple[int, bool]]:
    async with db.session() as session:
        rows = await session.execute(
            select(Delivery.customer_id, Delivery.status).where(Delivery.chain_id == chain_id)
        )
    return [(customer, status == "held_out") for customer, status in rows]
