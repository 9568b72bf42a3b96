"""The migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import text

from models.db import Database
from models.migrate import check


def test_migrations_match_models(db_url: str) -> None:
    with ThreadPoolExecutor(1) as pool:
        pool.submit(check, db_url).result()


async def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'chainmail.db'}")
    async with db.session() as session:
        assert (await session.scalar(text("PRAGMA journal_mode"))) == "wal"
        assert (await session.scalar(text("PRAGMA foreign_keys"))) == 1
    await db.dispose()
