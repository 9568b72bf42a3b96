"""Engines and sessions for SQLite (embedded, one process) and PostgreSQL (many workers)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import event, make_url, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from i18n import N_
from models.errors import DatabaseBusy
from models.tables import AppState

SECRET_KEY_STATE = "secret_key"
INSTALLATION_ID_STATE = "installation_id"

# How long a write waits for SQLite's lock when nothing bounds it tighter.
BUSY_TIMEOUT_MS = 30_000
BUSY = N_("the database is busy: try again in a few seconds")

# PostgreSQL's codes for "waited too long" and "not taking connections now":
# lock_not_available, query_canceled (statement_timeout), admin or crash shutdown,
# cannot_connect_now, too_many_connections.
_PG_BUSY_STATES = frozenset({"55P03", "57014", "57P01", "57P02", "57P03", "53300"})
_SQLITE_BUSY_MESSAGES = ("database is locked", "database table is locked")

# The bound on how long writes of the current context wait for the database; None:
# the driver's own (BUSY_TIMEOUT_MS on SQLite). The web app bounds each request's.
_write_wait: ContextVar[float | None] = ContextVar("write_wait", default=None)


@contextmanager
def bounded_writes(seconds: float) -> Iterator[None]:
    """Writers opened inside wait at most `seconds` for the database, then raise
    `DatabaseBusy`: for the in-process queue of writers, SQLite's lock, PostgreSQL's
    row and table locks."""
    token = _write_wait.set(seconds)
    try:
        yield
    finally:
        _write_wait.reset(token)


def is_busy(error: DBAPIError) -> bool:
    """True if the statement failed for waiting on a lock or a database not answering."""
    if error.connection_invalidated or isinstance(error.orig, OSError):
        return True
    if getattr(error.orig, "sqlstate", None) in _PG_BUSY_STATES:
        return True
    return str(error.orig).startswith(_SQLITE_BUSY_MESSAGES)


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def _configure_sqlite(engine: AsyncEngine) -> None:
    # pysqlite's own transaction handling never emits BEGIN IMMEDIATE, and a
    # transaction that reads before it writes can then fail with SQLITE_BUSY
    # despite busy_timeout. So SQLAlchemy emits BEGIN itself: IMMEDIATE on
    # connections asked for with `writer()`, deferred on the others.
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        options = conn.get_execution_options()
        # A bounded writer waits for the lock only as long as its bound has left.
        busy_ms = options.get("sqlite_busy_ms", BUSY_TIMEOUT_MS)
        info = conn.connection.info
        if info.get("busy_ms", BUSY_TIMEOUT_MS) != busy_ms:
            conn.exec_driver_sql(f"PRAGMA busy_timeout={int(busy_ms)}")
            info["busy_ms"] = busy_ms
        conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get("sqlite_immediate") else "BEGIN")


def _create_private_sqlite_file(url: str) -> None:
    """Create the database file readable by its owner only: it holds SECRET_KEY and
    customers' personal data. SQLite gives its -wal and -shm files the same mode."""
    path = make_url(url).database
    if not path or path == ":memory:" or path.startswith("file:") or os.path.exists(path):
        return
    # A directory that does not exist, say: SQLite tells it when the file is opened.
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    # Bound parameters carry SECRET_KEY and personal data: never in a log or an error.
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        _create_private_sqlite_file(url)
        engine = create_async_engine(url, **kwargs)
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kwargs)


