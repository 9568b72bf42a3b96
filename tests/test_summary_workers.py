"""The daily summary from real `chainmail worker` processes on PostgreSQL: once per chat per day.

Two workers start after the day's SUMMARY_TIME (as after a downtime spanning it), so
both find the summary due at once and race for it; the Telegram double, served on
loopback, records what reached the chat. Then a restarted worker finds it sent.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from bot.settings import Settings
from models.db import Database
from models.tables import SubscribedChat, SummarySend
from models.team_chats import subscribe_chat
from telegram_double import TelegramDouble
from tests.test_reporting import seeded_chain

pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "123:ABC"
TEAM = -5001


@pytest.fixture
def double() -> Iterator[TelegramDouble]:
    with TelegramDouble(TOKEN) as served:
        served.user(1002, "Anton", "anton")
        served.add_to_group(1002, TEAM, "Team")
        yield served


def start_worker(
    db_url: str, api_base_url: str, directory: Path, name: str
) -> subprocess.Popen[bytes]:
    # The summary time is a minute ago in UTC: due now, without waiting for a clock.
    summary_time = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%H:%M")
    environment = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    environment |= {
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": db_url,
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_BASE_URL": api_base_url,
        "SUMMARY_TIME": summary_time,
        "DEFAULT_TIMEZONE": "UTC",
        "ENGINE_TICK_SECONDS": "0.2",
        "LOG_LEVEL": "INFO",
        "OUTBOX_DIR": str(directory / "outbox"),
    }
    with (directory / f"{name}.stderr").open("wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "bot", "worker"],
            cwd=directory,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


def stop(processes: list[subprocess.Popen[bytes]], directory: Path) -> str:
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        assert process.wait(timeout=20) == 0
    return "".join(path.read_text() for path in directory.glob("*.stderr"))


def bot_messages(double: TelegramDouble) -> int:
    return sum(1 for m in double.chat_messages(TEAM) if m["from"]["is_bot"])


async def summary_rows(db: Database) -> list[tuple[str, int]]:
    async with db.session() as session:
        rows = await session.execute(select(SummarySend.status, SummarySend.claim))
        return [(status, claim) for status, claim in rows]


async def test_two_workers_send_the_summary_once_and_a_restart_sends_nothing(
    db: Database, db_url: str, double: TelegramDouble, tmp_path: Path
) -> None:
    await seeded_chain(db)
    await subscribe_chat(db, TEAM, title="Team", timezone=None, by=1002, actor="test")
    async with db.writer() as session:
        await session.execute(
            update(SubscribedChat).values(created_at=datetime.now(UTC) - timedelta(days=3))
        )
    workers = [start_worker(db_url, double.api_base_url, tmp_path, f"w{n}") for n in (1, 2)]
    try:
        deadline = time.monotonic() + 30
        while await summary_rows(db) != [("sent", 1)]:
            assert all(w.poll() is None for w in workers)
            assert time.monotonic() < deadline, await summary_rows(db)
            await asyncio.sleep(0.1)
        # A few more ticks of both: nothing else goes out.
        await asyncio.sleep(1)
        assert bot_messages(double) == 2
        logs = stop(workers, tmp_path)
        assert logs.count("daily summary of") == 1, logs
        assert "Traceback" not in logs

        workers = [start_worker(db_url, double.api_base_url, tmp_path, "w3")]
        # Running (its signal handlers set) once the engine has logged its transports;
        # a slow start on a busy machine must not turn SIGTERM into a kill.
        deadline = time.monotonic() + 30
        while "email goes to" not in (tmp_path / "w3.stderr").read_text():
            assert workers[0].poll() is None
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)
        stop(workers, tmp_path)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    assert bot_messages(double) == 2
    assert await summary_rows(db) == [("sent", 1)]
