"""Changing a chain that may be running: what each change means for messages planned,
on their way and sent, decided here once for every door (the bot's Save,
`chainmail chains update`).

A step that has deliveries is live: saving blocks of it makes a new version
(`steps.version`, the blocks of each version kept in `step_versions`), and every
delivery records the version it was composed with (the engine writes it when it
marks the message `sending`, and holds back a group whose step got a newer
version before it goes on the wire):

- message (action): messages not yet sent use the new version, those sent keep theirs;
- schedule: rows still `planned` are re-planned from the new schedule, in the same
  transaction (`scheduler.planning.replan`); `sending` and later rows are untouched;
- audience of a follow-up: rows still planned are decided by the new terms when due
  (and re-planned: `send: now` with terms waits for them); the main step's segments:
  a `continuous` chain takes in the new audience from now on, a `once` chain keeps
  the audience it took at activation;
- conversion: applies to the messages of the new version; those sent keep theirs;
- channel: refused once the step has handed anything to a channel.

A step that has deliveries is stopped, not removed: its planned rows are skipped
("step stopped") and nobody is planned into it or past it; its blocks stay as they
were (saving one is refused). A step without any is removed, the steps after it move
up. A step is added at the end at any time. `preview_block`, `preview_stop`,
`preview_remove` and `step_options` weigh the same rules without writing, for a door
to show first.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from i18n import N_, Number, Phrase, _, ngettext, number
from models import audit, reasons
from models.chainfile import (
    BlockKind,
    ChainSpec,
    InvalidBlock,
    InvalidChainFile,
    Problem,
    StepSpec,
    terms_after_sms_refusal,
)
from models.chains import (
    blocks_of,
    checked_block,
    holdout_refusal,
    known_names,
    locked_step,
    missing_blocks,
    neighbour_blocks,
    read_chain_file,
    stored_block,
)
from models.db import Database
from models.errors import ChainmailError, NotFound
from models.facts import conversion_changed
from models.sms_parts import BARE_SMS, SmsFrame
from models.tables import (
    Chain,
    ChainStatus,
    Delivery,
    DeliveryStatus,
    Enrollment,
    Step,
    StepVersion,
    utcnow,
)
from models.templates import CUSTOMER_FIELDS, UnknownPlaceholder, unknown_placeholders
from scheduler import planning
from scheduler.steps import step_plan

# Statuses of messages composed with a version and handed to a channel (or about to be).
_COMPOSED = (
    DeliveryStatus.SENDING.value,
    DeliveryStatus.SENT.value,
    DeliveryStatus.UNCERTAIN.value,
)
_HANDED = (*_COMPOSED, DeliveryStatus.FAILED.value)

# What else a change means, beside its numbers (`Impact.notes`).
ONCE_KEEPS_AUDIENCE = "once-keeps-audience"
CONTINUOUS_TAKES_NEW_AUDIENCE = "continuous-takes-new-audience"
CONVERSION_FROM_NOW = "conversion-from-now"
DECIDED_BY_NEW_TERMS = "decided-by-new-terms"
NOTHING_SENT_YET = "nothing-sent-yet"


@dataclass(frozen=True)
class Impact:
    """What one change to one step does, in numbers."""

    position: int
    name: str
    # "saved" (blocks), "added", "removed", "stopped" or "renamed".
    change: str
    blocks: tuple[str, ...] = ()
    # The version a live step gets; None: changed in place (nothing planned or sent).
    version: int | None = None
    # Messages already composed with an older version: they keep it.
    kept: int = 0
    # Rows still planned: they get the new version, the new terms, or are skipped.
    to_go: int = 0
    replanned: int = 0
    first_due: datetime | None = None
    notes: tuple[str, ...] = ()

    def as_audit(self) -> dict[str, Any]:
        details = {
            "position": self.position,
            "change": self.change,
            "blocks": list(self.blocks),
            "version": self.version,
            "kept": self.kept,
            "to_go": self.to_go,
            "replanned": self.replanned,
            "first_due": self.first_due.isoformat() if self.first_due else None,
            "notes": list(self.notes),
        }
        return {key: value for key, value in details.items() if value not in (None, [], 0)}


@dataclass(frozen=True)
class Saved:
    warnings: list[Problem]
    impact: Impact


@dataclass(frozen=True)
class _Counts:
    total: int
    planned: int
    composed: int
    handed: int


async def _counts(session: AsyncSession, step_id: int) -> _Counts:
    """The step's deliveries by kind, as the change found them: read once per unit of
    work (a file weighed, then applied, reads them once), off the index on
    (step_id, status)."""
    known: dict[int, _Counts] = session.info.setdefault("step_counts", {})
    if step_id not in known:
        rows = Delivery.__table__.c
        by_status = dict(
            (
                await session.execute(
                    select(rows.status, func.count())
                    .where(rows.step_id == step_id)
                    .group_by(rows.status)
                )
            ).all()
        )
        known[step_id] = _Counts(
            total=sum(by_status.values()),
            planned=by_status.get(DeliveryStatus.PLANNED.value, 0),
            composed=sum(by_status.get(status, 0) for status in _COMPOSED),
            handed=sum(by_status.get(status, 0) for status in _HANDED),
        )
    return known[step_id]


def _channel(action: Mapping[str, Any] | None) -> str | None:
    return action.get("channel") if action else None


def _refusals(
    step: Step, blocks: Mapping[BlockKind, dict[str, Any]], counts: _Counts
) -> list[Problem]:
    if step.stopped_at is not None:
        return [
            Problem.of(
                "",
                N_(
                    "step {position} ({name}) is stopped: its blocks stay as they were."
                    " Add a step after it, or copy the chain and change the copy"
                ),
                position=step.position,
                name=step.name,
            )
        ]
    refused = []
    new_action = blocks.get(BlockKind.ACTION)
    old_channel, new_channel = _channel(step.action), _channel(new_action)
    if counts.handed and old_channel and new_channel and old_channel != new_channel:
        refused.append(
            Problem.of(
                "channel",
                N_(
                    "step {position} ({name}) has sent {count} messages by {old}: its channel"
                    " cannot change. Add a step with {new} after it, or copy the chain and"
                    " change the copy"
                ),
                position=step.position,
                name=step.name,
                count=Number(counts.handed),
                old=old_channel,
                new=new_channel,
            )
        )
    return refused


def _with_blocks(step: Step, blocks: Mapping[BlockKind, dict[str, Any]]) -> Step:
    """A detached copy of the step with the blocks changed: what a dry run plans with."""
    copy = Step(
        id=step.id,
        chain_id=step.chain_id,
        position=step.position,
        name=step.name,
        **blocks_of(step),
        version=step.version,
        stopped_at=step.stopped_at,
        created_at=step.created_at,
    )
    for kind, stored in blocks.items():
        setattr(copy, kind.value, stored)
    return copy


async def _snapshot(session: AsyncSession, step: Step) -> None:
    exists = await session.scalar(
        select(StepVersion.id).where(
            StepVersion.step_id == step.id, StepVersion.version == step.version
        )
    )
    if exists is None:
        session.add(StepVersion(step_id=step.id, version=step.version, **blocks_of(step)))


async def _change_blocks(
    session: AsyncSession,
    chain: Chain,
    step: Step,
    blocks: Mapping[BlockKind, dict[str, Any]],
    now: datetime,
    *,
    apply: bool,
    estimate: bool = True,
) -> Impact | None:
    """Save (or, with `apply` False, only weigh) new blocks of one step; None if none
    differs from what is saved. InvalidBlock when a change is refused. `estimate`
    False: a weighing that only looks for refusals skips reading the re-planned rows."""
    changed = {
        kind: stored for kind, stored in blocks.items() if getattr(step, kind.value) != stored
    }
    if not changed:
        return None
    counts = await _counts(session, step.id)
    refused = _refusals(step, changed, counts)
    if refused:
        raise InvalidBlock(refused)
    live = counts.total > 0
    notes: list[str] = []
    if not counts.handed:
        notes.append(NOTHING_SENT_YET)
    if BlockKind.AUDIENCE in changed:
        if step.position == 1:
            notes.append(
                CONTINUOUS_TAKES_NEW_AUDIENCE
                if chain.enrollment == Enrollment.CONTINUOUS
                else ONCE_KEEPS_AUDIENCE
            )
        elif counts.planned:
            notes.append(DECIDED_BY_NEW_TERMS)
    if BlockKind.CONVERSION in changed and counts.handed:
        notes.append(CONVERSION_FROM_NOW)
    replans = live and (
        BlockKind.SCHEDULE in changed or (BlockKind.AUDIENCE in changed and step.position > 1)
    )
    impact = Impact(
        step.position,
        step.name,
        "saved",
        tuple(kind.value for kind in BlockKind if kind in changed),
        step.version + 1 if live else None,
        kept=counts.composed,
        to_go=counts.planned,
        notes=tuple(notes),
    )
    if not apply:
        if estimate and replans and not missing_blocks(_with_blocks(step, changed)):
            weighed = await planning.replan(
                session, step_plan(_with_blocks(step, changed)), now, dry_run=True
            )
            impact = replace(impact, replanned=weighed.rows, first_due=weighed.first_due)
        return impact
    if live:
        await _snapshot(session, step)
        step.version += 1
    for kind, stored in changed.items():
        setattr(step, kind.value, stored)
    if live:
        await _snapshot(session, step)
    step.updated_at = chain.updated_at = utcnow()
    # Whoever the step may now reach is planned by the engine's next pass.
    step.plan_requested += 1
    await session.flush()
    if live and BlockKind.ACTION in changed:
        # Nothing was handed over (else refused above): planned rows take the channel.
        await session.execute(
            update(Delivery)
            .where(Delivery.step_id == step.id, Delivery.status == DeliveryStatus.PLANNED.value)
            .values(channel=_channel(step.action))
            .execution_options(synchronize_session=False)
        )
    if replans and not missing_blocks(step):
        done = await planning.replan(session, step_plan(step), now)
        impact = replace(impact, replanned=done.rows, first_due=done.first_due)
    if BlockKind.CONVERSION in changed:
        await conversion_changed(session, step.id)
    return impact


# --- One block (the bot's Save) ---------------------------------------------------


async def _checked_block(
    session: AsyncSession,
    step: Step,
    kind: BlockKind,
    data: Any,
    names: tuple[Collection[str] | None, Collection[str] | None],
    sms_frame: SmsFrame,
) -> tuple[dict[str, Any], list[Problem]]:
    """`checked_block` with the neighbours' saved blocks and the shop's names
    (`known_names`: segments, attributes)."""
    previous_action, next_audience = await neighbour_blocks(session, step.chain_id, step.position)
    return checked_block(
        step,
        kind,
        data,
        known_segments=names[0],
        known_attributes=names[1],
        sms_frame=sms_frame,
        previous_action=previous_action,
        next_audience=next_audience,
    )


async def preview_block(
    db: Database,
    chain_id: int,
    position: int,
    kind: BlockKind,
    data: Any,
    *,
    now: datetime | None = None,
    sms_frame: SmsFrame = BARE_SMS,
) -> Impact:
    """What saving the block would do, nothing written; InvalidBlock as `save_block`."""
    kind = BlockKind(kind)
    names = await known_names(db, kind)
    async with db.session() as session:
        chain = await _chain(session, chain_id)
        step = _step(chain, position)
        stored, _ = await _checked_block(session, step, kind, data, names, sms_frame)
        impact = await _change_blocks(
            session, chain, step, {kind: stored}, now or _now(), apply=False
        )
    return impact or Impact(position, step.name, "saved", ())


async def save_block(
    db: Database,
    chain_id: int,
    position: int,
    kind: BlockKind,
    data: Any,
    *,
    actor: str,
    now: datetime | None = None,
    sms_frame: SmsFrame = BARE_SMS,
) -> Saved:
    """Validate and save one block of a step, running or not; its warnings and impact,
    or InvalidBlock with every problem (paths relative to the block). `sms_frame`: the
    opt-out line and short links, counted in an SMS's parts."""
    kind = BlockKind(kind)
    names = await known_names(db, kind)
    async with db.writer() as session:
        chain, step = await locked_step(session, chain_id, position)
        stored, warnings = await _checked_block(session, step, kind, data, names, sms_frame)
        impact = await _change_blocks(
            session, chain, step, {kind: stored}, now or _now(), apply=True
        )
        impact = impact or Impact(position, step.name, "saved", ())
        audit.record(
            session,
            actor,
            "step.save",
            chain_id=chain_id,
            position=position,
            block=kind.value,
            data=stored,
            impact=impact.as_audit(),
        )
    return Saved(warnings, impact)


