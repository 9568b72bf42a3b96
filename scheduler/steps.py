"""A step's saved blocks, read once per tick into plain values the engine plans with."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from models.chainfile import parse_duration
from models.tables import Step

LOCAL_MOMENT_FORMAT = "%Y-%m-%d %H:%M"
DEFAULT_WAIT_DAYS = 30


@dataclass(frozen=True)
class StepPlan:
    step_id: int
    chain_id: int
    position: int
    name: str
    created_at: datetime
    channel: str
    action: dict[str, Any]
    segments: tuple[str, ...]
    # "all" (everyone the previous step reached) or "terms".
    who: str
    terms: tuple[str, ...]
    match: str
    send: str
    after_seconds: int
    at_local: datetime | None
    wait_seconds: int

    @property
    def is_main(self) -> bool:
        return self.position == 1

    @property
    def waits_for_terms(self) -> bool:
        """`send: now` with terms: sent the moment the terms come true, within wait_days."""
        return self.who == "terms" and self.send == "now"


def step_plan(step: Step) -> StepPlan:
    """Plain values of a complete step (activation has validated its blocks)."""
    assert step.audience is not None and step.action is not None and step.schedule is not None
    audience, schedule = step.audience, step.schedule
    after = schedule.get("after")
    at = schedule.get("at")
    return StepPlan(
        step_id=step.id,
        chain_id=step.chain_id,
        position=step.position,
        name=step.name,
        created_at=step.created_at,
        channel=step.action["channel"],
        action=step.action,
        segments=tuple(audience.get("segments", ())),
        who="segments" if step.position == 1 else audience.get("who", "all"),
        terms=tuple(audience.get("terms", ())),
        match=audience.get("match", "all"),
        send=schedule["send"],
        after_seconds=int(parse_duration(after).total_seconds()) if after else 0,
        at_local=datetime.strptime(at, LOCAL_MOMENT_FORMAT) if at else None,
        wait_seconds=int(schedule.get("wait_days", DEFAULT_WAIT_DAYS)) * 86400,
    )
