"""A fake Telegram Bot API server, for tests and the playground.

It speaks the Bot API over HTTP (`/bot<token>/<method>` and
`/file/bot<token>/<file_path>`) the way python-telegram-bot uses it: bodies
form-urlencoded with JSON-encoded fields, multipart when a file is attached,
JSON, or empty; answers `{"ok": true, "result": ...}` with objects shaped as the
Bot API's, and refuses what Telegram refuses with Telegram's own descriptions.
State (users, chats, messages, keyboards, callback queries, files, pending
updates) lives in memory, per bot token.

The other side of the conversation is a Python driver: define users, make them
write, send files and press buttons, then inspect the chats or await the bot's
next reaction (`wait_for`). `TelegramDouble` serves it all on a free loopback
port from a thread of its own (`start()`/`stop()`, `with`, `async with`), or
in-process as the ASGI app `double.app`.

Every method is safe to call from any thread and any event loop.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import email.parser
import inspect
import itertools
import json
import mimetypes
import re
import secrets
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from html.parser import HTMLParser
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = [
    "BotApiError",
    "BotEvent",
    "DriverError",
    "EntityParseError",
    "FakeBot",
    "RecordedRequest",
    "TelegramDouble",
    "Upload",
    "parse_formatted_text",
    "utf16_length",
]

JsonDict = dict[str, Any]
_T = TypeVar("_T")

HOST = "127.0.0.1"

# Limits of the real Bot API (telegram.constants mirrors them).
MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MAX_CALLBACK_DATA_BYTES = 64
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024

CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)

NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)


class BotApiError(Exception):
    """A refusal in Telegram's words: becomes `{"ok": false, "error_code", "description"}`."""

    def __init__(self, error_code: int, description: str) -> None:
        super().__init__(description)
        self.error_code = error_code
        self.description = description


def _bad_request(reason: str) -> BotApiError:
    return BotApiError(400, f"Bad Request: {reason}")


class DriverError(Exception):
    """The driver was asked for something a real user could not do (press a missing button, …)."""


class EntityParseError(ValueError):
    """Formatted text Telegram refuses; the message is what follows "can't parse entities: "."""


# ------------------------------------------------------------------ formatted text


def utf16_length(text: str) -> int:
    """Length in UTF-16 code units: the unit of entity offsets and lengths."""
    return len(text.encode("utf-16-le")) // 2


def _byte_offset(source: str, index: int) -> int:
    # Telegram reports parse errors at UTF-8 byte offsets into the text it was sent.
    return len(source[:index].encode())


def _sorted_entities(entities: list[JsonDict]) -> list[JsonDict]:
    return sorted(entities, key=lambda entity: (entity["offset"], -entity["length"]))


class _TextBuilder:
    def __init__(self) -> None:
        self._parts: list[str] = []
        self.position = 0
        self.entities: list[JsonDict] = []

    def add(self, text: str) -> None:
        self._parts.append(text)
        self.position += utf16_length(text)

    def entity(
        self, entity_type: str, start: int, end: int | None = None, extra: JsonDict | None = None
    ) -> None:
        end = self.position if end is None else end
        if end > start:
            self.entities.append(
                {"type": entity_type, "offset": start, "length": end - start, **(extra or {})}
            )

    def result(self) -> tuple[str, list[JsonDict]]:
        return "".join(self._parts), _sorted_entities(self.entities)


_HTML_ENTITY_TYPES = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "code": "code",
    "pre": "pre",
    "a": "text_link",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}


class _HtmlEntityParser(HTMLParser):
    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self._source = source
        self._line_starts = [0, *(match.end() for match in re.finditer("\n", source))]
        self.text = _TextBuilder()
        # (tag, entity type or None when folded into its parent, its fields, start)
        self._open: list[tuple[str, str | None, JsonDict, int]] = []

    def _at(self) -> int:
        line, column = self.getpos()
        return _byte_offset(self._source, self._line_starts[line - 1] + column)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        entity_type = _HTML_ENTITY_TYPES.get(tag)
        if tag == "span" and attributes.get("class") != "tg-spoiler":
            entity_type = None
        if entity_type is None:
            raise EntityParseError(f'Unsupported start tag "{tag}" at byte offset {self._at()}')
        fields: JsonDict = {}
        if tag == "a":
            fields["url"] = attributes.get("href") or ""
        elif tag == "blockquote" and "expandable" in attributes:
            entity_type = "expandable_blockquote"
        elif tag == "tg-emoji":
            fields["custom_emoji_id"] = attributes.get("emoji-id") or ""
        elif tag == "code" and self._open and self._open[-1][0] == "pre":
            # <pre><code class="language-x"> is one pre entity with a language.
            language = (attributes.get("class") or "").removeprefix("language-")
            if language:
                self._open[-1][2]["language"] = language
            entity_type = None
        self._open.append((tag, entity_type, fields, self.text.position))

    def handle_endtag(self, tag: str) -> None:
        if not self._open:
            raise EntityParseError(f"Unexpected end tag at byte offset {self._at()}")
        open_tag, entity_type, fields, start = self._open.pop()
        if open_tag != tag:
            raise EntityParseError(
                f'Unmatched end tag at byte offset {self._at()}, expected "</{open_tag}>", '
                f'found "</{tag}>"'
            )
        if entity_type is not None:
            self.text.entity(entity_type, start, extra=fields)

    def handle_data(self, data: str) -> None:
        self.text.add(data)

    def parse(self) -> tuple[str, list[JsonDict]]:
        self.feed(self._source)
        self.close()
        if self._open:
            raise EntityParseError(
                f'Can\'t find end tag corresponding to start tag "{self._open[-1][0]}"'
            )
        return self.text.result()


_MARKDOWN_V2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MARKDOWN_V2_TYPES = {
    "*": "bold",
    "_": "italic",
    "__": "underline",
    "~": "strikethrough",
    "||": "spoiler",
}
# How TDLib names entity types in "Can't find end of … entity" errors.
_TDLIB_ENTITY_NAMES = {
    "*": "Bold",
    "_": "Italic",
    "__": "Underline",
    "~": "Strikethrough",
    "||": "Spoiler",
    "[": "TextUrl",
    "![": "CustomEmoji",
}


def _reserved(character: str) -> EntityParseError:
    return EntityParseError(
        f"Character '{character}' is reserved and must be escaped with the preceding '\\'"
    )


def _read_until(source: str, start: int, closing: str, escapable: str) -> tuple[str, int] | None:
    """Text up to `closing` (with `\\` escaping `escapable`) and the index just past it."""
    parts: list[str] = []
    index = start
    while index < len(source):
        if source.startswith(closing, index):
            return "".join(parts), index + len(closing)
        if source[index] == "\\" and index + 1 < len(source) and source[index + 1] in escapable:
            index += 1
        parts.append(source[index])
        index += 1
    return None


def _split_pre(content: str) -> tuple[str, str]:
    """(language, code) of a ``` block: a first line without spaces names the language."""
    first_line, newline, rest = content.partition("\n")
    if newline and not re.search(r"\s", first_line):
        return first_line, rest
    return "", content