@dataclass(frozen=True)
class Placeholders:
    """The placeholders of a message no customer has (they come out empty), by field
    ("subject", "text", "html"), and the names that are known, to offer instead."""

    unknown: tuple[tuple[str, UnknownPlaceholder], ...]
    known: tuple[str, ...]


async def check_placeholders(db: Database, action: Mapping[str, Any]) -> Placeholders:
    """The unknown placeholders of an action block (as the chain file's warnings find
    them: neither a customer field nor an attribute key some customer has)."""
    names = await known_names(db, BlockKind.ACTION)
    known = CUSTOMER_FIELDS | set(names[1] or ())
    unknown = tuple(
        (key, found)
        for key in ("subject", "text", "html")
        if isinstance(action.get(key), str)
        for found in unknown_placeholders(action[key], known)
    )
    fields_first = sorted(CUSTOMER_FIELDS) + sorted(known - CUSTOMER_FIELDS)
    return Placeholders(unknown, tuple(fields_first))


# --- Stopping and removing a step -----------------------------------------------------


def _stop_refusal(step: Step, counts: _Counts) -> Phrase | None:
    """Why the step cannot be stopped, or None: only a step with messages can be, once."""
    if step.stopped_at is not None:
        return Phrase(
            N_("step {position} ({name}) is already stopped"),
            position=step.position,
            name=step.name,
        )
    if not counts.total:
        return Phrase(
            N_("step {position} ({name}) has no messages yet: remove it instead"),
            position=step.position,
            name=step.name,
        )
    return None


