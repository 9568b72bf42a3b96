"""The terms as SQL (`terms_condition`, what the claim runs) and as Python (`terms_hold`)
give the same answers on generated messages, on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select

from models.db import Database
from models.tables import (
    LEFT_STATUSES,
    Chain,
    Customer,
    Delivery,
    Event,
    EventType,
    Order,
    Step,
)
from scheduler.terms import MessageFacts, terms_condition, terms_hold

TRIGGERED = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
FACTS = ["opened", "clicked", "delivered", "unsubscribed_email", "unsubscribed_sms", "ordered"]
TERMS = FACTS + [f"not_{fact}" for fact in FACTS]
_serial = itertools.count()


@dataclass(frozen=True)
class World:
    """One previous-step message and what happened around it, in raw rows."""

    status: str
    events: frozenset[str]
    # None: subscribed; else unsubscribed so many hours from the trigger (maybe before).
    email_unsubscribed: int | None
    sms_unsubscribed: int | None
    # Orders, so many hours from the trigger.
    orders: tuple[int, ...]

    def facts(self) -> MessageFacts:
        def since(hours: int | None) -> bool:
            return hours is not None and hours >= 0

        return MessageFacts(
            opened=EventType.OPENED in self.events or EventType.CLICKED in self.events,
            clicked=EventType.CLICKED in self.events,
            delivered=self.status in LEFT_STATUSES and EventType.BOUNCED not in self.events,
            unsubscribed_email=since(self.email_unsubscribed),
            unsubscribed_sms=since(self.sms_unsubscribed),
            ordered=any(hours >= 0 for hours in self.orders),
        )


hours = st.integers(min_value=-48, max_value=48)
worlds = st.builds(
    World,
    status=st.sampled_from(["sent", "uncertain", "failed"]),
    events=st.frozensets(
        st.sampled_from(
            [EventType.OPENED, EventType.CLICKED, EventType.BOUNCED, EventType.DELIVERED]
        )
    ),
    email_unsubscribed=st.one_of(st.none(), hours),
    sms_unsubscribed=st.one_of(st.none(), hours),
    orders=st.lists(hours, max_size=2).map(tuple),
)


async def _store(db: Database, step_id: int, chain_id: int, world: World) -> int:
    n = next(_serial)
    at = TRIGGERED
    async with db.writer() as session:
        customer = Customer(
            external_id=f"w{n}",
            email=f"w{n}@example.com",
            phone=f"+7913{n:07d}",
            timezone="Europe/Moscow",
            timezone_source="explicit",
            email_status="subscribed" if world.email_unsubscribed is None else "unsubscribed",
            email_status_at=None
            if world.email_unsubscribed is None
            else at + timedelta(hours=world.email_unsubscribed),
            sms_status="subscribed" if world.sms_unsubscribed is None else "unsubscribed",
            sms_status_at=None
            if world.sms_unsubscribed is None
            else at + timedelta(hours=world.sms_unsubscribed),
            attributes={},
        )
        session.add(customer)
        await session.flush()
        delivery = Delivery(
            chain_id=chain_id,
            step_id=step_id,
            customer_id=customer.id,
            channel="email",
            status=world.status,
            eligible_at=at,
            due_at=at,
            sent_at=at,
            triggered_at=at,
        )
        session.add(delivery)
        await session.flush()
        for kind in world.events:
            session.add(
                Event(delivery_id=delivery.id, customer_id=customer.id, type=kind, occurred_at=at)
            )
        for number, offset in enumerate(world.orders):
            session.add(
                Order(
                    external_id=f"o{n}.{number}",
                    customer_id=customer.id,
                    amount=Decimal(100),
                    created_at=at + timedelta(hours=offset),
                )
            )
        return delivery.id


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    messages=st.lists(worlds, min_size=1, max_size=12),
    terms=st.lists(st.sampled_from(TERMS), min_size=1, max_size=3, unique=True),
    match=st.sampled_from(["all", "any"]),
)
async def test_sql_terms_and_python_terms_agree(
    db: Database, messages: list[World], terms: list[str], match: str
) -> None:
    async with db.writer() as session:
        chain_id = await session.scalar(
            insert(Chain).values(name="T", campaign_tag="t").returning(Chain.id)
        )
        step_id = await session.scalar(
            insert(Step).values(chain_id=chain_id, position=1, name="Main").returning(Step.id)
        )
    stored = {await _store(db, step_id, chain_id, world): world for world in messages}
    previous = Delivery.__table__
    customers = Customer.__table__
    async with db.session() as session:
        holding = set(
            await session.scalars(
                select(previous.c.id)
                .select_from(previous.join(customers, customers.c.id == previous.c.customer_id))
                .where(
                    previous.c.id.in_(stored),
                    terms_condition(terms, match, previous, customers),
                )
            )
        )
    expected = {
        delivery_id
        for delivery_id, world in stored.items()
        if terms_hold(terms, match, world.facts())
    }
    assert holding == expected
