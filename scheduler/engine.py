"""The engine: on each tick, plan what has become due, decide, claim and send.

The database is the truth; the tick only wakes the engine, so a lost tick or a
restarted process loses nothing. Any number of engines (worker processes) may
tick against one PostgreSQL database.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta

from sqlalchemy import and_, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from channels.email_compose import EmailComposer, EmailStep
from channels.sms import SmsTransport
from channels.smtp import EmailTransport
from models import reasons
from models.chainfile import EmailAction, SmsAction
from models.db import Database
from models.tables import Chain, ChainStatus, Channel, Delivery, DeliveryStatus, Enrollment
from scheduler import claims, planning
from scheduler.sending import SendPolicy, StepSender, WaveTally
from scheduler.steps import StepPlan, step_plan
from scheduler.timing import quiet_zones

log = logging.getLogger(__name__)


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
    lease: timedelta = timedelta(minutes=5)
    max_attempts: int = 5
    retry_base: timedelta = timedelta(minutes=1)


@dataclass
class TickReport:
    planned: int = 0
    waves: dict[int, WaveTally] = field(default_factory=dict)
    recovered_uncertain: int = 0
    finished_chains: list[int] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return sum(t.sent for t in self.waves.values())

    @property
    def busy(self) -> bool:
        return bool(
            self.planned or any(t.sent or t.failed or t.retried for t in self.waves.values())
        )


@dataclass(frozen=True)
class ChainPlan:
    chain_id: int
    name: str
    campaign: str
    utm: bool
    enrollment: str
    steps: list[StepPlan]


class Engine:
    def __init__(
        self,
        db: Database,
        config: EngineConfig,
        *,
        email: EmailTransport,
        sms: SmsTransport,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.config = config
        self.email = email
        self.sms = sms
        self.clock = clock
        self.policy = SendPolicy(config.lease, config.max_attempts, config.retry_base)
        # Set by `stop()`: the running tick ends after the group in flight.
        self.stopping = False

    def stop(self) -> None:
        self.stopping = True

    async def tick(self) -> TickReport:
        report = TickReport()
        report.recovered_uncertain = await self.recover_lost_sends()
        for chain in await self._active_chains():
            if self.stopping:
                break
            report.planned += await self._plan(chain)
            for step in chain.steps:
                tally = await self._run_wave(chain, step)
                if tally.sent or tally.failed or tally.uncertain or tally.skipped or tally.retried:
                    report.waves[step.step_id] = tally
            if await self._finish_if_done(chain):
                report.finished_chains.append(chain.chain_id)
        return report

    async def run_until_idle(self, max_ticks: int = 50) -> TickReport:
        """Tick until a tick plans and sends nothing (tests, CLI one-shots)."""
        total = TickReport()
        for _ in range(max_ticks):
            report = await self.tick()
            total.planned += report.planned
            total.waves.update(report.waves)
            total.finished_chains += report.finished_chains
            if not report.busy:
                break
        return total

    async def recover_lost_sends(self) -> int:
        """Deliveries left `sending` by a dead worker: their outcome is lost, never resent."""
        now = self.clock()
        async with self.db.writer() as session:
            result = await session.execute(
                update(Delivery.__table__)
                .where(
                    Delivery.status == DeliveryStatus.SENDING.value,
                    Delivery.lease_until < now,
                )
                .values(
                    status=DeliveryStatus.UNCERTAIN.value,
                    reason=reasons.OUTCOME_LOST,
                    triggered_at=now,
                    lease_until=None,
                )
                .execution_options(synchronize_session=False)
            )
        count = max(result.rowcount or 0, 0)
        if count:
            log.warning("%d deliveries left sending by a stopped worker are now uncertain", count)
        return count

    async def _active_chains(self) -> list[ChainPlan]:
        async with self.db.session() as session:
            chains = await session.scalars(
                select(Chain)
                .where(Chain.status == ChainStatus.ACTIVE.value)
                .options(selectinload(Chain.steps))
                .order_by(Chain.id)
            )
            return [
                ChainPlan(
                    chain.id,
                    chain.name,
                    chain.campaign_tag,
                    chain.utm_enabled,
                    chain.enrollment,
                    _complete_steps(chain),
                )
                for chain in chains
            ]

    async def _plan(self, chain: ChainPlan) -> int:
        now = self.clock()
        planned = 0
        async with self.db.writer() as session:
            if chain.enrollment == Enrollment.CONTINUOUS and chain.steps:
                planned += await planning.enroll_main_step(session, chain.steps[0], now)
            for previous, step in zip(chain.steps, chain.steps[1:], strict=False):
                planned += await planning.plan_follow_up(session, previous, step, now)
        return planned

    async def _run_wave(self, chain: ChainPlan, step: StepPlan) -> WaveTally:
        tally = WaveTally()
        now = self.clock()
        async with self.db.writer() as session:
            tally.add_skipped(await claims.skip_due(session, step, now))
            # The zones are read once per wave; which are quiet is decided per batch.
            zones = await self._zones_with_quiet_hours(session, step)
        sender = self._sender(chain, step)

        async def keep_going() -> bool:
            return not self.stopping and await self._still_active(chain.chain_id)

        while await keep_going():
            now = self.clock()
            quiet = quiet_zones(zones, now, self.config.quiet_hours_sms)
            async with self.db.writer() as session:
                batch = await claims.claim(
                    session,
                    step,
                    now,
                    limit=self.config.batch_size,
                    lease=self.config.lease,
                    quiet_zones=quiet,
                )
            if not batch or not await sender.send(batch, tally, keep_going):
                break
        return tally

    def _sender(self, chain: ChainPlan, step: StepPlan) -> StepSender:
        composer = None
        action = step.action
        if isinstance(action, EmailAction):
            composer = EmailComposer(
                EmailStep(
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
            )
        return StepSender(
            self.db,
            channel=step.channel,
            composer=composer,
            sms_template=action.text if isinstance(action, SmsAction) else None,
            email=self.email,
            sms=self.sms,
            mail_from=self.config.mail_from,
            policy=self.policy,
            clock=self.clock,
            # Two groups are in flight at once (sending.py): 8 × EMAIL_CONCURRENCY
            # messages at most, what a crash can leave `uncertain`. Smaller groups
            # cost more database work per message (measured: docs/benchmarks.md).
            group_size=max(self.config.email_concurrency * 4, 16),
        )

    async def _zones_with_quiet_hours(self, session: AsyncSession, step: StepPlan) -> list[str]:
        """The customers' zones, where quiet hours can hold this step; none for email."""
        if step.channel != Channel.SMS or self.config.quiet_hours_sms is None:
            return []
        return await planning.customer_zones(session)

    async def _still_active(self, chain_id: int) -> bool:
        async with self.db.session() as session:
            status = await session.scalar(select(Chain.status).where(Chain.id == chain_id))
        return status == ChainStatus.ACTIVE.value

    async def _finish_if_done(self, chain: ChainPlan) -> bool:
        """A `once` chain is finished when nobody waits and nobody can move on."""
        if chain.enrollment != Enrollment.ONCE or not chain.steps:
            return False
        d = Delivery.__table__
        pending = exists(
            select(d.c.id).where(
                d.c.chain_id == chain.chain_id,
                d.c.status.in_([DeliveryStatus.PLANNED.value, DeliveryStatus.SENDING.value]),
            )
        )
        nxt = d.alias("next_step")
        movable = [
            exists(
                select(d.c.id).where(
                    d.c.step_id == previous.step_id,
                    d.c.triggered_at.is_not(None),
                    ~exists(
                        select(nxt.c.id).where(
                            nxt.c.step_id == step.step_id, nxt.c.customer_id == d.c.customer_id
                        )
                    ),
                )
            )
            for previous, step in zip(chain.steps, chain.steps[1:], strict=False)
        ]
        now = self.clock()
        async with self.db.writer() as session:
            busy = await session.scalar(select(func.coalesce(pending, False)))
            for condition in movable:
                busy = busy or await session.scalar(select(condition))
            if busy:
                return False
            result = await session.execute(
                update(Chain.__table__)
                .where(and_(Chain.id == chain.chain_id, Chain.status == ChainStatus.ACTIVE.value))
                .values(status=ChainStatus.FINISHED.value, finished_at=now, updated_at=now)
                .execution_options(synchronize_session=False)
            )
        return bool(result.rowcount)


def _complete_steps(chain: Chain) -> list[StepPlan]:
    """The steps up to the first one still lacking a block (added to a running chain)."""
    steps = []
    for step in chain.steps:
        if step.audience is None or step.action is None or step.schedule is None:
            break
        steps.append(step_plan(step))
    return steps
