"""The kept `attributions` table gives the pure rule's answers, whatever order facts arrive in.

Facts go through the functions that record them in production (tracking,
`record_orders`, `save_block`, the engine's `messages_triggered`), on SQLite and
PostgreSQL; after each one the table must equal `models.attribution.attribute`
over everything stored.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text, update

from models.attribution import Conversion, conversions
from models.chainfile import BlockKind, Mechanic
from models.db import Database
from models.facts import message_facts_changed, messages_triggered
from models.orders import record_orders
from models.stats import attributed_orders, chain_stats
from models.tables import Attribution, Chain, Customer, Delivery, Event, Step
from models.tracking import record_click, record_open, record_sms_status
from services.editing import save_block
from tests.test_stats import Shop, load_facts

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
CUSTOMERS = ("c1", "c2")


def hour(n: int) -> datetime:
    return T0 + timedelta(hours=n)


EVERY_MECHANIC = ["new_order", "order_increase", "order_restored"]
# All three half of the time, so that orders posted again often convert.
MECHANICS = st.one_of(
    st.just(EVERY_MECHANIC), st.lists(st.sampled_from(EVERY_MECHANIC), min_size=1, unique=True)
)


@dataclass(frozen=True)
class StepPlan:
    chain: int
    position: int
    channel: str
    window_days: int
    min_amount: int
    mechanics: tuple[str, ...] = ("new_order",)

    def block(self) -> dict[str, Any]:
        return conversion_block(self.window_days, self.min_amount, self.mechanics)


def conversion_block(window_days: int, min_amount: int, mechanics: tuple[str, ...]) -> dict:
    block = {"goal": "order", "window_days": window_days, "min_amount": min_amount}
    return block | {"mechanics": list(mechanics)} if mechanics != ("new_order",) else block


@dataclass(frozen=True)
class DeliveryPlan:
    step: int
    customer: int
    # sent, uncertain (sent_at kept: the channel's answer was lost) or failed.
    outcome: str
    sent_hour: int


# A fact is ("send", delivery) · ("event", delivery, type) · ("order", order) ·
# ("conversion", step, window_days, min_amount, mechanics).
Fact = tuple[Any, ...]


@dataclass(frozen=True)
class Scenario:
    steps: list[StepPlan]
    deliveries: list[DeliveryPlan]
    # (customer, hour, amount, external id, status): a repeated external id is the order
    # posted again, an update from that hour when its amount or status differ.
    orders: list[tuple[int, int, str, str, str]]
    facts: list[Fact]


EVENTS = {"email": ["opened", "clicked"], "sms": ["delivered", "failed"]}


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    steps = [
        StepPlan(
            chain=chain,
            position=position,
            channel=draw(st.sampled_from(["email", "sms"])),
            window_days=draw(st.integers(1, 3)),
            min_amount=draw(st.sampled_from([0, 0, 50, 100])),
            mechanics=tuple(draw(MECHANICS)),
        )
        for chain in (0, 1)
        for position in range(1, draw(st.integers(1, 2)) + 1)
    ]
    deliveries = [
        DeliveryPlan(
            step=index,
            customer=customer,
            outcome=draw(st.sampled_from(["sent", "sent", "uncertain", "failed"])),
            # Whole hours over four days: ties and windows' edges are common.
            sent_hour=draw(st.integers(0, 4 * 24).map(lambda h: h - h % 6)),
        )
        for index in range(len(steps))
        for customer in range(len(CUSTOMERS))
        if draw(st.booleans())
    ]
    # In the order of their hours, as a shop posts an order and its updates.
    orders = sorted(
        (
            (
                draw(st.integers(0, len(CUSTOMERS) - 1)),
                draw(st.integers(0, 5 * 24).map(lambda h: h - h % 6)),
                draw(st.sampled_from(["10.00", "50.00", "100.00", "160.00"])),
                draw(st.sampled_from(["A", "B", "C"])),
                draw(st.sampled_from(["new", "new", "new", "paid", "cancelled", "Canceled"])),
            )
            for _ in range(draw(st.integers(0, 8)))
        ),
        key=lambda order: order[1],
    )
    facts: list[Fact] = [("send", index) for index in range(len(deliveries))]
    for index, delivery in enumerate(deliveries):
        channel = steps[delivery.step].channel
        facts += [("event", index, kind) for kind in EVENTS[channel] if draw(st.booleans())]
    facts += [("order", index) for index in range(len(orders))]
    if draw(st.booleans()):
        facts.append(
            (
                "conversion",
                draw(st.integers(0, len(steps) - 1)),
                draw(st.integers(1, 3)),
                draw(st.sampled_from([0, 50, 100])),
                tuple(draw(MECHANICS)),
            )
        )
    facts = draw(st.permutations(facts))
    # Everything in any order, but an order's updates after it (a late one is refused).
    places = [index for index, fact in enumerate(facts) if fact[0] == "order"]
    for number, place in enumerate(places):
        facts[place] = ("order", number)
    return Scenario(steps, deliveries, orders, facts)


@dataclass
class Stored:
    """Ids of the rows a scenario made."""

    chains: list[int]
    steps: list[int]
    deliveries: list[int]


async def empty(db: Database) -> None:
    async with db.writer() as session:
        for table in (
            "attributions",
            "events",
            "order_changes",
            "orders",
            "step_versions",
            "deliveries",
            "steps",
            "chains",
        ):
            await session.execute(text(f"DELETE FROM {table}"))
        await session.execute(text("DELETE FROM audit_log"))
        await session.execute(text("DELETE FROM customers"))


async def store(db: Database, scenario: Scenario) -> Stored:
    """Customers, chains, steps, and every delivery as being handed to its channel."""
    async with db.writer() as session:
        customers = [
            Customer(external_id=external_id, timezone="Europe/Moscow", timezone_source="default")
            for external_id in CUSTOMERS
        ]
        chains = [Chain(name=f"Chain {n}", status="active", campaign_tag=f"c{n}") for n in (0, 1)]
        session.add_all([*customers, *chains])
        await session.flush()
        steps = [
            Step(
                chain_id=chains[plan.chain].id,
                position=plan.position,
                name=f"Step {plan.position}",
                action={"channel": plan.channel},
                conversion=plan.block(),
            )
            for plan in scenario.steps
        ]
        session.add_all(steps)
        await session.flush()
        deliveries = [
            Delivery(
                chain_id=steps[plan.step].chain_id,
                step_id=steps[plan.step].id,
                customer_id=customers[plan.customer].id,
                channel=scenario.steps[plan.step].channel,
                status="sending",
                eligible_at=T0,
                due_at=T0,
                links=["https://shop.example/"],
            )
            for plan in scenario.deliveries
        ]
        session.add_all(deliveries)
        await session.flush()
        return Stored([c.id for c in chains], [s.id for s in steps], [d.id for d in deliveries])


async def send(db: Database, delivery_id: int, plan: DeliveryPlan) -> None:
    """What the engine's StepSender._record does with one outcome."""
    at = hour(plan.sent_hour)
    async with db.writer() as session:
        await session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id)
            .values(
                status=plan.outcome,
                sent_at=None if plan.outcome == "failed" else at,
                triggered_at=at,
                # Composed with the step's version of the moment.
                version=select(Step.version).where(Step.id == Delivery.step_id).scalar_subquery(),
            )
        )
        await messages_triggered(session, [delivery_id], at)


