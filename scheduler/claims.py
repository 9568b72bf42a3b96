"""Deciding at due time and claiming: who is skipped, who is sent, which worker sends.

Everything here is set-based over the due deliveries of one step. Claims take a
lease on planned rows (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so workers never
claim the same row; SQLite: one writer at a time with BEGIN IMMEDIATE). A claim
does not change the status: a worker that dies holding one lets the lease run
out and another worker sends those messages. Only `sending` means "maybe sent".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from models import reasons
from models.tables import Channel, Customer, Delivery, DeliveryStatus, EmailStatus, SmsStatus
from models.templates import customer_context
from scheduler.steps import StepPlan
from scheduler.terms import terms_condition

_delivery = Delivery.__table__
_customer = Customer.__table__
_previous = Delivery.__table__.alias("previous")


@dataclass(frozen=True)
class Claimed:
    delivery_id: int
    customer_id: int
    attempts: int
    email: str | None
    phone: str | None
    context: dict[str, Any]
    # The claim's lease as stored: the row is this worker's to send only while
    # it still carries exactly this value.
    lease_until: datetime


def _due(step: StepPlan, now: datetime) -> ColumnElement[bool]:
    return and_(
        _delivery.c.step_id == step.step_id,
        _delivery.c.status == DeliveryStatus.PLANNED.value,
        _delivery.c.due_at <= now,
        or_(_delivery.c.lease_until.is_(None), _delivery.c.lease_until < now),
    )


def _terms(step: StepPlan) -> ColumnElement[bool]:
    return terms_condition(step.terms, step.match, _previous, _customer)


def _due_ids(step: StepPlan, now: datetime, *conditions: ColumnElement[bool]) -> Select:
    return (
        select(_delivery.c.id)
        .select_from(
            _delivery.join(_customer, _customer.c.id == _delivery.c.customer_id).outerjoin(
                _previous, _previous.c.id == _delivery.c.previous_delivery_id
            )
        )
        .where(_due(step, now), *conditions)
    )


async def _skip(
    session: AsyncSession, step: StepPlan, now: datetime, reason: str, *conditions: Any
) -> int:
    ids = _due_ids(step, now, *conditions).scalar_subquery()
    result = await session.execute(
        update(_delivery)
        .where(_delivery.c.id.in_(ids))
        .values(status=DeliveryStatus.SKIPPED.value, reason=reason, lease_until=None)
        .execution_options(synchronize_session=False)
    )
    return max(result.rowcount or 0, 0)


def contact_rules(channel: str) -> list[tuple[str, ColumnElement[bool]]]:
    if channel == Channel.EMAIL:
        return [
            (reasons.NO_EMAIL, or_(_customer.c.email.is_(None), _customer.c.email == "")),
            (reasons.EMAIL_UNSUBSCRIBED, _customer.c.email_status == EmailStatus.UNSUBSCRIBED),
            (reasons.EMAIL_BOUNCED, _customer.c.email_status == EmailStatus.BOUNCED),
        ]
    return [
        (reasons.NO_PHONE, or_(_customer.c.phone.is_(None), _customer.c.phone == "")),
        (reasons.SMS_UNSUBSCRIBED, _customer.c.sms_status == SmsStatus.UNSUBSCRIBED),
    ]


async def skip_due(session: AsyncSession, step: StepPlan, now: datetime) -> dict[str, int]:
    """Skip the due deliveries that must not be sent, each with its reason.

    Terms first: a customer whose terms are false when checked leaves the chain
    there. With `send: now`, terms that may still come true wait until wait_until.
    """
    skipped: dict[str, int] = {}
    if step.who == "terms":
        expired = or_(_delivery.c.wait_until.is_(None), _delivery.c.wait_until <= now)
        skipped[reasons.TERMS_FALSE] = await _skip(
            session, step, now, reasons.TERMS_FALSE, ~_terms(step), expired
        )
    for reason, condition in contact_rules(step.channel):
        terms = [_terms(step)] if step.who == "terms" else []
        skipped[reason] = await _skip(session, step, now, reason, condition, *terms)
    return {reason: count for reason, count in skipped.items() if count}


async def claim(
    session: AsyncSession,
    step: StepPlan,
    now: datetime,
    *,
    limit: int,
    lease: timedelta,
    quiet_zones: Iterable[str] = (),
) -> list[Claimed]:
    """Lease up to `limit` due deliveries of `step` that may be sent now."""
    conditions: list[ColumnElement[bool]] = []
    if step.who == "terms":
        conditions.append(_terms(step))
    quiet = sorted(quiet_zones)
    if step.channel == Channel.SMS and quiet:
        conditions.append(_customer.c.timezone.not_in(quiet))
    query = _due_ids(step, now, *conditions).order_by(_delivery.c.due_at).limit(limit)
    if session.bind.dialect.name == "postgresql":
        query = query.with_for_update(of=_delivery, skip_locked=True)
    ids = list(await session.scalars(query))
    if not ids:
        return []
    await session.execute(
        update(_delivery)
        .where(_delivery.c.id.in_(ids))
        .values(lease_until=now + lease)
        .execution_options(synchronize_session=False)
    )
    rows = await session.execute(
        select(
            _delivery.c.id,
            _delivery.c.customer_id,
            _delivery.c.attempts,
            _delivery.c.lease_until,
            _customer.c.external_id,
            _customer.c.email,
            _customer.c.phone,
            _customer.c.first_name,
            _customer.c.last_name,
            _customer.c.timezone,
            _customer.c.attributes,
        )
        .join(_customer, _customer.c.id == _delivery.c.customer_id)
        .where(_delivery.c.id.in_(ids))
        .order_by(_delivery.c.id)
    )
    return [_claimed(row) for row in rows]


def _claimed(row: Any) -> Claimed:
    return Claimed(
        row.id,
        row.customer_id,
        row.attempts,
        row.email,
        row.phone,
        customer_context(row),
        row.lease_until,
    )
