"""No secret, token or personal data in logs or world-readable files (issue 11, item 6),
and the database's health told truthfully (item 7)."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bot.runtime import (
    QUIET_LOGGERS,
    RedactSecrets,
    configure_logging,
    open_database,
    run_migrations,
)
from bot.settings import Settings
from channels.sms import OutboxSmsTransport
from models.customers import save_customers
from models.db import Database, secret_key
from models.errors import ChainmailError
from models.migrate import upgrade
from web import app as web_app


async def _listed(directory: Path) -> list[Path]:
    return await asyncio.to_thread(lambda: list(directory.iterdir()))


BOT_TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1"
API_TOKEN = "shop-api-token-0123456789"


@pytest.fixture
def debug_logging(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Logging as a process with LOG_LEVEL=DEBUG configures it, undone afterwards."""
    caplog.set_level(logging.DEBUG)
    configure_logging(
        Settings(telegram_bot_token=BOT_TOKEN, api_token=API_TOKEN, log_level="DEBUG")
    )
    yield caplog
    for handler in logging.getLogger().handlers:
        for installed in [f for f in handler.filters if isinstance(f, RedactSecrets)]:
            handler.removeFilter(installed)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)


async def test_engine_logs_never_show_the_generated_secret_key_or_customers(
    db: Database, debug_logging: pytest.LogCaptureFixture
) -> None:
    # Even with SQL echoed on purpose (statements and their parameters at INFO), the
    # parameters are hidden.
    engine_logs = Database(db.url, echo=True)
    try:
        key = await secret_key(engine_logs, "")
        await save_customers(
            engine_logs,
            [{"external_id": "c1", "email": "anna.private@example.com", "phone": "+79131234567"}],
            default_timezone="Europe/Moscow",
            default_phone_region="RU",
            actor="test",
        )
    finally:
        await engine_logs.dispose()
    logged = debug_logging.text
    assert "INSERT" in logged
    assert key not in logged
    assert "anna.private" not in logged
    assert "9131234567" not in logged


def test_bot_token_and_configured_secrets_are_redacted_in_every_log_line(
    debug_logging: pytest.LogCaptureFixture,
) -> None:
    logging.getLogger("telegram.ext.ExtBot").debug(
        "Set Bot API URL: https://api.telegram.org/bot%s", BOT_TOKEN
    )
    logging.getLogger("httpx").warning(
        'HTTP Request: POST https://api.telegram.org/bot%s/getMe "HTTP/1.1 200 OK"',
        "987654321:BBHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw2",
    )
    try:
        raise RuntimeError(f"Authorization: Bearer {API_TOKEN}")
    except RuntimeError:
        logging.getLogger("web").exception("request failed")
    text = debug_logging.text + "".join(r.exc_text or "" for r in debug_logging.records)
    assert "api.telegram.org/bot[redacted]" in text
    assert BOT_TOKEN not in text
    assert "BBHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw2" not in text
    assert "Bearer [redacted]" in text
    assert API_TOKEN not in text


async def test_sqlite_database_and_its_wal_files_are_private(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'chainmail.db'}"
    db = await open_database(Settings(database_url=url))
    try:
        await secret_key(db, "")
        # While open: SQLite removes -wal and -shm when the last connection closes.
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in await _listed(tmp_path)}
    finally:
        await db.dispose()
    assert modes == {"chainmail.db": 0o600, "chainmail.db-wal": 0o600, "chainmail.db-shm": 0o600}


async def test_outbox_directory_and_files_are_private(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    await OutboxSmsTransport(outbox / "sms", "Shop").send(1, "+79131234567", "hello")
    for path in [outbox / "sms", *await _listed(outbox / "sms")]:
        expected = 0o700 if path.is_dir() else 0o600
        assert stat.S_IMODE(path.stat().st_mode) == expected, path


@pytest.mark.parametrize(
    "content", [b"this is not a database at all " * 200, b"SQLite format 3\x00" + b"\xff" * 8000]
)
async def test_a_broken_database_file_stops_start_up_with_one_line(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "broken.db"
    path.write_bytes(content)
    url = f"sqlite+aiosqlite:///{path}"
    for start in (open_database(Settings(database_url=url)), run_migrations(url)):
        with pytest.raises(ChainmailError) as refused:
            await start
        message = str(refused.value)
        assert "\n" not in message
        assert message.startswith(f"cannot open the database {url}: ")


def _app(db: Database) -> httpx.AsyncClient:
    config = web_app.WebConfig("token", "k" * 32, "http://test", "Europe/Moscow", "RU")
    transport = httpx.ASGITransport(app=web_app.create_app(db, config))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_healthz_is_ok_when_the_database_answers(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ok.db'}"
    await asyncio.to_thread(upgrade, url)
    db = Database(url)
    try:
        async with _app(db) as client:
            answer = await client.get("/healthz")
    finally:
        await db.dispose()
    assert (answer.status_code, answer.json()) == (200, {"status": "ok"})


async def test_healthz_is_503_when_the_database_does_not_answer_in_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'slow.db'}"
    await asyncio.to_thread(upgrade, url)
    db = Database(url)
    monkeypatch.setattr(web_app, "HEALTH_DEADLINE_SECONDS", 0.2)

    class Stuck:
        async def __aenter__(self) -> Stuck:
            await asyncio.sleep(30)
            return self

        async def __aexit__(self, *_: object) -> None:
            return None

    monkeypatch.setattr(db, "session", Stuck)
    try:
        async with _app(db) as client:
            answer = await asyncio.wait_for(client.get("/healthz"), 5)
    finally:
        await db.dispose()
    assert answer.status_code == 503


async def test_healthz_is_503_on_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"not a database " * 500)
    os.chmod(path, 0o600)
    db = Database(f"sqlite+aiosqlite:///{path}")
    try:
        async with _app(db) as client:
            answer = await client.get("/healthz")
    finally:
        await db.dispose()
    assert answer.status_code == 503
