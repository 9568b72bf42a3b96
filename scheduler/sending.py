"""Sending a claimed batch: render, check again, hand to the channel, record the outcome.

Each delivery is marked `sending` before it is handed to the channel and
`sent`/`failed` right after its reply. Rows are written in small groups (the
messages in flight together), not per row: what a crash can cost is bounded by
that group, and the cost is never a duplicate — a row left `sending` becomes
`uncertain` and is not sent again.

Every write after the claim is fenced: it changes a row only while the row is
still this worker's (`claimed_by`) and in the status this worker left it in. A
worker declared dead (scheduler/workers.py) that wakes up can therefore change
nothing another worker decided meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import zip_longest
from typing import Any

from sqlalchemy import String, Update, bindparam, cast, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from channels.email_compose import ComposedEmail, EmailComposer, Recipient, RenderError
from channels.results import SendResult, SendStatus
from channels.sms import ComposedSms, SmsComposer, SmsTransport
from channels.smtp import EmailTransport
from models import reasons
from models.db import Database
from models.facts import messages_triggered
from models.protection import HoldPolicy, hold_unhealthy_steps
from models.tables import (
    Channel,
    Customer,
    DeliveryStatus,
    EmailStatus,
    Event,
    EventType,
)
from models.tables import Delivery as DeliveryRow
from scheduler import claims
from scheduler.claims import Claimed

_delivery = DeliveryRow.__table__
log = logging.getLogger(__name__)
# Messages rendered between two chances for the event loop to serve the group on the wire.
RENDER_SLICE = 8
RENDER_SLICE_SECONDS = 0.02
# Called in the transaction that records a group: (session, step id, ids triggered, now).
OnTriggered = Callable[[AsyncSession, int, list[int], datetime], Awaitable[None]]


@dataclass
class WaveTally:
    sent: int = 0
    failed: int = 0
    uncertain: int = 0
    retried: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    # Of the chain's holdout: decided at the claim, never sent.
    held_out: int = 0

    def add_skipped(self, counts: Mapping[str, int]) -> None:
        for reason, count in counts.items():
            self.skipped[reason] = self.skipped.get(reason, 0) + count

    def add(self, other: WaveTally) -> None:
        self.sent += other.sent
        self.failed += other.failed
        self.uncertain += other.uncertain
        self.retried += other.retried
        self.held_out += other.held_out
        self.add_skipped(other.skipped)

    @property
    def busy(self) -> bool:
        return bool(
            self.sent
            or self.failed
            or self.uncertain
            or self.retried
            or self.skipped
            or self.held_out
        )


@dataclass(frozen=True)
class Outcome:
    delivery_id: int
    customer_id: int
    attempts: int
    result: SendResult
    message_id: str | None = None
    links: list[str] | None = None


@dataclass(frozen=True)
class SendPolicy:
    max_attempts: int = 5
    retry_base: timedelta = timedelta(minutes=1)

    def retry_at(self, now: datetime, attempts: int) -> datetime:
        return now + self.retry_base * (2 ** max(attempts - 1, 0))


@dataclass(frozen=True)
class StepMessages:
    """How one step's messages are made: its channel and composer."""

    step_id: int
    channel: str
    composer: EmailComposer | SmsComposer
    # The step version these messages are composed with.
    version: int = 1

    def render(self, item: Claimed) -> ComposedEmail | ComposedSms:
        if isinstance(self.composer, SmsComposer):
            return self.composer.compose(item.delivery_id, item.context)
        return self.composer.compose(
            Recipient(item.delivery_id, item.customer_id, item.email or "", item.context)
        )


@dataclass
class _Group:
    messages: StepMessages
    items: Sequence[Claimed]
    ready: list[tuple[Claimed, ComposedEmail | ComposedSms]] = field(default_factory=list)
    early: list[Outcome] = field(default_factory=list)