def _remove_refusal(step: Step, counts: _Counts, last: int) -> Phrase | None:
    """Why the step cannot be removed, or None. `last`: the chain's last position."""
    if counts.total:
        return Phrase(
            N_("step {position} ({name}) has {count} messages: it cannot be removed, only stopped"),
            position=step.position,
            name=step.name,
            count=Number(counts.total),
        )
    if step.position == 1 and last > 1:
        return Phrase(N_("the main step cannot be removed while other steps follow it"))
    return None


def _stopped(step: Step, counts: _Counts, skipped: int) -> Impact:
    return Impact(step.position, step.name, "stopped", kept=counts.composed, to_go=skipped)


async def _stop(
    session: AsyncSession, chain: Chain, step: Step, now: datetime, *, apply: bool
) -> Impact:
    counts = await _counts(session, step.id)
    refused = _stop_refusal(step, counts)
    if refused:
        raise ChainmailError(refused)
    skipped = counts.planned
    if apply:
        result = await session.execute(
            update(Delivery)
            .where(Delivery.step_id == step.id, Delivery.status == DeliveryStatus.PLANNED.value)
            .values(
                status=DeliveryStatus.SKIPPED.value,
                reason=reasons.STEP_STOPPED,
                claimed_by=None,
                version=step.version,
            )
            .execution_options(synchronize_session=False)
        )
        skipped = max(result.rowcount or 0, 0)
        step.stopped_at = now
        step.updated_at = chain.updated_at = utcnow()
    return _stopped(step, counts, skipped)


