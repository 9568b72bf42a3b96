"""What one bot's state is made of: chats with their messages, stored files, what the bot
did (events, the request log), callback queries waiting for an answer, and the
signal that wakes waiters when any of it changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypeVar

JsonDict = dict[str, Any]
_T = TypeVar("_T")


@dataclass
class Chat:
    id: int
    type: Literal["private", "group"]
    title: str | None = None
    user: JsonDict | None = None
    members: set[int] = field(default_factory=set)
    messages: dict[int, JsonDict] = field(default_factory=dict)
    next_message_id: int = 1
    # The reply keyboard the bot last showed here; Message objects never carry one.
    reply_keyboard: JsonDict | None = None

    def as_api(self) -> JsonDict:
        if self.type == "group":
            return {"id": self.id, "title": self.title, "type": "group"}
        assert self.user is not None
        names: JsonDict = {
            key: self.user[key]
            for key in ("first_name", "last_name", "username")
            if key in self.user
        }
        return {"id": self.id, **names, "type": "private"}


@dataclass(frozen=True)
class StoredFile:
    file_id: str
    file_unique_id: str
    kind: Literal["photo", "document"]
    file_path: str
    data: bytes
    file_name: str | None = None
    mime_type: str | None = None
    width: int = 0
    height: int = 0

    def as_file(self) -> JsonDict:
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": len(self.data),
            "file_path": self.file_path,
        }

    def as_photo_size(self) -> JsonDict:
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": len(self.data),
            "width": self.width,
            "height": self.height,
        }

    def as_document(self) -> JsonDict:
        document: JsonDict = {}
        if self.file_name:
            document["file_name"] = self.file_name
        if self.mime_type:
            document["mime_type"] = self.mime_type
        return {
            **document,
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": len(self.data),
        }


# What a snapshot keeps of a stored file besides its bytes.
STORED_FILE_FIELDS = tuple(f.name for f in fields(StoredFile) if f.name != "data")


def image_size(data: bytes) -> tuple[str, int, int] | None:
    """(extension, width, height) of a PNG, GIF or JPEG image; None for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return "png", width, height
    if data[:6] in {b"GIF87a", b"GIF89a"} and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return "gif", width, height
    if data.startswith(b"\xff\xd8"):
        index = 2
        while index + 9 <= len(data) and data[index] == 0xFF:
            marker = data[index + 1]
            (length,) = struct.unpack(">H", data[index + 2 : index + 4])
            # Start-of-frame markers carry the size; C4, C8 and CC share the range but don't.
            if 0xC0 <= marker <= 0xCF and marker not in {0xC4, 0xC8, 0xCC}:
                height, width = struct.unpack(">HH", data[index + 5 : index + 9])
                return "jpg", width, height
            index += 2 + length
    return None


EventKind = Literal["sent", "edited", "deleted", "answered", "action"]


@dataclass(frozen=True)
class BotEvent:
    """Something the bot did that a user would see."""

    seq: int
    kind: EventKind
    chat_id: int
    # sent / edited: the message after the change; deleted: as it was; else None.
    message: JsonDict | None = None
    # answered: callback_query_id, text, show_alert, url; action: action.
    detail: JsonDict = field(default_factory=dict)
    # When the double took the bot's call (time.monotonic()): latency measurements.
    at: float = field(default_factory=time.monotonic)

    @property
    def message_id(self) -> int | None:
        return None if self.message is None else self.message["message_id"]

    @property
    def text(self) -> str | None:
        """The message's text or caption; for a callback answer, its text."""
        if self.message is not None:
            return self.message.get("text", self.message.get("caption"))
        return self.detail.get("text")

    def buttons(self) -> list[list[JsonDict]]:
        """The message's inline keyboard, row by row (empty without one)."""
        markup = (self.message or {}).get("reply_markup") or {}
        rows: list[list[JsonDict]] = markup.get("inline_keyboard", [])
        return rows


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    params: JsonDict
    # Uploaded parts: field name -> file name.
    files: dict[str, str]
    # Telegram's description when refused, None when answered ok.
    error: str | None


@dataclass
class CallbackQuery:
    chat_id: int
    answered: bool = False


class ChangeSignal:
    """Wakes coroutines on any event loop, in any thread, when the state changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    def notify(self) -> None:
        with self._lock:
            waiters = list(self._waiters)
        for loop, event in waiters:
            # A loop closed while its waiter was registered has nobody left to wake.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

    async def wait(self, check: Callable[[], _T | None], seconds: float) -> _T | None:
        """The first non-None `check()`, re-checked on every change; None after `seconds`."""
        loop = asyncio.get_running_loop()
        waiter = (loop, asyncio.Event())
        deadline = loop.time() + seconds
        with self._lock:
            self._waiters.add(waiter)
        try:
            while True:
                # Cleared before checking, so a change made during the check still wakes us.
                waiter[1].clear()
                result = check()
                remaining = deadline - loop.time()
                if result is not None or remaining <= 0:
                    return result
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter[1].wait(), remaining)
        finally:
            with self._lock:
                self._waiters.discard(waiter)