class Sender:
    """Sends a worker's claimed deliveries, of any number of steps, group by group."""

    def __init__(
        self,
        db: Database,
        *,
        email: EmailTransport,
        sms: SmsTransport,
        policy: SendPolicy,
        clock: Callable[[], datetime],
        group_size: int,
        on_triggered: OnTriggered,
        stopping: Callable[[], bool],
        hold_policy: HoldPolicy,
    ) -> None:
        self._db = db
        # The worker whose claim is being sent: the fence of every write.
        self._worker = 0
        self._email = email
        self._sms = sms
        self._policy = policy
        self._hold_policy = hold_policy
        self._clock = clock
        self.group_size = group_size
        self._on_triggered = on_triggered
        self._stopping = stopping
        # Set when a group was held back (its chain paused, its step saved anew): the
        # rest of the batch goes back to the queue, to be claimed under the new state.
        self._cut = False

    def groups(
        self, claimed: Sequence[Claimed], messages: Mapping[int, StepMessages]
    ) -> list[_Group]:
        """The batch in groups of one step each, the steps taking turns: a small chain's
        group goes out second, not after a big wave's whole batch."""
        by_step: dict[int, list[Claimed]] = {}
        for item in claimed:
            by_step.setdefault(item.step_id, []).append(item)
        per_step = [
            [
                _Group(messages[step_id], items[start : start + self.group_size])
                for start in range(0, len(items), self.group_size)
            ]
            for step_id, items in by_step.items()
        ]
        return [group for turn in zip_longest(*per_step) for group in turn if group is not None]

    async def send(
        self,
        claimed: Sequence[Claimed],
        messages: Mapping[int, StepMessages],
        worker_id: int,
        deadline: float = math.inf,
    ) -> dict[int, WaveTally]:
        """Send the batch; the tallies by step.

        Pipelined: group k+1 is rendered and marked `sending` while group k is
        on the wire, and group k is recorded while group k+1 is, so the
        connections never wait for the database. Right before a group goes on
        the wire the contact rules and the chain's status are checked again
        (`claims.recheck`): an unsubscribe or a pause reaches every message not
        yet on the wire. A stopping worker, or one past `deadline` (a monotonic
        time), hands back what it has not sent.
        """
        self._worker = worker_id
        self._cut = False
        tallies: dict[int, WaveTally] = {}
        groups = self.groups(claimed, messages)
        if not groups:
            return tallies
        await self._prepare(groups[0])
        on_wire = asyncio.ensure_future(self._wire(groups[0], tallies))
        current = groups[0]
        for index in range(1, len(groups) + 1):
            upcoming = groups[index] if index < len(groups) else None
            if upcoming is not None:
                try:
                    await self._prepare(upcoming)
                except BaseException:
                    # The group on the wire finishes and is recorded if the database
                    # lets it; what is not recorded the engine hands back as uncertain.
                    outcomes = await on_wire
                    wire = current
                    with contextlib.suppress(Exception):
                        await self._record(wire.messages, outcomes, self._tally(tallies, wire))
                    raise
            outcomes = await on_wire
            finished, current = current, upcoming
            cut = self._cut or self._stopping() or time.monotonic() > deadline
            if current is not None and cut:
                await self._unmark(current.ready)
                await self._release([item for group in groups[index:] for item in group.items])
                current = None
            if current is not None:
                on_wire = asyncio.ensure_future(self._wire(current, tallies))
            try:
                await self._record(finished.messages, outcomes, self._tally(tallies, finished))
            except BaseException:
                if current is not None:
                    await on_wire  # never leave a group on the wire unrecorded by choice
                raise
            if current is None:
                break
        return tallies

    @staticmethod
    def _tally(tallies: dict[int, WaveTally], group: _Group) -> WaveTally:
        return tallies.setdefault(group.messages.step_id, WaveTally())

    async def _wire(self, group: _Group, tallies: dict[int, WaveTally]) -> list[Outcome]:
        await self._recheck(group, self._tally(tallies, group))
        results = await asyncio.gather(*(self._hand_over(item, body) for item, body in group.ready))
        return [*group.early, *results]

    async def _prepare(self, group: _Group) -> None:
        """Render the group and mark it `sending`: what this worker may now hand over.

        Messages that cannot be rendered go to `failed`. Rendering yields to the
        event loop now and then, so a group on the wire keeps moving meanwhile.
        """
        ready: list[tuple[Claimed, ComposedEmail | ComposedSms]] = []
        yielded = time.monotonic()
        for number, item in enumerate(group.items, 1):
            try:
                ready.append((item, group.messages.render(item)))
            except RenderError as exc:
                failure = SendResult(SendStatus.PERMANENT, f"{reasons.RENDER_FAILED}: {exc}")
                group.early.append(
                    Outcome(item.delivery_id, item.customer_id, item.attempts, failure)
                )
            except Exception as exc:
                # Whatever a customer's data makes the template do, it fails this one
                # message with the reason, not the wave.
                log.exception("rendering delivery %d failed", item.delivery_id)
                failure = SendResult(
                    SendStatus.PERMANENT,
                    f"{reasons.RENDER_FAILED}: {type(exc).__name__}: {exc}"[:200],
                )
                group.early.append(
                    Outcome(item.delivery_id, item.customer_id, item.attempts, failure)
                )
            # A template that takes its whole render budget must not hold the loop
            # (the group on the wire, the heartbeat) for a group's worth of them.
            if number % RENDER_SLICE == 0 or time.monotonic() - yielded > RENDER_SLICE_SECONDS:
                await asyncio.sleep(0)
                yielded = time.monotonic()
        if not ready and not group.early:
            return
        now = self._clock()
        async with self._db.writer() as session:
            # Core, not the ORM: these run per group, and the ORM's layer doubled their cost.
            connection = await session.connection()
            marked = await connection.execute(
                update(_delivery)
                .where(
                    _delivery.c.id.in_(
                        [item.delivery_id for item, _ in ready]
                        + [outcome.delivery_id for outcome in group.early]
                    ),
                    _delivery.c.claimed_by == self._worker,
                    _delivery.c.status == DeliveryStatus.PLANNED.value,
                )
                .values(
                    status=DeliveryStatus.SENDING.value,
                    version=group.messages.version,
                    attempts=_delivery.c.attempts + 1,
                    # Kept if the outcome is lost: the last moment known of the message.
                    sent_at=now,
                )
                .returning(_delivery.c.id)
                .execution_options(synchronize_session=False)
            )
            owned = set(marked.scalars())
        group.ready = [(item, body) for item, body in ready if item.delivery_id in owned]
        group.early = [outcome for outcome in group.early if outcome.delivery_id in owned]

    async def _recheck(self, group: _Group, tally: WaveTally) -> None:
        if not group.ready:
            return
        ids = [item.delivery_id for item, _ in group.ready]
        # A bare connection, no ORM session: this runs once per group on the wire.
        async with self._db.engine.connect() as connection:
            refused, held, lost = await claims.recheck(
                connection, group.messages.channel, ids, self._worker, group.messages.version
            )
        if not refused and not held and not lost:
            return
        if refused:
            async with self._db.writer() as session:
                for reason, skipped in refused.items():
                    await session.execute(
                        self._mine(skipped).values(
                            status=DeliveryStatus.SKIPPED.value,
                            reason=reason,
                            sent_at=None,
                            claimed_by=None,
                        )
                    )
            tally.add_skipped({reason: len(rows) for reason, rows in refused.items()})
        held_ready = [(item, body) for item, body in group.ready if item.delivery_id in held]
        if held_ready:
            await self._unmark(held_ready)
            self._cut = True
        gone = {row for rows in refused.values() for row in rows} | set(held) | set(lost)
        group.ready = [(item, body) for item, body in group.ready if item.delivery_id not in gone]

    def _mine(self, ids: Sequence[int]) -> Update:
        """The fence: rows this worker marked `sending` and still holds."""
        return (
            update(_delivery)
            .where(
                _delivery.c.id.in_(ids),
                _delivery.c.status == DeliveryStatus.SENDING.value,
                _delivery.c.claimed_by == self._worker,
            )
            .execution_options(synchronize_session=False)
        )

    async def _unmark(self, ready: Sequence[tuple[Claimed, ComposedEmail | ComposedSms]]) -> None:
        """Back to the queue: marked `sending` but never handed to the channel."""
        if not ready:
            return
        async with self._db.writer() as session:
            await session.execute(
                self._mine([item.delivery_id for item, _ in ready]).values(
                    status=DeliveryStatus.PLANNED.value,
                    attempts=_delivery.c.attempts - 1,
                    sent_at=None,
                    claimed_by=None,
                    version=None,
                )
            )

    async def _release(self, rest: Sequence[Claimed]) -> None:
        if not rest:
            return
        async with self._db.writer() as session:
            await session.execute(
                update(_delivery)
                .where(
                    _delivery.c.id.in_([item.delivery_id for item in rest]),
                    _delivery.c.status == DeliveryStatus.PLANNED.value,
                    _delivery.c.claimed_by == self._worker,
                )
                .values(claimed_by=None)
                .execution_options(synchronize_session=False)
            )

    async def _hand_over(self, item: Claimed, body: ComposedEmail | ComposedSms) -> Outcome:
        attempts = item.attempts + 1
        if isinstance(body, ComposedEmail):
            result = await self._email.send(
                body.envelope_sender, item.email or "", body.message_id, body.data
            )
            return Outcome(
                item.delivery_id, item.customer_id, attempts, result, body.message_id, body.links
            )
        result = await self._sms.send(item.delivery_id, item.phone or "", body.text)
        return Outcome(item.delivery_id, item.customer_id, attempts, result, links=body.links)

    def _sent_at_once(
        self, messages: StepMessages, sent: Sequence[Outcome], now: datetime
    ) -> Update | None:
        """One UPDATE for the whole group's `sent` rows, when it can say the same for all:
        messages whose links are the same for every customer (the usual case): SMS (no
        Message-ID), emails whose Message-IDs follow the composer's pattern, built in SQL
        from the customer id. None: each row needs its own values."""
        message_id: Any = None
        links = sent[0].links
        if any(o.links != links for o in sent):
            return None
        if isinstance(messages.composer, EmailComposer):
            start, end = messages.composer.message_id_parts
            if any(o.message_id != f"{start}{o.customer_id}{end}" for o in sent):
                return None
            message_id = literal(start) + cast(_delivery.c.customer_id, String) + literal(end)
        elif any(o.message_id is not None for o in sent):
            return None
        return self._mine([o.delivery_id for o in sent]).values(
            status=DeliveryStatus.SENT.value,
            reason=None,
            message_id=message_id,
            links=links,
            sent_at=now,
            triggered_at=now,
            claimed_by=None,
        )

    async def _record(
        self, messages: StepMessages, outcomes: Sequence[Outcome], tally: WaveTally
    ) -> None:
        if not outcomes:
            return
        now = self._clock()
        sent, final, retry = [], [], []
        bounced_customers: list[int] = []
        for outcome in outcomes:
            status = outcome.result.status
            if status is SendStatus.SENT:
                sent.append(outcome)
            elif status is SendStatus.TRANSIENT and outcome.attempts < self._policy.max_attempts:
                retry.append(outcome)
            else:
                final.append(outcome)
                if outcome.result.bounce and messages.channel == Channel.EMAIL:
                    bounced_customers.append(outcome.customer_id)
        fence = {"worker": self._worker}
        async with self._db.writer() as session:
            connection = await session.connection()
            at_once = self._sent_at_once(messages, sent, now) if sent else None
            if at_once is not None:
                recorded = await connection.execute(at_once.returning(_delivery.c.id))
                triggered = list(recorded.scalars())
            elif sent:
                triggered = await _update_each(
                    session,
                    [
                        {
                            **fence,
                            "row_id": o.delivery_id,
                            "status": DeliveryStatus.SENT.value,
                            "reason": None,
                            "message_id": o.message_id,
                            "links": o.links,
                            "sent_at": now,
                            "triggered_at": now,
                        }
                        for o in sent
                    ],
                )
            else:
                triggered = []
            if final:
                triggered += await _update_each(
                    session,
                    [
                        {
                            **fence,
                            "row_id": o.delivery_id,
                            "status": _final_status(o.result.status),
                            "reason": (o.result.detail or o.result.status.value)[:200],
                            "message_id": o.message_id,
                            "links": o.links,
                            "sent_at": now if o.result.status is SendStatus.UNCERTAIN else None,
                            "triggered_at": now,
                        }
                        for o in final
                    ],
                )
            if retry:
                await _update_each(
                    session,
                    [
                        {
                            **fence,
                            "row_id": o.delivery_id,
                            "status": DeliveryStatus.PLANNED.value,
                            "reason": (o.result.detail or "transient failure")[:200],
                            "message_id": None,
                            "links": None,
                            "sent_at": None,
                            "triggered_at": None,
                            "due_at": self._policy.retry_at(now, o.attempts),
                        }
                        for o in retry
                    ],
                )
            if bounced_customers:
                await _mark_bounced(session, final, bounced_customers, now)
            if triggered:
                await self._on_triggered(session, messages.step_id, triggered, now)
                await messages_triggered(session, triggered, now)
            if bounced_customers:
                # With the bounces that crossed a limit: the groups after the next are
                # held back by their recheck (the next one is on the wire already).
                await hold_unhealthy_steps(session, [messages.step_id], self._hold_policy, now)
        tally.sent += len(sent)
        tally.retried += len(retry)
        for outcome in final:
            if outcome.result.status is SendStatus.UNCERTAIN:
                tally.uncertain += 1
            else:
                tally.failed += 1