def _parse_markdown_v2(source: str) -> tuple[str, list[JsonDict]]:
    text = _TextBuilder()
    # (marker, output position where the entity starts, source index of the marker)
    open_entities: list[tuple[str, int, int]] = []
    quote_start: int | None = None
    index = 0
    while index < len(source):
        character = source[index]
        if index == 0 or source[index - 1] == "\n":
            if character == ">":
                quote_start = text.position if quote_start is None else quote_start
                index += 1
                continue
            if quote_start is not None:
                # The quote ended with the previous line; its newline is not quoted.
                text.entity("blockquote", quote_start, text.position - 1)
                quote_start = None
        if character == "\\" and index + 1 < len(source) and 0 < ord(source[index + 1]) < 127:
            text.add(source[index + 1])
            index += 2
        elif source.startswith("```", index):
            found = _read_until(source, index + 3, "```", "`\\")
            if found is None:
                raise EntityParseError(
                    f"Can't find end of Pre entity at byte offset {_byte_offset(source, index)}"
                )
            language, code = _split_pre(found[0])
            start = text.position
            text.add(code)
            text.entity("pre", start, extra={"language": language} if language else None)
            index = found[1]
        elif character == "`":
            found = _read_until(source, index + 1, "`", "`\\")
            if found is None:
                raise EntityParseError(
                    f"Can't find end of Code entity at byte offset {_byte_offset(source, index)}"
                )
            start = text.position
            text.add(found[0])
            text.entity("code", start)
            index = found[1]
        elif source.startswith("![", index) or character == "[":
            marker = "![" if character == "!" else "["
            open_entities.append((marker, text.position, index))
            index += len(marker)
        elif character == "]":
            if not open_entities or open_entities[-1][0] not in {"[", "!["}:
                raise _reserved("]")
            marker, start, _ = open_entities.pop()
            index += 1
            if not source.startswith("(", index):
                if marker == "![":
                    raise EntityParseError("Custom emoji entity must contain a tg://emoji URL")
                continue
            found = _read_until(source, index + 1, ")", ")\\")
            if found is None:
                raise EntityParseError(
                    f"Can't find end of a URL at byte offset {_byte_offset(source, index)}"
                )
            url, index = found
            if marker == "![":
                emoji = re.fullmatch(r"tg://emoji\?id=(\d+)", url)
                if emoji is None:
                    raise EntityParseError("Custom emoji URL must have an emoji identifier")
                text.entity("custom_emoji", start, extra={"custom_emoji_id": emoji[1]})
            else:
                text.entity("text_link", start, extra={"url": url})
        elif character in "*_~|":
            marker = character
            if source.startswith("__", index) or source.startswith("||", index):
                marker = character * 2
            elif character == "|":
                raise _reserved("|")
            if open_entities and open_entities[-1][0] == marker:
                _, start, _ = open_entities.pop()
                text.entity(_MARKDOWN_V2_TYPES[marker], start)
            elif any(opened == marker for opened, _, _ in open_entities):
                inner, _, at = open_entities[-1]
                raise EntityParseError(
                    f"Can't find end of {_TDLIB_ENTITY_NAMES[inner]} entity at byte offset "
                    f"{_byte_offset(source, at)}"
                )
            else:
                open_entities.append((marker, text.position, index))
            index += len(marker)
        elif character in _MARKDOWN_V2_RESERVED:
            raise _reserved(character)
        else:
            text.add(character)
            index += 1
    if open_entities:
        marker, _, at = open_entities[-1]
        raise EntityParseError(
            f"Can't find end of {_TDLIB_ENTITY_NAMES[marker]} entity at byte offset "
            f"{_byte_offset(source, at)}"
        )
    if quote_start is not None:
        text.entity("blockquote", quote_start)
    return text.result()


_MARKDOWN_LINK = re.compile(r"\[([^\]]*)\]\(([^)]*)\)")


def _parse_markdown(source: str) -> tuple[str, list[JsonDict]]:
    """Legacy Markdown: *bold*, _italic_, `code`, ```pre```, [text](url); no nesting."""
    text = _TextBuilder()
    index = 0

    def unclosed() -> EntityParseError:
        return EntityParseError(
            f"Can't find end of the entity starting at byte offset {_byte_offset(source, index)}"
        )

    while index < len(source):
        character = source[index]
        if character == "\\" and index + 1 < len(source) and source[index + 1] in "_*`[":
            text.add(source[index + 1])
            index += 2
        elif character in "*_`":
            marker = "```" if source.startswith("```", index) else character
            end = source.find(marker, index + len(marker))
            if end < 0:
                raise unclosed()
            content = source[index + len(marker) : end]
            start = text.position
            if marker == "```":
                language, code = _split_pre(content)
                text.add(code)
                text.entity("pre", start, extra={"language": language} if language else None)
            else:
                text.add(content)
                text.entity({"*": "bold", "_": "italic", "`": "code"}[marker], start)
            index = end + len(marker)
        elif character == "[":
            link = _MARKDOWN_LINK.match(source, index)
            if link is None:
                raise unclosed()
            start = text.position
            text.add(link[1])
            text.entity("text_link", start, extra={"url": link[2]})
            index = link.end()
        else:
            text.add(character)
            index += 1
    return text.result()


def parse_formatted_text(text: str, parse_mode: str) -> tuple[str, list[JsonDict]]:
    """Plain text and entities of `text` in `parse_mode` ("HTML", "MarkdownV2", "Markdown").

    Raises EntityParseError where Telegram answers "can't parse entities", and
    ValueError for a parse mode Telegram does not know.
    """
    parsers = {
        "html": lambda: _HtmlEntityParser(text).parse(),
        "markdownv2": lambda: _parse_markdown_v2(text),
        "markdown": lambda: _parse_markdown(text),
    }
    parser = parsers.get(parse_mode.lower())
    if parser is None:
        raise ValueError(f"unsupported parse_mode {parse_mode!r}")
    return parser()


def _trimmed(text: str, entities: list[JsonDict]) -> tuple[str, list[JsonDict]]:
    """Telegram drops leading and trailing whitespace, shifting entities to match."""
    without_lead = text.lstrip()
    lead = utf16_length(text) - utf16_length(without_lead)
    trimmed = without_lead.rstrip()
    total = utf16_length(trimmed)
    kept = []
    for entity in entities:
        start = max(entity["offset"] - lead, 0)
        end = min(entity["offset"] + entity["length"] - lead, total)
        if end > start:
            kept.append({**entity, "offset": start, "length": end - start})
    return trimmed, kept


_BOT_COMMAND = re.compile(r"(?<!\S)/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?")
_MENTION = re.compile(r"(?<![\w@/])@[A-Za-z0-9_]{5,32}")


def _user_text_entities(text: str) -> list[JsonDict]:
    """What Telegram's clients mark in a typed message: bot commands and @mentions."""
    entities = [
        {
            "type": kind,
            "offset": utf16_length(text[: match.start()]),
            "length": utf16_length(match[0]),
        }
        for kind, pattern in (("bot_command", _BOT_COMMAND), ("mention", _MENTION))
        for match in pattern.finditer(text)
    ]
    return _sorted_entities(entities)


