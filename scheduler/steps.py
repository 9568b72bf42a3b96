"""A step's saved blocks, read once per tick into the plain values the engine plans with."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from i18n import N_
from models.chainfile import (
    Action,
    BlockKind,
    Conversion,
    EmailAction,
    Schedule,
    SegmentsAudience,
    Send,
    TermsAudience,
)
from models.chains import missing_blocks, stored_block
from models.errors import ChainmailError
from models.tables import Step


@dataclass(frozen=True)
class StepPlan:
    step_id: int
    chain_id: int
    position: int
    name: str
    created_at: datetime
    action: Action
    schedule: Schedule
    conversion: Conversion
    segments: tuple[str, ...]
    # "segments" (main step), "all" (everyone the previous step reached) or "terms".
    who: str
    terms: tuple[str, ...]
    match: str
    # The version its messages are composed with; a stopped step takes nobody in.
    version: int = 1
    stopped: bool = False
    # The chain's holdout_percent on its main step (0 on the others): the claim holds
    # those customers out (models/holdout.py).
    holdout_percent: int = 0

    @property
    def channel(self) -> str:
        return self.action.channel.value

    @property
    def send(self) -> str:
        return self.schedule.send.value

    @property
    def after_seconds(self) -> int:
        after = self.schedule.after
        return int(after.total_seconds()) if after is not None else 0

    @property
    def at_local(self) -> datetime | None:
        return self.schedule.at

    @property
    def wait_seconds(self) -> int:
        return self.schedule.wait_days * 86400

    @property
    def waits_for_terms(self) -> bool:
        """`send: now` with terms: sent the moment the terms come true, within wait_days."""
        return self.who == "terms" and self.schedule.send is Send.NOW

    @property
    def is_email(self) -> bool:
        return isinstance(self.action, EmailAction)


def step_plan(step: Step, holdout_percent: int = 0) -> StepPlan:
    """Plain values of a step whose audience, action and schedule are saved;
    `holdout_percent`: its chain's, for the main step."""
    if missing_blocks(step):
        raise ChainmailError(
            N_("step {position} ({name}) is not complete"), position=step.position, name=step.name
        )
    audience = stored_block(BlockKind.AUDIENCE, step.audience, step.position)
    action = stored_block(BlockKind.ACTION, step.action, step.position)
    schedule = stored_block(BlockKind.SCHEDULE, step.schedule, step.position)
    conversion = stored_block(BlockKind.CONVERSION, step.conversion, step.position)
    terms = audience if isinstance(audience, TermsAudience) else None
    return StepPlan(
        step_id=step.id,
        chain_id=step.chain_id,
        position=step.position,
        name=step.name,
        created_at=step.created_at,
        action=action,
        schedule=schedule,
        conversion=conversion,
        segments=audience.segments if isinstance(audience, SegmentsAudience) else (),
        who="segments" if isinstance(audience, SegmentsAudience) else ("terms" if terms else "all"),
        terms=tuple(t.value for t in terms.terms) if terms else (),
        match=terms.match.value if terms else "all",
        version=step.version,
        stopped=step.stopped_at is not None,
        holdout_percent=holdout_percent if step.position == 1 else 0,
    )