def _final_status(status: SendStatus) -> str:
    return (
        DeliveryStatus.UNCERTAIN.value
        if status is SendStatus.UNCERTAIN
        else DeliveryStatus.FAILED.value
    )


async def _update_each(session: AsyncSession, rows: list[dict[str, object]]) -> list[int]:
    """Each row its own values, only rows still this worker's `sending` ones; the ids written.

    The rows are locked first (PostgreSQL; SQLite holds the write lock already), so
    the fence checked by the SELECT still holds for the executemany UPDATE.
    """
    owned_query = select(_delivery.c.id).where(
        _delivery.c.id.in_([row["row_id"] for row in rows]),
        _delivery.c.status == DeliveryStatus.SENDING.value,
        _delivery.c.claimed_by == rows[0]["worker"],
    )
    if session.bind.dialect.name == "postgresql":
        owned_query = owned_query.with_for_update()
    connection = await session.connection()
    owned = set((await connection.execute(owned_query)).scalars())
    mine = [row for row in rows if row["row_id"] in owned]
    if not mine:
        return []
    values: dict[str, object] = {
        "status": bindparam("status"),
        "reason": bindparam("reason"),
        "message_id": bindparam("message_id"),
        "links": bindparam("links", type_=_delivery.c.links.type),
        "sent_at": bindparam("sent_at", type_=_delivery.c.sent_at.type),
        "triggered_at": bindparam("triggered_at", type_=_delivery.c.triggered_at.type),
        "claimed_by": None,
    }
    if "due_at" in mine[0]:
        values["due_at"] = bindparam("due_at", type_=_delivery.c.due_at.type)
    statement = (
        update(_delivery)
        .where(_delivery.c.id == bindparam("row_id"))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    await session.execute(
        statement, [{k: v for k, v in row.items() if k != "worker"} for row in mine]
    )
    return [int(row["row_id"]) for row in mine]  # type: ignore[call-overload]


async def _mark_bounced(
    session: AsyncSession, final: Sequence[Outcome], customer_ids: list[int], now: datetime
) -> None:
    await session.execute(
        update(Customer.__table__)
        .where(
            Customer.__table__.c.id.in_(customer_ids),
            Customer.__table__.c.email_status == EmailStatus.SUBSCRIBED.value,
        )
        .values(email_status=EmailStatus.BOUNCED.value, email_status_at=now)
        .execution_options(synchronize_session=False)
    )
    bounced = set(customer_ids)
    session.add_all(
        Event(
            delivery_id=o.delivery_id,
            customer_id=o.customer_id,
            type=EventType.BOUNCED.value,
            occurred_at=now,
            data={"detail": o.result.detail[:200]},
        )
        for o in final
        if o.customer_id in bounced
    )