async def preview_stop(db: Database, chain_id: int, position: int) -> Impact:
    """What `stop_step` would do, nothing written: `to_go` planned rows would be skipped,
    `kept` messages stay sent. ChainmailError as `stop_step`."""
    async with db.session() as session:
        chain = await _chain(session, chain_id)
        return await _stop(session, chain, _step(chain, position), _now(), apply=False)


async def stop_step(
    db: Database, chain_id: int, position: int, *, actor: str, now: datetime | None = None
) -> Impact:
    """Stop a step that has deliveries: its planned rows are skipped ("step stopped") and
    nobody is planned into it or past it. What was sent stays sent."""
    async with db.writer() as session:
        chain, step = await locked_step(session, chain_id, position)
        impact = await _stop(session, chain, step, now or _now(), apply=True)
        audit.record(session, actor, "step.stop", chain_id=chain_id, **impact.as_audit())
    return impact


async def _remove(session: AsyncSession, chain: Chain, step: Step, *, apply: bool) -> Impact:
    counts = await _counts(session, step.id)
    last = await session.scalar(select(func.max(Step.position)).where(Step.chain_id == chain.id))
    refused = _remove_refusal(step, counts, last or 1)
    if refused:
        raise ChainmailError(refused)
    # The step after it would follow the step before it: its terms must fit that one.
    previous_action, next_audience = await neighbour_blocks(session, chain.id, step.position)
    refused = terms_after_sms_refusal(
        stored_block(BlockKind.AUDIENCE, next_audience, step.position + 1),
        stored_block(BlockKind.ACTION, previous_action, step.position - 1),
        step.position,
    )
    if refused:
        raise ChainmailError(
            N_("step {next} would follow step {previous}: {refused}"),
            next=step.position + 1,
            previous=step.position - 1,
            refused=refused,
        )
    if apply:
        await session.delete(step)
        await session.flush()
        # Two moves, as the positions are unique at every moment.
        later = (Step.chain_id == chain.id, Step.position > step.position)
        await session.execute(
            update(Step)
            .where(*later)
            .values(position=-Step.position)
            .execution_options(synchronize_session=False)
        )
        await session.execute(
            update(Step)
            .where(Step.chain_id == chain.id, Step.position < 0)
            .values(position=-Step.position - 1, plan_requested=Step.plan_requested + 1)
            .execution_options(synchronize_session=False)
        )
        chain.updated_at = utcnow()
    return Impact(step.position, step.name, "removed")


