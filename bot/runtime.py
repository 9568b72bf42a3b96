"""What every process does first: settings, logging, an up-to-date database."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from bot.settings import Settings
from models.db import Database
from models.errors import SchemaOutdated
from models.migrate import alembic_config, upgrade


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # httpx logs every request at INFO, which would leak the bot token into logs.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # A wave longer than a tick makes APScheduler warn on every skipped tick;
    # that is the design (one tick at a time), not news.
    logging.getLogger("apscheduler.scheduler").setLevel(logging.ERROR)
    logging.getLogger("apscheduler.executors").setLevel(logging.ERROR)


def _current_revision(connection: object) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()  # type: ignore[arg-type]


async def open_database(settings: Settings) -> Database:
    """The database, migrated.

    SQLite is the embedded, one-process default: it is migrated on the spot.
    PostgreSQL is shared by many processes, which must not race to migrate it:
    there the operator runs `chainmail migrate` once, and others refuse to start
    on an outdated schema.
    """
    db = Database(settings.database_url)
    if db.is_sqlite:
        await run_migrations(settings.database_url)
        return db
    head = ScriptDirectory.from_config(alembic_config(settings.database_url)).get_current_head()
    async with db.engine.connect() as conn:
        current = await conn.run_sync(_current_revision)
    if current != head:
        await db.dispose()
        raise SchemaOutdated(
            f"the database schema is at {current or 'nothing'}, not {head}: "
            "run `chainmail migrate` first"
        )
    return db


async def run_migrations(database_url: str) -> None:
    # Alembic's env.py runs an event loop of its own; give it a thread.
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(1) as pool:
        await loop.run_in_executor(pool, upgrade, database_url)
