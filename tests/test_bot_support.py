"""What the bot tests share (no tests here): the bot run against the Telegram double.

Socket-free: `InMemoryRequest` answers python-telegram-bot's Bot API calls with the
double's own `FakeBot.call`, so Telegram's checks (HTML entities, callback data
limits, "message is not modified"…) apply, and `BotUnderTest` takes the updates the
double's driver made and feeds them to `process_update`, as PTB's own tests do.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

from telegram import Update
from telegram.request import BaseRequest, RequestData

from bot.settings import Settings, load_settings
from bot.telegram_app import build_application
from handlers import ChainmailApplication
from models.chains import import_chain
from models.db import Database
from models.segments import add_segment, list_segments
from models.tables import ChainStatus
from services.lifecycle import activate_chain, pause_chain
from telegram_double import BotEvent, FakeBot, TelegramDouble

TOKEN = "123:ABC"
# Never resolved: requests go to the double in this process.
API_BASE_URL = "http://telegram.invalid/bot"
OWNER = 1001
ADMIN = 1002
VIEWER = 1003
STRANGER = 1004
GROUP = -5001
SEGMENT = "everyone"


class InMemoryRequest(BaseRequest):
    """The Bot API served by a FakeBot in this process, parameters encoded as PTB posts them."""

    def __init__(self, fake: FakeBot) -> None:
        self.fake = fake

    @property
    def read_timeout(self) -> float | None:
        return None

    async def initialize(self) -> None:
        """Nothing to open: the fake bot lives in this process."""

    async def shutdown(self) -> None:
        """Nothing to close."""

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = None,
        write_timeout: Any = None,
        connect_timeout: Any = None,
        pool_timeout: Any = None,
    ) -> tuple[int, bytes]:
        path = urlsplit(url).path
        if path.startswith("/file/bot"):
            data = self.fake.download(path.split("/", 3)[3])
            if data is None:
                return 404, b'{"ok": false, "error_code": 404, "description": "Not Found"}'
            return 200, data
        values = request_data.json_parameters if request_data is not None else {}
        status, body = await self.fake.call(path.rsplit("/", 1)[1], values)
        return status, json.dumps(body).encode()


def bot_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "telegram_bot_token": TOKEN,
        "telegram_api_base_url": API_BASE_URL,
        "admin_ids": [OWNER],
    }
    return load_settings(**(values | overrides))


def new_double() -> TelegramDouble:
    """A double (not serving HTTP unless started) with the tests' people."""
    double = TelegramDouble(TOKEN)
    for user_id, name in ((OWNER, "Olga"), (ADMIN, "Anton"), (VIEWER, "Vera")):
        double.user(user_id, name, name.lower())
    double.user(STRANGER, "Stranger", "stranger")
    return double


class BotUnderTest:
    """The driver's actions delivered to the application; each returns what the bot did."""

    def __init__(self, app: ChainmailApplication, fake: FakeBot) -> None:
        self.app = app
        self.fake = fake

    async def _deliver(self, start: int) -> list[BotEvent]:
        status, body = await self.fake.call("getUpdates", {"timeout": "0"})
        assert status == 200, body
        for raw in body["result"]:
            await self.app.process_update(Update.de_json(raw, self.app.bot))
        if body["result"]:
            # Confirmed as PTB's next poll would: a restarted bot does not get them again.
            offset = body["result"][-1]["update_id"] + 1
            await self.fake.call("getUpdates", {"offset": str(offset), "timeout": "0"})
        return self.fake.events[start:]

    async def send(self, user_id: int, text: str, chat_id: int | None = None) -> list[BotEvent]:
        start = len(self.fake.events)
        self.fake.send_text(user_id, text, chat_id)
        return await self._deliver(start)

    async def press(
        self, user_id: int, message_id: int, data: str, chat_id: int | None = None
    ) -> list[BotEvent]:
        start = len(self.fake.events)
        self.fake.press(user_id, message_id, data, chat_id)
        return await self._deliver(start)

    async def send_document(
        self, user_id: int, name: str, content: bytes, mime_type: str = "text/csv"
    ) -> list[BotEvent]:
        start = len(self.fake.events)
        self.fake.send_document(user_id, name, content, mime_type)
        return await self._deliver(start)


@asynccontextmanager
async def running_bot(
    db: Database, fake: FakeBot, settings: Settings | None = None
) -> AsyncIterator[BotUnderTest]:
    app = build_application(settings or bot_settings(), db, request=InMemoryRequest(fake))
    async with app:
        yield BotUnderTest(app, fake)


def screen(events: list[BotEvent]) -> BotEvent:
    """The message the user looks at after the bot's reaction: the last one sent or edited."""
    return [event for event in events if event.kind in ("sent", "edited")][-1]


def buttons(event: BotEvent) -> dict[str, str]:
    """{callback data: label} of a message's inline keyboard."""
    return {b["callback_data"]: b["text"] for row in event.buttons() for b in row}


def chain_file(name: str, steps: int = 1) -> str:
    lines = ["format: chainmail/1", f"name: {json.dumps(name)}", "steps:"]
    for position in range(1, steps + 1):
        audience = f"{{segments: [{SEGMENT}]}}" if position == 1 else "{who: all}"
        schedule = "{send: now}" if position == 1 else "{send: after, after: 1d}"
        lines += [
            f"  - name: Step {position}",
            f"    audience: {audience}",
            '    action: {channel: email, subject: "Hi", text: "Hello"}',
            f"    schedule: {schedule}",
        ]
    return "\n".join(lines) + "\n"


async def make_chain(
    db: Database, name: str, status: ChainStatus = ChainStatus.ACTIVE, steps: int = 1
) -> int:
    """A chain made through the services, brought to `status` (draft, active or paused)."""
    if SEGMENT not in {segment.name for segment in await list_segments(db)}:
        await add_segment(db, SEGMENT, actor="test")
    chain_id = (await import_chain(db, chain_file(name, steps), actor="test")).chain_id
    if status in (ChainStatus.ACTIVE, ChainStatus.PAUSED):
        await activate_chain(db, chain_id, actor="test")
    if status is ChainStatus.PAUSED:
        await pause_chain(db, chain_id, actor="test")
    return chain_id
