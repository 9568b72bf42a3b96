"""Tracking facts kept on disk while the database cannot take them, so none is lost.

An unsubscribe, open or click whose write meets a locked or unreachable database
within the request's bound is written here, one file per fact, flushed to disk
before the answer goes out; the person sees the page they asked for. Each
process serving the web app replays its directory every `REPLAY_SECONDS` until
the database takes the facts, oldest first, and at start-up.

A file is a JSON object `{"kind", "delivery_id", "at", "link"?}`. Several
processes may share a directory: recording a fact twice changes nothing (one
event per delivery and kind, one status change), so a file replayed by two of
them at once is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from models import tracking
from models.db import Database, bounded_writes
from models.errors import DatabaseBusy

log = logging.getLogger(__name__)

FactKind = Literal["open", "click", "unsubscribe"]
REPLAY_SECONDS = 1.0
# Replaying waits for the database no longer than a request would.
REPLAY_WAIT_SECONDS = 5.0


@dataclass(frozen=True)
class Fact:
    kind: FactKind
    delivery_id: int
    at: datetime
    link: int | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "kind": self.kind,
                "delivery_id": self.delivery_id,
                "at": self.at.isoformat(),
                "link": self.link,
            }
        )

    @classmethod
    def from_json(cls, raw: str) -> Fact:
        data = json.loads(raw)
        at = datetime.fromisoformat(data["at"])
        return cls(data["kind"], data["delivery_id"], at, data["link"])


async def record(db: Database, fact: Fact) -> None:
    """Store the fact; one whose delivery or link no longer exists is dropped."""
    if fact.kind == "unsubscribe":
        await tracking.unsubscribe(db, fact.delivery_id, fact.at)
    elif fact.kind == "click":
        await tracking.record_click(db, fact.delivery_id, fact.link or 0, fact.at)
    else:
        await tracking.record_open(db, fact.delivery_id, fact.at)


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def keep(self, fact: Fact) -> None:
        await asyncio.to_thread(self._write, fact)
        log.warning("database busy: %s of delivery %d kept on disk", fact.kind, fact.delivery_id)

    def _write(self, fact: Fact) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Time first, so that a listing sorts oldest first; written under a name no
        # reader takes, then renamed into place: a reader never sees half a fact.
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex}"
        partial = self.directory / f".{name}.partial"
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(fact.to_json())
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, self.directory / f"{name}.json")

    def pending(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob("*.json"))

    async def replay(self, db: Database) -> int:
        """Store what is kept, oldest first, until the database is busy; the number stored."""
        stored = 0
        for path in self.pending():
            try:
                fact = Fact.from_json(path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                continue  # another process replayed it
            except (ValueError, KeyError, TypeError):
                log.error("%s is not a tracking fact; left in place for a look", path)
                path.rename(path.with_suffix(".unreadable"))
                continue
            try:
                with bounded_writes(REPLAY_WAIT_SECONDS):
                    await record(db, fact)
            except DatabaseBusy:
                return stored
            path.unlink(missing_ok=True)
            stored += 1
        return stored

    async def run(self, db: Database) -> None:
        """Replay now and every `REPLAY_SECONDS`, until cancelled."""
        while True:
            try:
                stored = await self.replay(db)
            except Exception:
                # Whatever else the database says, the facts stay on disk for the next try.
                log.exception("replaying kept tracking facts failed")
            else:
                if stored:
                    log.info("%d kept tracking facts stored", stored)
            await asyncio.sleep(REPLAY_SECONDS)


@contextlib.asynccontextmanager
async def replaying(spool: Spool, db: Database) -> AsyncIterator[None]:
    task = asyncio.create_task(spool.run(db), name="tracking-spool")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
