"""Activate, pause, resume: one function each, called by the CLI and the bot alike."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from i18n import N_, Phrase, Phrases
from models import audit
from models.chains import missing_blocks
from models.db import Database
from models.errors import ChainmailError, InvalidValue, NotFound
from models.tables import Chain, ChainStatus, Enrollment
from scheduler import planning
from scheduler.steps import step_plan


class ChainNotReady(ChainmailError):
    """Activation refused; the message lists every reason."""


@dataclass(frozen=True)
class Activation:
    chain_id: int
    enrolled: int


def chain_problems(chain: Chain) -> list[Phrase]:
    """Why a chain cannot run yet: no steps, or steps lacking a block."""
    if not chain.steps:
        return [Phrase(N_("it has no steps"))]
    problems = []
    for step in chain.steps:
        missing = missing_blocks(step)
        if missing:
            problems.append(
                Phrase(
                    N_("step {position} ({name}) has no {blocks} yet"),
                    position=step.position,
                    name=step.name,
                    blocks=", ".join(missing),
                )
            )
    return problems


async def _chain(session: AsyncSession, chain_id: int) -> Chain:
    chain = await session.scalar(
        select(Chain).where(Chain.id == chain_id).options(selectinload(Chain.steps))
    )
    if chain is None:
        raise NotFound(N_("no chain with id {id}"), id=chain_id)
    return chain


async def activate_chain(
    db: Database, chain_id: int, *, actor: str, now: datetime | None = None
) -> Activation:
    """Start a draft chain; a `once` chain takes its main step's audience right now."""
    now = now or datetime.now(UTC)
    async with db.writer() as session:
        chain = await _chain(session, chain_id)
        if chain.status != ChainStatus.DRAFT:
            raise ChainmailError(
                N_("chain {id} is {status}; only a draft can be activated"),
                id=chain_id,
                status=status_word(chain.status),
            )
        problems = chain_problems(chain)
        if problems:
            raise ChainNotReady(
                N_("chain {id} cannot be activated:\n{problems}"),
                id=chain_id,
                problems=Phrases(problems, "\n"),
            )
        chain.status = ChainStatus.ACTIVE
        chain.activated_at = now
        chain.updated_at = now
        enrolled = 0
        if chain.enrollment == Enrollment.ONCE:
            await session.flush()
            main = step_plan(chain.steps[0])
            try:
                enrolled = await planning.enroll_main_step(session, main, now)
            except (OverflowError, ValueError) as exc:
                # A moment no zone of the audience can read (a row from before the
                # chain file's bounds): refused in words, the chain stays a draft.
                raise ChainNotReady(
                    N_(
                        "chain {id} cannot be activated: step 1 ({name}) cannot be planned: {error}"
                    ),
                    id=chain_id,
                    name=main.name,
                    error=exc.phrase if isinstance(exc, InvalidValue) else exc,
                ) from exc
        audit.record(session, actor, "chain.activate", chain_id=chain_id, enrolled=enrolled)
    return Activation(chain_id, enrolled)


# A move refused from any other status.
_ONLY_FROM = {
    ChainStatus.PAUSED: N_("chain {id} is {status}; only an active chain can be paused"),
    ChainStatus.ACTIVE: N_("chain {id} is {status}; only a paused chain can be resumed"),
}
_STATUS_WORDS = {
    ChainStatus.DRAFT: N_("draft"),
    ChainStatus.ACTIVE: N_("active"),
    ChainStatus.PAUSED: N_("paused"),
    ChainStatus.FINISHED: N_("finished"),
    ChainStatus.ARCHIVED: N_("archived"),
}


def status_word(status: str) -> Phrase:
    return Phrase(_STATUS_WORDS[ChainStatus(status)])


async def _move(
    db: Database, chain_id: int, source: ChainStatus, target: ChainStatus, *, actor: str
) -> None:
    async with db.writer() as session:
        chain = await _chain(session, chain_id)
        if chain.status == target:
            return
        if chain.status != source:
            raise ChainmailError(_ONLY_FROM[target], id=chain_id, status=status_word(chain.status))
        chain.status = target
        chain.updated_at = datetime.now(UTC)
        if target == ChainStatus.ACTIVE:
            chain.hold_reason = None
        if target == ChainStatus.ACTIVE and chain.enrollment == Enrollment.CONTINUOUS:
            # Who joined its segments while it was paused: the change queue went on
            # without it, so its main step is planned again in full.
            chain.steps[0].plan_requested += 1
        audit.record(session, actor, f"chain.{target}", chain_id=chain_id)


async def pause_chain(db: Database, chain_id: int, *, actor: str) -> None:
    await _move(db, chain_id, ChainStatus.ACTIVE, ChainStatus.PAUSED, actor=actor)


async def resume_chain(db: Database, chain_id: int, *, actor: str) -> None:
    await _move(db, chain_id, ChainStatus.PAUSED, ChainStatus.ACTIVE, actor=actor)


async def pause_all(db: Database, *, actor: str) -> list[int]:
    """Pause every active chain at once; the ids that were paused."""
    async with db.writer() as session:
        ids = list(
            await session.scalars(select(Chain.id).where(Chain.status == ChainStatus.ACTIVE.value))
        )
        if ids:
            paused = await session.scalars(
                update(Chain.__table__)
                # A chain finished or paused since it was read stays as it is.
                .where(Chain.id.in_(ids), Chain.status == ChainStatus.ACTIVE.value)
                .values(status=ChainStatus.PAUSED.value, updated_at=datetime.now(UTC))
                .returning(Chain.id)
                .execution_options(synchronize_session=False)
            )
            ids = sorted(paused)
            audit.record(session, actor, "chain.pause_all", chain_ids=ids)
    return ids
