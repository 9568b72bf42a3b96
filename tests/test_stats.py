"""A chain's numbers per step (SPEC §7), computed in SQL, on SQLite and PostgreSQL."""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bot import cli_stats
from bot.settings import Settings
from models import reasons
from models.attribution import (
    OPEN_EVENTS,
    MessageFact,
    OrderFact,
    OrderState,
    attribute,
    conversion_settings,
    conversions,
    reached,
)
from models.attribution_table import rebuild
from models.db import Database
from models.errors import NotFound
from models.facts import customer_facts_changed, message_facts_changed, messages_triggered
from models.stats import ChainStats, attributed_orders, chain_stats, stats_document
from models.tables import (
    Chain,
    Customer,
    Delivery,
    Event,
    Order,
    OrderChange,
    Step,
    StepVersion,
)

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


class Shop:
    """Rows seeded straight into the tables, one writer transaction each."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._customers = 0
        self._orders = 0

    async def customers(self, count: int) -> list[int]:
        async with self.db.writer() as session:
            rows = []
            for _ in range(count):
                self._customers += 1
                rows.append(
                    Customer(
                        external_id=f"c{self._customers}",
                        email=f"c{self._customers}@example.com",
                        timezone="Europe/Moscow",
                        timezone_source="default",
                    )
                )
            session.add_all(rows)
            await session.flush()
            return [row.id for row in rows]

    async def chain(
        self,
        name: str,
        steps: list[tuple[str, dict[str, Any] | None]],
        *,
        status: str = "active",
    ) -> tuple[int, list[int]]:
        """A chain with steps given as (channel, conversion block)."""
        async with self.db.writer() as session:
            chain = Chain(name=name, status=status, campaign_tag=name.lower().replace(" ", "_"))
            session.add(chain)
            await session.flush()
            rows = [
                Step(
                    chain_id=chain.id,
                    position=position,
                    name=f"{name} {position}",
                    action={"channel": channel},
                    conversion=conversion,
                )
                for position, (channel, conversion) in enumerate(steps, start=1)
            ]
            session.add_all(rows)
            await session.flush()
            return chain.id, [row.id for row in rows]

    async def delivery(
        self,
        step_id: int,
        customer_id: int,
        *,
        status: str = "sent",
        sent_at: datetime | None = T0,
        reason: str | None = None,
        events: tuple[str, ...] = (),
        event_at: datetime | None = None,
        version: int | None = None,
    ) -> int:
        """`version`: the step version it was composed with; None as rows from before
        versions, which stats count as version 1 (planned rows have none)."""
        async with self.db.writer() as session:
            step = await session.get(Step, step_id)
            assert step is not None
            assert step.action is not None
            row = Delivery(
                chain_id=step.chain_id,
                step_id=step_id,
                customer_id=customer_id,
                channel=step.action["channel"],
                status=status,
                reason=reason,
                eligible_at=T0,
                due_at=T0,
                created_at=T0,
                sent_at=sent_at,
                triggered_at=sent_at,
                version=version,
            )
            session.add(row)
            await session.flush()
            session.add_all(
                Event(
                    delivery_id=row.id,
                    customer_id=customer_id,
                    type=event_type,
                    occurred_at=event_at or sent_at or T0,
                )
                for event_type in events
            )
            await session.flush()
            # As the engine and tracking record them: in the fact's own transaction.
            await messages_triggered(session, [row.id], T0)
            if events:
                await message_facts_changed(session, [row.id], event_at or T0)
            return row.id

    async def order(
        self, customer_id: int, at: datetime, amount: str = "100.00", *, external_id: str = ""
    ) -> int:
        self._orders += 1
        async with self.db.writer() as session:
            row = Order(
                external_id=external_id or f"o{self._orders}",
                customer_id=customer_id,
                amount=Decimal(amount),
                created_at=at,
                updated_at=at,
            )
            session.add(row)
            await session.flush()
            session.add(standing(row))
            await session.flush()
            await customer_facts_changed(session, [customer_id], at)
            return row.id


def standing(order: Order) -> OrderChange:
    """The order's current state as a row of its history (models/orders.py): placed,
    the first; changed, one more."""
    return OrderChange(
        order_id=order.id,
        amount=order.amount,
        status=order.status or "new",
        changed_at=order.updated_at,
        received_at=order.updated_at,
    )


@pytest.fixture
def shop(db: Database) -> Shop:
    return Shop(db)


def step_numbers(stats: ChainStats, position: int) -> dict[str, Any]:
    return stats_document(stats)["steps"][position - 1]


async def test_unknown_chain_is_refused(db: Database) -> None:
    with pytest.raises(NotFound, match="no chain with id 42"):
        await chain_stats(db, 42)


async def test_order_during_step_two_counts_for_step_two_only(db: Database, shop: Shop) -> None:
    (customer,) = await shop.customers(1)
    chain, (main, follow_up) = await shop.chain("Welcome", [("email", None), ("email", None)])
    await shop.delivery(main, customer, sent_at=day(0), events=("opened",))
    second = await shop.delivery(follow_up, customer, sent_at=day(3), events=("opened",))
    placed = await shop.order(customer, day(4), "250.00")
    stats = await chain_stats(db, chain)
    assert (stats.steps[0].orders, stats.steps[1].orders) == (0, 1)
    assert stats.steps[1].revenue == Decimal("250.00")
    assert await attributed_orders(db) == {placed: second}


async def test_resent_order_counts_once(db: Database, shop: Shop) -> None:
    """Re-sent with the same external id, refused; qualifying for two chains, counted for one."""
    (customer,) = await shop.customers(1)
    first, (first_step,) = await shop.chain("Spring", [("email", None)])
    second, (second_step,) = await shop.chain("Sale", [("sms", None)])
    await shop.delivery(first_step, customer, sent_at=day(0), events=("clicked",))
    await shop.delivery(second_step, customer, sent_at=day(1))
    await shop.order(customer, day(2), "80.00", external_id="A-1")
    with pytest.raises(IntegrityError):
        await shop.order(customer, day(2), "80.00", external_id="A-1")
    first_stats, second_stats = await chain_stats(db, first), await chain_stats(db, second)
    assert (first_stats.steps[0].orders, first_stats.steps[0].revenue) == (1, Decimal("80.00"))
    assert (second_stats.steps[0].orders, second_stats.steps[0].revenue) == (0, Decimal("0.00"))


async def test_window_ends_exactly_window_days_after_sending(db: Database, shop: Shop) -> None:
    inside, outside, before = await shop.customers(3)
    chain, (step,) = await shop.chain("Window", [("email", {"goal": "order", "window_days": 2})])
    sent = T0 + timedelta(microseconds=123456)
    for customer in (inside, outside, before):
        await shop.delivery(step, customer, sent_at=sent, events=("opened",))
    counted = await shop.order(inside, sent + timedelta(days=2, microseconds=-1))
    await shop.order(outside, sent + timedelta(days=2))
    await shop.order(before, sent - timedelta(microseconds=1))
    assert set(await attributed_orders(db, chain)) == {counted}


async def test_conversion_block_never_saved_means_seven_days(db: Database, shop: Shop) -> None:
    inside, outside = await shop.customers(2)
    chain, (step,) = await shop.chain("Defaults", [("sms", None)])
    await shop.delivery(step, inside, sent_at=day(0))
    await shop.delivery(step, outside, sent_at=day(0))
    counted = await shop.order(inside, day(6.9))
    await shop.order(outside, day(7))
    assert set(await attributed_orders(db, chain)) == {counted}


async def test_min_amount_is_compared_to_the_cent(db: Database, shop: Shop) -> None:
    small, enough = await shop.customers(2)
    block = {"goal": "order", "window_days": 7, "min_amount": 99.99}
    chain, (step,) = await shop.chain("Minimum", [("email", block)])
    await shop.delivery(step, small, events=("opened",))
    await shop.delivery(step, enough, events=("opened",))
    await shop.order(small, day(1), "99.98")
    counted = await shop.order(enough, day(1), "99.99")
    assert set(await attributed_orders(db, chain)) == {counted}


async def test_open_reported_after_the_order_still_counts(db: Database, shop: Shop) -> None:
    (customer,) = await shop.customers(1)
    chain, (step,) = await shop.chain("Late open", [("email", None)])
    await shop.delivery(step, customer, sent_at=day(0), events=("opened",), event_at=day(3))
    counted = await shop.order(customer, day(1))
    assert set(await attributed_orders(db, chain)) == {counted}


async def test_email_not_opened_and_sms_bounced_count_for_nothing(db: Database, shop: Shop) -> None:
    unopened, bounced, delivered = await shop.customers(3)
    chain, (email, sms) = await shop.chain("Quiet", [("email", None), ("sms", None)])
    await shop.delivery(email, unopened, sent_at=day(0))
    await shop.delivery(sms, bounced, sent_at=day(0), events=("bounced",))
    await shop.delivery(sms, delivered, sent_at=day(0), events=("delivered",))
    for customer in (unopened, bounced):
        await shop.order(customer, day(1))
    counted = await shop.order(delivered, day(1))
    assert set(await attributed_orders(db, chain)) == {counted}


async def test_uncertain_sms_counts_as_delivered_and_converts_unless_it_bounced(
    db: Database, shop: Shop
) -> None:
    """`uncertain` is one of LEFT_STATUSES, as for the `delivered` term of follow-ups."""
    lost, bounced = await shop.customers(2)
    chain, (step,) = await shop.chain("Lost answers", [("sms", None)])
    counted = await shop.delivery(step, lost, status="uncertain", reason=reasons.OUTCOME_LOST)
    await shop.delivery(step, bounced, status="uncertain", events=("bounced",))
    placed = await shop.order(lost, day(1))
    await shop.order(bounced, day(1))
    numbers = step_numbers(await chain_stats(db, chain), 1)
    assert (numbers["sent"], numbers["uncertain"], numbers["delivered"]) == (0, 2, 1)
    assert await attributed_orders(db) == {placed: counted}


async def test_counts_follow_the_documented_definitions(db: Database, shop: Shop) -> None:
    customers = await shop.customers(12)
    chain, (step,) = await shop.chain("Counts", [("email", None)])
    plan: list[dict[str, Any]] = [
        {"events": ("opened", "opened", "clicked")},
        {"events": ("opened", "unsubscribed")},
        {"events": ("clicked",)},
        {"events": ("bounced",)},
        {"events": ("complained",)},
        # Refused at SMTP time: a bounce that never left, still handed to the channel.
        {"status": "failed", "sent_at": None, "reason": "550 no such user", "events": ("bounced",)},
        {"status": "uncertain", "reason": reasons.OUTCOME_LOST, "events": ("opened",)},
        {"status": "skipped", "sent_at": None, "reason": reasons.NO_EMAIL},
        {"status": "skipped", "sent_at": None, "reason": reasons.EMAIL_UNSUBSCRIBED},
        {"status": "skipped", "sent_at": None, "reason": reasons.TERMS_FALSE},
        {"status": "planned", "sent_at": None},
        {"status": "sending", "sent_at": None},
    ]
    for customer, fields in zip(customers, plan, strict=True):
        await shop.delivery(step, customer, **fields)
    await shop.order(customers[0], day(1), "10.50")
    await shop.order(customers[0], day(2), "20.25")
    await shop.order(customers[2], day(1), "5.00")
    await shop.order(customers[4], day(1), "7.00")

    stats = await chain_stats(db, chain)

    numbers = {
        "sent": 5,
        "failed": 1,
        "skipped": 3,
        "uncertain": 1,
        "delivered": 5,
        "opened": 4,
        "clicked": 2,
        "unsubscribed": 1,
        "bounced": 2,
        "complained": 1,
        "orders": 3,
        "revenue": "35.75",
        "conversion_rate": 0.4,
    }
    assert step_numbers(stats, 1) == {
        "position": 1,
        "name": "Counts 1",
        "channel": "email",
        "coverage": 9,
        "planned": 2,
        **numbers,
        # Rows with no version recorded are version 1's; the planned one is nobody's.
        "versions": [{"version": 1, **numbers}],
    }
    # What bounce and complaint rates are of: the five sent, the uncertain one and the
    # one refused with a bounce.
    assert (stats.steps[0].handed, stats.steps[0].versions[0].handed) == (7, 7)
    assert stats.steps[0].skipped_by_reason == {
        reasons.EMAIL_UNSUBSCRIBED: 1,
        reasons.NO_EMAIL: 1,
        reasons.TERMS_FALSE: 1,
    }


async def test_steps_without_deliveries_show_zeros(db: Database, shop: Shop) -> None:
    chain, _ = await shop.chain("Welcome series", [("email", None)])
    document = stats_document(await chain_stats(db, chain))
    assert json.dumps(document) == json.dumps(
        {
            "chain": {"id": chain, "name": "Welcome series", "status": "active"},
            "steps": [
                {
                    "position": 1,
                    "name": "Welcome series 1",
                    "channel": "email",
                    "coverage": 0,
                    "planned": 0,
                    "sent": 0,
                    "failed": 0,
                    "skipped": 0,
                    "uncertain": 0,
                    "delivered": 0,
                    "opened": 0,
                    "clicked": 0,
                    "unsubscribed": 0,
                    "bounced": 0,
                    "complained": 0,
                    "orders": 0,
                    "revenue": "0.00",
                    "conversion_rate": 0.0,
                    "versions": [],
                }
            ],
        }
    )


async def test_period_narrows_deliveries_by_sending_and_orders_by_placing(
    db: Database, shop: Shop
) -> None:
    early, late = await shop.customers(2)
    chain, (step,) = await shop.chain("Period", [("email", None)])
    await shop.delivery(step, early, sent_at=day(0), events=("opened",))
    await shop.delivery(step, late, sent_at=day(2), events=("opened",))
    await shop.order(early, day(2.5), "30.00")
    await shop.order(late, day(1.5), "99.00")  # before its message: counts for nothing

    stats = await chain_stats(db, chain, since=day(2), until=day(3))

    numbers = step_numbers(stats, 1)
    assert (numbers["sent"], numbers["opened"], numbers["orders"]) == (1, 1, 1)
    assert numbers["revenue"] == "30.00"
    assert numbers["conversion_rate"] == 1.0


async def test_cli_prints_the_json_document_and_a_table(
    db_url: str, db: Database, shop: Shop, capsys: pytest.CaptureFixture[str]
) -> None:
    (customer,) = await shop.customers(1)
    chain, (step,) = await shop.chain("Welcome", [("email", None)])
    await shop.delivery(step, customer, events=("opened",))
    await shop.order(customer, day(1), "42.00")

    assert await run_cli(db_url, str(chain), "--json") == 0
    document = json.loads(capsys.readouterr().out)
    assert document == stats_document(await chain_stats(db, chain))

    assert await run_cli(db_url, str(chain)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"chain {chain} “Welcome” (active)"
    assert lines[1].split() == [header for header, _ in cli_stats.COLUMNS]
    header, row = lines[1], lines[2]
    cells = row.split()
    # The step is called "Welcome 1": its name is two words.
    values = dict(zip(header.split(), [cells[0], " ".join(cells[1:3]), *cells[3:]], strict=True))
    assert values["step"] == "Welcome 1"
    assert (values["sent"], values["opened"], values["orders"]) == ("1", "1", "1")
    assert (values["revenue"], values["conversion"]) == ("42.00", "100.00%")
    # Numbers are right-aligned under their headers.
    assert header.index("revenue") + len("revenue") == row.index("42.00") + len("42.00")


async def run_cli(db_url: str, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli_stats.register(parser.add_subparsers())
    args = parser.parse_args(["stats", *argv])
    return await args.handler(Settings(database_url=db_url), args)


async def test_cli_refuses_an_unknown_chain(db_url: str) -> None:
    with pytest.raises(NotFound, match="no chain with id 999"):
        await run_cli(db_url, "999")


# The SQL and the pure rule must agree: random shops, every number compared.

REASONS = [reasons.NO_EMAIL, reasons.NO_PHONE, reasons.TERMS_FALSE, "something else", None]
EVERY_MECHANIC = ["new_order", "order_increase", "order_restored"]
CONVERSIONS: list[dict[str, Any] | None] = [
    None,
    {"goal": "order", "window_days": 1, "min_amount": 0},
    {"goal": "order", "window_days": 3, "min_amount": 50},
    {"goal": "order", "window_days": 7, "min_amount": 99.99},
    {"goal": "order", "window_days": 7, "min_amount": 0, "mechanics": EVERY_MECHANIC},
    {"goal": "order", "window_days": 3, "min_amount": 10, "mechanics": ["order_increase"]},
    {"goal": "order", "window_days": 2, "min_amount": 0, "mechanics": ["order_restored"]},
]
AMOUNTS = ["10.00", "49.99", "50.00", "99.99", "100.00", "250.10"]


EVENT_TYPES = ("delivered", "opened", "clicked", "unsubscribed", "bounced", "complained")


async def seed_random_shop(db: Database, seed: int) -> None:
    rng = random.Random(seed)

    def moment(base: datetime, days: float) -> datetime:
        # Whole seconds and microseconds both, so that ties and fractions occur.
        jitter = rng.choice([0, rng.randint(0, 86_400), rng.random() * 86_400])
        return base + timedelta(days=days, seconds=jitter)

    async with db.writer() as session:
        customers = [
            Customer(external_id=f"c{i}", timezone="Europe/Moscow", timezone_source="default")
            for i in range(50)
        ]
        chains = [Chain(name=f"Chain {i}", campaign_tag=f"chain_{i}") for i in range(2)]
        session.add_all(customers + chains)
        await session.flush()
        steps = [
            Step(
                chain_id=chain.id,
                position=position,
                name=f"Step {position}",
                action={"channel": rng.choice(["email", "sms"])},
                conversion=rng.choice(CONVERSIONS),
            )
            for chain in chains
            for position in (1, 2, 3)
        ]
        session.add_all(steps)
        await session.flush()
        deliveries: list[Delivery] = []
        for step in steps:
            start = day(rng.choice([0, 1, 2]) + 3 * (step.position - 1))
            for customer in rng.sample(customers, rng.randint(20, 50)):
                status = rng.choice(["sent"] * 6 + ["failed", "skipped", "uncertain", "planned"])
                sent_at = moment(start, 0) if status in {"sent", "uncertain"} else None
                deliveries.append(
                    Delivery(
                        chain_id=step.chain_id,
                        step_id=step.id,
                        customer_id=customer.id,
                        channel=step.action["channel"],  # type: ignore[index]
                        status=status,
                        reason=rng.choice(REASONS) if status == "skipped" else None,
                        eligible_at=start,
                        due_at=start,
                        created_at=start - timedelta(hours=1),
                        sent_at=sent_at,
                        triggered_at=sent_at,
                    )
                )
        session.add_all(deliveries)
        await session.flush()
        events = []
        for delivery in deliveries:
            if delivery.sent_at is None:
                continue
            for event_type in EVENT_TYPES:
                for _ in range(rng.choice([0, 0, 1, 2])):
                    events.append(
                        Event(
                            delivery_id=delivery.id,
                            customer_id=delivery.customer_id,
                            type=event_type,
                            occurred_at=moment(delivery.sent_at, rng.random() * 3),
                        )
                    )
        # Customer-level events belong to no delivery and must change nothing.
        events.append(Event(delivery_id=None, customer_id=customers[0].id, type="opened"))
        session.add_all(events)
        orders = []
        for number in range(150):
            customer = rng.choice(customers)
            # From before the first message on: orders that changed while messages went out.
            at = moment(day(-4), rng.random() * 18)
            sent = [d for d in deliveries if d.customer_id == customer.id and d.sent_at]
            if sent and rng.random() < 0.3:
                # Exactly at a window's edges, where an off-by-one would show.
                target = rng.choice(sent)
                assert target.sent_at is not None
                at = target.sent_at + timedelta(days=rng.choice([0, 1, 3, 7]))
            amount = rng.choice(AMOUNTS)
            orders.append(
                Order(
                    external_id=f"o{number}",
                    customer_id=customer.id,
                    amount=Decimal(amount),
                    created_at=at,
                    updated_at=at,
                )
            )
        session.add_all(orders)
        await session.flush()
        session.add_all(standing(order) for order in orders)
        # Most orders change later: grown, shrunk, cancelled, restored, paid.
        for order in orders:
            at = order.created_at
            for _ in range(rng.choice([0, 1, 2, 3])):
                at = moment(at, rng.choice([0, 1, 2, 3, 5]))
                order.amount = Decimal(rng.choice(AMOUNTS))
                order.status = rng.choice(["new", "paid", "cancelled", "Canceled"])
                order.updated_at = at
                session.add(standing(order))
        await session.flush()
        await rebuild(session)


async def load_facts(
    db: Database,
) -> tuple[list[OrderFact], list[MessageFact], dict[int, Delivery]]:
    async with db.session() as session:
        steps = {step.id: step for step in await session.scalars(select(Step))}
        # A message's conversion is that of its step version (services/editing.py), a
        # version's block never saved included (the defaults); no row: the step's own.
        versions = {
            (v.step_id, v.version): v.conversion for v in await session.scalars(select(StepVersion))
        }
        event_types: dict[int, set[str]] = defaultdict(set)
        for delivery_id, event_type in await session.execute(
            select(Event.delivery_id, Event.type).where(Event.delivery_id.is_not(None))
        ):
            event_types[delivery_id].add(event_type)
        deliveries = list(await session.scalars(select(Delivery)))
        history: dict[int, list[OrderState]] = defaultdict(list)
        for change in await session.scalars(
            select(OrderChange).order_by(OrderChange.changed_at, OrderChange.id)
        ):
            history[change.order_id].append(
                OrderState(change.changed_at, change.amount, change.status)
            )
        orders = [
            OrderFact(o.id, o.customer_id, o.amount, o.created_at, tuple(history[o.id]))
            for o in await session.scalars(select(Order))
        ]
    messages = []
    for d in deliveries:
        key = (d.step_id, d.version)
        conversion = versions[key] if key in versions else steps[d.step_id].conversion
        window_days, min_amount, mechanics = conversion_settings(conversion)
        messages.append(
            MessageFact(
                delivery_id=d.id,
                chain_id=d.chain_id,
                customer_id=d.customer_id,
                channel=d.channel,
                status=d.status,
                sent_at=d.sent_at,
                window_days=window_days,
                min_amount=min_amount,
                events=frozenset(event_types[d.id]),
                mechanics=mechanics,
            )
        )
    return orders, messages, {d.id: d for d in deliveries}


def expected_numbers(
    step_id: int,
    orders: list[OrderFact],
    messages: list[MessageFact],
    deliveries: dict[int, Delivery],
    since: datetime | None,
    until: datetime | None,
    version: int | None = None,
) -> dict[str, Any]:
    """docs/attribution.md's definitions, spelled out in Python; with `version`, for the
    step's messages of that version only (no longer planned; none recorded: version 1)."""

    def in_period(moment: datetime) -> bool:
        return (since is None or moment >= since) and (until is None or moment < until)

    def delivery_moment(d: Delivery) -> datetime:
        return d.sent_at or d.triggered_at or d.created_at

    def counted(d: Delivery) -> bool:
        return d.step_id == step_id and (
            version is None or (d.status != "planned" and (d.version or 1) == version)
        )

    mine = [
        m
        for m in messages
        if counted(deliveries[m.delivery_id])
        and in_period(delivery_moment(deliveries[m.delivery_id]))
    ]
    by_status: dict[str, int] = defaultdict(int)
    for m in mine:
        by_status[m.status] += 1
    skipped = [deliveries[m.delivery_id].reason for m in mine if m.status == "skipped"]
    customer_of = {o.order_id: o.customer_id for o in orders}
    # An order belongs to a period by when it converted (docs/attribution.md).
    won = [
        (customer_of[order_id], conversion)
        for order_id, conversion in conversions(orders, messages).items()
        if in_period(conversion.at) and counted(deliveries[conversion.delivery_id])
    ]
    sent = by_status["sent"]
    return {
        "coverage": len(mine) - sum(reason in reasons.OUT_OF_REACH for reason in skipped),
        "planned": by_status["planned"] + by_status["sending"],
        "sent": sent,
        "failed": by_status["failed"],
        "skipped": by_status["skipped"],
        "uncertain": by_status["uncertain"],
        "delivered": sum(reached(m) for m in mine),
        "opened": sum(bool(m.events & OPEN_EVENTS) for m in mine),
        "clicked": sum("clicked" in m.events for m in mine),
        "unsubscribed": sum("unsubscribed" in m.events for m in mine),
        "bounced": sum("bounced" in m.events for m in mine),
        "complained": sum("complained" in m.events for m in mine),
        "orders": len(won),
        "revenue": f"{sum((c.revenue for _, c in won), Decimal('0.00')):.2f}",
        "conversion_rate": round(len({customer for customer, _ in won}) / sent, 4) if sent else 0.0,
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_sql_agrees_with_the_pure_rule_on_random_shops(db: Database, seed: int) -> None:
    await seed_random_shop(db, seed)
    orders, messages, deliveries = await load_facts(db)
    expected = attribute(orders, messages)
    assert expected, "the random shop should convert at least once"
    assert await attributed_orders(db) == expected

    rng = random.Random(seed)
    periods = [(None, None), (day(rng.random() * 5), day(5 + rng.random() * 10)), (day(4), None)]
    async with db.session() as session:
        chains = list(await session.scalars(select(Chain.id)))
        steps = {s.id: s for s in await session.scalars(select(Step))}
    for since, until in periods:
        for chain_id in chains:
            stats = await chain_stats(db, chain_id, since=since, until=until)
            chain_steps = sorted(
                (s for s in steps.values() if s.chain_id == chain_id), key=lambda s: s.position
            )
            for step, numbers in zip(chain_steps, stats_document(stats)["steps"], strict=True):
                want = expected_numbers(step.id, orders, messages, deliveries, since, until)
                got = {key: numbers[key] for key in want}
                assert got == want, (chain_id, step.position, since, until)