async def preview_remove(db: Database, chain_id: int, position: int) -> Impact:
    """What `remove_step` would do, nothing written; ChainmailError as `remove_step`."""
    async with db.session() as session:
        chain = await _chain(session, chain_id)
        return await _remove(session, chain, _step(chain, position), apply=False)


async def remove_step(db: Database, chain_id: int, position: int, *, actor: str) -> Impact:
    """Remove a step no message has come of; the steps after it move up one."""
    async with db.writer() as session:
        chain, step = await locked_step(session, chain_id, position)
        impact = await _remove(session, chain, step, apply=True)
        audit.record(session, actor, "step.remove", chain_id=chain_id, **impact.as_audit())
    return impact


@dataclass(frozen=True)
class StepOptions:
    """What may be done to a whole step now, weighed by the rules above: what stopping it
    would do (None: it cannot be stopped) and removing it (None: it cannot be removed)."""

    stop: Impact | None
    remove: Impact | None


async def step_options(db: Database, chain_id: int, position: int) -> StepOptions:
    """Whether the step can be stopped or removed, nothing written (a screen's buttons)."""
    async with db.session() as session:
        chain = await _chain(session, chain_id)
        step = _step(chain, position)
        counts = await _counts(session, step.id)
    last = max(other.position for other in chain.steps)
    return StepOptions(
        stop=None if _stop_refusal(step, counts) else _stopped(step, counts, counts.planned),
        remove=None
        if _remove_refusal(step, counts, last)
        else Impact(step.position, step.name, "removed"),
    )


# --- A whole chain file (`chainmail chains update`) -------------------------------


@dataclass
class _Plan:
    """The changes a chain file makes, weighed: applied only if nothing is refused."""

    impacts: list[Impact] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def _step_blocks(spec: StepSpec) -> dict[BlockKind, dict[str, Any]]:
    return {
        BlockKind.AUDIENCE: spec.audience.to_block(),
        BlockKind.ACTION: spec.action.to_block(),
        BlockKind.SCHEDULE: spec.schedule.to_block(),
        BlockKind.CONVERSION: spec.conversion.to_block(),
    }


