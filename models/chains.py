"""Chains and their steps: import and export chain files, create, copy, edit block by block.

Steps keep each block as the canonical JSON of models.chainfile, saved only
after the same validation a chain file goes through; positions count from 1
(the main step). Every change is written to the audit log in its transaction.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from i18n import N_, Phrase, Phrases
from models import audit
from models.chainfile import (
    MAX_HOLDOUT,
    NAME_LIMIT,
    OPENED_AFTER_SMS_CODE,
    SEND_NOW_LATER_CODE,
    SMS_BEFORE_OPENED_CODE,
    Action,
    Audience,
    Block,
    BlockKind,
    ChainSpec,
    Conversion,
    InvalidBlock,
    InvalidChainFile,
    Problem,
    Schedule,
    SmsAction,
    StepSpec,
    TermsAudience,
    default_campaign,
    dump_yaml,
    email_only_terms,
    holdout_percent_problem,
    later_only_terms,
    load_yaml,
    send_now_refusal,
    sms_before_terms_refusal,
    terms_after_sms_refusal,
    validate_block,
    validate_chain,
    validate_name,
)
from models.db import Database
from models.errors import ChainmailError, NotFound
from models.segments import segment_names
from models.sms_parts import BARE_SMS, SmsFrame
from models.tables import Chain, ChainStatus, Enrollment, Step, utcnow


@dataclass(frozen=True)
class ImportResult:
    chain_id: int
    warnings: list[Problem]


@dataclass(frozen=True)
class ChainSummary:
    id: int
    name: str
    status: ChainStatus
    steps: int
    # Why the engine paused it, if it did.
    hold_reason: str | None = None


def missing_blocks(step: Any) -> tuple[BlockKind, ...]:
    """The blocks a step (a Step row or a StepView) still lacks: the one definition of
    "complete". A step is sent only when this is empty."""
    return tuple(kind for kind in BlockKind if getattr(step, kind.value) is None)


def blocks_of(step: Step) -> dict[str, Any]:
    """The step's four block columns by name, as stored: to copy them to another row."""
    return {kind.value: getattr(step, kind.value) for kind in BlockKind}


@dataclass(frozen=True)
class StepView:
    id: int
    position: int
    name: str
    # None: not saved yet.
    audience: Audience | None
    action: Action | None
    schedule: Schedule | None
    conversion: Conversion | None
    # The version its messages are composed with now; stopped in a running chain.
    version: int = 1
    stopped: bool = False

    @property
    def missing(self) -> tuple[BlockKind, ...]:
        return missing_blocks(self)


@dataclass(frozen=True)
class ChainView:
    id: int
    name: str
    status: ChainStatus
    enrollment: Enrollment
    campaign_tag: str
    utm_enabled: bool
    steps: tuple[StepView, ...]
    hold_reason: str | None = None
    holdout_percent: int = 0


# --- Reading ------------------------------------------------------------------------


async def known_attribute_keys(session: AsyncSession, latest: int | None = None) -> set[str]:
    """Every attribute key some customer has, found by the database in one pass; or
    only those of the `latest` customers added (a screen's choices: a full pass reads
    every customer, about 0.35 s a million)."""
    customers = "customers"
    if latest is not None:
        customers = f"(SELECT attributes FROM customers ORDER BY id DESC LIMIT {int(latest)})"
    if session.bind.dialect.name == "sqlite":
        query = (
            f"SELECT DISTINCT a.key FROM {customers} AS c, json_each(c.attributes) AS a"
            " WHERE json_type(c.attributes) = 'object'"
        )
    else:
        # The guard keeps a JSON null or list in one row from failing the whole query.
        query = (
            f"SELECT DISTINCT a.key FROM {customers} AS c CROSS JOIN LATERAL jsonb_object_keys("
            " CASE WHEN jsonb_typeof(c.attributes::jsonb) = 'object'"
            " THEN c.attributes::jsonb ELSE '{}'::jsonb END) AS a(key)"
        )
    return set(await session.scalars(text(query)))


