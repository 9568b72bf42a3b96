"""Workers: who is alive, measured with the database's clock, and what the dead held.

Each engine registers a `workers` row and beats its heartbeat every few seconds.
A claimed delivery names its worker (`claimed_by`), and every write a worker
makes to it afterwards is conditional on still being named there: the fence. A
worker whose heartbeat is older than DEAD_AFTER is taken to be dead (killed,
frozen, cut off): another worker deletes its row, hands its claimed rows back to
the queue, and records its `sending` rows as `uncertain` — their outcome is lost,
and they are never sent again. A worker that comes back (SIGCONT after SIGSTOP)
finds its row gone at its next heartbeat and its writes refused by the fence, and
registers anew.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Dialect, Select, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import reasons
from models.db import Database
from models.tables import Delivery, DeliveryStatus, Worker
from scheduler import sql

HEARTBEAT = timedelta(seconds=5)
# Three missed heartbeats: a worker busy with a slow SMTP server still beats
# (its heartbeat is a task of its own), so only a stopped process misses them.
DEAD_AFTER = timedelta(seconds=15)

_delivery = Delivery.__table__
_worker = Worker.__table__


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Reaped:
    """What the rows of dead workers became."""

    released: int = 0
    # The `sending` rows now `uncertain`, with their step: their follow-ups are planned.
    uncertain: dict[int, list[int]] = field(default_factory=dict)


async def register(db: Database, name: str) -> int:
    async with db.writer() as session:
        now = sql.database_now(session.bind.dialect)
        return await session.scalar(
            insert(_worker)
            .values(name=name, started_at=now, heartbeat_at=now)
            .returning(_worker.c.id)
        )


async def beat(db: Database, worker_id: int) -> bool:
    """Renew the heartbeat; False if the worker was declared dead meanwhile."""
    async with db.writer() as session:
        result = await session.execute(
            update(_worker)
            .where(_worker.c.id == worker_id)
            .values(heartbeat_at=sql.database_now(session.bind.dialect))
        )
    return result.rowcount == 1


async def deregister(db: Database, worker_id: int) -> None:
    """A clean stop: the claimed rows not sent go back to the queue at once."""
    async with db.writer() as session:
        await _release(session, [worker_id])
        await session.execute(delete(_worker).where(_worker.c.id == worker_id))


async def _release(session: AsyncSession, worker_ids: list[int]) -> int:
    result = await session.execute(
        update(_delivery)
        .where(
            _delivery.c.claimed_by.in_(worker_ids),
            _delivery.c.status == DeliveryStatus.PLANNED.value,
        )
        .values(claimed_by=None)
        .execution_options(synchronize_session=False)
    )
    return max(result.rowcount or 0, 0)


def dead_workers(dialect: Dialect) -> Select[tuple[int]]:
    """The workers whose heartbeat is older than DEAD_AFTER, by the database's clock."""
    cutoff = sql.plus_seconds(dialect, sql.database_now(dialect), -int(DEAD_AFTER.total_seconds()))
    return select(_worker.c.id).where(_worker.c.heartbeat_at < cutoff)


async def reap(session: AsyncSession, now: datetime) -> Reaped:
    """Take back what dead workers held, in the caller's transaction.

    `now` (the engine's clock) stamps the `uncertain` rows' trigger; who is dead is
    decided by the database's clock.
    """
    dialect = session.bind.dialect
    cutoff = sql.plus_seconds(dialect, sql.database_now(dialect), -int(DEAD_AFTER.total_seconds()))
    dead = list(
        await session.scalars(
            delete(_worker).where(_worker.c.heartbeat_at < cutoff).returning(_worker.c.id)
        )
    )
    return await take_back(session, dead, now)


async def take_back(session: AsyncSession, worker_ids: list[int], now: datetime) -> Reaped:
    """What these workers hold goes back: claimed rows to the queue, rows `sending` to
    `uncertain` (they may have been handed over: never resent). For dead workers, and
    for a live one whose batch failed midway."""
    reaped = Reaped()
    if not worker_ids:
        return reaped
    reaped.released = await _release(session, worker_ids)
    lost = await session.execute(
        update(_delivery)
        .where(
            _delivery.c.claimed_by.in_(worker_ids),
            _delivery.c.status == DeliveryStatus.SENDING.value,
        )
        .values(
            status=DeliveryStatus.UNCERTAIN.value,
            reason=reasons.OUTCOME_LOST,
            triggered_at=now,
            claimed_by=None,
        )
        .returning(_delivery.c.id, _delivery.c.step_id)
        .execution_options(synchronize_session=False)
    )
    for delivery_id, step_id in lost:
        reaped.uncertain.setdefault(step_id, []).append(delivery_id)
    return reaped


async def alive(db: Database) -> list[int]:
    async with db.session() as session:
        return list(await session.scalars(select(_worker.c.id).order_by(_worker.c.id)))