async def apply(db: Database, scenario: Scenario, stored: Stored, fact: Fact) -> None:
    kind, index, *rest = fact
    now = hour(200)
    if kind == "send":
        await send(db, stored.deliveries[index], scenario.deliveries[index])
    elif kind == "event":
        delivery_id = stored.deliveries[index]
        event = rest[0]
        if event == "opened":
            assert await record_open(db, delivery_id, now)
        elif event == "clicked":
            assert await record_click(db, delivery_id, 0, now) is not None
        else:
            assert await record_sms_status(db, delivery_id, event, now)
    elif kind == "order":
        customer, at, amount, external_id, status = scenario.orders[index]
        item = {
            "external_id": external_id,
            "customer_external_id": CUSTOMERS[customer],
            "amount": amount,
            "status": status,
            # Read for a new order; for one stored already, `updated_at` is.
            "created_at": hour(at).isoformat(),
            "updated_at": hour(at).isoformat(),
        }
        await record_orders(db, [item], now)
    else:
        plan = scenario.steps[index]
        block = conversion_block(*rest)
        await save_block(
            db,
            stored.chains[plan.chain],
            plan.position,
            BlockKind.CONVERSION,
            block,
            actor="test",
        )


async def stored_conversions(db: Database) -> dict[int, Conversion]:
    async with db.session() as session:
        rows = await session.scalars(select(Attribution))
        return {
            row.order_id: Conversion(
                row.delivery_id, Mechanic(row.mechanic), row.amount, row.ordered_at
            )
            for row in rows
        }