def stored_block(kind: BlockKind, data: dict[str, Any] | None, position: int) -> Any:
    """A block as saved in a Step column, typed (an Audience, Action, …); None if unsaved.

    Saved blocks passed validation; segments are not looked up again, since a
    segment in use cannot be deleted.
    """
    if data is None:
        return None
    checked = validate_block(kind, data, position=position, stored=True)
    if checked.value is None:
        raise ValueError(f"stored {kind} of step {position} is invalid: {checked.problems}")
    return checked.value


def _step_view(step: Step) -> StepView:
    return StepView(
        id=step.id,
        position=step.position,
        name=step.name,
        audience=stored_block(BlockKind.AUDIENCE, step.audience, step.position),
        action=stored_block(BlockKind.ACTION, step.action, step.position),
        schedule=stored_block(BlockKind.SCHEDULE, step.schedule, step.position),
        conversion=stored_block(BlockKind.CONVERSION, step.conversion, step.position),
        version=step.version,
        stopped=step.stopped_at is not None,
    )


async def get_chain(db: Database, chain_id: int) -> ChainView:
    async with db.session() as session:
        chain = await session.scalar(
            select(Chain).where(Chain.id == chain_id).options(selectinload(Chain.steps))
        )
    if chain is None:
        raise NotFound(N_("there is no chain {id}"), id=chain_id)
    return ChainView(
        id=chain.id,
        name=chain.name,
        status=ChainStatus(chain.status),
        enrollment=Enrollment(chain.enrollment),
        campaign_tag=chain.campaign_tag,
        utm_enabled=chain.utm_enabled,
        steps=tuple(_step_view(step) for step in chain.steps),
        hold_reason=chain.hold_reason,
        holdout_percent=chain.holdout_percent,
    )


async def list_chains(db: Database) -> list[ChainSummary]:
    async with db.session() as session:
        rows = await session.execute(
            select(Chain.id, Chain.name, Chain.status, func.count(Step.id), Chain.hold_reason)
            .outerjoin(Step, Step.chain_id == Chain.id)
            .group_by(Chain.id, Chain.name, Chain.status, Chain.hold_reason)
            .order_by(Chain.id)
        )
        return [
            ChainSummary(id_, name, ChainStatus(status), n, held)
            for id_, name, status, n, held in rows
        ]


# --- Files ----------------------------------------------------------------------------


async def read_chain_file(
    db: Database, yaml_text: str, *, sms_frame: SmsFrame = BARE_SMS
) -> tuple[ChainSpec, list[Problem]]:
    """A chain file checked against this shop's segments and attributes, and its
    warnings; InvalidChainFile lists every problem. `sms_frame`: the opt-out line
    and short links, counted in each SMS's parts."""
    doc = load_yaml(yaml_text)
    async with db.session() as session:
        known_segments = await segment_names(session)
        known_attributes = await known_attribute_keys(session)
    checked = validate_chain(
        doc,
        known_segments=known_segments,
        known_attributes=known_attributes,
        sms_frame=sms_frame,
    )
    if checked.value is None:
        raise InvalidChainFile(checked.problems)
    return checked.value, checked.warnings


async def import_chain(
    db: Database, yaml_text: str, *, actor: str, sms_frame: SmsFrame = BARE_SMS
) -> ImportResult:
    """A new draft chain from a chain file; InvalidChainFile lists every problem."""
    spec, warnings = await read_chain_file(db, yaml_text, sms_frame=sms_frame)
    async with db.writer() as session:
        chain = Chain(
            name=spec.name,
            enrollment=spec.enrollment,
            campaign_tag=spec.campaign,
            utm_enabled=spec.utm,
            holdout_percent=spec.holdout_percent,
        )
        session.add(chain)
        await session.flush()
        for position, step in enumerate(spec.steps, start=1):
            session.add(
                Step(
                    chain_id=chain.id,
                    position=position,
                    name=step.name,
                    audience=step.audience.to_block(),
                    action=step.action.to_block(),
                    schedule=step.schedule.to_block(),
                    conversion=step.conversion.to_block(),
                    stopped_at=utcnow() if step.stopped else None,
                )
            )
        audit.record(session, actor, "chain.import", chain_id=chain.id, document=spec.to_document())
    return ImportResult(chain.id, warnings)


