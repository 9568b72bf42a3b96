"""The bot as a process part: the Application built from settings, polling a Bot API
server on loopback (the Telegram double), and `chainmail bot` / `chainmail run`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from telegram.ext import AIORateLimiter

from bot import cli_serve
from bot.cli import main
from bot.cli_serve import web_config
from bot.telegram_app import (
    WebhookInbox,
    build_application,
    file_url_for,
    run_bot,
    webhook_secret,
)
from handlers import texts
from handlers.persistence import DatabasePersistence
from models.admins import add_admin
from models.chains import get_chain
from models.db import Database
from models.errors import ChainmailError
from models.tables import ChainStatus, Role
from telegram_double import BotEvent, TelegramDouble
from tests.test_bot_support import (
    ADMIN,
    API_BASE_URL,
    OWNER,
    STRANGER,
    TOKEN,
    bot_settings,
    make_chain,
    new_double,
)
from web.app import create_app

ROOT = Path(__file__).resolve().parents[1]
CSV = b"external_id,email\nc1,ann@example.com\nc2,broken@\n"


def test_the_file_url_follows_the_api_url() -> None:
    assert file_url_for("https://api.telegram.org/bot") == "https://api.telegram.org/file/bot"
    assert file_url_for("http://127.0.0.1:8081/bot{token}") == (
        "http://127.0.0.1:8081/file/bot{token}"
    )
    with pytest.raises(ChainmailError, match="must end with /bot"):
        file_url_for("http://127.0.0.1:8081/api")


async def test_the_application_is_built_from_settings(db: Database) -> None:
    app = build_application(bot_settings(), db)
    assert app.bot.base_url == f"{API_BASE_URL}{TOKEN}"
    assert app.bot.base_file_url == f"http://telegram.invalid/file/bot{TOKEN}"
    assert isinstance(app.persistence, DatabasePersistence)
    assert isinstance(app.bot.rate_limiter, AIORateLimiter)


async def test_run_includes_the_bot_only_with_a_token(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    started: list[tuple[str, ...]] = []

    async def until_stopped(_settings: object, *parts: str) -> int:
        started.append(parts)
        return 0

    monkeypatch.setattr(cli_serve, "until_stopped", until_stopped)
    with caplog.at_level(logging.INFO, logger="bot.cli_serve"):
        await cli_serve._run(bot_settings(telegram_bot_token=""), argparse.Namespace())
    await cli_serve._run(bot_settings(), argparse.Namespace())
    assert started == [("web", "engine"), ("web", "engine", "bot")]
    assert "TELEGRAM_BOT_TOKEN is not set: the bot is off" in caplog.text


def test_chainmail_bot_without_a_token_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "")
    assert main(["bot"]) == 1
    assert capsys.readouterr().err == (
        "chainmail: TELEGRAM_BOT_TOKEN is not set: the bot cannot start\n"
    )


# --- Polling a Bot API server on loopback ------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[TelegramDouble]:
    with new_double() as running:
        yield running


@pytest.fixture
async def double(server: TelegramDouble, db: Database) -> TelegramDouble:
    server.reset()
    for user_id, name in ((OWNER, "Olga"), (ADMIN, "Anton"), (STRANGER, "Stranger")):
        server.user(user_id, name)
    await add_admin(db, ADMIN, Role.ADMIN, name=None, actor="test")
    return server


@asynccontextmanager
async def polling(db: Database, double: TelegramDouble) -> AsyncIterator[None]:
    stop = asyncio.Event()
    settings = bot_settings(telegram_api_base_url=double.api_base_url)
    task = asyncio.create_task(run_bot(settings, db, stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def sent_to(chat_id: int) -> object:
    def matches(event: BotEvent) -> bool:
        return event.chat_id == chat_id and event.kind in ("sent", "edited")

    return matches


def bot_texts(double: TelegramDouble, chat_id: int) -> list[str]:
    return [m["text"] for m in double.chat_messages(chat_id) if m["from"]["is_bot"]]


async def test_polling_bot_refuses_a_stranger_once_and_pauses_for_the_owner(
    db: Database, double: TelegramDouble
) -> None:
    chain_id = await make_chain(db, "Welcome series")
    async with polling(db, double):
        double.send_text(STRANGER, "/pause Welcome series")
        refusal = await double.wait_for(sent_to(STRANGER), 10)
        double.send_text(OWNER, "/pause welcome series")
        paused = await double.wait_for(sent_to(OWNER), 10)
        commands = [r for r in double.requests if r.method == "setMyCommands"]
    assert refusal.text == texts.NOT_AUTHORISED
    assert bot_texts(double, STRANGER) == [texts.NOT_AUTHORISED]
    assert paused.text.startswith("⏸ Welcome series is paused")
    assert (await get_chain(db, chain_id)).status is ChainStatus.PAUSED
    scopes = [
        {"type": "all_private_chats"},
        {"type": "all_group_chats"},
        {"type": "chat", "chat_id": OWNER},
    ]
    # English for every Telegram app, then Russian for those set to Russian.
    assert [(r.params.get("scope"), r.params.get("language_code")) for r in commands] == [
        *((scope, None) for scope in scopes),
        *((scope, "ru") for scope in scopes),
    ]


async def test_an_import_survives_a_restart_and_downloads_the_file(
    db: Database, double: TelegramDouble
) -> None:
    async with polling(db, double):
        double.send_text(ADMIN, "/import")
        await double.wait_for(sent_to(ADMIN), 10)
    async with polling(db, double):
        double.send_document(ADMIN, "shop.csv", CSV, "text/csv")
        report = await double.wait_for(lambda e: e.kind == "edited" and e.chat_id == ADMIN, 10)
    assert report.text.splitlines() == [
        "✅ shop.csv: imported 1 customer (1 new, 0 updated).",
        "⚠️ 1 line refused:",
        "line 3: bad email 'broken@'",
    ]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_an_unreachable_telegram_is_retrieduntil_stopped(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    stop = asyncio.Event()
    settings = bot_settings(telegram_api_base_url=f"http://127.0.0.1:{free_port()}/bot")
    task = asyncio.create_task(run_bot(settings, db, stop))
    while "cannot reach Telegram" not in caplog.text:
        assert not task.done(), task.result()
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 5)


async def test_a_token_telegram_refuses_stops_the_bot_with_one_line(
    db: Database, server: TelegramDouble
) -> None:
    settings = bot_settings(
        telegram_bot_token="999:WRONG", telegram_api_base_url=server.api_base_url
    )
    with pytest.raises(ChainmailError, match="Telegram refused TELEGRAM_BOT_TOKEN"):
        await run_bot(settings, db, asyncio.Event())


def test_chainmail_run_starts_the_bot_with_web_and_engine(tmp_path: Path) -> None:
    with new_double() as double:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("SMTP_", "SMS_", "DATABASE_", "OUTBOX_", "TELEGRAM_"))
        }
        env |= {
            "PYTHONPATH": str(ROOT),
            "WEB_PORT": str(free_port()),
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_API_BASE_URL": double.api_base_url,
            "ADMIN_IDS": str(OWNER),
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "run"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            double.send_text(OWNER, "/start")
            deadline = time.monotonic() + 30
            while not bot_texts(double, OWNER):
                assert process.poll() is None, process.communicate()[1]
                assert time.monotonic() < deadline, "the bot did not answer"
                time.sleep(0.05)
            assert bot_texts(double, OWNER) == ["Chainmail\nWhat would you like to look at?"]
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=20)
            assert process.returncode == 0, stderr
            assert "Traceback" not in stderr
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()


# --- A webhook instead of polling ---------------------------------------------------------

WEBHOOK_URL = "https://shop.example/telegram/webhook"


def start_update(update_id: int, user_id: int, name: str) -> dict[str, object]:
    """`/start` as Telegram posts it to a webhook."""
    person = {"id": user_id, "is_bot": False, "first_name": name}
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": 1795000000,
            "chat": {"id": user_id, "type": "private", "first_name": name},
            "from": person,
            "text": "/start",
            "entities": [{"type": "bot_command", "offset": 0, "length": 6}],
        },
    }


async def test_a_webhook_post_reaches_the_bot_only_with_the_secret(
    db: Database, double: TelegramDouble
) -> None:
    settings = bot_settings(
        telegram_api_base_url=double.api_base_url,
        telegram_webhook_url=WEBHOOK_URL,
        secret_key="webhook-test-key",
    )
    inbox = WebhookInbox()
    app = create_app(db, await web_config(settings, db), telegram=inbox)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://web")
    stop = asyncio.Event()
    task = asyncio.create_task(run_bot(settings, db, stop, inbox))
    try:
        # Before the bot runs, Telegram is asked to come back later.
        early = await client.post("/telegram/webhook", json=start_update(1, OWNER, "Olga"))
        assert early.status_code in (403, 404, 503)
        # The inbox takes updates first, then Telegram is told where to post them.
        for _ in range(250):
            status, info = await double.call("getWebhookInfo", {})
            if info["result"]["url"]:
                break
            await asyncio.sleep(0.02)
        assert status == 200
        assert info["result"]["url"] == WEBHOOK_URL
        assert inbox.application is not None
        secret = {"X-Telegram-Bot-Api-Secret-Token": webhook_secret("webhook-test-key")}
        forged = {"X-Telegram-Bot-Api-Secret-Token": "guess"}
        refused = await client.post(
            "/telegram/webhook", json=start_update(2, STRANGER, "Stranger"), headers=forged
        )
        assert refused.status_code == 403
        garbled = await client.post("/telegram/webhook", content=b"{", headers=secret)
        assert garbled.status_code == 400
        taken = await client.post(
            "/telegram/webhook", json=start_update(3, OWNER, "Olga"), headers=secret
        )
        assert taken.status_code == 200
        menu = await double.wait_for(sent_to(OWNER), 10)
        assert menu.text is not None
        assert menu.text.startswith("Chainmail")
        assert bot_texts(double, STRANGER) == []
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await client.aclose()
    assert inbox.application is None