async def assert_table_follows_the_rule(db: Database) -> None:
    orders, messages, _ = await load_facts(db)
    assert await stored_conversions(db) == conversions(orders, messages)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios())
async def test_table_equals_the_pure_rule_after_every_fact_in_any_order(
    db: Database, scenario: Scenario
) -> None:
    await empty(db)
    stored = await store(db, scenario)
    for fact in scenario.facts:
        await apply(db, scenario, stored, fact)
        await assert_table_follows_the_rule(db)
    # `--hypothesis-show-statistics` tells how often each mechanic was exercised.
    for mechanic in sorted({c.mechanic for c in (await stored_conversions(db)).values()}):
        event(f"converted by {mechanic}")


# The same, by hand, for the cases the property is about.


async def shop_of_one(
    db: Database, steps: list[tuple[str, dict[str, Any] | None]], chains: int = 1
) -> tuple[list[int], list[int]]:
    """One customer `c1`, `chains` chains each with `steps`; their chain and step ids."""
    shop = Shop(db)
    await shop.customers(1)
    chain_ids, step_ids = [], []
    for number in range(chains):
        chain_id, ids = await shop.chain(f"Chain {number}", steps)
        chain_ids.append(chain_id)
        step_ids += ids
    return chain_ids, step_ids


async def handed_over(db: Database, step_id: int) -> int:
    """A delivery of the step to `c1`, marked `sending`."""
    async with db.session() as session:
        customer = await _c1(session)
    return await Shop(db).delivery(step_id, customer, status="sending", sent_at=None)


def sent(at: int) -> DeliveryPlan:
    return DeliveryPlan(step=0, customer=0, outcome="sent", sent_hour=at)


async def order(
    db: Database, at: int, amount: str = "100.00", external_id: str = "A", **more: Any
) -> Any:
    item = {
        "external_id": external_id,
        "customer_external_id": "c1",
        "amount": amount,
        "created_at": hour(at).isoformat(),
        **more,
    }
    return await record_orders(db, [item], hour(200))


async def test_order_recorded_before_the_open_counts_once_the_open_arrives(db: Database) -> None:
    _, (step,) = await shop_of_one(db, [("email", None)])
    email = await handed_over(db, step)
    await send(db, email, sent(0))
    await order(db, 24)
    assert await attributed_orders(db) == {}
    await record_open(db, email, hour(48))
    assert list((await attributed_orders(db)).values()) == [email]