def chain_spec(chain: ChainView) -> ChainSpec:
    """The chain as a complete document; refused while a step still lacks a block."""
    if not chain.steps:
        raise ChainmailError(N_("chain {id} has no steps yet"), id=chain.id)
    steps: list[StepSpec] = []
    gaps: list[Phrase] = []
    for step in chain.steps:
        if step.missing:
            gaps.append(
                Phrase(
                    N_("step {position} ({name}) has no {blocks}"),
                    position=step.position,
                    name=step.name,
                    blocks=", ".join(step.missing),
                )
            )
            continue
        blocks = (step.audience, step.action, step.schedule, step.conversion)
        steps.append(
            StepSpec(
                step.name,
                *cast(tuple[Audience, Action, Schedule, Conversion], blocks),
                stopped=step.stopped,
            )
        )
    if gaps:
        raise ChainmailError(
            N_("chain {id} is not complete: {gaps}"), id=chain.id, gaps=Phrases(gaps, "; ")
        )
    return ChainSpec(
        name=chain.name,
        enrollment=chain.enrollment,
        campaign=chain.campaign_tag,
        utm=chain.utm_enabled,
        steps=tuple(steps),
        holdout_percent=chain.holdout_percent,
    )


async def export_chain(db: Database, chain_id: int) -> str:
    """The chain file (YAML) of a complete chain; importing it gives the same chain."""
    return dump_yaml(chain_spec(await get_chain(db, chain_id)).to_document())


# --- Editing ----------------------------------------------------------------------


def _checked_name(name: str) -> str:
    checked = validate_name(name)
    if checked.value is None:
        raise InvalidBlock(checked.problems)
    return checked.value


async def _locked_chain(session: AsyncSession, chain_id: int) -> Chain:
    # FOR UPDATE on PostgreSQL serialises step changes of one chain (SQLite's
    # writer transaction already does); it is left out on SQLite.
    chain = await session.scalar(select(Chain).where(Chain.id == chain_id).with_for_update())
    if chain is None:
        raise NotFound(N_("there is no chain {id}"), id=chain_id)
    return chain


async def _step_at(session: AsyncSession, chain_id: int, position: int) -> Step:
    step = await session.scalar(
        select(Step).where(Step.chain_id == chain_id, Step.position == position)
    )
    if step is None:
        raise NotFound(N_("chain {id} has no step {position}"), id=chain_id, position=position)
    return step


async def create_chain(db: Database, name: str, *, actor: str) -> int:
    """A new, empty draft chain; its campaign tag comes from its name."""
    name = _checked_name(name)
    async with db.writer() as session:
        chain = Chain(name=name, campaign_tag=default_campaign(name))
        session.add(chain)
        await session.flush()
        audit.record(session, actor, "chain.create", chain_id=chain.id, name=name)
    return chain.id


async def copy_chain(db: Database, chain_id: int, *, actor: str, name: str | None = None) -> int:
    """A new draft with the same steps, saved blocks as they are; «X (copy)» by default."""
    async with db.writer() as session:
        source = await session.scalar(
            select(Chain).where(Chain.id == chain_id).options(selectinload(Chain.steps))
        )
        if source is None:
            raise NotFound(N_("there is no chain {id}"), id=chain_id)
        suffix = " (copy)"
        name = _checked_name(name or source.name[: NAME_LIMIT - len(suffix)] + suffix)
        copy = Chain(
            name=name,
            enrollment=source.enrollment,
            campaign_tag=default_campaign(name),
            utm_enabled=source.utm_enabled,
            holdout_percent=source.holdout_percent,
        )
        session.add(copy)
        await session.flush()
        for step in source.steps:
            session.add(
                Step(
                    chain_id=copy.id,
                    position=step.position,
                    name=step.name,
                    stopped_at=step.stopped_at,
                    **blocks_of(step),
                )
            )
        audit.record(session, actor, "chain.copy", chain_id=copy.id, source_id=chain_id)
    return copy.id


