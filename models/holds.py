"""Chains held — paused by the system, with the reason — and the telling of each hold once.

Two things hold a chain: the engine when it cannot go on with a step (a planning
or claim that raises, scheduler/engine.py), and the protection rule when a step
bounces or draws complaints past the limits (models/protection.py). Both go
through `hold_chain`, which records the hold in the audit log (`chain.hold`);
whoever sends the notices (a worker, through the Bot API) claims the holds not
told yet by moving one watermark in `app_state` — compare-and-set, so that of
several workers one tells each hold, once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import audit
from models.db import Database, insert_ignoring_conflicts
from models.tables import AppState, AuditEntry, Chain, ChainStatus

WATERMARK = "holds_told_through"
BATCH = 20
REASON_LENGTH = 500


class HoldKind(StrEnum):
    # The engine could not plan or claim a step: the step needs fixing.
    FAILURE = "failure"
    # A step's bounces or spam complaints reached their limits (models/protection.py).
    DELIVERABILITY = "deliverability"


@dataclass(frozen=True)
class Hold:
    chain_id: int
    chain_name: str
    reason: str
    kind: HoldKind = HoldKind.FAILURE


async def hold_chain(
    session: AsyncSession,
    chain_id: int,
    reason: str,
    now: datetime,
    *,
    actor: str,
    kind: HoldKind,
) -> bool:
    """Pause an active chain with `reason`, in the caller's transaction; False when it was
    not active (paused or held meanwhile, finished): nothing is recorded then."""
    result = await session.execute(
        update(Chain.__table__)
        .where(Chain.id == chain_id, Chain.status == ChainStatus.ACTIVE.value)
        .values(status=ChainStatus.PAUSED.value, hold_reason=reason[:REASON_LENGTH], updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if not result.rowcount:
        return False
    audit.record(
        session,
        actor,
        "chain.hold",
        chain_id=chain_id,
        reason=reason[:REASON_LENGTH],
        kind=kind.value,
    )
    return True


async def claim_untold_holds(db: Database) -> list[Hold]:
    """The holds recorded since the last claim, now this caller's to tell."""
    async with db.writer() as session:
        await session.execute(
            insert_ignoring_conflicts(session, AppState).values(key=WATERMARK, value="0")
        )
        seen = await session.scalar(select(AppState.value).where(AppState.key == WATERMARK))
        rows = list(
            await session.execute(
                select(AuditEntry.id, AuditEntry.details, Chain.name)
                .join(Chain, Chain.id == AuditEntry.details["chain_id"].as_integer())
                .where(AuditEntry.action == "chain.hold", AuditEntry.id > int(seen or 0))
                .order_by(AuditEntry.id)
                .limit(BATCH)
            )
        )
        if not rows:
            return []
        moved = await session.execute(
            update(AppState)
            .where(AppState.key == WATERMARK, AppState.value == seen)
            .values(value=str(rows[-1].id))
        )
        if moved.rowcount != 1:
            return []  # another worker claimed them meanwhile
    return [
        Hold(
            row.details["chain_id"],
            row.name,
            row.details["reason"],
            # Holds recorded before kinds existed were all the engine's failures.
            HoldKind(row.details.get("kind", HoldKind.FAILURE)),
        )
        for row in rows
    ]