async def _weigh_or_apply(
    session: AsyncSession,
    chain: Chain,
    spec: ChainSpec,
    now: datetime,
    *,
    apply: bool,
    estimate: bool = True,
) -> _Plan:
    plan = _Plan()
    if chain.enrollment != spec.enrollment and chain.status != ChainStatus.DRAFT:
        plan.problems.append(
            Problem.of(
                "enrollment",
                N_(
                    "the chain is {status}: enrollment ({enrollment}) can only change before"
                    " activation"
                ),
                status=chain.status,
                enrollment=chain.enrollment,
            )
        )
    holdout = holdout_refusal(chain, spec.holdout_percent)
    if holdout is not None:
        plan.problems.append(Problem.of("holdout_percent", holdout.phrase))
    steps = list(chain.steps)
    for index, step_spec in enumerate(spec.steps):
        path = f"steps[{index}]"
        if index >= len(steps):
            plan.impacts.append(Impact(index + 1, step_spec.name, "added"))
            if apply:
                session.add(
                    Step(
                        chain_id=chain.id,
                        position=index + 1,
                        name=step_spec.name,
                        **{kind.value: block for kind, block in _step_blocks(step_spec).items()},
                        stopped_at=now if step_spec.stopped else None,
                    )
                )
                chain.updated_at = utcnow()
            continue
        step = steps[index]
        if step.name != step_spec.name:
            plan.impacts.append(Impact(step.position, step_spec.name, "renamed"))
            if apply:
                step.name = step_spec.name
                step.updated_at = chain.updated_at = utcnow()
        try:
            impact = await _change_blocks(
                session, chain, step, _step_blocks(step_spec), now, apply=apply, estimate=estimate
            )
        except InvalidBlock as refused:
            plan.problems += [_in_file(path, problem) for problem in refused.problems]
        else:
            if impact is not None:
                plan.impacts.append(impact)
        if step_spec.stopped and step.stopped_at is None:
            try:
                plan.impacts.append(await _stop(session, chain, step, now, apply=apply))
            except ChainmailError as refused:
                plan.problems.append(Problem.of(f"{path}.stopped", refused.phrase))
        elif not step_spec.stopped and step.stopped_at is not None:
            plan.problems.append(
                Problem.of(
                    f"{path}.stopped",
                    N_(
                        "step {position} ({name}) was stopped and stays stopped: add a new step"
                        " instead"
                    ),
                    position=step.position,
                    name=step.name,
                )
            )
    for step in reversed(steps[len(spec.steps) :]):
        try:
            plan.impacts.append(await _remove(session, chain, step, apply=apply))
        except ChainmailError as refused:
            plan.problems.append(
                Problem.of(
                    f"steps[{step.position - 1}]",
                    N_("{refused}: mark it `stopped: true`"),
                    refused=refused.phrase,
                )
            )
    if apply:
        chain.name = spec.name
        chain.campaign_tag = spec.campaign
        chain.utm_enabled = spec.utm
        chain.enrollment = spec.enrollment
        chain.holdout_percent = spec.holdout_percent
        chain.updated_at = utcnow()
    return plan


def _at(prefix: str, problem: Problem) -> Problem:
    return replace(problem, path=prefix if not problem.path else f"{prefix}.{problem.path}")


def _in_file(path: str, problem: Problem) -> Problem:
    """A refused change of a step's blocks, placed in the chain file: a channel switch
    under the step's action, a stopped step's change on the step itself."""
    return _at(f"{path}.action" if problem.path else path, problem)


async def update_chain(
    db: Database,
    chain_id: int,
    yaml_text: str,
    *,
    actor: str,
    dry_run: bool = False,
    now: datetime | None = None,
    sms_frame: SmsFrame = BARE_SMS,
) -> list[Impact]:
    """Apply a chain file to an existing chain, running or not, step by step as the
    rules above say: all or nothing. InvalidChainFile lists every problem of the file
    and every refused change, and nothing is applied. `dry_run`: the impact only."""
    now = now or _now()
    spec, _ = await read_chain_file(db, yaml_text, sms_frame=sms_frame)
    if dry_run:
        async with db.session() as session:
            plan = await _weigh_or_apply(
                session, await _chain(session, chain_id), spec, now, apply=False
            )
        if plan.problems:
            raise InvalidChainFile(plan.problems)
        return plan.impacts
    async with db.writer() as session:
        chain = await _chain(session, chain_id, lock=True)
        # Refusals first, all of them, before anything is written.
        weighed = await _weigh_or_apply(session, chain, spec, now, apply=False, estimate=False)
        if weighed.problems:
            raise InvalidChainFile(weighed.problems)
        plan = await _weigh_or_apply(session, chain, spec, now, apply=True)
        audit.record(
            session,
            actor,
            "chain.update",
            chain_id=chain_id,
            document=spec.to_document(),
            impacts=[impact.as_audit() for impact in plan.impacts],
        )
    return plan.impacts


