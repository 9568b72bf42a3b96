"""What every process does first: settings, logging, an up-to-date database."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import make_url
from sqlalchemy.exc import DBAPIError

from bot.settings import Settings
from models.db import Database
from models.errors import ChainmailError, SchemaOutdated
from models.migrate import alembic_config, upgrade

# A Telegram bot token wherever it appears (PTB logs "Set Bot API URL: …/bot<token>").
_BOT_TOKEN = re.compile(r"(?<![0-9])[0-9]{5,}:[A-Za-z0-9_-]{30,}")
REDACTED = "[redacted]"
# Loggers that print values (SQL parameters, personal data) below WARNING.
QUIET_LOGGERS = ("sqlalchemy.engine", "aiosqlite")


class RedactSecrets(logging.Filter):
    """Takes the process's secrets and any bot token out of every record it passes."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # A short value is not a secret worth the cost of looking for (nor safe to
        # replace: "1" would be cut out of every number).
        self._secrets = sorted({s for s in secrets if len(s) >= 8}, key=len, reverse=True)

    def _redacted(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return _BOT_TOKEN.sub(REDACTED, text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self._redacted(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._redacted(record.exc_text)
        return True


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    redact = RedactSecrets(
        (
            settings.telegram_bot_token,
            settings.sms_gateway_token,
            settings.api_token,
            settings.secret_key,
        )
    )
    # On the handlers: a logger's filter would not see its children's records.
    for handler in logging.getLogger().handlers:
        handler.addFilter(redact)
    # SQL at DEBUG is not for production logs; SQLAlchemy hides parameters anyway
    # (models/db), but aiosqlite logs every statement with its values at DEBUG.
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
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
    try:
        if db.is_sqlite:
            await run_migrations(settings.database_url)
            return db
        head = ScriptDirectory.from_config(alembic_config(settings.database_url)).get_current_head()
        async with db.engine.connect() as conn:
            current = await conn.run_sync(_current_revision)
    except DBAPIError as exc:
        await db.dispose()
        raise _unusable(settings.database_url, exc) from None
    if current != head:
        await db.dispose()
        raise SchemaOutdated(
            f"the database schema is at {current or 'nothing'}, not {head}: "
            "run `chainmail migrate` first"
        )
    return db


def _unusable(database_url: str, error: DBAPIError) -> ChainmailError:
    # A file that is not a database, a corrupt one, a server refusing: one line, not
    # the driver's traceback through Alembic.
    shown = make_url(database_url).render_as_string()
    return ChainmailError(f"cannot open the database {shown}: {error.orig}")


async def run_migrations(database_url: str) -> None:
    # Alembic's env.py runs an event loop of its own; give it a thread.
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(1) as pool:
        try:
            await loop.run_in_executor(pool, upgrade, database_url)
        except DBAPIError as exc:
            raise _unusable(database_url, exc) from None