# ------------------------------------------------------------------------- files


@dataclass(frozen=True)
class Upload:
    """A file part of a multipart request."""

    filename: str | None
    content_type: str | None
    data: bytes


@dataclass(frozen=True)
class _StoredFile:
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
_STORED_FILE_FIELDS = tuple(f.name for f in fields(_StoredFile) if f.name != "data")


def _image_size(data: bytes) -> tuple[str, int, int] | None:
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


# ----------------------------------------------------------------- request bodies

_JSON_FIELDS = {
    "reply_markup": "can't parse reply keyboard markup JSON object",
    "entities": "can't parse entities JSON object",
    "caption_entities": "can't parse entities JSON object",
    "allowed_updates": "can't parse allowed_updates JSON object",
    "commands": "can't parse commands JSON object",
    "scope": "can't parse BotCommandScope JSON object",
    "reply_parameters": "can't parse reply parameters JSON object",
    "link_preview_options": "can't parse link preview options JSON object",
}
_INTEGER_FIELDS = frozenset(
    {
        "chat_id",
        "message_id",
        "offset",
        "limit",
        "timeout",
        "reply_to_message_id",
        "message_thread_id",
        "cache_time",
        "user_id",
    }
)
_BOOLEAN_FIELDS = frozenset(
    {
        "show_alert",
        "drop_pending_updates",
        "disable_notification",
        "protect_content",
        "allow_sending_without_reply",
        "has_spoiler",
        "show_caption_above_media",
        "disable_content_type_detection",
        "disable_web_page_preview",
    }
)


def _normalized(name: str, value: Any) -> Any:
    """A parameter as the Bot API reads it: form fields arrive as strings, JSON ones typed."""
    if not isinstance(value, str):
        return value
    if name in _JSON_FIELDS:
        try:
            return json.loads(value)
        except ValueError:
            raise _bad_request(_JSON_FIELDS[name]) from None
    if name in _INTEGER_FIELDS and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    if name in _BOOLEAN_FIELDS and value.lower() in {"true", "false", "1", "0"}:
        return value.lower() in {"true", "1"}
    return value


def _parse_multipart(body: bytes, content_type: str) -> tuple[dict[str, str], dict[str, Upload]]:
    headers = email.parser.HeaderParser().parsestr(f"Content-Type: {content_type}\r\n\r\n")
    boundary = headers.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise _bad_request("can't parse multipart/form-data request")
    fields: dict[str, str] = {}
    files: dict[str, Upload] = {}
    for chunk in body.split(b"--" + boundary.encode())[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, content = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        content = content.removesuffix(b"\r\n")
        part = email.parser.HeaderParser().parsestr(head.decode("utf-8", "replace") + "\r\n\r\n")
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        filename = part.get_filename()
        if filename is None:
            fields[name] = content.decode("utf-8", "replace")
        else:
            files[name] = Upload(
                filename, part.get_content_type() if part["content-type"] else None, content
            )
    return fields, files


async def _read_request(request: Request) -> tuple[JsonDict, dict[str, Upload]]:
    """Raw parameters (query string, then body) and uploaded files of a Bot API call."""
    values: JsonDict = dict(request.query_params)
    uploads: dict[str, Upload] = {}
    body = await request.body()
    content_type = request.headers.get("content-type", "")
    media_type = content_type.partition(";")[0].strip().lower()
    if not body:
        return values, uploads
    if media_type == "application/json":
        try:
            decoded = json.loads(body)
        except ValueError:
            raise _bad_request("can't parse JSON object") from None
        if not isinstance(decoded, dict):
            raise _bad_request("can't parse JSON object")
        values.update(decoded)
    elif media_type == "application/x-www-form-urlencoded":
        values.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    elif media_type == "multipart/form-data":
        fields, uploads = _parse_multipart(body, content_type)
        values.update(fields)
    return values, uploads


# ---------------------------------------------------------------------- the state


@dataclass
class _Chat:
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
class _CallbackQuery:
    chat_id: int
    answered: bool = False


class _ChangeSignal:
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


_BUTTON_ACTIONS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)

_Handler = Callable[["FakeBot", "_Params"], Any]


class _Params:
    """The parameters of one call, typed the way the Bot API reads them."""

    def __init__(self, values: JsonDict, uploads: dict[str, Upload]) -> None:
        self.values = values
        self.uploads = uploads

    def get(self, name: str) -> Any:
        return self.values.get(name)

    def string(self, name: str) -> str:
        value = self.values.get(name)
        return "" if value is None else str(value)

    def integer(self, name: str, default: int = 0) -> int:
        value = self.values.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        return default

    def flag(self, name: str) -> bool:
        return self.values.get(name) is True

    def upload(self, name: str) -> Upload | None:
        """The file sent as part `name`, or through an `attach://<part>` value."""
        value = self.values.get(name)
        if isinstance(value, str) and value.startswith("attach://"):
            return self.uploads.get(value.removeprefix("attach://"))
        return self.uploads.get(name)


# -------------------------------------------------------------------- one bot