async def test_open_recorded_before_the_email_is_marked_sent_counts_once_it_is(
    db: Database,
) -> None:
    _, (step,) = await shop_of_one(db, [("email", None)])
    email = await handed_over(db, step)
    await order(db, 24)
    # The pixel can be fetched between the SMTP server's reply and the engine's record.
    await record_open(db, email, hour(0))
    assert await attributed_orders(db) == {}
    await send(db, email, sent(0))
    assert list((await attributed_orders(db)).values()) == [email]


async def test_sms_counts_from_the_moment_it_is_sent(db: Database) -> None:
    _, (step,) = await shop_of_one(db, [("sms", None)])
    sms = await handed_over(db, step)
    await order(db, 24)
    await send(db, sms, sent(0))
    assert list((await attributed_orders(db)).values()) == [sms]
    await record_sms_status(db, sms, "failed", hour(1))
    assert await attributed_orders(db) == {}


async def test_second_chains_message_takes_nothing_from_the_first(db: Database) -> None:
    (first, second), (first_step, second_step) = await shop_of_one(db, [("sms", None)], chains=2)
    early, late = await handed_over(db, first_step), await handed_over(db, second_step)
    await send(db, early, sent(0))
    await order(db, 24)
    await send(db, late, sent(12))
    assert list((await attributed_orders(db)).values()) == [early]
    assert (await chain_stats(db, second)).steps[0].orders == 0
    assert (await chain_stats(db, first)).steps[0].orders == 1


async def test_resent_order_counts_once_and_an_update_changes_its_revenue(db: Database) -> None:
    (chain,), (step,) = await shop_of_one(db, [("sms", None)])
    await send(db, await handed_over(db, step), sent(0))
    first = await order(db, 24, external_id="A-1")
    again = await order(db, 30, external_id="A-1")
    assert (first.created, again.duplicates) == (1, 1)
    stats = await chain_stats(db, chain)
    assert (stats.steps[0].orders, f"{stats.steps[0].revenue}") == (1, "100.00")

    grown = await order(db, 24, "999.00", external_id="A-1", updated_at=hour(30).isoformat())
    assert (grown.created, grown.updated, grown.duplicates) == (0, 1, 0)
    stats = await chain_stats(db, chain)
    assert (stats.steps[0].orders, f"{stats.steps[0].revenue}") == (1, "999.00")
    await assert_table_follows_the_rule(db)


async def test_a_higher_minimum_leaves_the_messages_sent_before_it_their_own(
    db: Database,
) -> None:
    (chain,), (step,) = await shop_of_one(db, [("sms", {"goal": "order", "window_days": 7})])
    await send(db, await handed_over(db, step), sent(0))
    await order(db, 24, "80.00", external_id="A-1")
    assert len(await attributed_orders(db)) == 1

    block = {"goal": "order", "window_days": 7, "min_amount": 100}
    saved = await save_block(db, chain, 1, BlockKind.CONVERSION, block, actor="test")

    # A new version; the message sent with version 1 keeps its window and minimum,
    # for the orders it had and for those that come after.
    assert (saved.impact.version, saved.impact.kept) == (2, 1)
    await order(db, 30, "80.00", external_id="A-2")
    assert len(await attributed_orders(db)) == 2
    await assert_table_follows_the_rule(db)


async def test_order_and_open_recorded_at_the_same_moment_attribute_the_order(
    db: Database,
) -> None:
    """Each transaction computes after the other one's fact is committed, never beside it."""
    _, (step,) = await shop_of_one(db, [("email", None)])
    email = await handed_over(db, step)
    await send(db, email, sent(0))
    opened = asyncio.Event()
    release = asyncio.Event()

    async def open_held_open() -> None:
        async with db.writer() as session:
            session.add(Event(delivery_id=email, customer_id=await _c1(session), type="opened"))
            await session.flush()
            await message_facts_changed(session, [email], hour(1))
            opened.set()
            await release.wait()

    holder = asyncio.create_task(open_held_open())
    await opened.wait()
    ordering = asyncio.create_task(order(db, 24))
    await asyncio.sleep(0.3)
    release.set()
    await asyncio.gather(holder, ordering)
    assert list((await attributed_orders(db)).values()) == [email]


