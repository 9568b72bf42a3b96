"""The engine: one queue of due deliveries across every active chain.

The database is the truth; the tick only wakes the engine, so a lost tick or a
restarted process loses nothing. Any number of engines (worker processes) may
tick against one PostgreSQL database. A tick:

1. housekeeping: takes back what dead workers held (scheduler/workers.py),
   serves planning requests (a step added or saved, a chain activated or
   resumed), takes `continuous` chains' newcomers from the change queue, and
   finishes `once` chains nobody is left in;
2. claims due rows across all active steps, the rules applied in the claim
   (scheduler/claims.py), and sends them (scheduler/sending.py), batch after
   batch until nothing is due, housekeeping again every tick interval.

Nothing here rescans an audience on a tick: follow-ups are planned in the
transaction that records the previous step's outcome, waiting rows are woken
by the facts they wait for (models/facts.py), and newcomers come from a queue.
"""

from __future__ import annotations

import logging
import time as monotonic
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import delete, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from channels.dkim import DkimKey
from channels.email_compose import EmailComposer, EmailStep
from channels.sms import SmsComposer, SmsTransport
from channels.smtp import EmailTransport
from models.chainfile import EmailAction
from models.chains import missing_blocks
from models.db import Database, installation_id
from models.facts import messages_triggered
from models.frequency_caps import FrequencyCaps
from models.holds import HoldKind, hold_chain
from models.protection import HoldPolicy
from models.sms_parts import SmsFrame
from models.tables import (
    Chain,
    ChainStatus,
    CustomerChange,
    Delivery,
    DeliveryStatus,
    Enrollment,
    Step,
)
from scheduler import claims, planning, workers
from scheduler.sending import Sender, SendPolicy, StepMessages, WaveTally
from scheduler.steps import StepPlan, step_plan

log = logging.getLogger(__name__)
# Customers taken from the change queue per statement.
CHANGES_BATCH = 5000
# A tick renews the heartbeat when this much has passed since the last one.
_BEAT_SECONDS = workers.HEARTBEAT.total_seconds() / 2


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class EngineConfig:
    mail_from: str
    public_base_url: str
    secret_key: str
    quiet_hours_sms: tuple[time, time] | None
    email_concurrency: int = 8
    batch_size: int = 500
    max_attempts: int = 5
    retry_base: timedelta = timedelta(minutes=1)
    # How often a long sending loop stops for housekeeping and a heartbeat.
    tick_seconds: float = 5.0
    # Signs every email when set (DKIM_PRIVATE_KEY_FILE).
    dkim: DkimKey | None = None
    # SMS_OPT_OUT_TEXT: appended to every SMS (models/sms_parts.py `sms_as_sent`), whose
    # links become short links on `public_base_url`.
    sms_opt_out_text: str = ""
    # SMS_OPT_OUT_TEXT_<LANGUAGE>: (language, line), instead of it for those customers.
    sms_opt_outs: tuple[tuple[str, str], ...] = ()
    # BOUNCE_DOMAIN: each email's return addresses are its own there (VERP).
    bounce_domain: str | None = None
    # DEFAULT_LANGUAGE: customers' footers when neither they nor their phone say.
    default_language: str = "ru"
    # HOLD_*: when a step's bounces refused at SMTP time hold its chain (models/protection.py).
    hold_policy: HoldPolicy = field(default_factory=HoldPolicy)
    # FREQUENCY_CAP_*: at most N messages of a channel per customer and period, over all
    # chains, applied in the claim (scheduler/claims.py).
    frequency_caps: FrequencyCaps = field(default_factory=FrequencyCaps)