class Database:
    """One engine per process; sessions are short and one per unit of work."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._writer_sessions = async_sessionmaker(
            self.engine.execution_options(sqlite_immediate=True), expire_on_commit=False
        )
        # SQLite has one writer at a time. Writers of this process queue here, in
        # order, instead of in SQLite's busy handler, which sleeps up to 100 ms between
        # tries: with many concurrent writers (the bot's users, the engine) that sleep,
        # not the work, was the latency. Other processes still meet busy_timeout.
        self._write_turn = asyncio.Lock() if self.is_sqlite else None
        # Monotonic times of the last write refused as busy and the last one done:
        # a process whose writes wait in vain is not healthy, whatever reads say.
        self.last_busy_at = 0.0
        self.last_written_at = 0.0

    @property
    def is_sqlite(self) -> bool:
        return is_sqlite(self.engine)

    def session(self) -> AsyncSession:
        return self._sessions()

    @asynccontextmanager
    async def writer(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction that is committed on success, rolled back on error.

        On SQLite it takes the write lock up front (BEGIN IMMEDIATE), after the other
        writers of this process. Never open a writer inside another one. Inside
        `bounded_writes`, waiting longer than the bound raises `DatabaseBusy`.
        """
        wait = _write_wait.get()
        deadline = None if wait is None else time.monotonic() + wait
        try:
            async with (
                self._turn(deadline),
                self._bounded_session(deadline) as session,
                session.begin(),
            ):
                if deadline is not None and not self.is_sqlite:
                    timeout_ms = _remaining_ms(deadline)
                    await session.execute(text(f"SET LOCAL lock_timeout = {timeout_ms}"))
                yield session
        except DBAPIError as exc:
            if not is_busy(exc):
                raise
            self.last_busy_at = time.monotonic()
            raise DatabaseBusy(BUSY) from exc
        self.last_written_at = time.monotonic()

    @property
    def writes_waiting(self) -> bool:
        """The last write of this process was refused as busy, none done since."""
        return self.last_busy_at > self.last_written_at

    @asynccontextmanager
    async def _turn(self, deadline: float | None) -> AsyncIterator[None]:
        if self._write_turn is None:
            yield
            return
        try:
            async with asyncio.timeout_at(_loop_time(deadline)):
                await self._write_turn.acquire()
        except TimeoutError:
            self.last_busy_at = time.monotonic()
            raise DatabaseBusy(BUSY) from None
        try:
            yield
        finally:
            self._write_turn.release()

    def _bounded_session(self, deadline: float | None) -> AsyncSession:
        if deadline is None or not self.is_sqlite:
            return self._writer_sessions()
        bounded = self.engine.execution_options(
            sqlite_immediate=True, sqlite_busy_ms=_remaining_ms(deadline)
        )
        return self._writer_sessions(bind=bounded)

    async def dispose(self) -> None:
        await self.engine.dispose()


def _remaining_ms(deadline: float) -> int:
    # At least a moment: a bound used up in the queue still tries the lock once.
    return max(int((deadline - time.monotonic()) * 1000), 10)


def _loop_time(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    return asyncio.get_running_loop().time() + (deadline - time.monotonic())


async def secret_key(db: Database, configured: str) -> str:
    """The configured SECRET_KEY, else one generated once and shared through the database."""
    if configured:
        return configured
    return await _kept_value(db, SECRET_KEY_STATE, secrets.token_urlsafe(32))


async def installation_id(db: Database) -> str:
    """This installation's id, 12 hex digits, generated by the first process that asks and
    kept in the database: it makes Message-IDs and List-Ids differ between installations
    (and between a database and one rebuilt from scratch) while staying the same for every
    process sharing one database."""
    return await _kept_value(db, INSTALLATION_ID_STATE, secrets.token_hex(6))


async def _kept_value(db: Database, key: str, candidate: str) -> str:
    """The value kept under `key` in app_state; `candidate` becomes it if there is none."""
    async with db.writer() as session:
        # Several processes may start at once: the first insert wins, all read it.
        await session.execute(
            insert_ignoring_conflicts(session, AppState).values(key=key, value=candidate)
        )
        value = await session.scalar(select(AppState.value).where(AppState.key == key))
        assert value is not None
        return value


def insert_ignoring_conflicts(session: AsyncSession, table: Any) -> Any:
    """`INSERT … ON CONFLICT DO NOTHING` in the session's dialect."""
    dialect = session.bind.dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(table).on_conflict_do_nothing()