class FakeBot:
    """The Bot API state of one bot token, and the driver of its users.

    API methods are served through `call`; everything else here is the driver:
    users acting on the bot, and inspection of what the bot did.
    """

    def __init__(self, token: str, *, username: str, first_name: str) -> None:
        if not re.fullmatch(r"\d+:[A-Za-z0-9_-]+", token):
            raise ValueError(f"{token!r} is not a bot token (<bot id>:<secret>)")
        self.token = token
        self.id = int(token.partition(":")[0])
        self.username = username
        self.first_name = first_name
        self._lock = threading.RLock()
        self._changes = _ChangeSignal()
        self._closing = False
        # A poll still waiting learns it was superseded when this moves on.
        self._poll_generation = 0
        # Ids never repeat, even across reset(): update ids only grow, as Telegram's
        # do, so a running bot's offset stays valid, and stale ids find nothing.
        self._update_ids = itertools.count(1)
        self._callback_ids = itertools.count(1)
        self._file_numbers = itertools.count(1)
        self.reset()

    def reset(self) -> None:
        """Forget everything but the bot itself: users, chats, files, updates, logs."""
        with self._lock:
            self._users: dict[int, JsonDict] = {}
            self._chats: dict[int, _Chat] = {}
            self._updates: list[JsonDict] = []
            self._allowed_updates: frozenset[str] | None = None
            self._webhook_url = ""
            self._commands: dict[tuple[str, str], list[JsonDict]] = {}
            self._files: dict[str, _StoredFile] = {}
            self._callback_queries: dict[str, _CallbackQuery] = {}
            self._events: list[BotEvent] = []
            # wait_for looks at events after this one: the last injected or awaited.
            self._seen = 0
            self._requests: list[RecordedRequest] = []

    def snapshot(self) -> JsonDict:
        """Users, chats with their messages, and files, as JSON for `restore`.

        Pending updates, callback queries, events and the request log are left
        out: they belong to a running bot and mean nothing to the next one.
        """
        with self._lock:
            return copy.deepcopy(
                {
                    "users": list(self._users.values()),
                    "chats": [
                        {
                            "id": chat.id,
                            "type": chat.type,
                            "title": chat.title,
                            "user": chat.user,
                            "members": sorted(chat.members),
                            "messages": list(chat.messages.values()),
                            "next_message_id": chat.next_message_id,
                            "reply_keyboard": chat.reply_keyboard,
                        }
                        for chat in self._chats.values()
                    ],
                    "files": [
                        {
                            **{name: getattr(stored, name) for name in _STORED_FILE_FIELDS},
                            "data": base64.b64encode(stored.data).decode(),
                        }
                        for stored in self._files.values()
                    ],
                }
            )

    def restore(self, snapshot: JsonDict) -> None:
        """Forget everything (as `reset`), then take users, chats and files from a `snapshot()`."""
        self.reset()
        with self._lock:
            self._users = {user["id"]: copy.deepcopy(user) for user in snapshot["users"]}
            for saved in snapshot["chats"]:
                chat = _Chat(
                    saved["id"],
                    saved["type"],
                    title=saved["title"],
                    user=copy.deepcopy(saved["user"]),
                    members=set(saved["members"]),
                    messages={m["message_id"]: copy.deepcopy(m) for m in saved["messages"]},
                    next_message_id=saved["next_message_id"],
                    reply_keyboard=copy.deepcopy(saved["reply_keyboard"]),
                )
                self._chats[chat.id] = chat
            numbers = [0]
            for saved in snapshot["files"]:
                stored = _StoredFile(
                    **{name: saved[name] for name in _STORED_FILE_FIELDS},
                    data=base64.b64decode(saved["data"]),
                )
                self._files[stored.file_id] = stored
                number = re.search(r"file_(\d+)", stored.file_path)
                numbers.append(int(number[1]) if number else 0)
            # New files must not take the paths of restored ones.
            self._file_numbers = itertools.count(max(numbers) + 1)

    def as_user(self) -> JsonDict:
        return {
            "id": self.id,
            "is_bot": True,
            "first_name": self.first_name,
            "username": self.username,
        }

    # ------------------------------------------------------------- the Bot API

    async def call(
        self, method: str, values: JsonDict, uploads: dict[str, Upload] | None = None
    ) -> tuple[int, JsonDict]:
        """Serve one Bot API call: (HTTP status, response body)."""
        uploads = uploads or {}
        # Telegram matches method names without regard to case.
        name, handler = _METHODS.get(method.lower(), (method, None))
        params: JsonDict = {}
        try:
            params = {key: _normalized(key, value) for key, value in values.items()}
            if handler is None:
                raise BotApiError(404, "Not Found")
            result = handler(self, _Params(params, uploads))
            if inspect.isawaitable(result):
                result = await result
        except BotApiError as refusal:
            self._record(name, params, uploads, refusal.description)
            body = {
                "ok": False,
                "error_code": refusal.error_code,
                "description": refusal.description,
            }
            return refusal.error_code, body
        finally:
            self._changes.notify()
        self._record(name, params, uploads, None)
        return 200, {"ok": True, "result": result}

    def _record(
        self, method: str, params: JsonDict, uploads: dict[str, Upload], error: str | None
    ) -> None:
        files = {name: upload.filename or "" for name, upload in uploads.items()}
        with self._lock:
            self._requests.append(RecordedRequest(method, params, files, error))

    def _event(
        self, kind: EventKind, chat_id: int, message: JsonDict | None = None, **detail: Any
    ) -> None:
        with self._lock:
            self._events.append(
                BotEvent(len(self._events) + 1, kind, chat_id, copy.deepcopy(message), detail)
            )

    def _get_me(self, params: _Params) -> JsonDict:
        return {
            **self.as_user(),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _get_updates(self, params: _Params) -> list[JsonDict]:
        offset = params.integer("offset")
        limit = min(max(params.integer("limit", 100), 1), 100)
        timeout = max(params.integer("timeout"), 0)
        allowed = params.get("allowed_updates")
        with self._lock:
            if self._webhook_url:
                raise BotApiError(
                    409,
                    "Conflict: can't use getUpdates method while webhook is active; "
                    "use deleteWebhook to delete the webhook first",
                )
            if isinstance(allowed, list):
                self._allowed_updates = frozenset(map(str, allowed)) or None
            if offset < 0:
                del self._updates[: max(len(self._updates) + offset, 0)]
            elif offset > 0:
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
            self._poll_generation += 1
            generation = self._poll_generation

        def ready() -> list[JsonDict] | None:
            with self._lock:
                if self._poll_generation != generation:
                    raise BotApiError(
                        409,
                        "Conflict: terminated by other getUpdates request; "
                        "make sure that only one bot instance is running",
                    )
                if self._updates or self._closing:
                    return copy.deepcopy(self._updates[:limit])
                return None

        # A poll still waiting is superseded by this one: wake it to say so.
        self._changes.notify()
        return await self._changes.wait(ready, timeout) or []

    def _set_webhook(self, params: _Params) -> bool:
        url = params.string("url")
        if url and not url.startswith("https://"):
            raise _bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        with self._lock:
            self._webhook_url = url
        return True

    def _delete_webhook(self, params: _Params) -> bool:
        with self._lock:
            self._webhook_url = ""
            if params.flag("drop_pending_updates"):
                self._updates.clear()
        return True

    def _get_webhook_info(self, params: _Params) -> JsonDict:
        with self._lock:
            return {
                "url": self._webhook_url,
                "has_custom_certificate": False,
                "pending_update_count": len(self._updates),
            }

    @staticmethod
    def _commands_key(params: _Params) -> tuple[str, str]:
        scope = params.get("scope") or {"type": "default"}
        return json.dumps(scope, sort_keys=True), params.string("language_code")

    def _set_my_commands(self, params: _Params) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise _bad_request("can't parse commands JSON object")
        for command in commands:
            name = command.get("command") if isinstance(command, dict) else None
            if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9_]{1,32}", name):
                raise _bad_request("BOT_COMMAND_INVALID")
            description = command.get("description")
            if not isinstance(description, str) or not 1 <= len(description) <= 256:
                raise _bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        with self._lock:
            self._commands[self._commands_key(params)] = [
                {"command": c["command"], "description": c["description"]} for c in commands
            ]
        return True

    def _get_my_commands(self, params: _Params) -> list[JsonDict]:
        with self._lock:
            return copy.deepcopy(self._commands.get(self._commands_key(params), []))

    def _delete_my_commands(self, params: _Params) -> bool:
        with self._lock:
            self._commands.pop(self._commands_key(params), None)
        return True

    def _chat(self, params: _Params) -> _Chat:
        """The chat the call names; a user who never opened the bot can't be written to."""
        chat_id = params.get("chat_id")
        if chat_id is None or chat_id == "":
            raise _bad_request("chat_id is empty")
        numeric = isinstance(chat_id, int) and not isinstance(chat_id, bool)
        chat = self._chats.get(chat_id) if numeric else None
        if chat is None:
            if numeric and chat_id in self._users:
                raise BotApiError(403, "Forbidden: bot can't initiate conversation with a user")
            raise _bad_request("chat not found")
        return chat

    @staticmethod
    def _formatted(
        params: _Params, text_field: str, entities_field: str
    ) -> tuple[str, list[JsonDict]]:
        text = params.string(text_field)
        explicit = params.get(entities_field)
        parse_mode = params.string("parse_mode")
        if explicit is not None:
            entities = _checked_entities(explicit)
        elif parse_mode:
            try:
                text, entities = parse_formatted_text(text, parse_mode)
            except EntityParseError as error:
                raise _bad_request(f"can't parse entities: {error}") from None
            except ValueError:
                raise _bad_request("unsupported parse_mode") from None
        else:
            entities = []
        return _trimmed(text, entities)

    @staticmethod
    def _markup(params: _Params) -> JsonDict | None:
        markup = params.get("reply_markup")
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise _bad_request("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" in markup:
            _check_inline_keyboard(markup["inline_keyboard"])
        elif "keyboard" in markup:
            _check_reply_keyboard(markup["keyboard"])
        elif not (markup.get("remove_keyboard") is True or markup.get("force_reply") is True):
            raise _bad_request("can't parse reply keyboard markup JSON object")
        return markup

    @classmethod
    def _inline_markup(cls, params: _Params) -> JsonDict | None:
        """An edit's markup, as a Message carries it; edits take inline keyboards only."""
        markup = cls._markup(params)
        if markup is None:
            return None
        if "inline_keyboard" not in markup:
            raise _bad_request("inline keyboard expected")
        return {"inline_keyboard": markup["inline_keyboard"]}

    def _reply_target(self, params: _Params, chat: _Chat) -> JsonDict | None:
        reply = params.get("reply_parameters")
        if isinstance(reply, dict):
            message_id = reply.get("message_id")
            allow_missing = reply.get("allow_sending_without_reply") is True
        else:
            message_id = params.integer("reply_to_message_id") or None
            allow_missing = params.flag("allow_sending_without_reply")
        if message_id is None:
            return None
        target = chat.messages.get(message_id) if isinstance(message_id, int) else None
        if target is None and not allow_missing:
            raise _bad_request("message to be replied not found")
        if target is None:
            return None
        return {key: value for key, value in target.items() if key != "reply_to_message"}

    def _store_message(self, chat: _Chat, sender: JsonDict, content: JsonDict) -> JsonDict:
        message = {
            "message_id": chat.next_message_id,
            "from": sender,
            "chat": chat.as_api(),
            "date": int(time.time()),
            **content,
        }
        chat.next_message_id += 1
        chat.messages[message["message_id"]] = message
        return message

    def _send_bot_message(self, params: _Params, chat: _Chat, content: JsonDict) -> JsonDict:
        """Store a message from the bot with its markup and reply, and tell the watchers."""
        markup = self._markup(params)
        reply_to = self._reply_target(params, chat)
        if reply_to is not None:
            content["reply_to_message"] = reply_to
        if markup is not None and "inline_keyboard" in markup:
            content["reply_markup"] = {"inline_keyboard": markup["inline_keyboard"]}
        elif markup is not None and "keyboard" in markup:
            chat.reply_keyboard = markup
        elif markup is not None and markup.get("remove_keyboard"):
            chat.reply_keyboard = None
        message = self._store_message(chat, self.as_user(), content)
        self._event("sent", chat.id, message)
        return copy.deepcopy(message)

    def _send_message(self, params: _Params) -> JsonDict:
        with self._lock:
            chat = self._chat(params)
            text, entities = self._formatted(params, "text", "entities")
            if not text:
                raise _bad_request("message text is empty")
            if len(text) > MAX_TEXT_LENGTH:
                raise _bad_request("message is too long")
            content: JsonDict = {"text": text}
            if entities:
                content["entities"] = entities
            return self._send_bot_message(params, chat, content)

    def _caption(self, params: _Params) -> JsonDict:
        caption, entities = self._formatted(params, "caption", "caption_entities")
        if len(caption) > MAX_CAPTION_LENGTH:
            raise _bad_request("message caption is too long")
        content: JsonDict = {}
        if caption:
            content["caption"] = caption
        if entities:
            content["caption_entities"] = entities
        return content

    def _store_file(self, kind: Literal["photo", "document"], upload: Upload) -> _StoredFile:
        if not upload.data:
            raise _bad_request("file must be non-empty")
        if len(upload.data) > MAX_UPLOAD_BYTES:
            raise BotApiError(413, "Request Entity Too Large")
        number = next(self._file_numbers)
        # Shaped like Telegram's: a long opaque id and a short one for the same file.
        file_id = ("AgAC" if kind == "photo" else "BQAC") + secrets.token_urlsafe(48)
        file_unique_id = "AQAD" + secrets.token_urlsafe(9)
        if kind == "photo":
            image = _image_size(upload.data)
            if image is None:
                raise _bad_request("IMAGE_PROCESS_FAILED")
            extension, width, height = image
            stored = _StoredFile(
                file_id, file_unique_id, kind, f"photos/file_{number}.{extension}", upload.data,
                width=width, height=height,
            )  # fmt: skip
        else:
            name = upload.filename or "document"
            suffix = re.sub(r"[^A-Za-z0-9.]", "", name[name.rfind(".") :]) if "." in name else ""
            stored = _StoredFile(
                file_id, file_unique_id, kind, f"documents/file_{number}{suffix}", upload.data,
                file_name=name, mime_type=upload.content_type or mimetypes.guess_type(name)[0],
            )  # fmt: skip
        self._files[stored.file_id] = stored
        return stored

    def _input_file(self, params: _Params, kind: Literal["photo", "document"]) -> _StoredFile:
        upload = params.upload(kind)
        if upload is not None:
            return self._store_file(kind, upload)
        reference = params.string(kind)
        if not reference:
            raise _bad_request(f"there is no {kind} in the request")
        if reference.startswith(("http://", "https://")):
            # The double never leaves loopback, so a URL is a file it cannot get.
            raise _bad_request("failed to get HTTP URL content")
        stored = self._files.get(reference)
        if stored is None:
            raise _bad_request("wrong file identifier/HTTP URL specified")
        if stored.kind != kind:
            raise _bad_request(f"can't use file of type {stored.kind.title()} as {kind.title()}")
        return stored

    def _send_photo(self, params: _Params) -> JsonDict:
        with self._lock:
            chat = self._chat(params)
            photo = self._input_file(params, "photo")
            content = {"photo": [photo.as_photo_size()], **self._caption(params)}
            return self._send_bot_message(params, chat, content)

    def _send_document(self, params: _Params) -> JsonDict:
        with self._lock:
            chat = self._chat(params)
            document = self._input_file(params, "document")
            content = {"document": document.as_document(), **self._caption(params)}
            return self._send_bot_message(params, chat, content)

    def _message_to_edit(self, params: _Params) -> tuple[_Chat, JsonDict]:
        if params.get("inline_message_id") is not None:
            # The double sends no inline messages, so no inline id can be valid.
            raise _bad_request("MESSAGE_ID_INVALID")
        chat = self._chat(params)
        message_id = params.integer("message_id")
        if not message_id:
            raise _bad_request("message identifier is not specified")
        message = chat.messages.get(message_id)
        if message is None:
            raise _bad_request("message to edit not found")
        if message["from"]["id"] != self.id:
            raise _bad_request("message can't be edited")
        return chat, message

    def _apply_edit(self, chat: _Chat, message: JsonDict, changes: JsonDict) -> JsonDict:
        """Replace `changes`' keys (None removes one), refusing an edit that changes nothing."""
        edited = {key: value for key, value in message.items() if key != "edit_date"}
        for key, value in changes.items():
            if value is None:
                edited.pop(key, None)
            else:
                edited[key] = value
        if edited == {key: value for key, value in message.items() if key != "edit_date"}:
            raise BotApiError(400, NOT_MODIFIED)
        edited["edit_date"] = int(time.time())
        chat.messages[message["message_id"]] = edited
        self._event("edited", chat.id, edited)
        return copy.deepcopy(edited)

    def _edit_message_text(self, params: _Params) -> JsonDict:
        with self._lock:
            chat, message = self._message_to_edit(params)
            if "text" not in message:
                raise _bad_request("there is no text in the message to edit")
            text, entities = self._formatted(params, "text", "entities")
            if not text:
                raise _bad_request("message text is empty")
            if len(text) > MAX_TEXT_LENGTH:
                raise _bad_request("message is too long")
            markup = self._inline_markup(params)
            changes = {"text": text, "entities": entities or None, "reply_markup": markup}
            return self._apply_edit(chat, message, changes)

    def _edit_message_caption(self, params: _Params) -> JsonDict:
        with self._lock:
            chat, message = self._message_to_edit(params)
            if "photo" not in message and "document" not in message:
                raise _bad_request("there is no caption in the message to edit")
            caption = self._caption(params)
            changes = {
                "caption": caption.get("caption"),
                "caption_entities": caption.get("caption_entities"),
                "reply_markup": self._inline_markup(params),
            }
            return self._apply_edit(chat, message, changes)

    def _edit_message_reply_markup(self, params: _Params) -> JsonDict:
        with self._lock:
            chat, message = self._message_to_edit(params)
            return self._apply_edit(chat, message, {"reply_markup": self._inline_markup(params)})

    def _delete_message(self, params: _Params) -> bool:
        with self._lock:
            chat = self._chat(params)
            message_id = params.integer("message_id")
            if not message_id:
                raise _bad_request("message identifier is not specified")
            message = chat.messages.get(message_id)
            if message is None:
                raise _bad_request("message to delete not found")
            # In a group only an admin may delete others' messages; the double's bot is none.
            if chat.type == "group" and message["from"]["id"] != self.id:
                raise _bad_request("message can't be deleted")
            del chat.messages[message_id]
            self._event("deleted", chat.id, message)
        return True

    def _answer_callback_query(self, params: _Params) -> bool:
        query_id = params.string("callback_query_id")
        with self._lock:
            query = self._callback_queries.get(query_id)
            if query is None or query.answered:
                raise _bad_request(
                    "query is too old and response timeout expired or query ID is invalid"
                )
            query.answered = True
            self._event(
                "answered",
                query.chat_id,
                callback_query_id=query_id,
                text=params.string("text") or None,
                show_alert=params.flag("show_alert"),
                url=params.string("url") or None,
            )
        return True

    def _send_chat_action(self, params: _Params) -> bool:
        with self._lock:
            chat = self._chat(params)
            action = params.string("action")
            if action not in CHAT_ACTIONS:
                raise _bad_request("wrong parameter action in request")
            self._event("action", chat.id, action=action)
        return True

    def _get_chat(self, params: _Params) -> JsonDict:
        with self._lock:
            chat = self._chat(params)
            return {
                **chat.as_api(),
                "accent_color_id": 0,
                "max_reaction_count": 11,
                "accepted_gift_types": {
                    "unlimited_gifts": False,
                    "limited_gifts": False,
                    "unique_gifts": False,
                    "premium_subscription": False,
                    "gifts_from_channels": False,
                },
            }

    def _get_file(self, params: _Params) -> JsonDict:
        file_id = params.string("file_id")
        if not file_id:
            raise _bad_request("file_id not specified")
        with self._lock:
            stored = self._files.get(file_id)
        if stored is None:
            raise _bad_request("invalid file_id")
        if len(stored.data) > MAX_DOWNLOAD_BYTES:
            raise _bad_request("file is too big")
        return stored.as_file()

    def download(self, file_path: str) -> bytes | None:
        """The bytes served at /file/bot<token>/<file_path>, None when there is no such file."""
        with self._lock:
            for stored in self._files.values():
                if stored.file_path == file_path:
                    return stored.data
        return None

    # ------------------------------------------------------ the driver: users act

    def user(
        self,
        user_id: int,
        first_name: str,
        username: str | None = None,
        *,
        last_name: str | None = None,
        language_code: str | None = None,
        started: bool = True,
    ) -> JsonDict:
        """Define (or redefine) a user; `started`: they have opened the bot's private chat."""
        if user_id <= 0:
            raise ValueError("user ids are positive")
        user: JsonDict = {"id": user_id, "is_bot": False, "first_name": first_name}
        optional = {"last_name": last_name, "username": username, "language_code": language_code}
        user.update({key: value for key, value in optional.items() if value is not None})
        with self._lock:
            self._users[user_id] = user
            chat = self._chats.get(user_id)
            if chat is not None:
                chat.user = user
            elif started:
                self._chats[user_id] = _Chat(user_id, "private", user=user, members={user_id})
        return copy.deepcopy(user)

    def add_to_group(self, user_id: int, group_chat_id: int, title: str) -> JsonDict:
        """Put a user in a basic group with the bot, creating the group if it is new."""
        if group_chat_id >= 0:
            raise ValueError("group chat ids are negative")
        with self._lock:
            self._known_user(user_id)
            chat = self._chats.setdefault(group_chat_id, _Chat(group_chat_id, "group", title=title))
            chat.members.add(user_id)
            return chat.as_api()

    def send_text(self, user_id: int, text: str, chat_id: int | None = None) -> JsonDict:
        """The user writes `text` (in their private chat unless `chat_id`); returns the message."""
        if not text.strip():
            raise DriverError("Telegram clients do not send empty messages")
        content: JsonDict = {"text": text}
        entities = _user_text_entities(text)
        if entities:
            content["entities"] = entities
        return self._user_message(user_id, chat_id, content, text)

    def send_document(
        self,
        user_id: int,
        filename: str,
        content: bytes,
        mime_type: str,
        *,
        chat_id: int | None = None,
        caption: str | None = None,
    ) -> JsonDict:
        """The user sends a file; the bot can getFile and download it. Returns the message."""
        if not content:
            raise DriverError("Telegram clients do not send empty files")
        with self._lock:
            self._user_chat(user_id, chat_id)
            stored = self._store_file("document", Upload(filename, mime_type, content))
        message: JsonDict = {"document": stored.as_document()}
        if caption:
            message["caption"] = caption
            entities = _user_text_entities(caption)
            if entities:
                message["caption_entities"] = entities
        return self._user_message(user_id, chat_id, message, caption or "")

    def press(
        self, user_id: int, message_id: int, callback_data: str, chat_id: int | None = None
    ) -> JsonDict:
        """The user taps the inline button with `callback_data`; returns the callback query."""
        with self._lock:
            user = self._known_user(user_id)
            chat = self._user_chat(user_id, chat_id)
            message = chat.messages.get(message_id)
            if message is None or message["from"]["id"] != self.id:
                raise DriverError(f"no bot message {message_id} in chat {chat.id}")
            buttons = [
                button
                for row in (message.get("reply_markup") or {}).get("inline_keyboard", [])
                for button in row
            ]
            if not any(button.get("callback_data") == callback_data for button in buttons):
                offered = [button.get("callback_data") for button in buttons]
                raise DriverError(
                    f"message {message_id} has no button with callback_data {callback_data!r}; "
                    f"its buttons carry {offered}"
                )
            query_id = str(self.id * 1_000_000 + next(self._callback_ids))
            self._callback_queries[query_id] = _CallbackQuery(chat.id)
            self._seen = len(self._events)
            query = {
                "id": query_id,
                "from": user,
                "message": copy.deepcopy(message),
                "chat_instance": str(abs(chat.id) * 7919 + self.id),
                "data": callback_data,
            }
            self._enqueue("callback_query", query)
        self._changes.notify()
        return copy.deepcopy(query)

    def _known_user(self, user_id: int) -> JsonDict:
        user = self._users.get(user_id)
        if user is None:
            raise DriverError(f"user {user_id} is not defined; call user() first")
        return user

    def _user_chat(self, user_id: int, chat_id: int | None) -> _Chat:
        """The chat a user acts in; writing to the bot opens their private chat."""
        user = self._known_user(user_id)
        if chat_id is None or chat_id == user_id:
            return self._chats.setdefault(
                user_id, _Chat(user_id, "private", user=user, members={user_id})
            )
        chat = self._chats.get(chat_id)
        if chat is None or user_id not in chat.members:
            raise DriverError(f"user {user_id} is not in chat {chat_id}; add_to_group() first")
        return chat

    def _user_message(
        self, user_id: int, chat_id: int | None, content: JsonDict, text: str
    ) -> JsonDict:
        with self._lock:
            chat = self._user_chat(user_id, chat_id)
            message = self._store_message(chat, self._users[user_id], content)
            self._seen = len(self._events)
            if chat.reply_keyboard is not None and chat.reply_keyboard.get("one_time_keyboard"):
                chat.reply_keyboard = None
            if chat.type == "private" or self._addressed_to_bot(text):
                self._enqueue("message", message)
        self._changes.notify()
        return copy.deepcopy(message)

    def _addressed_to_bot(self, text: str) -> bool:
        """Privacy mode: in groups a bot gets only commands meant for it and mentions of it."""
        command = _BOT_COMMAND.match(text)
        if command is not None:
            _, at, addressee = command[0].partition("@")
            return not at or addressee.lower() == self.username.lower()
        return f"@{self.username.lower()}" in text.lower()

    def _enqueue(self, update_type: str, payload: JsonDict) -> None:
        if self._allowed_updates is None or update_type in self._allowed_updates:
            self._updates.append(
                {"update_id": next(self._update_ids), update_type: copy.deepcopy(payload)}
            )

    # ------------------------------------------------ the driver: what the bot did

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every API call so far, in order, with its normalized parameters."""
        with self._lock:
            return list(self._requests)

    @property
    def events(self) -> list[BotEvent]:
        with self._lock:
            return list(self._events)

    def chat_messages(self, chat_id: int) -> list[JsonDict]:
        """The chat's messages as they are now (after edits, without deleted ones)."""
        with self._lock:
            chat = self._chats.get(chat_id)
            messages = [] if chat is None else sorted(chat.messages.items())
            return [copy.deepcopy(message) for _, message in messages]

    def last_bot_message(self, chat_id: int) -> JsonDict | None:
        bot_messages = [m for m in self.chat_messages(chat_id) if m["from"]["id"] == self.id]
        return bot_messages[-1] if bot_messages else None

    def reply_keyboard(self, chat_id: int) -> JsonDict | None:
        """The reply keyboard shown in the chat (it is never part of a Message)."""
        with self._lock:
            chat = self._chats.get(chat_id)
            return copy.deepcopy(chat.reply_keyboard) if chat is not None else None

    def file_content(self, file_id: str) -> bytes:
        with self._lock:
            stored = self._files.get(file_id)
        if stored is None:
            raise DriverError(f"no file {file_id!r}")
        return stored.data

    async def wait_for(
        self,
        predicate: Callable[[BotEvent], bool] | None = None,
        # A bare timeout reads best where tests call it: wait_for(predicate, 2).
        timeout: float = 5.0,  # noqa: ASYNC109
        *,
        after: int | None = None,
    ) -> BotEvent:
        """The bot's next event matching `predicate` (any event when None).

        "Next" is after the last user action injected by the driver or the last
        event returned by wait_for, whichever came later; `after` (an event
        seq) overrides that. Raises TimeoutError, listing what the bot did do.
        """
        with self._lock:
            start = self._seen if after is None else after

        def first_match() -> BotEvent | None:
            with self._lock:
                for event in self._events[start:]:
                    if predicate is None or predicate(event):
                        return event
            return None

        found = await self._changes.wait(first_match, timeout)
        if found is None:
            seen = [(e.seq, e.kind, e.chat_id, e.text) for e in self.events[start:]]
            raise TimeoutError(f"no matching bot event within {timeout}s; since #{start}: {seen}")
        with self._lock:
            self._seen = max(self._seen, found.seq)
        return found

    def _close(self, closing: bool) -> None:
        with self._lock:
            self._closing = closing
        self._changes.notify()


def _checked_entities(entities: Any) -> list[JsonDict]:
    if not isinstance(entities, list) or not all(
        isinstance(e, dict)
        and isinstance(e.get("type"), str)
        and isinstance(e.get("offset"), int)
        and isinstance(e.get("length"), int)
        for e in entities
    ):
        raise _bad_request("can't parse entities JSON object")
    return _sorted_entities([e for e in entities if e["length"] > 0])


def _check_inline_keyboard(rows: Any) -> None:
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise _bad_request(
            'field "inline_keyboard" of the InlineKeyboardMarkup should be an Array of Arrays'
        )
    for button in itertools.chain.from_iterable(rows):
        if not isinstance(button, dict):
            raise _bad_request(
                "can't parse inline keyboard button: InlineKeyboardButton must be an Object"
            )
        if not isinstance(button.get("text"), str):
            raise _bad_request(
                'can\'t parse inline keyboard button: Field "text" must be of type String'
            )
        if not any(action in button for action in _BUTTON_ACTIONS):
            raise _bad_request(
                "can't parse inline keyboard button: "
                "Text buttons are unallowed in the inline keyboard"
            )
        if "callback_data" in button:
            data = button["callback_data"]
            if not isinstance(data, str) or not 1 <= len(data.encode()) <= MAX_CALLBACK_DATA_BYTES:
                raise _bad_request("BUTTON_DATA_INVALID")
        if "url" in button and not re.fullmatch(r"(https?|tg)://\S+", str(button["url"])):
            raise _bad_request("BUTTON_URL_INVALID")


def _check_reply_keyboard(rows: Any) -> None:
    valid = isinstance(rows, list) and all(
        isinstance(row, list)
        and all(
            isinstance(button, str)
            or (isinstance(button, dict) and isinstance(button.get("text"), str))
            for button in row
        )
        for row in rows
    )
    if not valid:
        raise _bad_request("can't parse reply keyboard markup JSON object")


_METHODS: dict[str, tuple[str, _Handler]] = {
    name.lower(): (name, handler)
    for name, handler in [
        ("getMe", FakeBot._get_me),
        ("getUpdates", FakeBot._get_updates),
        ("setWebhook", FakeBot._set_webhook),
        ("deleteWebhook", FakeBot._delete_webhook),
        ("getWebhookInfo", FakeBot._get_webhook_info),
        ("setMyCommands", FakeBot._set_my_commands),
        ("getMyCommands", FakeBot._get_my_commands),
        ("deleteMyCommands", FakeBot._delete_my_commands),
        ("sendMessage", FakeBot._send_message),
        ("sendPhoto", FakeBot._send_photo),
        ("sendDocument", FakeBot._send_document),
        ("editMessageText", FakeBot._edit_message_text),
        ("editMessageCaption", FakeBot._edit_message_caption),
        ("editMessageReplyMarkup", FakeBot._edit_message_reply_markup),
        ("deleteMessage", FakeBot._delete_message),
        ("answerCallbackQuery", FakeBot._answer_callback_query),
        ("sendChatAction", FakeBot._send_chat_action),
        ("getChat", FakeBot._get_chat),
        ("getFile", FakeBot._get_file),
    ]
}


# ------------------------------------------------------------------- the server


async def _hang_up(request: Request) -> None:
    """Returns when the client closes the connection (the body has been read by then)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _refusal(error_code: int, description: str) -> JSONResponse:
    body = {"ok": False, "error_code": error_code, "description": description}
    return JSONResponse(body, status_code=error_code)


class TelegramDouble(FakeBot):
    """The fake Bot API server; itself the FakeBot of its default token.

    `start()` serves it on a free port of 127.0.0.1 from a thread of its own
    (`url`, `api_base_url`, `file_base_url` then tell where); `app` is the same
    thing as an ASGI app for in-process use. More tokens: `add_bot`.
    Requests for a token it does not know are answered 401 Unauthorized.
    """

    def __init__(
        self,
        token: str = "123:ABC",
        *,
        username: str = "chainmail_test_bot",
        first_name: str = "Chainmail",
    ) -> None:
        super().__init__(token, username=username, first_name=first_name)
        self._bots: dict[str, FakeBot] = {token: self}
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""
        self.app = Starlette(
            routes=[
                Route("/bot{token}/{method}", self._serve_call, methods=["GET", "POST"]),
                Route("/file/bot{token}/{file_path:path}", self._serve_file, methods=["GET"]),
            ],
            exception_handlers={HTTPException: self._serve_http_error},
        )

    @property
    def api_base_url(self) -> str:
        """For PTB's `base_url` and TELEGRAM_API_BASE_URL: the token is appended to it."""
        return f"{self._started_url()}/bot"

    @property
    def file_base_url(self) -> str:
        """For PTB's `base_file_url`."""
        return f"{self._started_url()}/file/bot"

    def _started_url(self) -> str:
        if not self.url:
            raise RuntimeError("the Telegram double is not started")
        return self.url

    def add_bot(self, token: str, *, username: str, first_name: str = "Test bot") -> FakeBot:
        """Serve another bot token, with state of its own."""
        bot = FakeBot(token, username=username, first_name=first_name)
        with self._lock:
            if token in self._bots:
                raise ValueError(f"token {token!r} is served already")
            self._bots[token] = bot
        return bot

    def bot(self, token: str) -> FakeBot:
        with self._lock:
            return self._bots[token]

    async def _serve_call(self, request: Request) -> Response:
        bot = self._bots.get(request.path_params["token"])
        if bot is None:
            return _refusal(401, "Unauthorized")
        try:
            values, uploads = await _read_request(request)
        except BotApiError as refusal:
            return _refusal(refusal.error_code, refusal.description)
        # A client that gives up on a long poll (PTB does on stop) hangs up, or, in
        # process, cancels this handler: either way the poll is dropped, so it is not
        # answered, nor logged as ended by its successor's conflict.
        call = asyncio.ensure_future(bot.call(request.path_params["method"], values, uploads))
        hang_up = asyncio.ensure_future(_hang_up(request))
        answered = False
        try:
            await asyncio.wait({call, hang_up}, return_when=asyncio.FIRST_COMPLETED)
            answered = call.done()
        finally:
            hang_up.cancel()
            if not answered:
                call.cancel()
        if not answered:
            return Response(status_code=499)
        status, body = call.result()
        return JSONResponse(body, status_code=status)

    async def _serve_file(self, request: Request) -> Response:
        bot = self._bots.get(request.path_params["token"])
        data = None if bot is None else bot.download(request.path_params["file_path"])
        if data is None:
            return _refusal(404, "Not Found")
        return Response(data, media_type="application/octet-stream")

    async def _serve_http_error(self, request: Request, error: Exception) -> Response:
        # Telegram answers any path it does not serve (or a wrong verb) with a JSON 404.
        return _refusal(404, "Not Found")

    # Life cycle.

    def start(self) -> TelegramDouble:
        if self._server is not None:
            raise RuntimeError("the Telegram double is running already")
        for bot in list(self._bots.values()):
            bot._close(False)
        config = uvicorn.Config(
            self.app,
            loop="asyncio",
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets whose proto
        # says TCP, and without it every answer waits ~40 ms for a delayed ACK.
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, 0))
        port = listener.getsockname()[1]
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [listener]}, name="telegram-double", daemon=True
        )
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                self.stop()
                raise RuntimeError("the Telegram double did not start")
            time.sleep(0.01)
        self.url = f"http://{HOST}:{port}"
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        # Long polls still waiting would hold the shutdown up for their whole timeout.
        for bot in list(self._bots.values()):
            bot._close(True)
        server.should_exit = True
        thread.join(10)
        self._server = self._thread = None
        self.url = ""

    def __enter__(self) -> TelegramDouble:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> TelegramDouble:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self.stop)
