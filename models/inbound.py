"""What mail coming back does: bounces, delays, spam complaints, mailto unsubscribes.

`inbound/parse.py` reads a message into findings; `record_findings` applies them, all
of one message in one transaction, so that a message a receiver must take again (the
database was busy: SMTP 451, the sender retries) is applied whole or not at all. Each
fact is an event written once per delivery (models/tracking.py), so the same report
twice changes nothing the second time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import func, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import audit
from models.db import Database
from models.facts import customer_facts_changed, message_facts_changed
from models.protection import HoldPolicy, hold_unhealthy_steps
from models.tables import (
    LEFT_STATUSES,
    Channel,
    Customer,
    Delivery,
    DeliveryStatus,
    EmailStatus,
    EventType,
)
from models.tracking import add_event_once, locked_delivery, unsubscribe_delivery

BOUNCED_REASON = "bounced"


class Kind(StrEnum):
    BOUNCE = "bounce"
    DELAY = "delay"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"


@dataclass(frozen=True)
class Finding:
    kind: Kind
    delivery_id: int
    # RFC 3463's enhanced status ("5.1.1") and the server's words, when the report has them.
    status: str = ""
    diagnostic: str = ""
    # The address the report says failed, as it gives it ("" when it does not say).
    recipient: str = ""


@dataclass(frozen=True)
class Recorded:
    finding: Finding
    # False: no such email delivery (its chain deleted, say), or nothing new.
    changed: bool
    # The delivery's step; None when there is no such email delivery.
    step_id: int | None = None


async def record_findings(
    db: Database, findings: Sequence[Finding], at: datetime, *, via: str, policy: HoldPolicy
) -> list[Recorded]:
    """Apply one message's findings; `via` ("smtp", "imap") goes to the audit log. A step
    whose bounces or complaints now reach `policy`'s limits has its chain held, in the
    same transaction (models/protection.py)."""
    if not findings:
        return []
    async with db.writer() as session:
        recorded = [await _record(session, finding, at, via) for finding in findings]
        counted = {
            item.step_id
            for item in recorded
            if item.step_id is not None and item.finding.kind in (Kind.BOUNCE, Kind.COMPLAINT)
        }
        if counted:
            await hold_unhealthy_steps(session, counted, policy, at, actor="inbound")
        return recorded


async def _record(session: AsyncSession, finding: Finding, at: datetime, via: str) -> Recorded:
    delivery = await locked_delivery(session, finding.delivery_id)
    if delivery is None or delivery.channel != Channel.EMAIL.value:
        return Recorded(finding, False)
    if finding.kind is Kind.UNSUBSCRIBE:
        result = await unsubscribe_delivery(session, delivery, at, via=f"{via} mailto")
        return Recorded(finding, result.changed, delivery.step_id)
    if finding.kind is Kind.COMPLAINT:
        return Recorded(finding, await _complaint(session, delivery, at, via), delivery.step_id)
    details = {"status": finding.status, "diagnostic": finding.diagnostic, "via": via}
    if finding.kind is Kind.DELAY:
        await add_event_once(session, delivery, EventType.DELAYED, at, details)
        return Recorded(finding, True, delivery.step_id)
    bounced = await _bounce(session, delivery, finding, at, details)
    return Recorded(finding, bounced, delivery.step_id)


async def _bounce(
    session: AsyncSession,
    delivery: Delivery,
    finding: Finding,
    at: datetime,
    details: dict[str, str],
) -> bool:
    """The message never arrived: it ends `failed` (like a 5xx at sending), the address
    is `bounced`, and what waited on it (`not_delivered` terms) is looked at again."""
    left = await session.execute(
        update(Delivery)
        .where(Delivery.id == delivery.id, Delivery.status.in_(LEFT_STATUSES))
        .values(status=DeliveryStatus.FAILED.value, reason=BOUNCED_REASON)
        .execution_options(synchronize_session=False)
    )
    await add_event_once(session, delivery, EventType.BOUNCED, at, details)
    # The customer's address may have changed since: only the one that bounced is marked.
    same_address = (
        func.lower(Customer.email) == finding.recipient.strip().lower()
        if finding.recipient
        else true()
    )
    marked = await session.execute(
        update(Customer)
        .where(
            Customer.id == delivery.customer_id,
            Customer.email_status == EmailStatus.SUBSCRIBED.value,
            same_address,
        )
        .values(email_status=EmailStatus.BOUNCED.value, email_status_at=at, updated_at=at)
        .execution_options(synchronize_session=False)
    )
    if marked.rowcount:
        audit.record(
            session,
            "inbound",
            "customer.bounce",
            customer_id=delivery.customer_id,
            delivery_id=delivery.id,
            status=finding.status,
        )
        await customer_facts_changed(session, [delivery.customer_id], at)
    await message_facts_changed(session, [delivery.id], at)
    return bool(left.rowcount or marked.rowcount)


async def _complaint(session: AsyncSession, delivery: Delivery, at: datetime, via: str) -> bool:
    """A spam complaint: recorded on the message, and the customer gets no more email."""
    await add_event_once(session, delivery, EventType.COMPLAINED, at, {"via": via})
    result = await unsubscribe_delivery(session, delivery, at, via=f"{via} complaint")
    await message_facts_changed(session, [delivery.id], at)
    return result.changed
