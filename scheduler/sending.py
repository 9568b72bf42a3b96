"""Sending a claimed batch: render, hand to the channel, record the outcome.

Each delivery is marked `sending` before it is handed to the channel and
`sent`/`failed` right after its reply. Rows are written in small groups (the
messages in flight together), not per row: what a crash can cost is bounded by
that group, and the cost is never a duplicate — a row left `sending` becomes
`uncertain` and is not sent again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, Update, bindparam, cast, literal, update
from sqlalchemy.ext.asyncio import AsyncSession

from channels.email_compose import ComposedEmail, EmailComposer, Recipient, RenderError
from channels.results import SendResult, SendStatus
from channels.sms import SmsTransport, render_sms
from channels.smtp import EmailTransport
from models import reasons
from models.db import Database
from models.facts import messages_triggered
from models.tables import (
    Channel,
    Customer,
    DeliveryStatus,
    EmailStatus,
    Event,
    EventType,
)
from models.tables import Delivery as DeliveryRow
from scheduler.claims import Claimed

_delivery = DeliveryRow.__table__
# Messages rendered between two chances for the event loop to serve the group on the wire.
RENDER_SLICE = 8


@dataclass
class WaveTally:
    sent: int = 0
    failed: int = 0
    uncertain: int = 0
    retried: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def add_skipped(self, counts: dict[str, int]) -> None:
        for reason, count in counts.items():
            self.skipped[reason] = self.skipped.get(reason, 0) + count


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
    lease: timedelta
    max_attempts: int = 5
    retry_base: timedelta = timedelta(minutes=1)

    def retry_at(self, now: datetime, attempts: int) -> datetime:
        return now + self.retry_base * (2 ** max(attempts - 1, 0))


class StepSender:
    """Sends the claimed deliveries of one step through its channel."""

    def __init__(
        self,
        db: Database,
        *,
        channel: str,
        composer: EmailComposer | None,
        sms_template: str | None,
        email: EmailTransport,
        sms: SmsTransport,
        mail_from: str,
        policy: SendPolicy,
        clock: Callable[[], datetime],
        group_size: int,
    ) -> None:
        self._db = db
        self._channel = channel
        self._composer = composer
        self._sms_template = sms_template
        self._email = email
        self._sms = sms
        self._mail_from = mail_from
        self._policy = policy
        self._clock = clock
        self._group_size = group_size

    async def send(
        self,
        claimed: Sequence[Claimed],
        tally: WaveTally,
        keep_going: Callable[[], Awaitable[bool]],
    ) -> bool:
        """Send group by group while `keep_going` says so; False if it stopped early.

        Pipelined: group k+1 is rendered and marked `sending` while group k is
        on the wire, and group k is recorded while group k+1 is, so the
        connections never wait for the database. At most two groups are
        `sending` at once, which bounds what a crash can leave `uncertain`.
        `keep_going` is checked before each group goes on the wire, so a pause or
        a stopping process takes effect within one group; a group prepared but
        not sent goes back to `planned`, and the other rows not sent are handed
        back at once.
        """
        groups = [
            claimed[start : start + self._group_size]
            for start in range(0, len(claimed), self._group_size)
        ]
        if not groups:
            return True
        early: list[Outcome] = []
        ready = await self._prepare(groups[0], early)
        on_wire = asyncio.ensure_future(self._hand_over_all(ready, early))
        for index in range(1, len(groups) + 1):
            upcoming: list[Outcome] = []
            next_ready = None
            if index < len(groups):
                next_ready = await self._prepare(groups[index], upcoming)
            outcomes = await on_wire
            stopped = index < len(groups) and not await keep_going()
            if stopped and next_ready is not None:
                await self._unmark(next_ready)
                next_ready = None
            if next_ready is not None:
                on_wire = asyncio.ensure_future(self._hand_over_all(next_ready, upcoming))
            try:
                await self._record(outcomes, tally)
            except BaseException:
                if next_ready is not None:
                    await on_wire  # never leave a group on the wire unrecorded by choice
                raise
            if stopped:
                await self._release([item for group in groups[index:] for item in group])
                return False
        return True

    async def _hand_over_all(
        self, ready: Sequence[tuple[Claimed, ComposedEmail | str]], early: list[Outcome]
    ) -> list[Outcome]:
        results = await asyncio.gather(*(self._hand_over(item, body) for item, body in ready))
        return [*early, *results]

    async def _unmark(self, ready: Sequence[tuple[Claimed, ComposedEmail | str]]) -> None:
        """Back to `planned`: marked `sending` but never handed to the channel."""
        async with self._db.writer() as session:
            await session.execute(
                update(_delivery)
                .where(
                    _delivery.c.id.in_([item.delivery_id for item, _ in ready]),
                    _delivery.c.status == DeliveryStatus.SENDING.value,
                )
                .values(
                    status=DeliveryStatus.PLANNED.value,
                    attempts=_delivery.c.attempts - 1,
                    lease_until=None,
                )
                .execution_options(synchronize_session=False)
            )

    async def _release(self, rest: Sequence[Claimed]) -> None:
        async with self._db.writer() as session:
            await session.execute(
                update(_delivery)
                .where(
                    _delivery.c.id.in_([item.delivery_id for item in rest]),
                    _delivery.c.lease_until.in_(sorted({item.lease_until for item in rest})),
                )
                .values(lease_until=None)
                .execution_options(synchronize_session=False)
            )

    async def _prepare(
        self, group: Sequence[Claimed], failed: list[Outcome]
    ) -> list[tuple[Claimed, ComposedEmail | str]]:
        """Render the group and mark it `sending`: what this worker may now hand over.

        Messages that cannot be rendered go to `failed`. Rendering yields to the
        event loop now and then, so a group on the wire keeps moving meanwhile.
        """
        ready: list[tuple[Claimed, ComposedEmail | str]] = []
        for number, item in enumerate(group, 1):
            try:
                ready.append((item, self._render(item)))
            except RenderError as exc:
                failure = SendResult(SendStatus.PERMANENT, f"{reasons.RENDER_FAILED}: {exc}")
                failed.append(Outcome(item.delivery_id, item.customer_id, item.attempts, failure))
            if number % RENDER_SLICE == 0:
                await asyncio.sleep(0)
        if not ready:
            return ready
        now = self._clock()
        async with self._db.writer() as session:
            marked = await session.execute(
                update(_delivery)
                .where(
                    _delivery.c.id.in_([item.delivery_id for item, _ in ready]),
                    # Only rows still under this worker's claim: if the batch took
                    # longer than the lease, another worker may have claimed and
                    # sent the rest meanwhile. The lease value is the proof: every
                    # other change of a planned row clears or replaces it. (A test
                    # of `status` here too would make SQLite, which has no
                    # statistics, scan the status index: 20 ms, not 0.2 ms, a group.)
                    _delivery.c.lease_until.in_(sorted({item.lease_until for item, _ in ready})),
                )
                .values(
                    status=DeliveryStatus.SENDING.value,
                    attempts=_delivery.c.attempts + 1,
                    lease_until=now + self._policy.lease,
                )
                .returning(_delivery.c.id)
                .execution_options(synchronize_session=False)
            )
            owned = set(marked.scalars())
        return [(item, body) for item, body in ready if item.delivery_id in owned]

    def _render(self, item: Claimed) -> ComposedEmail | str:
        if self._channel == Channel.EMAIL:
            assert self._composer is not None
            return self._composer.compose(
                Recipient(item.delivery_id, item.customer_id, item.email or "", item.context)
            )
        return render_sms(self._sms_template or "", item.context)

    async def _hand_over(self, item: Claimed, body: ComposedEmail | str) -> Outcome:
        attempts = item.attempts + 1
        if isinstance(body, ComposedEmail):
            result = await self._email.send(
                self._mail_from, item.email or "", body.message_id, body.data
            )
            return Outcome(
                item.delivery_id, item.customer_id, attempts, result, body.message_id, body.links
            )
        result = await self._sms.send(item.delivery_id, item.phone or "", body)
        return Outcome(item.delivery_id, item.customer_id, attempts, result)

    def _sent_at_once(self, sent: Sequence[Outcome], now: datetime) -> Update | None:
        """One UPDATE for the whole group's `sent` rows, when it can say the same for all:
        SMS (no Message-ID, no links), or emails whose links are the same for every
        customer (the usual case) and whose Message-IDs follow the composer's pattern,
        built in SQL from the customer id. None: each row needs its own values."""
        message_id: Any = None
        links = sent[0].links
        if any(o.links != links for o in sent):
            return None
        if self._composer is not None:
            start, end = self._composer.message_id_parts
            if any(o.message_id != f"{start}{o.customer_id}{end}" for o in sent):
                return None
            message_id = literal(start) + cast(_delivery.c.customer_id, String) + literal(end)
        elif any(o.message_id is not None for o in sent):
            return None
        return (
            update(_delivery)
            .where(_delivery.c.id.in_([o.delivery_id for o in sent]))
            .values(
                status=DeliveryStatus.SENT.value,
                reason=None,
                message_id=message_id,
                links=links,
                sent_at=now,
                triggered_at=now,
                lease_until=None,
            )
            .execution_options(synchronize_session=False)
        )

    async def _record(self, outcomes: Sequence[Outcome], tally: WaveTally) -> None:
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
                if outcome.result.bounce and self._channel == Channel.EMAIL:
                    bounced_customers.append(outcome.customer_id)
        async with self._db.writer() as session:
            at_once = self._sent_at_once(sent, now) if sent else None
            if at_once is not None:
                await session.execute(at_once)
            elif sent:
                await _update_each(
                    session,
                    [
                        {
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
            if final:
                await _update_each(
                    session,
                    [
                        {
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
            await messages_triggered(session, [o.delivery_id for o in (*sent, *final)], now)
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


async def _update_each(session: AsyncSession, rows: list[dict[str, object]]) -> None:
    values: dict[str, object] = {
        "status": bindparam("status"),
        "reason": bindparam("reason"),
        "message_id": bindparam("message_id"),
        "links": bindparam("links", type_=_delivery.c.links.type),
        "sent_at": bindparam("sent_at", type_=_delivery.c.sent_at.type),
        "triggered_at": bindparam("triggered_at", type_=_delivery.c.triggered_at.type),
        "lease_until": None,
    }
    if "due_at" in rows[0]:
        values["due_at"] = bindparam("due_at", type_=_delivery.c.due_at.type)
    statement = (
        update(_delivery)
        .where(_delivery.c.id == bindparam("row_id"))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    await session.execute(statement, rows)


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