async def add_step(db: Database, chain_id: int, name: str, *, actor: str) -> StepView:
    """A step after the last one (the main step if the chain has none), its blocks unsaved.

    Conversion starts with its defaults, so a new step lacks only three blocks.
    """
    name = _checked_name(name)
    async with db.writer() as session:
        chain = await _locked_chain(session, chain_id)
        last = await session.scalar(
            select(func.max(Step.position)).where(Step.chain_id == chain_id)
        )
        step = Step(
            chain_id=chain_id,
            position=(last or 0) + 1,
            name=name,
            conversion=Conversion().to_block(),
        )
        session.add(step)
        chain.updated_at = utcnow()
        await session.flush()
        audit.record(
            session, actor, "step.add", chain_id=chain_id, position=step.position, name=name
        )
        return _step_view(step)


async def rename_step(db: Database, chain_id: int, position: int, name: str, *, actor: str) -> None:
    name = _checked_name(name)
    async with db.writer() as session:
        chain = await _locked_chain(session, chain_id)
        step = await _step_at(session, chain_id, position)
        audit.record(
            session,
            actor,
            "step.rename",
            chain_id=chain_id,
            position=position,
            old=step.name,
            new=name,
        )
        step.name = name
        step.updated_at = chain.updated_at = utcnow()


async def known_names(
    db: Database, kind: BlockKind
) -> tuple[Collection[str] | None, Collection[str] | None]:
    """The segments and attribute keys a block of this kind is checked against."""
    async with db.session() as session:
        if kind is BlockKind.AUDIENCE:
            return await segment_names(session), None
        if kind is BlockKind.ACTION:
            return None, await known_attribute_keys(session)
    return None, None


def checked_block(
    step: Step,
    kind: BlockKind,
    data: Any,
    *,
    known_segments: Collection[str] | None,
    known_attributes: Collection[str] | None,
    sms_frame: SmsFrame = BARE_SMS,
    previous_action: dict[str, Any] | None = None,
    next_audience: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], list[Problem]]:
    """One block for `step` as it would be stored, and its warnings; InvalidBlock lists
    every problem, with paths relative to the block. `sms_frame`: the opt-out line and
    short links, counted in an SMS's parts.

    Audience and schedule are checked together: `send: now` cannot go with terms
    known only later, whichever of the two is saved second. So are terms and the
    previous step's action (`previous_action`, `next_audience`: the neighbours' saved
    blocks, `neighbour_blocks`): no `opened` after an SMS, whichever is saved second.
    """
    position = step.position
    saved_audience = stored_block(BlockKind.AUDIENCE, step.audience, position)
    checked = validate_block(
        kind,
        data,
        position=position,
        known_segments=known_segments,
        known_attributes=known_attributes,
        audience=saved_audience,
        sms_frame=sms_frame,
    )
    problems = list(checked.problems)
    block: Block | None = checked.value
    if isinstance(block, TermsAudience) and step.schedule is not None:
        saved_schedule: Schedule = stored_block(BlockKind.SCHEDULE, step.schedule, position)
        refusal = send_now_refusal(block, saved_schedule.send)
        if refusal:
            later = tuple(term.value for term in later_only_terms(block))
            problems.append(Problem.of("terms", refusal, SEND_NOW_LATER_CODE, later))
    if isinstance(block, TermsAudience):
        previous = stored_block(BlockKind.ACTION, previous_action, position - 1)
        refusal = terms_after_sms_refusal(block, previous, position)
        if refusal:
            about = email_only_terms(block, previous)
            problems.append(Problem.of("terms", refusal, OPENED_AFTER_SMS_CODE, about))
    if isinstance(block, SmsAction):
        following = stored_block(BlockKind.AUDIENCE, next_audience, position + 1)
        refusal = sms_before_terms_refusal(block, following, position)
        if refusal:
            about = (str(position + 1), *email_only_terms(following, block))
            problems.append(Problem.of("channel", refusal, SMS_BEFORE_OPENED_CODE, about))
    if problems or block is None:
        raise InvalidBlock(problems)
    return block.to_block(), checked.warnings


