"""The chat history of the Telegram double, kept in a JSON file of the data directory.

Telegram keeps chats on its servers; the double keeps them in memory. So that a
restarted playground shows the chats as they were (with their buttons still
working), the double's users, chats and files are written to a file every few
seconds when they changed, and at stop; they are read back at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

from telegram_double import FakeBot

SAVE_EVERY_SECONDS = 2.0


class ChatHistory:
    def __init__(self, bot: FakeBot, path: Path) -> None:
        self._bot = bot
        self._path = path
        self._written = ""

    def load(self) -> bool:
        """Restore the saved chats; False when there are none yet."""
        if not self._path.exists():
            return False
        self._written = self._path.read_text(encoding="utf-8")
        self._bot.restore(json.loads(self._written))
        return True

    def save(self) -> None:
        text = json.dumps(self._bot.snapshot(), ensure_ascii=False)
        if text == self._written:
            return
        temporary = self._path.with_suffix(".tmp")
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(self._path)
        self._written = text

    async def keep_saved(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SAVE_EVERY_SECONDS)
            await asyncio.to_thread(self.save)
