"""Facts that changed, and what must be looked at again because of them.

Rules that hang on facts — follow-up terms waiting to come true, order
attribution — are not re-scanned on every engine tick. Whoever records a fact
(an open, a click, a delivery report, a bounce, an unsubscribe, an order, a
message sent) calls one of these in the same transaction, so the work done is
proportional to what changed, not to the audience waiting.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from models import attribution_table
from models.tables import Delivery, DeliveryStatus

_delivery = Delivery.__table__


async def _wake(session: AsyncSession, now: datetime, *where: object) -> None:
    """Waiting follow-ups become due now: the engine re-checks their terms at once.

    Only rows that wait for terms to come true (`send: now` with terms, which
    carry a `wait_until`) are parked in the future until then; the others are
    checked at their own due time anyway.
    """
    await session.execute(
        update(_delivery)
        .where(
            *where,
            _delivery.c.status == DeliveryStatus.PLANNED.value,
            _delivery.c.wait_until.is_not(None),
            _delivery.c.due_at > now,
        )
        .values(due_at=now)
        .execution_options(synchronize_session=False)
    )


async def message_facts_changed(
    session: AsyncSession, delivery_ids: Collection[int], now: datetime
) -> None:
    """Something happened to these messages: opened, clicked, delivered, bounced."""
    if delivery_ids:
        await _wake(session, now, _delivery.c.previous_delivery_id.in_(sorted(delivery_ids)))
        await attribution_table.refresh_customers_of(session, delivery_ids)


async def customer_facts_changed(
    session: AsyncSession, customer_ids: Collection[int], now: datetime
) -> None:
    """Something happened to these customers: an order, an unsubscribe.

    (An unsubscribe changes no attribution; refreshing it anyway costs little and
    keeps this one hook for every customer fact.)
    """
    if customer_ids:
        await _wake(
            session,
            now,
            _delivery.c.customer_id.in_(sorted(customer_ids)),
            _delivery.c.previous_delivery_id.is_not(None),
        )
        await attribution_table.refresh_customers(session, customer_ids)


async def messages_triggered(
    session: AsyncSession, delivery_ids: Collection[int], now: datetime
) -> None:
    """These messages went out (sent, uncertain) or finally failed: the engine calls it.

    A message that left may make an order attributable: an SMS at once, an email
    once opened (an open can be recorded before its message is marked sent).
    Nothing is woken: the engine plans the follow-ups of a step that triggered.
    """
    await attribution_table.refresh_customers_of(session, delivery_ids, engaged_only=True)


async def conversion_changed(session: AsyncSession, step_id: int) -> None:
    """A step's conversion block (window, minimum) was saved: its messages' customers'
    orders are attributed again."""
    await attribution_table.refresh_step(session, step_id)