async def neighbour_blocks(
    session: AsyncSession, chain_id: int, position: int
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The saved action of the step before `position` and the saved audience of the one
    after it, as `checked_block` takes them (None where there is none)."""
    rows = await session.execute(
        select(Step.position, Step.action, Step.audience).where(
            Step.chain_id == chain_id, Step.position.in_([position - 1, position + 1])
        )
    )
    previous_action = next_audience = None
    for at, action, audience in rows:
        if at == position - 1:
            previous_action = action
        else:
            next_audience = audience
    return previous_action, next_audience


async def locked_step(session: AsyncSession, chain_id: int, position: int) -> tuple[Chain, Step]:
    """The chain, locked for a change of its steps, and its step at `position`."""
    chain = await _locked_chain(session, chain_id)
    return chain, await _step_at(session, chain_id, position)


async def rename_chain(db: Database, chain_id: int, name: str, *, actor: str) -> None:
    """A new name; a campaign tag that followed the old name follows the new one."""
    name = _checked_name(name)
    async with db.writer() as session:
        chain = await _locked_chain(session, chain_id)
        audit.record(session, actor, "chain.rename", chain_id=chain_id, old=chain.name, new=name)
        if chain.campaign_tag == default_campaign(chain.name):
            chain.campaign_tag = default_campaign(name)
        chain.name = name
        chain.updated_at = utcnow()


async def set_enrollment(
    db: Database, chain_id: int, enrollment: Enrollment, *, actor: str
) -> None:
    """`once` or `continuous`; only before activation, when the audience is taken."""
    enrollment = Enrollment(enrollment)
    async with db.writer() as session:
        chain = await _locked_chain(session, chain_id)
        if chain.status != ChainStatus.DRAFT and chain.enrollment != enrollment:
            raise ChainmailError(
                N_("chain {id} is {status}; enrollment can only change before activation"),
                id=chain_id,
                status=chain.status,
            )
        audit.record(session, actor, "chain.enrollment", chain_id=chain_id, enrollment=enrollment)
        chain.enrollment = enrollment
        chain.updated_at = utcnow()


# The refusals of `set_holdout`, and of a chain file applied to a running chain.
NOT_A_HOLDOUT = N_("a holdout of {value} is not a whole number of percent from 0 to {max}")
HOLDOUT_FIXED = N_(
    "the holdout of chain {id} ({percent}%) is fixed since its activation: changing it would"
    " move customers between the groups being compared. Copy the chain to start another one"
)


def holdout_refusal(chain: Chain, percent: int) -> ChainmailError | None:
    """Why `chain` cannot take `percent` as its holdout, or None. Only a draft's may
    change: once activated, the share decides who was emailed and who was held out."""
    if percent == chain.holdout_percent or chain.status == ChainStatus.DRAFT:
        return None
    return ChainmailError(HOLDOUT_FIXED, id=chain.id, percent=chain.holdout_percent)


async def set_holdout(db: Database, chain_id: int, percent: Any, *, actor: str) -> None:
    """The share of the main step's audience held out (0–50), while the chain is a draft."""
    if holdout_percent_problem(percent) is not None:
        raise ChainmailError(NOT_A_HOLDOUT, value=percent, max=MAX_HOLDOUT)
    async with db.writer() as session:
        chain = await _locked_chain(session, chain_id)
        refusal = holdout_refusal(chain, percent)
        if refusal is not None:
            raise refusal
        audit.record(session, actor, "chain.holdout", chain_id=chain_id, holdout_percent=percent)
        chain.holdout_percent = percent
        chain.updated_at = utcnow()
