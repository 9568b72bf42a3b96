"""The queue: one claim across every active step, and the send-time rules applied in it.

A claim, in one transaction (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so workers
never take the same row; SQLite: one writer at a time, BEGIN IMMEDIATE):

1. which active steps have rows due: one indexed look per step at its earliest
   planned row, so a million rows waiting in the future cost nothing;
2. candidates: the due rows of each of those steps in `due_at` order, the batch
   shared out fairly among the steps, so a small chain's messages go out
   beside a big wave instead of after it;
3. the rules, set-based over the candidates: terms false for good → `skipped`;
   terms that may still come true → parked until `wait_until` (a fact about
   the customer wakes them sooner: models/facts.py); no address, unsubscribed,
   bounced → `skipped` with the reason; an SMS in the customer's quiet hours →
   `due_at` moved to the hour they end, in that customer's zone; a customer who
   had as many messages of the channel in the period as its frequency cap allows,
   over all chains → `skipped`, `frequency cap`;
   `due_at` moved to the hour they end, in that customer's zone; a customer of the
   chain's holdout (main step) → `held_out` where the row would have been sent or
   skipped, its `due_at` the moment of that decision;
4. the rest are claimed for this worker (`claimed_by`), status still `planned`.

A frequency cap counts the customer's messages of the channel that went out in the
period and those claimed to go now (`messages_counted_by_cap`), so a message claimed
counts from that moment: for a later step of the same claim, and for any other
worker's claim. On PostgreSQL two claims about one customer take turns (an advisory
lock per customer, `_serialize_customers`); SQLite has one writer. So every message
is decided by a claim that saw every other message of the customer that may leave.

Right before each group of claimed messages goes on the wire, `recheck` applies
the contact rules and the chain's status again, so an unsubscribe or a pause
that arrives mid-wave reaches every message not already on the wire.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Integer, and_, case, cast, func, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from models import reasons
from models.frequency_caps import FrequencyCap, FrequencyCaps
from models.holdout import is_held_out
from models.tables import (
    LEFT_STATUSES,
    Chain,
    ChainStatus,
    Channel,
    Customer,
    Delivery,
    DeliveryStatus,
    EmailStatus,
    SmsStatus,
    Step,
)
from models.templates import customer_context
from scheduler import sql
from scheduler.steps import StepPlan
from scheduler.terms import terms_condition
from scheduler.timing import in_quiet_hours, quiet_hours_end

_delivery = Delivery.__table__
_customer = Customer.__table__
_chain = Chain.__table__
_previous = Delivery.__table__.alias("previous")
_step = Step.__table__
# Told, in the claim's transaction, of a step whose rows could not be decided.
OnStepError = Callable[[AsyncSession, StepPlan, Exception], Awaitable[None]]
# Rows each due step is offered at least, however many steps are due at once.
MIN_SHARE = 16
# What a frequency cap counts of the messages that went out: on the wire, or gone.
_OUT_STATUSES = (DeliveryStatus.SENDING.value, *LEFT_STATUSES)
_gone = Delivery.__table__.alias("gone")
_coming = Delivery.__table__.alias("coming")
# The class of the claim's advisory locks (the first of the two keys): "freq" in ASCII.
_CAP_LOCK_CLASS = 0x66726571


@dataclass(frozen=True)
class Claimed:
    delivery_id: int
    step_id: int
    customer_id: int
    attempts: int
    email: str | None
    phone: str | None
    context: dict[str, Any]


@dataclass
class Claim:
    rows: list[Claimed] = field(default_factory=list)
    # Decided at claim time, by step: reason → count.
    skipped: dict[int, dict[str, int]] = field(default_factory=dict)
    # Rows whose due moment moved (quiet hours, terms still to come true).
    deferred: int = 0
    # Held out, by step: the chain's holdout, never sent.
    held_out: dict[int, int] = field(default_factory=dict)

    def note_skipped(self, step_id: int, reason: str, count: int) -> None:
        if count:
            by_reason = self.skipped.setdefault(step_id, {})
            by_reason[reason] = by_reason.get(reason, 0) + count


def contact_rules(channel: str) -> list[tuple[str, ColumnElement[bool]]]:
    """Why a customer cannot get a message on `channel`, each rule with its reason, in order."""
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


def contact_refusal(channel: str) -> ColumnElement[str | None]:
    """The first contact rule a customer breaks on `channel`, as its reason; NULL if none."""
    return case(*((condition, literal(reason)) for reason, condition in contact_rules(channel)))


def messages_counted_by_cap(
    customer_id: ColumnElement[int], channel: str, since: datetime
) -> ColumnElement[int]:
    """What a frequency cap counts for the customer `customer_id` (a column of the
    enclosing query): their messages of `channel` that went out after `since` (sent,
    uncertain, or `sending`: on the wire), and those a worker claimed to send now.

    Two indexed looks per customer, each off a partial index of its own: (customer_id,
    channel, sent_at, status) of the rows that went out, and (customer_id, channel,
    status) of the rows claimed now (a few hundred at most).
    """

    def count(rows: Any, *conditions: ColumnElement[bool]) -> ColumnElement[int]:
        return (
            select(func.count())
            .select_from(rows)
            .where(rows.c.customer_id == customer_id, rows.c.channel == channel, *conditions)
            .scalar_subquery()
        )

    gone = count(_gone, _gone.c.sent_at > sql.moment(since), _gone.c.status.in_(_OUT_STATUSES))
    coming = count(
        _coming,
        _coming.c.status == DeliveryStatus.PLANNED.value,
        _coming.c.claimed_by.is_not(None),
    )
    return gone + coming


async def earliest_planned(
    session: AsyncSession, step_ids: Sequence[int]
) -> dict[int, datetime | None]:
    """Each step's earliest unclaimed planned row (None: it has none).

    One correlated `min()` per step, each read off (step_id, status, due_at): the
    cost grows with the number of steps, not of rows.
    """
    if not step_ids:
        return {}
    steps = Step.__table__
    earliest = (
        select(func.min(_delivery.c.due_at))
        .where(
            _delivery.c.step_id == steps.c.id,
            _delivery.c.status == DeliveryStatus.PLANNED.value,
            _delivery.c.claimed_by.is_(None),
        )
        .scalar_subquery()
    )
    rows = await session.execute(select(steps.c.id, earliest).where(steps.c.id.in_(step_ids)))
    return dict(rows.all())


def due_steps(earliest: Mapping[int, datetime | None], now: datetime) -> list[tuple[int, datetime]]:
    """The steps with rows due by `now`, earliest first, with that moment."""
    due = [(step_id, first) for step_id, first in earliest.items() if first and first <= now]
    return sorted(due, key=lambda row: (row[1], row[0]))


# --- Deciding: pure, over one candidate's facts ---------------------------------------


@dataclass(frozen=True)
class Candidate:
    """What the rules need to know about one due row."""

    channel: str
    # None: the step has no terms; else whether they hold now.
    terms_hold: bool | None
    wait_until: datetime | None
    # The first contact rule broken (models.reasons), or None.
    contact_refusal: str | None
    timezone: str
    # The channel's frequency cap (None: none), and what it counts for the customer
    # now (`messages_counted_by_cap`).
    cap_limit: int | None = None
    counted_by_cap: int = 0
    # In the chain's holdout (main step only: models/holdout.py).
    held_out: bool = False


@dataclass(frozen=True)
class Decision:
    # "claim", "skip" (with `reason`), "defer" (to `until`) or "hold_out".
    action: str
    reason: str | None = None
    until: datetime | None = None


CLAIM = Decision("claim")
HOLD_OUT = Decision("hold_out")


def decide(
    candidate: Candidate, now: datetime, quiet_hours_sms: tuple[time, time] | None
) -> Decision:
    """The send-time rules of SPEC §2, in order, for a row due at `now`.

    A customer of the holdout is held out where the rules would send or skip the
    message, and waits where they would make it wait: so the held-out group's moments
    are those its messages would have gone at, and it holds the same customers as the
    rest of the audience would (the unsubscribed too: docs/attribution.md).
    """
    decision = _by_the_rules(candidate, now, quiet_hours_sms)
    if candidate.held_out and decision.action != "defer":
        return HOLD_OUT
    return decision


def _by_the_rules(
    candidate: Candidate, now: datetime, quiet_hours_sms: tuple[time, time] | None
) -> Decision:
    if candidate.terms_hold is False:
        if candidate.wait_until is not None and candidate.wait_until > now:
            return Decision("defer", until=candidate.wait_until)
        return Decision("skip", reason=reasons.TERMS_FALSE)
    if candidate.contact_refusal is not None:
        return Decision("skip", reason=candidate.contact_refusal)
    if candidate.channel == Channel.SMS and quiet_hours_sms is not None:
        local = now.astimezone(ZoneInfo(candidate.timezone)).time()
        if in_quiet_hours(local, quiet_hours_sms):
            return Decision(
                "defer", until=quiet_hours_end(now, candidate.timezone, quiet_hours_sms)
            )
    # Last: a message that waits (quiet hours) is counted when it may go, not before.
    if candidate.cap_limit is not None and candidate.counted_by_cap >= candidate.cap_limit:
        return Decision("skip", reason=reasons.FREQUENCY_CAP)
    return CLAIM


# --- Claiming ------------------------------------------------------------------------


def _candidates(
    step: StepPlan, now: datetime, limit: int, exclude: Sequence[int], postgres: bool
) -> Any:
    query = (
        select(_delivery.c.id)
        .where(
            _delivery.c.step_id == step.step_id,
            _delivery.c.status == DeliveryStatus.PLANNED.value,
            _delivery.c.due_at <= sql.moment(now),
            _delivery.c.claimed_by.is_(None),
        )
        .order_by(_delivery.c.due_at, _delivery.c.id)
        .limit(limit)
    )
    if exclude:
        query = query.where(_delivery.c.id.not_in(exclude))
    if postgres:
        query = query.with_for_update(skip_locked=True)
    return query


async def _pick(
    session: AsyncSession,
    steps: Mapping[int, StepPlan],
    due: Sequence[tuple[int, datetime]],
    now: datetime,
    limit: int,
) -> dict[int, list[int]]:
    """Due row ids by step: the batch shared fairly, what a step leaves unused to the others."""
    if not due:
        return {}
    postgres = session.bind.dialect.name == "postgresql"
    share = max(limit // len(due), MIN_SHARE)
    picked: dict[int, list[int]] = {}
    full: list[int] = []
    for step_id, _ in due:
        ids = list(await session.scalars(_candidates(steps[step_id], now, share, (), postgres)))
        picked[step_id] = ids
        if len(ids) == share:
            full.append(step_id)
    left = limit - sum(len(ids) for ids in picked.values())
    for step_id in full:
        if left <= 0:
            break
        more = list(
            await session.scalars(_candidates(steps[step_id], now, left, picked[step_id], postgres))
        )
        picked[step_id] += more
        left -= len(more)
    return picked


def _details(step: StepPlan, ids: Sequence[int], now: datetime, cap: FrequencyCap | None) -> Any:
    terms = (
        terms_condition(step.terms, step.match, _previous, _customer).label("terms_hold")
        if step.who == "terms"
        else literal(None).label("terms_hold")
    )
    counted = (
        messages_counted_by_cap(_delivery.c.customer_id, step.channel, now - cap.period)
        if cap is not None
        else literal(0)
    )
    return (
        select(
            _delivery.c.id,
            _delivery.c.customer_id,
            _delivery.c.attempts,
            _delivery.c.wait_until,
            terms,
            contact_refusal(step.channel).label("refusal"),
            counted.label("counted_by_cap"),
            _customer.c.external_id,
            _customer.c.email,
            _customer.c.phone,
            _customer.c.first_name,
            _customer.c.last_name,
            _customer.c.timezone,
            _customer.c.language,
            _customer.c.attributes,
        )
        .select_from(
            _delivery.join(_customer, _customer.c.id == _delivery.c.customer_id).outerjoin(
                _previous, _previous.c.id == _delivery.c.previous_delivery_id
            )
        )
        .where(_delivery.c.id.in_(ids))
        .order_by(_delivery.c.id)
    )


async def claim(
    session: AsyncSession,
    steps: Mapping[int, StepPlan],
    due: Sequence[tuple[int, datetime]],
    now: datetime,
    *,
    worker_id: int,
    limit: int,
    quiet_hours_sms: tuple[time, time] | None,
    default_language: str,
    on_error: OnStepError,
    frequency_caps: FrequencyCaps,
) -> Claim:
    """Take up to `limit` due rows of the active `steps` for `worker_id`, rules applied.

    `due` (from `due_steps`, read just before) says which steps to look at, earliest
    first; rows another worker took meanwhile are simply not found.

    A step whose rows cannot be decided (`on_error` is told, in this transaction,
    after its part was rolled back to a savepoint) leaves the others unharmed.
    """
    result = Claim()
    current = await _current_steps(session, [step_id for step_id, _ in due], steps)
    due = [(step_id, at) for step_id, at in due if step_id in current]
    picked = await _pick(session, steps, due, now, limit)
    if session.bind.dialect.name == "postgresql":
        capped = [
            row
            for step_id, ids in picked.items()
            if frequency_caps.of(steps[step_id].channel) is not None
            for row in ids
        ]
        await _serialize_customers(session, capped)
    for step_id, ids in picked.items():
        if not ids:
            continue
        step = steps[step_id]
        try:
            async with session.begin_nested():
                await _claim_step(
                    session,
                    step,
                    ids,
                    now,
                    worker_id,
                    quiet_hours_sms,
                    result,
                    default_language=default_language,
                    cap=frequency_caps.of(step.channel),
                )
        except Exception as exc:
            result.rows = [row for row in result.rows if row.step_id != step_id]
            result.skipped.pop(step_id, None)
            result.held_out.pop(step_id, None)
            await on_error(session, step, exc)
    return result


async def _serialize_customers(session: AsyncSession, delivery_ids: Sequence[int]) -> None:
    """PostgreSQL: wait for any other claim deciding about the customers of these rows,
    and make any that comes later wait for this one (until it commits).

    A transaction-scoped advisory lock per customer, all taken in one statement in the
    order of their keys, before the frequency caps are counted, so that claims never
    wait on each other in a circle, and a claim that waited counts what the other
    claimed. Only claims take these locks, so nothing else ever waits on them.
    """
    if not delivery_ids:
        return
    key = cast(_delivery.c.customer_id % 2147483648, Integer)
    customers = (
        select(key.label("key"))
        .distinct()
        .where(_delivery.c.id.in_(delivery_ids))
        .order_by(key)
        .subquery()
    )
    await session.execute(
        select(func.pg_advisory_xact_lock(literal(_CAP_LOCK_CLASS), customers.c.key))
    )


async def _current_steps(
    session: AsyncSession, step_ids: Sequence[int], steps: Mapping[int, StepPlan]
) -> set[int]:
    """The steps whose plan is still the saved version and not stopped.

    A block saved since the plan was read makes a new version: its rows wait for the
    next batch, which reads the new plan, rather than being decided by the old terms.
    On PostgreSQL the step rows are read FOR SHARE: a save under way is waited for.
    """
    if not step_ids:
        return set()
    query = select(_step.c.id, _step.c.version, _step.c.stopped_at).where(_step.c.id.in_(step_ids))
    if session.bind.dialect.name == "postgresql":
        query = query.with_for_update(read=True)
    return {
        step_id
        for step_id, version, stopped_at in await session.execute(query)
        if stopped_at is None and version == steps[step_id].version
    }


async def _claim_step(
    session: AsyncSession,
    step: StepPlan,
    ids: Sequence[int],
    now: datetime,
    worker_id: int,
    quiet_hours_sms: tuple[time, time] | None,
    result: Claim,
    *,
    default_language: str,
    cap: FrequencyCap | None,
) -> None:
    step_id = step.step_id
    skips: dict[str, list[int]] = {}
    defers: dict[datetime, list[int]] = {}
    held_out: list[int] = []
    claimed: list[Any] = []
    for row in await session.execute(_details(step, ids, now, cap)):
        candidate = Candidate(
            channel=step.channel,
            terms_hold=None if row.terms_hold is None else bool(row.terms_hold),
            wait_until=row.wait_until,
            contact_refusal=row.refusal,
            timezone=row.timezone,
            cap_limit=None if cap is None else cap.limit,
            counted_by_cap=int(row.counted_by_cap),
            held_out=step.holdout_percent > 0
            and is_held_out(step.chain_id, row.customer_id, step.holdout_percent),
        )
        decision = decide(candidate, now, quiet_hours_sms)
        if decision.action == "skip":
            skips.setdefault(decision.reason or "", []).append(row.id)
        elif decision.action == "defer":
            assert decision.until is not None
            defers.setdefault(decision.until, []).append(row.id)
        elif decision.action == "hold_out":
            held_out.append(row.id)
        else:
            claimed.append(row)
    # Decided rows keep the moment of the decision as their due moment: what the
    # holdout's comparison measures each customer's window from (models/holdout.py).
    for reason, skipped in skips.items():
        await _set(
            session,
            skipped,
            status=DeliveryStatus.SKIPPED.value,
            reason=reason,
            version=step.version,
            due_at=now,
        )
        result.note_skipped(step_id, reason, len(skipped))
    if held_out:
        await _set(session, held_out, status=DeliveryStatus.HELD_OUT.value, due_at=now)
        result.held_out[step_id] = result.held_out.get(step_id, 0) + len(held_out)
    for until, deferred in defers.items():
        await _set(session, deferred, due_at=until)
        result.deferred += len(deferred)
    if claimed:
        await _set(session, [row.id for row in claimed], claimed_by=worker_id)
        result.rows += [
            Claimed(
                row.id,
                step_id,
                row.customer_id,
                row.attempts,
                row.email,
                row.phone,
                customer_context(row, default_language),
            )
            for row in claimed
        ]


async def _set(session: AsyncSession, ids: Sequence[int], **values: Any) -> None:
    await session.execute(
        update(_delivery)
        .where(_delivery.c.id.in_(ids))
        .values(**values)
        .execution_options(synchronize_session=False)
    )


async def recheck(
    connection: AsyncConnection,
    channel: str,
    delivery_ids: Sequence[int],
    worker_id: int,
    version: int,
) -> tuple[dict[str, list[int]], list[int], list[int]]:
    """The contact rules, the chain's status and the step's, again, for rows of one step
    about to go on the wire, composed with the step's `version`.

    Returns the rows that now break a contact rule, or whose step was stopped, by
    reason; those to hold back: their chain is no longer active (paused meanwhile)
    or their step has a newer version (a block saved meanwhile: they go out with it,
    from the next batch); and those no longer this worker's (it was taken for dead
    meanwhile, and their outcome recorded as lost). None of them may be sent.
    """
    mine = and_(
        _delivery.c.status == DeliveryStatus.SENDING.value,
        _delivery.c.claimed_by == worker_id,
    )
    refusal = contact_refusal(channel)
    stopped = _step.c.stopped_at.is_not(None)
    current = and_(_chain.c.status == ChainStatus.ACTIVE.value, _step.c.version == version)
    rows = await connection.execute(
        select(
            _delivery.c.id,
            case((stopped, literal(reasons.STEP_STOPPED)), else_=refusal).label("refusal"),
            and_(current, ~stopped).label("current"),
            mine.label("mine"),
        )
        .select_from(
            _delivery.join(_customer, _customer.c.id == _delivery.c.customer_id)
            .join(_chain, _chain.c.id == _delivery.c.chain_id)
            .join(_step, _step.c.id == _delivery.c.step_id)
        )
        .where(
            _delivery.c.id.in_(delivery_ids),
            or_(refusal.is_not(None), stopped, ~current, ~mine),
        )
    )
    refused: dict[str, list[int]] = {}
    held: list[int] = []
    lost: list[int] = []
    for delivery_id, reason, is_current, is_mine in rows:
        if not is_mine:
            lost.append(delivery_id)
        elif not is_current and reason != reasons.STEP_STOPPED:
            held.append(delivery_id)
        else:
            refused.setdefault(reason, []).append(delivery_id)
    return refused, held, lost