async def _c1(session: Any) -> int:
    return int(await session.scalar(text("SELECT id FROM customers WHERE external_id = 'c1'")))


async def test_each_mechanic_counts_an_order_posted_again_once_with_its_revenue(
    db: Database,
) -> None:
    """Through record_orders: an increase, a restoration, and a default step beside them."""
    every = {"goal": "order", "window_days": 7, "mechanics": EVERY_MECHANIC}
    (chain, default_chain), (step, default_step) = await shop_of_one(db, [("sms", None)], 2)
    await save_block(db, chain, 1, BlockKind.CONVERSION, every, actor="test")
    # Placed before either message; the default chain reaches the customer first.
    await order(db, 0, "1000.00", external_id="grown")
    await order(db, 0, "500.00", external_id="restored", status="cancelled")
    await send(db, await handed_over(db, default_step), sent(6))
    await send(db, await handed_over(db, step), sent(12))
    grown = await order(db, 0, "1600.00", external_id="grown", updated_at=hour(24).isoformat())
    again = await order(db, 0, "1700.00", external_id="grown", updated_at=hour(30).isoformat())
    restored = await order(
        db, 0, "500.00", external_id="restored", status="paid", updated_at=hour(36).isoformat()
    )
    assert [(r.updated, r.duplicates) for r in (grown, again, restored)] == [(1, 0)] * 3

    stats = (await chain_stats(db, chain)).steps[0]
    assert (stats.orders, f"{stats.revenue}") == (2, "1200.00")
    default = (await chain_stats(db, default_chain)).steps[0]
    assert (default.orders, f"{default.revenue}") == (0, "0.00")
    conversions_by_mechanic = {c.mechanic: c for c in (await stored_conversions(db)).values()}
    assert conversions_by_mechanic[Mechanic.ORDER_INCREASE].revenue == Decimal("700.00")
    assert conversions_by_mechanic[Mechanic.ORDER_INCREASE].at == hour(24)
    assert conversions_by_mechanic[Mechanic.ORDER_RESTORED].revenue == Decimal("500.00")
    await assert_table_follows_the_rule(db)


async def test_a_step_version_counts_by_its_own_mechanics(db: Database) -> None:
    """Saved with order_increase while it ran: the messages sent before keep new orders
    only, those sent after count increases too."""
    (chain,), (step,) = await shop_of_one(db, [("sms", None)])
    async with db.writer() as session:
        c2 = Customer(external_id="c2", timezone="Europe/Moscow", timezone_source="default")
        session.add(c2)
        await session.flush()
        other = c2.id
    await order(db, 0, "100.00", external_id="early")
    await record_orders(
        db, [{"external_id": "late", "customer_external_id": "c2", "amount": "100"}], hour(0)
    )
    await send(db, await handed_over(db, step), sent(6))
    block = {"goal": "order", "window_days": 7, "mechanics": ["new_order", "order_increase"]}
    saved = await save_block(db, chain, 1, BlockKind.CONVERSION, block, actor="test")
    assert saved.impact.version == 2
    second = await Shop(db).delivery(step, other, status="sending", sent_at=None)
    await send(db, second, DeliveryPlan(step=0, customer=1, outcome="sent", sent_hour=6))

    await order(db, 0, "300.00", external_id="early", updated_at=hour(12).isoformat())
    await record_orders(
        db,
        [
            {
                "external_id": "late",
                "customer_external_id": "c2",
                "amount": "250",
                "updated_at": hour(12).isoformat(),
            }
        ],
        hour(200),
    )

    [numbers] = (await chain_stats(db, chain)).steps
    assert [(v.version, v.orders, f"{v.revenue}") for v in numbers.versions] == [
        (1, 0, "0.00"),
        (2, 1, "150.00"),
    ]
    await assert_table_follows_the_rule(db)