@dataclass
class TickReport:
    planned: int = 0
    waves: dict[int, WaveTally] = field(default_factory=dict)
    deferred: int = 0
    recovered_uncertain: int = 0
    finished_chains: list[int] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return sum(t.sent for t in self.waves.values())

    @property
    def busy(self) -> bool:
        return bool(self.planned or any(t.busy for t in self.waves.values()))

    def add_tally(self, step_id: int, tally: WaveTally) -> None:
        self.waves.setdefault(step_id, WaveTally()).add(tally)

    def add(self, other: TickReport) -> None:
        self.planned += other.planned
        self.deferred += other.deferred
        self.recovered_uncertain += other.recovered_uncertain
        self.finished_chains += other.finished_chains
        for step_id, tally in other.waves.items():
            self.add_tally(step_id, tally)


@dataclass(frozen=True)
class ChainPlan:
    chain_id: int
    name: str
    campaign: str
    utm: bool
    enrollment: str
    # The chain row's version: a change to the chain or its steps moves it.
    updated_at: datetime
    steps: list[StepPlan]

    def after(self, step_id: int) -> StepPlan | None:
        """The step that follows `step_id`, if it is complete."""
        ids = [step.step_id for step in self.steps]
        index = ids.index(step_id) if step_id in ids else len(ids)
        return self.steps[index + 1] if index + 1 < len(self.steps) else None


def complete_steps(chain: Chain) -> list[StepPlan]:
    """The steps up to the first one still lacking a block (added to a running chain)."""
    steps = []
    for step in chain.steps:
        if missing_blocks(step):
            break
        steps.append(step_plan(step, chain.holdout_percent))
    return steps


def _chain_plan(chain: Chain) -> ChainPlan:
    return ChainPlan(
        chain.id,
        chain.name,
        chain.campaign_tag,
        chain.utm_enabled,
        chain.enrollment,
        chain.updated_at,
        complete_steps(chain),
    )


