"""What happens to a message after it left: opens, clicks, unsubscribes, SMS reports
and SMS replies asking to stop.

Each fact is an `events` row, written once per delivery (a click: once per link),
however often a pixel is fetched or a report re-sent. "Once" holds under
concurrency because every writer here first locks the delivery's row
(PostgreSQL: `FOR NO KEY UPDATE`; SQLite: the writer transaction already holds
the database's write lock), so two hits on the same delivery run one after the
other and the second sees the first's event. `FOR NO KEY UPDATE` rather than
`FOR UPDATE` so that inserting events elsewhere (whose foreign key takes a key
share lock on the delivery) is never blocked by it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from i18n import customer_language
from models import audit
from models.db import Database
from models.facts import customer_facts_changed, message_facts_changed
from models.sms_stop import is_stop_word
from models.tables import (
    LEFT_STATUSES,
    Channel,
    Customer,
    Delivery,
    EmailStatus,
    Event,
    EventType,
    SmsStatus,
)

SmsReport = Literal["delivered", "failed"]

_STATUS_COLUMNS = {
    Channel.EMAIL: (Customer.email_status, Customer.email_status_at, EmailStatus),
    Channel.SMS: (Customer.sms_status, Customer.sms_status_at, SmsStatus),
}


@dataclass(frozen=True)
class UnsubscribeResult:
    channel: Channel
    # False when the channel was already unsubscribed (or the address bounced).
    changed: bool


async def locked_delivery(session: AsyncSession, delivery_id: int) -> Delivery | None:
    return await session.scalar(
        select(Delivery).where(Delivery.id == delivery_id).with_for_update(key_share=True)
    )


async def add_event_once(
    session: AsyncSession,
    delivery: Delivery,
    event_type: EventType,
    at: datetime,
    data: dict[str, Any] | None = None,
    same: ColumnElement[bool] | None = None,
) -> None:
    """Add the event unless the delivery has one like it; the caller holds the row lock.

    `same` narrows what counts as "like it" (a click: the same link).
    """
    query = select(Event.id).where(Event.delivery_id == delivery.id, Event.type == event_type.value)
    if same is not None:
        query = query.where(same)
    existing = await session.scalar(query.limit(1))
    if existing is None:
        session.add(
            Event(
                delivery_id=delivery.id,
                customer_id=delivery.customer_id,
                type=event_type.value,
                occurred_at=at,
                data=data or {},
            )
        )


@dataclass(frozen=True)
class Reader:
    """Who a delivery went to, as a page for them needs it."""

    channel: Channel
    # The language they read (`i18n.customer_language`).
    language: str


async def delivery_reader(db: Database, delivery_id: int, default_language: str) -> Reader | None:
    async with db.session() as session:
        row = (
            await session.execute(
                select(Delivery.channel, Customer.language, Customer.phone)
                .join(Customer, Customer.id == Delivery.customer_id)
                .where(Delivery.id == delivery_id)
            )
        ).first()
    if row is None:
        return None
    language = customer_language(row.language, row.phone, default_language)
    return Reader(Channel(row.channel), language)


async def link_target(db: Database, delivery_id: int, link_index: int) -> str | None:
    """The original target of the message's link number `link_index`, read only."""
    async with db.session() as session:
        links = await session.scalar(select(Delivery.links).where(Delivery.id == delivery_id))
    if not links or not 0 <= link_index < len(links):
        return None
    return links[link_index]


async def record_open(db: Database, delivery_id: int, at: datetime) -> bool:
    """Note that the email was opened; False if there is no such delivery."""
    async with db.writer() as session:
        delivery = await locked_delivery(session, delivery_id)
        if delivery is None:
            return False
        await add_event_once(session, delivery, EventType.OPENED, at)
        await message_facts_changed(session, [delivery.id], at)
        return True


async def record_click(db: Database, delivery_id: int, link_index: int, at: datetime) -> str | None:
    """The original target of the message's link number `link_index`, the click recorded:
    an email's tracked link (`/t/c/`) or an SMS's short link (`/s/`).

    None (and nothing recorded) for an unknown delivery or link.
    """
    async with db.writer() as session:
        delivery = await locked_delivery(session, delivery_id)
        links = delivery.links if delivery is not None else None
        if delivery is None or not links or not 0 <= link_index < len(links):
            return None
        await add_event_once(
            session,
            delivery,
            EventType.CLICKED,
            at,
            {"link": link_index},
            same=Event.data["link"].as_integer() == link_index,
        )
        if delivery.channel == Channel.EMAIL.value:
            # Whoever clicked had the email open, even with its images (the pixel)
            # blocked. Nothing says an SMS was opened: its click is its own fact.
            await add_event_once(session, delivery, EventType.OPENED, at)
        await message_facts_changed(session, [delivery.id], at)
        return links[link_index]