# --- Shared -------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


async def _chain(session: AsyncSession, chain_id: int, *, lock: bool = False) -> Chain:
    query = select(Chain).where(Chain.id == chain_id).options(selectinload(Chain.steps))
    if lock:
        query = query.with_for_update()
    chain = await session.scalar(query)
    if chain is None:
        raise NotFound(N_("there is no chain {id}"), id=chain_id)
    return chain


def _step(chain: Chain, position: int) -> Step:
    for step in chain.steps:
        if step.position == position:
            return step
    raise NotFound(N_("chain {id} has no step {position}"), id=chain.id, position=position)


# --- In words (the CLI and the bot alike) -----------------------------------------------


# The blocks as an impact line names them.
BLOCK_WORDS = {
    BlockKind.AUDIENCE.value: N_("audience"),
    BlockKind.ACTION.value: N_("action"),
    BlockKind.SCHEDULE.value: N_("schedule"),
    BlockKind.CONVERSION.value: N_("conversion"),
}


def _when(first_due: datetime, now: datetime) -> str:
    ahead = first_due - now
    if ahead <= timedelta(seconds=30):
        return _("now")
    minutes = round(ahead.total_seconds() / 60)
    if minutes < 90:
        return ngettext("in {count} minute", "in {count} minutes", minutes).format(count=minutes)
    hours = round(minutes / 60)
    if hours < 48:
        return ngettext("in {count} hour", "in {count} hours", hours).format(count=hours)
    days = round(hours / 24)
    return ngettext("in {count} day", "in {count} days", days).format(count=days)


def describe(impact: Impact, now: datetime) -> str:
    """One line for a person, in the current language: what the change does, in numbers."""
    where = _("step {position} ({name})").format(position=impact.position, name=impact.name)
    kept, to_go = number(impact.kept), number(impact.to_go)
    if impact.change == "added":
        return _("{step}: added at the end").format(step=where)
    if impact.change == "removed":
        return _("{step}: removed (no message had come of it); the steps after it move up").format(
            step=where
        )
    if impact.change == "renamed":
        return _("{step}: renamed").format(step=where)
    if impact.change == "stopped":
        return _(
            "{step}: stopped: {to_go} waiting skipped, nobody moves past it; the {kept} sent"
            " stay sent"
        ).format(step=where, to_go=to_go, kept=kept)
    if not impact.blocks:
        return _("{step}: nothing changes").format(step=where)
    changed = ", ".join(_(BLOCK_WORDS[block]) for block in impact.blocks)
    if impact.version is None:
        return _("{step}: {blocks} saved (nothing planned or sent yet)").format(
            step=where, blocks=changed
        )
    parts = [
        _("{step}: {blocks} → version {version}").format(
            step=where, blocks=changed, version=impact.version
        )
    ]
    if BlockKind.ACTION.value in impact.blocks:
        parts.append(
            _(
                "{kept} already got the old text and keep it · {to_go} still to go get the new one"
            ).format(kept=kept, to_go=to_go)
        )
    if impact.replanned or BlockKind.SCHEDULE.value in impact.blocks:
        waiting = _("{count} waiting re-planned").format(count=number(impact.replanned))
        if impact.first_due is not None:
            waiting = _("{waiting}: the first go out {when}").format(
                waiting=waiting, when=_when(impact.first_due, now)
            )
        parts.append(waiting)
    notes = {
        ONCE_KEEPS_AUDIENCE: _(
            "a once chain keeps the audience it took at activation: the new segments reach"
            " nobody new"
        ),
        CONTINUOUS_TAKES_NEW_AUDIENCE: _(
            "the chain takes in the new audience from now on; those already in stay in"
        ),
        DECIDED_BY_NEW_TERMS: _("{count} waiting are decided by the new terms").format(count=to_go),
        CONVERSION_FROM_NOW: _(
            "the new conversion counts for messages of version {version} on; the {kept} sent"
            " keep theirs"
        ).format(version=impact.version, kept=kept),
    }
    parts += [notes[note] for note in impact.notes if note in notes]
    return " · ".join(parts)
