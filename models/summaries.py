"""Daily summaries (SPEC §4): which chat is due for which day, and the claim that makes it once.

A chat's summary of local day D is due from SUMMARY_TIME on D in the chat's zone
and reports the day before that moment: from SUMMARY_TIME on D - 1 to SUMMARY_TIME
on D (`summary_period`). Only the latest due day is ever claimed, so a worker back
after days of downtime sends one summary, late, not one per missed day. The row
`(chat_id, day)` of `summary_sends` is inserted before anything is sent: the
primary key lets one worker in, whatever the number of workers. docs/reporting.md
tells the whole design.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import exists, or_, select, update

from models.db import Database, insert_ignoring_conflicts
from models.tables import Chain, ChainStatus, Delivery, SubscribedChat, SummarySend, SummaryStatus

# A worker holds a claimed summary this long without renewing it; it renews
# before each message, so only a worker dead or frozen that long loses it.
LEASE = timedelta(minutes=2)
# Claims of one summary (first try and retries after a lease ran out or a
# transient failure) before it is given up as failed.
MAX_CLAIMS = 5
RETRY_DELAY = timedelta(minutes=1)
# Chains that ran in this many days before the reported day's end are reported.
REPORTED_DAYS = 7


@dataclass(frozen=True)
class DueSummary:
    chat_id: int
    timezone: str
    # The summary's day in the chat's zone; it reports the 24 hours up to its moment.
    day: date
    # The chat's language (its subscriber's); None: subscribed before chats had one.
    language: str | None = None


@dataclass(frozen=True)
class Claim:
    """A summary this worker may send while it holds the row's `claim` number."""

    chat_id: int
    day: date
    claim: int
    # Messages of it already sent by an earlier claim.
    parts_sent: int


@dataclass(frozen=True)
class ReportedChain:
    id: int
    name: str


def day_start(day: date, zone: str) -> datetime:
    """Local midnight of `day`, in UTC."""
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(zone)).astimezone(UTC)


def summary_moment(day: date, zone: str, at: time) -> datetime:
    """When the summary of `day` is due, in UTC (a time skipped by DST: just after the jump)."""
    return datetime.combine(day, at, tzinfo=ZoneInfo(zone)).astimezone(UTC)


def summary_period(day: date, zone: str, at: time) -> tuple[datetime, datetime]:
    """What the summary of `day` covers, in UTC: from the summary moment of the day before
    to its own. 24 hours; 23 or 25 across a change of the clocks, so that one day's
    summary starts where the last one ended."""
    return summary_moment(day - timedelta(days=1), zone, at), summary_moment(day, zone, at)


def latest_due_day(now: datetime, zone: str, at: time) -> date:
    today = now.astimezone(ZoneInfo(zone)).date()
    return today if now >= summary_moment(today, zone, at) else today - timedelta(days=1)


async def due_summaries(
    db: Database, now: datetime, *, at: time, default_timezone: str
) -> list[DueSummary]:
    """The chats whose latest due summary is not sent, given up, or held by a live lease.

    A chat subscribed after a day's summary moment starts with the next day's.
    """
    async with db.session() as session:
        chats = (
            await session.execute(
                select(
                    SubscribedChat.chat_id,
                    SubscribedChat.timezone,
                    SubscribedChat.created_at,
                    SubscribedChat.language,
                )
            )
        ).all()
        candidates = []
        for chat_id, timezone, subscribed_at, language in chats:
            zone = timezone or default_timezone
            day = latest_due_day(now, zone, at)
            if summary_moment(day, zone, at) >= subscribed_at:
                candidates.append(DueSummary(chat_id, zone, day, language))
        if not candidates:
            return []
        taken = set(
            (
                await session.execute(
                    select(SummarySend.chat_id, SummarySend.day).where(
                        SummarySend.chat_id.in_([due.chat_id for due in candidates]),
                        SummarySend.day >= min(due.day for due in candidates),
                        or_(
                            SummarySend.status != SummaryStatus.SENDING,
                            SummarySend.lease_until > now,
                        ),
                    )
                )
            ).all()
        )
    return [due for due in candidates if (due.chat_id, due.day) not in taken]


