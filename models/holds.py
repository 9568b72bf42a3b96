"""Chains the engine held, to be told to the people who run them, each hold once.

The engine records a hold in the audit log (`chain.hold`, scheduler/engine.py);
whoever sends the notices (a worker, through the Bot API) claims the holds not
told yet by moving one watermark in `app_state` — compare-and-set, so that of
several workers one tells each hold, once.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update

from models.db import Database, insert_ignoring_conflicts
from models.tables import AppState, AuditEntry, Chain

WATERMARK = "holds_told_through"
BATCH = 20


@dataclass(frozen=True)
class Hold:
    chain_id: int
    chain_name: str
    reason: str


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
    return [Hold(row.details["chain_id"], row.name, row.details["reason"]) for row in rows]
