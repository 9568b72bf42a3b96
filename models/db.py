"""Engines and sessions for SQLite (embedded, one process) and PostgreSQL (many workers)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, make_url, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from models.tables import AppState

SECRET_KEY_STATE = "secret_key"


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
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


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
        self._write_turn = asyncio.Lock() if self.is_sqlite else contextlib.nullcontext()

    @property
    def is_sqlite(self) -> bool:
        return is_sqlite(self.engine)

    def session(self) -> AsyncSession:
        return self._sessions()

    @asynccontextmanager
    async def writer(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction that is committed on success, rolled back on error.

        On SQLite it takes the write lock up front (BEGIN IMMEDIATE), after the other
        writers of this process. Never open a writer inside another one.
        """
        async with self._write_turn, self._writer_sessions() as session, session.begin():
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()


async def secret_key(db: Database, configured: str) -> str:
    """The configured SECRET_KEY, else one generated once and shared through the database."""
    if configured:
        return configured
    async with db.writer() as session:
        # Several processes may start at once: the first insert wins, all read it.
        await session.execute(
            insert_ignoring_conflicts(session, AppState).values(
                key=SECRET_KEY_STATE, value=secrets.token_urlsafe(32)
            )
        )
        return await session.scalar(select(AppState.value).where(AppState.key == SECRET_KEY_STATE))


def insert_ignoring_conflicts(session: AsyncSession, table: Any) -> Any:
    """`INSERT … ON CONFLICT DO NOTHING` in the session's dialect."""
    dialect = session.bind.dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(table).on_conflict_do_nothing()