async def claim_summary(db: Database, chat_id: int, day: date, now: datetime) -> Claim | None:
    """The summary of (chat, day) for this worker, or None if another has it or it is done.

    First come, first served by the primary key; a row whose lease ran out (its
    worker died or failed for a while) is claimed again with the next claim
    number, until MAX_CLAIMS, then it is given up.
    """
    async with db.writer() as session:
        first = await session.scalar(
            insert_ignoring_conflicts(session, SummarySend)
            .values(
                chat_id=chat_id,
                day=day,
                status=SummaryStatus.SENDING,
                claim=1,
                lease_until=now + LEASE,
                parts_sent=0,
                claimed_at=now,
            )
            .returning(SummarySend.claim)
        )
        if first is not None:
            return Claim(chat_id, day, first, 0)
        lapsed = (
            SummarySend.chat_id == chat_id,
            SummarySend.day == day,
            SummarySend.status == SummaryStatus.SENDING,
            SummarySend.lease_until <= now,
        )
        await session.execute(
            update(SummarySend)
            .where(*lapsed, SummarySend.claim >= MAX_CLAIMS)
            .values(status=SummaryStatus.FAILED, lease_until=None, error="gave up after retries")
        )
        again = (
            await session.execute(
                update(SummarySend)
                .where(*lapsed)
                .values(claim=SummarySend.claim + 1, lease_until=now + LEASE, claimed_at=now)
                .returning(SummarySend.claim, SummarySend.parts_sent)
            )
        ).first()
        return Claim(chat_id, day, again[0], again[1]) if again else None


def _mine(claim: Claim) -> tuple[object, ...]:
    return (
        SummarySend.chat_id == claim.chat_id,
        SummarySend.day == claim.day,
        SummarySend.claim == claim.claim,
        SummarySend.status == SummaryStatus.SENDING,
    )


async def _update_mine(db: Database, claim: Claim, **values: object) -> bool:
    async with db.writer() as session:
        result = await session.execute(
            update(SummarySend).where(*_mine(claim)).values(**values).returning(SummarySend.claim)
        )
        return result.first() is not None


async def renew(db: Database, claim: Claim, now: datetime) -> bool:
    """Right before a message: False if the lease was lost (another worker took over)."""
    return await _update_mine(db, claim, lease_until=now + LEASE)


async def part_sent(db: Database, claim: Claim, parts_sent: int, now: datetime) -> bool:
    return await _update_mine(db, claim, parts_sent=parts_sent, lease_until=now + LEASE)


async def finish(
    db: Database, claim: Claim, now: datetime, *, failed_because: str | None = None
) -> bool:
    """Sent, or (with a reason) given up: either way never claimed again."""
    if failed_because is None:
        return await _update_mine(
            db, claim, status=SummaryStatus.SENT, sent_at=now, lease_until=None
        )
    return await _update_mine(
        db, claim, status=SummaryStatus.FAILED, error=failed_because[:500], lease_until=None
    )


async def retry_later(db: Database, claim: Claim, now: datetime, error: str) -> bool:
    """After a transient failure: any worker may claim it again once RETRY_DELAY has passed."""
    return await _update_mine(db, claim, lease_until=now + RETRY_DELAY, error=error[:500])


async def reported_chains(db: Database, since: datetime) -> list[ReportedChain]:
    """Active chains; paused ones paused or sending since `since`; finished ones that
    finished or sent since then. Drafts and archived chains never."""
    sent_since = exists().where(Delivery.chain_id == Chain.id, Delivery.triggered_at >= since)
    async with db.session() as session:
        rows = await session.execute(
            select(Chain.id, Chain.name)
            .where(
                or_(
                    Chain.status == ChainStatus.ACTIVE,
                    (Chain.status == ChainStatus.PAUSED)
                    & or_(Chain.updated_at >= since, sent_since),
                    (Chain.status == ChainStatus.FINISHED)
                    & or_(Chain.finished_at >= since, sent_since),
                )
            )
            .order_by(Chain.id)
        )
        return [ReportedChain(chain_id, name) for chain_id, name in rows]
