"""Shared fixtures: every database test runs on SQLite and on PostgreSQL.

PostgreSQL comes from CHAINMAIL_TEST_POSTGRES_URL (default: the local server of
the brief). Where it cannot be reached the PostgreSQL half skips with the reason,
except in CI (CI=true), where it fails: CI must prove both databases.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import make_url, text

from models.db import Database
from models.migrate import upgrade
from models.tables import Base
from telegram_double import TelegramDouble
from tests.test_bot_support import new_double

pytest_plugins = ["tests.servers"]

POSTGRES_URL = os.environ.get(
    "CHAINMAIL_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
DATABASES = ["sqlite", "postgresql"]


def _in_thread(function: object, *args: object) -> object:
    # Alembic's env.py runs its own event loop, which cannot nest in a test's.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(function, *args).result()  # type: ignore[arg-type]


def _postgres_unreachable_reason() -> str | None:
    parts = urlsplit(POSTGRES_URL.replace("+asyncpg", ""))
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), 2):
            return None
    except OSError as exc:
        return f"PostgreSQL not reachable at {parts.hostname}:{parts.port}: {exc}"


async def _admin(statement: str) -> None:
    db = Database(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        async with db.engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await db.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of this test run's own on the server, so runs side by side don't collide."""
    reason = _postgres_unreachable_reason()
    if reason:
        if IN_CI:
            pytest.fail(f"{reason} (required in CI)")
        pytest.skip(reason)
    base = make_url(POSTGRES_URL)
    name = f"{base.database}_chainmail_{os.getpid()}_{secrets.token_hex(3)}"
    _in_thread(asyncio.run, _admin(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(hide_password=False)
    try:
        _in_thread(upgrade, url)
        yield url
    finally:
        _in_thread(asyncio.run, _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "chainmail.db"
    _in_thread(upgrade, f"sqlite+aiosqlite:///{path}")
    return path


async def _truncate_all(url: str) -> None:
    db = Database(url)
    names = ", ".join(table.name for table in Base.metadata.sorted_tables)
    async with db.engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    await db.dispose()


@pytest.fixture(params=DATABASES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database of each kind; its URL (for subprocesses too)."""
    if request.param == "sqlite":
        path = tmp_path / "chainmail.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite+aiosqlite:///{path}"
    else:
        url = request.getfixturevalue("postgres_url")
        _in_thread(asyncio.run, _truncate_all(url))
        yield url


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    yield database
    await database.dispose()


@pytest.fixture
def double() -> TelegramDouble:
    """The bot tests' Telegram double with their people, used in process (not over HTTP);
    modules that serve it over HTTP define their own."""
    return new_double()