async def unsubscribe(db: Database, delivery_id: int, at: datetime) -> UnsubscribeResult | None:
    """Unsubscribe the customer from the channel the delivery went through.

    Only a subscribed status changes (a bounced address stays bounced); the
    `unsubscribed` event records the request on this message once either way,
    so asking again changes nothing. None for an unknown delivery.
    """
    async with db.writer() as session:
        delivery = await locked_delivery(session, delivery_id)
        if delivery is None:
            return None
        return await unsubscribe_delivery(session, delivery, at, via="web")


async def unsubscribe_delivery(
    session: AsyncSession, delivery: Delivery, at: datetime, *, via: str
) -> UnsubscribeResult:
    """`unsubscribe` in the caller's transaction, which holds the delivery's row lock;
    `via` says who asked, for the audit log ("web", "mailto", "complaint")."""
    channel = Channel(delivery.channel)
    status, status_at, values = _STATUS_COLUMNS[channel]
    result = await session.execute(
        update(Customer)
        .where(Customer.id == delivery.customer_id, status == values.SUBSCRIBED.value)
        .values({status: values.UNSUBSCRIBED.value, status_at: at, Customer.updated_at: at})
        .execution_options(synchronize_session=False)
    )
    changed = result.rowcount == 1
    if changed:
        audit.record(
            session,
            via,
            "customer.unsubscribe",
            customer_id=delivery.customer_id,
            delivery_id=delivery.id,
            channel=channel.value,
        )
        await customer_facts_changed(session, [delivery.customer_id], at)
    await add_event_once(session, delivery, EventType.UNSUBSCRIBED, at, {"channel": channel.value})
    return UnsubscribeResult(channel, changed)


async def record_sms_status(
    db: Database, delivery_id: int, status: SmsReport, at: datetime
) -> bool:
    """Record the gateway's report on an SMS; False if there is no such SMS delivery.

    `failed` becomes a `bounced` event: the message never reached the phone.
    """
    async with db.writer() as session:
        delivery = await locked_delivery(session, delivery_id)
        if delivery is None or delivery.channel != Channel.SMS.value:
            return False
        event_type = EventType.DELIVERED if status == "delivered" else EventType.BOUNCED
        await add_event_once(session, delivery, event_type, at)
        await message_facts_changed(session, [delivery.id], at)
        return True


async def sms_stop(db: Database, phone: str, text: str, words: frozenset[str], at: datetime) -> int:
    """An SMS `text` came from `phone` (E.164, as customers' phones are stored): when it
    is a stop word, every subscribed customer with that phone is unsubscribed from SMS.

    Answers how many customers it unsubscribed: 0 for another text, a phone nobody
    has, or customers unsubscribed already. Each one is audited, wakes the follow-ups
    waiting on `unsubscribed_sms`, and gets an `unsubscribed` event on the last SMS
    sent to them, the message the reply answers, so that step's stats count it.
    """
    if not is_stop_word(text, words):
        return 0
    async with db.writer() as session:
        changed = list(
            await session.scalars(
                update(Customer)
                .where(Customer.phone == phone, Customer.sms_status == SmsStatus.SUBSCRIBED.value)
                .values(sms_status=SmsStatus.UNSUBSCRIBED.value, sms_status_at=at, updated_at=at)
                .returning(Customer.id)
                .execution_options(synchronize_session=False)
            )
        )
        for customer_id in sorted(changed):
            audit.record(
                session,
                "sms",
                "customer.unsubscribe",
                customer_id=customer_id,
                channel=Channel.SMS.value,
                via="sms stop",
            )
            last_sms = await session.scalar(
                select(func.max(Delivery.id)).where(
                    Delivery.customer_id == customer_id,
                    Delivery.channel == Channel.SMS.value,
                    Delivery.status.in_(LEFT_STATUSES),
                )
            )
            delivery = await locked_delivery(session, last_sms) if last_sms else None
            if delivery is not None:
                await add_event_once(
                    session, delivery, EventType.UNSUBSCRIBED, at, {"channel": Channel.SMS.value}
                )
        await customer_facts_changed(session, changed, at)
        return len(changed)
