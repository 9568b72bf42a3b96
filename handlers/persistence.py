"""The bot's memory in the database (SPEC §8): conversations, user, chat and bot data.

Every `update_*` call writes its row at once (an upsert in `bot_state`), and
`ChainmailApplication` asks for the updates after each update it handles, so
a bot killed mid-conversation resumes where each user was. Rows that did not
change since they were last read or written are not written again, and empty
dicts are no rows at all.

Only JSON survives: data must be dicts with string keys, lists, strings, numbers,
booleans and None; conversation states strings or numbers. Anything else (a tuple,
a set, an int key, an object) is refused with a TypeError when it is saved, rather
than coming back different after a restart. Keep ids of chains or steps in user
data, never model objects.

One bot process uses the rows (SPEC §8: one `chainmail bot`), so what it holds in
memory is always the newest: the `refresh_*` hooks have nothing to read. Buttons
carry plain strings (handlers/callbacks.py), so there is no callback data to keep.
"""

from __future__ import annotations

import json
from typing import Any

from telegram.ext import BasePersistence, PersistenceInput

from handlers import Data
from handlers.bot_state import delete_state, load_states, save_state
from models.db import Database
from models.tables import BotStateKind

BOT_KEY = ""
# PTB's key of a conversation: (chat id, user id) by default.
ConversationKey = tuple[int | str, ...]


def as_json(data: Any) -> str:
    """The data as canonical JSON, or a TypeError if JSON would not give it back unchanged."""
    try:
        text = json.dumps(data, sort_keys=True, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"bot state must be JSON data, not {data!r}: {exc}") from None
    if json.loads(text) != data:
        raise TypeError(f"bot state must be JSON data (str keys, lists not tuples), not {data!r}")
    return text


def conversation_key(name: str, key: ConversationKey) -> str:
    return json.dumps([name, *key])


class DatabasePersistence(BasePersistence[Data, Data, Data]):
    def __init__(self, db: Database) -> None:
        super().__init__(store_data=PersistenceInput(callback_data=False))
        self._db = db
        # The JSON each row holds, as last read or written: unchanged data is not rewritten.
        self._stored: dict[tuple[BotStateKind, str], str] = {}

    async def _load(self, kind: BotStateKind) -> dict[str, Any]:
        rows = await load_states(self._db, kind)
        for key, data in rows.items():
            self._stored[kind, key] = as_json(data)
        return rows

    async def _save(self, kind: BotStateKind, key: str, data: Any) -> None:
        text = as_json(data)
        if self._stored.get((kind, key)) == text:
            return
        if data == {}:
            # Everyone the bot hears from, strangers included, gets an empty dict:
            # keeping only dicts with something in them keeps the table small.
            if (kind, key) in self._stored:
                await self._drop(kind, key)
            return
        await save_state(self._db, kind, key, data)
        self._stored[kind, key] = text

    async def _drop(self, kind: BotStateKind, key: str) -> None:
        await delete_state(self._db, kind, key)
        self._stored.pop((kind, key), None)

    async def get_user_data(self) -> dict[int, Data]:
        return {int(key): data for key, data in (await self._load(BotStateKind.USER)).items()}

    async def get_chat_data(self) -> dict[int, Data]:
        return {int(key): data for key, data in (await self._load(BotStateKind.CHAT)).items()}

    async def get_bot_data(self) -> Data:
        return (await self._load(BotStateKind.BOT)).get(BOT_KEY, {})

    async def get_conversations(self, name: str) -> dict[ConversationKey, object]:
        conversations: dict[ConversationKey, object] = {}
        for key, state in (await self._load(BotStateKind.CONVERSATION)).items():
            owner, *ids = json.loads(key)
            if owner == name:
                conversations[tuple(ids)] = state
        return conversations

    async def update_user_data(self, user_id: int, data: Data) -> None:
        await self._save(BotStateKind.USER, str(user_id), data)

    async def update_chat_data(self, chat_id: int, data: Data) -> None:
        await self._save(BotStateKind.CHAT, str(chat_id), data)

    async def update_bot_data(self, data: Data) -> None:
        await self._save(BotStateKind.BOT, BOT_KEY, data)

    async def update_conversation(
        self, name: str, key: ConversationKey, new_state: object | None
    ) -> None:
        row = conversation_key(name, key)
        if new_state is None:
            await self._drop(BotStateKind.CONVERSATION, row)
        else:
            await self._save(BotStateKind.CONVERSATION, row, new_state)

    async def drop_user_data(self, user_id: int) -> None:
        await self._drop(BotStateKind.USER, str(user_id))

    async def drop_chat_data(self, chat_id: int) -> None:
        await self._drop(BotStateKind.CHAT, str(chat_id))

    async def refresh_user_data(self, user_id: int, user_data: Data) -> None:
        """Nothing to refresh: this process is the only one writing (module docstring)."""

    async def refresh_chat_data(self, chat_id: int, chat_data: Data) -> None:
        """Nothing to refresh: this process is the only one writing (module docstring)."""

    async def refresh_bot_data(self, bot_data: Data) -> None:
        """Nothing to refresh: this process is the only one writing (module docstring)."""

    async def get_callback_data(self) -> None:
        """Never asked for: callback data is not stored (module docstring)."""

    async def update_callback_data(self, data: object) -> None:
        """Never called: callback data is not stored (module docstring)."""

    async def flush(self) -> None:
        """Nothing is pending: every update was written when it was made."""
