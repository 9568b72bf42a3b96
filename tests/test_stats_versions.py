"""A step's numbers per step version (issue 12): `chain_stats`, `chainmail stats ID --json`
and `/stats`, on SQLite and PostgreSQL.

A step edited while it runs gets a new version (services/editing.py); every message
records the version it was composed with, and stats split the step's numbers by it.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import case, select, update

from handlers import texts
from models import reasons
from models.attribution_table import rebuild
from models.chainfile import BlockKind
from models.db import Database
from models.stats import ChainStats, StepStats, VersionStats, chain_stats, stats_document
from models.tables import Chain, Delivery, Step, StepVersion
from services.editing import save_block
from tests.cli import chainmail
from tests.test_bot_commands import bot_over_http as bot_over_http  # the fixture
from tests.test_bot_support import VIEWER, BotUnderTest, screen
from tests.test_bot_texts import LONG_NAME, busy_step
from tests.test_stats import CONVERSIONS, Shop, day, expected_numbers, load_facts, seed_random_shop

# The numbers a version carries: the step's own but `coverage` and `planned`.
CARRIED = [
    "sent",
    "failed",
    "skipped",
    "uncertain",
    "delivered",
    "opened",
    "clicked",
    "unsubscribed",
    "bounced",
    "complained",
    "orders",
    "revenue",
    "conversion_rate",
]
SUMMED = [key for key in CARRIED if key not in ("revenue", "conversion_rate")]

# The step of `edited_chain`, version by version, as worked out there.
VERSION_1 = {
    "version": 1,
    "sent": 3,
    "failed": 1,
    "skipped": 1,
    "uncertain": 0,
    "delivered": 3,
    "opened": 2,
    "clicked": 1,
    "unsubscribed": 0,
    "bounced": 1,
    "complained": 0,
    "orders": 2,
    "revenue": "100.00",
    "conversion_rate": 0.6667,
}
VERSION_2 = {
    "version": 2,
    "sent": 2,
    "failed": 0,
    "skipped": 0,
    "uncertain": 1,
    "delivered": 3,
    "opened": 2,
    "clicked": 0,
    "unsubscribed": 1,
    "bounced": 0,
    "complained": 1,
    "orders": 3,
    "revenue": "85.00",
    "conversion_rate": 1.0,
}
NEW_MESSAGE = {"channel": "email", "subject": "Spring sale, last days", "text": "Hurry up!"}


async def edited_chain(shop: Shop) -> int:
    """One email step: five messages of version 1, its message saved anew, then four of
    version 2 (one still planned)."""
    a, b, c, d, e, f, g, h, i = await shop.customers(9)
    chain, (step,) = await shop.chain("Spring sale", [("email", {"goal": "order"})])
    await shop.delivery(step, a, sent_at=day(0), events=("opened",), version=1)
    await shop.delivery(step, b, sent_at=day(0), events=("opened", "clicked"), version=1)
    await shop.delivery(step, c, sent_at=day(0), version=1)
    await shop.delivery(
        step, d, status="failed", sent_at=None, reason="550 no user", events=("bounced",), version=1
    )
    await shop.delivery(step, e, status="skipped", sent_at=None, reason=reasons.NO_EMAIL, version=1)
    await shop.order(a, day(1), "60.00")

    saved = await save_block(shop.db, chain, 1, BlockKind.ACTION, NEW_MESSAGE, actor="test")
    assert (saved.impact.version, saved.impact.kept) == (2, 3)

    version = saved.impact.version
    await shop.delivery(step, f, sent_at=day(2), events=("opened",), version=version)
    await shop.delivery(
        step, g, sent_at=day(2), events=("opened", "unsubscribed", "complained"), version=version
    )
    await shop.delivery(
        step, h, status="uncertain", sent_at=day(2), reason=reasons.OUTCOME_LOST, version=version
    )
    await shop.delivery(step, i, status="planned", sent_at=None)
    # b's order comes after the step got version 2: it counts for b's message, of version 1.
    await shop.order(b, day(3), "40.00")
    await shop.order(f, day(3), "50.00")
    await shop.order(f, day(4), "25.00")
    await shop.order(g, day(3), "10.00")
    return chain


def assert_versions_add_up(step: dict[str, Any]) -> None:
    versions = step["versions"]
    for key in SUMMED:
        assert sum(version[key] for version in versions) == step[key], key
    assert sum(Decimal(version["revenue"]) for version in versions) == Decimal(step["revenue"])


async def test_a_step_edited_while_it_ran_counts_each_version_apart(db: Database) -> None:
    chain = await edited_chain(Shop(db))

    (step,) = stats_document(await chain_stats(db, chain))["steps"]

    assert step["versions"] == [VERSION_1, VERSION_2]
    assert {key: step[key] for key in ("coverage", "planned", *CARRIED)} == {
        "coverage": 8,
        "planned": 1,
        "sent": 5,
        "failed": 1,
        "skipped": 1,
        "uncertain": 1,
        "delivered": 6,
        "opened": 4,
        "clicked": 1,
        "unsubscribed": 1,
        "bounced": 1,
        "complained": 1,
        "orders": 5,
        "revenue": "185.00",
        "conversion_rate": 0.8,
    }
    assert_versions_add_up(step)


async def test_a_period_splits_by_version_what_it_counts(db: Database) -> None:
    chain = await edited_chain(Shop(db))
    (step,) = stats_document(await chain_stats(db, chain, since=day(3)))["steps"]
    # Nothing was sent from day 3 on; the orders placed then count for their messages'
    # versions, sent before the period.
    zero = {key: 0 for key in SUMMED}
    assert step["versions"] == [
        {"version": 1, **zero, "orders": 1, "revenue": "40.00", "conversion_rate": 0.0},
        {"version": 2, **zero, "orders": 3, "revenue": "85.00", "conversion_rate": 0.0},
    ]
    assert_versions_add_up(step)


async def test_a_step_never_edited_has_version_one_once_anything_left(db: Database) -> None:
    shop = Shop(db)
    first, second, third = await shop.customers(3)
    chain, (step,) = await shop.chain("Welcome", [("sms", None)])
    await shop.delivery(step, first, status="planned", sent_at=None)

    (numbers,) = stats_document(await chain_stats(db, chain))["steps"]
    assert (numbers["planned"], numbers["versions"]) == (1, [])

    await shop.delivery(step, second, sent_at=day(0), version=1)
    # A message that left with no version recorded (from before versions) is version 1's.
    await shop.delivery(step, third, sent_at=day(0), events=("bounced",))
    await shop.order(second, day(1), "12.30")

    (numbers,) = stats_document(await chain_stats(db, chain))["steps"]
    assert numbers["versions"] == [
        {
            "version": 1,
            "sent": 2,
            "failed": 0,
            "skipped": 0,
            "uncertain": 0,
            "delivered": 1,
            "opened": 0,
            "clicked": 0,
            "unsubscribed": 0,
            "bounced": 1,
            "complained": 0,
            "orders": 1,
            "revenue": "12.30",
            "conversion_rate": 0.5,
        }
    ]
    assert {key: numbers[key] for key in CARRIED} == {
        key: value for key, value in numbers["versions"][0].items() if key != "version"
    }


async def versioned_random_shop(db: Database, seed: int) -> None:
    """A random shop of tests/test_stats.py whose messages are of versions 1 to 3 (or of
    none recorded), version 2 of each step with a conversion block of its own."""
    await seed_random_shop(db, seed)
    rng = random.Random(seed)
    async with db.writer() as session:
        for step_id in list(await session.scalars(select(Step.id))):
            session.add(StepVersion(step_id=step_id, version=2, conversion=rng.choice(CONVERSIONS)))
        await session.execute(
            update(Delivery)
            .where(Delivery.status != "planned")
            .values(version=case((Delivery.id % 4 == 0, None), else_=Delivery.id % 4))
        )
        await rebuild(session)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_versions_agree_with_the_pure_rule_and_add_up_on_random_shops(
    db: Database, seed: int
) -> None:
    await versioned_random_shop(db, seed)
    orders, messages, deliveries = await load_facts(db)
    async with db.session() as session:
        chains = list(await session.scalars(select(Chain.id)))
        steps = list(await session.scalars(select(Step).order_by(Step.chain_id, Step.position)))
    periods = [(None, None), (day(2), day(8)), (day(4), None)]
    for since, until in periods:
        for chain_id in chains:
            document = stats_document(await chain_stats(db, chain_id, since=since, until=until))
            chain_steps = [step for step in steps if step.chain_id == chain_id]
            for step, numbers in zip(chain_steps, document["steps"], strict=True):
                assert_versions_add_up(numbers)
                assert [version["version"] for version in numbers["versions"]] == sorted(
                    {version["version"] for version in numbers["versions"]}
                )
                for version in numbers["versions"]:
                    want = expected_numbers(
                        step.id,
                        orders,
                        messages,
                        deliveries,
                        since,
                        until,
                        version=version["version"],
                    )
                    got = {key: version[key] for key in CARRIED}
                    assert got == {key: want[key] for key in CARRIED}, (
                        chain_id,
                        step.position,
                        version["version"],
                        since,
                        until,
                    )
                listed = {version["version"] for version in numbers["versions"]}
                for missing in {1, 2, 3} - listed:
                    want = expected_numbers(
                        step.id, orders, messages, deliveries, since, until, version=missing
                    )
                    assert not any(want[key] for key in SUMMED), (step.id, missing)


async def test_chainmail_stats_json_lists_each_steps_versions(
    db_url: str, db: Database, tmp_path: Path
) -> None:
    chain = await edited_chain(Shop(db))
    done = chainmail(db_url, "stats", str(chain), "--json", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    document = json.loads(done.stdout)
    assert document["steps"][0]["versions"] == [VERSION_1, VERSION_2]
    assert document == stats_document(await chain_stats(db, chain))


# --- /stats in the bot ---------------------------------------------------------------


async def test_stats_show_versions_only_for_a_step_that_has_several(
    bot_over_http: BotUnderTest, db: Database
) -> None:
    bot = bot_over_http  # `/stats` sends its chart as a photo: over HTTP to the double
    shop = Shop(db)
    edited = await edited_chain(shop)
    (customer,) = await shop.customers(1)
    unedited, (step,) = await shop.chain("Welcome", [("email", None)])
    await shop.delivery(step, customer, sent_at=day(0), events=("opened",), version=1)

    page = screen(await bot.send(VIEWER, f"/stats {edited}"))
    assert page.text.splitlines()[2:] == [
        "1. Spring sale 1 · email",
        "sent 5/8 · to go 1 · failed 1 · skipped 1 · uncertain 1",
        "opened 4 (80%) · clicked 1 (20%) · unsub 1",
        # Of the 7 handed to the channel: 5 sent, 1 uncertain, 1 refused with a bounce.
        "⚠ bounced 1 (14.3%) · spam 1 (14.3%)",
        "🛒 5 orders · RUB185.00 · conv. 80.0%",
        "v1: 3 sent · 2 opened (67%) · 2 orders · conv. 66.7%",
        "v2: 2 sent · 2 opened (100%) · 3 orders · conv. 100.0%",
    ]

    page = screen(await bot.send(VIEWER, f"/stats {unedited}"))
    assert page.text.splitlines()[2:] == [
        "1. Welcome 1 · email",
        "sent 1/1",
        "opened 1 (100%) · clicked 0 (0%)",
        "🛒 0 orders · RUB0.00 · conv. 0.0%",
    ]


def with_versions(step: StepStats, count: int) -> StepStats:
    """The step with `count` versions, each of the step's numbers (a text test: they
    need not add up)."""
    numbers = {key: getattr(step, key) for key in (*CARRIED, "handed")}
    versions = tuple(VersionStats(version=n, **numbers) for n in range(1, count + 1))
    return replace(step, versions=versions)


def test_an_sms_step_shows_delivered_per_version() -> None:
    # Version 2 was just saved: its first messages are on their way.
    zero = {key: 0 for key in (*SUMMED, "handed")}
    just_saved = VersionStats(version=2, **zero, revenue=Decimal("0.00"), conversion_rate=0.0)
    sms_step = busy_step(2)
    step = replace(sms_step, versions=(*with_versions(sms_step, 1).versions, just_saved))
    (page,) = texts.stats_pages(ChainStats(1, "Winter", "active", [step]), currency="RUB")
    assert page.splitlines()[-2:] == [
        "v1: 8765432 sent · 8000000 delivered (91%) · 98765 orders · conv. 1.1%",
        "v2: 0 sent · 0 delivered (–) · 0 orders · conv. 0.0%",
    ]


@pytest.mark.parametrize("steps", [1, 20, 100])
def test_many_versions_show_the_latest_and_pages_stay_within_the_limit(steps: int) -> None:
    steps_shown = [with_versions(busy_step(n), 40) for n in range(1, steps + 1)]
    pages = texts.stats_pages(ChainStats(1, LONG_NAME, "active", steps_shown), currency="RUB")
    assert all(len(page) <= texts.LIMIT for page in pages)
    shown = "\n".join(pages)
    for position in range(1, steps + 1):
        assert f"<b>{position}. " in shown
    lines = texts.stats_pages(ChainStats(1, "Winter", "active", steps_shown[:1]), currency="RUB")[0]
    # After the header, the blank line and the step's five lines (with its waiting one).
    assert [line.split(":")[0] for line in lines.splitlines()[8:]] == [
        "… 35 earlier versions",
        "v36",
        "v37",
        "v38",
        "v39",
        "v40",
    ]