class Engine:
    def __init__(
        self,
        db: Database,
        config: EngineConfig,
        *,
        email: EmailTransport,
        sms: SmsTransport,
        clock: Callable[[], datetime] = utcnow,
        name: str | None = None,
    ) -> None:
        self.db = db
        self.config = config
        self.email = email
        self.sms = sms
        self.clock = clock
        self.name = name or workers.worker_name()
        self.policy = SendPolicy(config.max_attempts, config.retry_base)
        self.worker_id: int | None = None
        self._beaten = 0.0
        # Set by `stop()`: the running tick ends after the group in flight.
        self.stopping = False
        self._chains: dict[int, ChainPlan] = {}
        # Messages a second this worker has been sending (0: not measured yet).
        self._rate = 0.0
        # Each active step's earliest unclaimed planned row, as the last batch read it.
        self._earliest: dict[int, datetime | None] = {}
        self._step_chain: dict[int, int] = {}
        self._messages: dict[int, StepMessages] = {}
        # models.db.installation_id, read at the first tick: part of every Message-ID.
        self._installation_id = ""
        self._sender = Sender(
            db,
            email=email,
            sms=sms,
            policy=self.policy,
            clock=clock,
            # Two groups are in flight at once (sending.py): 8 × EMAIL_CONCURRENCY
            # messages at most, what a crash can leave `uncertain`. Smaller groups
            # cost more database work per message (measured: docs/benchmarks.md).
            group_size=max(config.email_concurrency * 4, 16),
            on_triggered=self._plan_next,
            stopping=lambda: self.stopping,
            hold_policy=config.hold_policy,
        )

    def stop(self) -> None:
        self.stopping = True

    # --- Liveness -----------------------------------------------------------------

    async def heartbeat(self) -> None:
        """Say this worker is alive; one declared dead meanwhile registers anew (its
        old claims were taken back, and the fence refuses its writes to them)."""
        self._beaten = monotonic.monotonic()
        if self.worker_id is not None and await workers.beat(self.db, self.worker_id):
            return
        if self.worker_id is not None:
            log.warning("worker %d was taken for dead; registering again", self.worker_id)
        self.worker_id = await workers.register(self.db, self.name)

    async def _beat_if_due(self) -> None:
        if self.worker_id is None or monotonic.monotonic() - self._beaten >= _BEAT_SECONDS:
            await self.heartbeat()

    async def close(self) -> None:
        """A clean stop: rows claimed and not sent go back to the queue at once."""
        if self.worker_id is not None:
            await workers.deregister(self.db, self.worker_id)
            self.worker_id = None

    # --- Ticks ----------------------------------------------------------------------

    async def tick(self) -> TickReport:
        report = TickReport()
        if not self._installation_id:
            self._installation_id = await installation_id(self.db)
        await self._housekeeping(report)
        housekept = monotonic.monotonic()
        while not self.stopping:
            if monotonic.monotonic() - housekept >= self.config.tick_seconds:
                await self._housekeeping(report)
                housekept = monotonic.monotonic()
            if not await self._batch(report):
                break
        await self._finish_chains(report)
        return report

    async def run_until_idle(self, max_ticks: int = 50) -> TickReport:
        """Tick until a tick plans and sends nothing (tests, CLI one-shots)."""
        total = TickReport()
        for _ in range(max_ticks):
            report = await self.tick()
            total.add(report)
            if not report.busy:
                break
        return total

    async def _batch(self, report: TickReport) -> bool:
        """Claim and send one batch; False when nothing was due.

        Each batch is claimed afresh across all active steps, so whatever became due
        meanwhile — a chain just activated, a follow-up just planned — is in the next
        one. A batch is sent for half a tick at most (a slow server): what is left
        goes back to the queue and is claimed again beside whatever became due.
        """
        started = monotonic.monotonic()
        deadline = started + self.config.tick_seconds / 2
        now = self.clock()
        async with self.db.session() as session:
            await self._load_chains(session)
            # Read first: a writer (SQLite's one write lock) only when something is due.
            self._earliest = await claims.earliest_planned(session, list(self._step_chain))
            due = claims.due_steps(self._earliest, now)
            if not due:
                return False
        assert self.worker_id is not None
        worker_id = self.worker_id
        async with self.db.writer() as session:
            taken = await claims.claim(
                session,
                {step_id: self._step(step_id) for step_id in self._step_chain},
                due,
                now,
                worker_id=worker_id,
                limit=self._batch_limit(),
                quiet_hours_sms=self.config.quiet_hours_sms,
                default_language=self.config.default_language,
                frequency_caps=self.config.frequency_caps,
                on_error=lambda session, step, exc: self._hold(
                    session, step.chain_id, step, "claiming", exc
                ),
            )
        report.deferred += taken.deferred
        for step_id, skipped in taken.skipped.items():
            report.waves.setdefault(step_id, WaveTally()).add_skipped(skipped)
        for step_id, held_out in taken.held_out.items():
            report.waves.setdefault(step_id, WaveTally()).held_out += held_out
        if taken.rows:
            try:
                tallies = await self._sender.send(taken.rows, self._messages, worker_id, deadline)
            except Exception:
                # The database failed midway (a lock waited out, a deadlock, a lost
                # connection): what this worker still holds must not stay held by it.
                await self._take_back_own(report)
                raise
            for step_id, tally in tallies.items():
                report.add_tally(step_id, tally)
            handled = sum(t.sent + t.failed + t.uncertain + t.retried for t in tallies.values())
            elapsed = monotonic.monotonic() - started
            if handled and elapsed > 0:
                # A moving average: one slow batch does not halve the next.
                self._rate = (
                    0.7 * self._rate + 0.3 * handled / elapsed
                    if self._rate
                    else (handled / elapsed)
                )
        return bool(taken.rows or taken.skipped or taken.deferred or taken.held_out)

    def _batch_limit(self) -> int:
        """About what this worker sends in half a tick (its measured rate), so that a
        batch is rarely cut at the deadline and handed back: claims are not free."""
        if not self._rate:
            return self.config.batch_size
        fits = int(self._rate * self.config.tick_seconds / 2)
        floor = min(2 * self._sender.group_size, self.config.batch_size)
        return max(min(fits, self.config.batch_size), floor)

    # --- What is active -------------------------------------------------------------

    def _step(self, step_id: int) -> StepPlan:
        chain = self._chains[self._step_chain[step_id]]
        return next(step for step in chain.steps if step.step_id == step_id)

    async def _load_chains(self, session: AsyncSession) -> None:
        """The active chains; only those whose row changed are read again in full."""
        versions = dict(
            (
                await session.execute(
                    select(Chain.id, Chain.updated_at).where(
                        Chain.status == ChainStatus.ACTIVE.value
                    )
                )
            ).all()
        )
        changed = [
            chain_id
            for chain_id, version in versions.items()
            if chain_id not in self._chains or self._chains[chain_id].updated_at != version
        ]
        plans = {
            chain_id: self._chains[chain_id] for chain_id in versions if chain_id not in changed
        }
        if changed:
            chains = await session.scalars(
                select(Chain).where(Chain.id.in_(changed)).options(selectinload(Chain.steps))
            )
            for chain in chains:
                plans[chain.id] = plan = _chain_plan(chain)
                for step in plan.steps:
                    self._messages[step.step_id] = self._step_messages(plan, step)
        self._chains = dict(sorted(plans.items()))
        self._step_chain = {
            step.step_id: plan.chain_id for plan in self._chains.values() for step in plan.steps
        }

    def _step_messages(self, chain: ChainPlan, step: StepPlan) -> StepMessages:
        action = step.action
        composer: EmailComposer | SmsComposer
        if isinstance(action, EmailAction):
            composer = EmailComposer(
                EmailStep(
                    chain_id=chain.chain_id,
                    chain_name=chain.name,
                    step_id=step.step_id,
                    position=step.position,
                    campaign=chain.campaign,
                    utm=chain.utm,
                    subject=action.subject,
                    text=action.text,
                    html=action.html,
                    mail_from=self.config.mail_from,
                ),
                public_base_url=self.config.public_base_url,
                secret_key=self.config.secret_key,
                installation_id=self._installation_id,
                dkim=self.config.dkim,
                bounce_domain=self.config.bounce_domain,
            )
        else:
            composer = SmsComposer(
                action.text,
                SmsFrame(
                    self.config.sms_opt_out_text,
                    self.config.public_base_url,
                    self.config.sms_opt_outs,
                ),
                secret_key=self.config.secret_key,
                campaign=chain.campaign,
                position=step.position,
                utm=chain.utm,
            )
        return StepMessages(step.step_id, step.channel, composer, step.version)

    # --- Planning as things happen --------------------------------------------------

    async def _plan_next(
        self, session: AsyncSession, step_id: int, triggered: list[int], now: datetime
    ) -> None:
        """Plan the next step for the customers whose messages of `step_id` just triggered.

        In the transaction that recorded them. The chain row is read FOR SHARE: a step
        saved or added meanwhile (which updates the chain row) waits for this
        transaction, or this one reads the chain as saved — so either this plans the
        new step, or the planning pass its save requested sees these rows.
        """
        chain = await self._chain_of(session, step_id)
        following = chain.after(step_id) if chain is not None else None
        if chain is None or following is None or following.stopped:
            return
        previous = next(step for step in chain.steps if step.step_id == step_id)
        try:
            # A savepoint: the outcomes recorded beside it stay recorded whatever happens.
            async with session.begin_nested():
                await planning.plan_follow_up(session, previous, following, now, triggered)
        except Exception as exc:
            await self._hold(session, chain.chain_id, following, "planning", exc)

    async def _chain_of(self, session: AsyncSession, step_id: int) -> ChainPlan | None:
        chain_id = self._step_chain.get(step_id)
        known = self._chains.get(chain_id) if chain_id is not None else None
        if chain_id is None:
            chain_id = await session.scalar(select(Step.chain_id).where(Step.id == step_id))
        # Read again even on SQLite, where this transaction holds the one write lock:
        # a step saved, stopped or removed since the plan was read is planned as saved.
        version = await session.scalar(
            select(Chain.updated_at).where(Chain.id == chain_id).with_for_update(read=True)
        )
        if known is not None and known.updated_at == version:
            return known
        chain = await session.scalar(
            select(Chain).where(Chain.id == chain_id).options(selectinload(Chain.steps))
        )
        return _chain_plan(chain) if chain is not None else None

    async def _housekeeping(self, report: TickReport) -> None:
        """Liveness, planning owed, newcomers: each looked at with a read, written to
        only when there is something to do, so an idle tick takes no write lock."""
        await self._beat_if_due()
        changes = CustomerChange.__table__
        async with self.db.session() as session:
            someone_dead, newcomers = (
                await session.execute(
                    select(
                        exists(workers.dead_workers(session.bind.dialect)),
                        exists(select(changes.c.id)),
                    )
                )
            ).one()
            await self._load_chains(session)
            owed = list(
                await session.execute(
                    select(Step.id, Step.plan_requested)
                    .join(Chain, Chain.id == Step.chain_id)
                    .where(
                        Chain.status == ChainStatus.ACTIVE.value,
                        Step.plan_requested > Step.planned_version,
                    )
                )
            )
        if someone_dead:
            await self._reap(report)
        if owed:
            report.planned += await self._serve_planning_requests(owed)
        if newcomers:
            report.planned += await self._enroll_newcomers()

    async def _reap(self, report: TickReport) -> None:
        await self._recover(report, lambda session, now: workers.reap(session, now))

    async def _take_back_own(self, report: TickReport) -> None:
        assert self.worker_id is not None
        own = [self.worker_id]
        try:
            await self._recover(report, lambda session, now: workers.take_back(session, own, now))
        except Exception:
            # Still held: they go back when this worker is taken for dead or restarts.
            log.exception("could not hand back the rest of a failed batch")

    async def _recover(
        self,
        report: TickReport,
        take: Callable[[AsyncSession, datetime], Awaitable[workers.Reaped]],
    ) -> None:
        now = self.clock()
        async with self.db.writer() as session:
            reaped = await take(session, now)
            for step_id, ids in reaped.uncertain.items():
                await self._plan_next(session, step_id, ids, now)
                # They keep the moment they were marked as `sent_at`: attributable.
                await messages_triggered(session, ids, now)
        lost = sum(len(ids) for ids in reaped.uncertain.values())
        if lost or reaped.released:
            log.warning(
                "took back: %d rows to send, %d outcomes lost (uncertain)",
                reaped.released,
                lost,
            )
        report.recovered_uncertain += lost

    async def _serve_planning_requests(self, owed: list[Any]) -> int:
        """Full planning passes owed: steps saved or added, chains activated or resumed."""
        planned = 0
        for step_id, requested in owed:
            chain = self._chains.get(self._step_chain.get(step_id, -1))
            if chain is None:
                continue  # not complete yet: its last block's save asks again
            now = self.clock()
            async with self.db.writer() as session:
                step = self._step(step_id)
                try:
                    async with session.begin_nested():
                        planned += await self._full_pass(session, chain, step, now)
                except Exception as exc:
                    await self._hold(session, chain.chain_id, step, "planning", exc)
                    continue  # still owed: tried again once the chain is resumed
                await session.execute(
                    update(Step.__table__)
                    .where(Step.id == step_id, Step.planned_version < requested)
                    .values(planned_version=requested)
                    .execution_options(synchronize_session=False)
                )
        return planned

    @staticmethod
    async def _full_pass(
        session: AsyncSession, chain: ChainPlan, step: StepPlan, now: datetime
    ) -> int:
        if step.stopped:
            return 0
        if step.position == 1:
            if chain.enrollment != Enrollment.CONTINUOUS:
                return 0  # a `once` chain took its audience at activation
            return await planning.enroll_main_step(session, step, now)
        previous = chain.steps[chain.steps.index(step) - 1]
        return await planning.plan_follow_up(session, previous, step, now)

    async def _hold(
        self, session: AsyncSession, chain_id: int, step: StepPlan, doing: str, exc: Exception
    ) -> None:
        """Pause a chain the engine cannot go on with, saying why; the others go on.

        In the caller's transaction, after the failed part was rolled back to its
        savepoint. A manager sees the reason in `/chains` and `chainmail chains list`,
        fixes the step and resumes.
        """
        log.exception("chain %d held: %s step %d failed", chain_id, doing, step.position)
        reason = f"step {step.position} ({step.name}): {doing} failed: {type(exc).__name__}: {exc}"
        await hold_chain(
            session, chain_id, reason, self.clock(), actor="engine", kind=HoldKind.FAILURE
        )
        # Whoever the failed part would have planned is planned by a full pass once
        # the chain is resumed.
        await session.execute(
            update(Step.__table__)
            .where(Step.id == step.step_id)
            .values(plan_requested=Step.plan_requested + 1)
            .execution_options(synchronize_session=False)
        )
        self._chains.pop(chain_id, None)
        self._step_chain = {
            step_id: owner for step_id, owner in self._step_chain.items() if owner != chain_id
        }

    async def _enroll_newcomers(self) -> int:
        """`continuous` chains take in the customers added or changed since the last look."""
        main_steps = [
            chain.steps[0]
            for chain in self._chains.values()
            if chain.enrollment == Enrollment.CONTINUOUS and chain.steps
        ]
        planned = 0
        changes = CustomerChange.__table__
        while not self.stopping:
            now = self.clock()
            async with self.db.writer() as session:
                query = select(changes.c.id, changes.c.customer_id).order_by(changes.c.id)
                if session.bind.dialect.name == "postgresql":
                    query = query.with_for_update(skip_locked=True)
                rows = list(await session.execute(query.limit(CHANGES_BATCH)))
                if not rows:
                    break
                customers = sorted({customer_id for _, customer_id in rows})
                for step in main_steps:
                    try:
                        async with session.begin_nested():
                            planned += await planning.enroll_main_step(
                                session, step, now, customers
                            )
                    except Exception as exc:
                        await self._hold(session, step.chain_id, step, "enrolling", exc)
                await session.execute(
                    delete(changes).where(changes.c.id.in_([row_id for row_id, _ in rows]))
                )
        return planned

    async def _finish_chains(self, report: TickReport) -> None:
        """A `once` chain is finished when nobody waits in it and no planning is owed."""
        d = Delivery.__table__
        for chain in list(self._chains.values()):
            if chain.enrollment != Enrollment.ONCE or not chain.steps:
                continue
            if any(self._earliest.get(step.step_id) for step in chain.steps):
                continue  # rows still planned: not worth a look at the chain's rows
            busy = exists(
                select(d.c.id).where(
                    d.c.chain_id == chain.chain_id,
                    d.c.status.in_([DeliveryStatus.PLANNED.value, DeliveryStatus.SENDING.value]),
                )
            ) | exists(
                select(Step.id).where(
                    Step.id.in_([step.step_id for step in chain.steps]),
                    Step.plan_requested > Step.planned_version,
                )
            )
            async with self.db.session() as session:
                if await session.scalar(select(busy)):
                    continue
            now = self.clock()
            async with self.db.writer() as session:
                result = await session.execute(
                    update(Chain.__table__)
                    .where(
                        Chain.id == chain.chain_id,
                        Chain.status == ChainStatus.ACTIVE.value,
                        ~busy,
                    )
                    .values(status=ChainStatus.FINISHED.value, finished_at=now, updated_at=now)
                    .execution_options(synchronize_session=False)
                )
            if result.rowcount:
                report.finished_chains.append(chain.chain_id)
