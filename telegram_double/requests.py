"""What a Bot API call asks for: its body read, its parameters typed, its markup checked.

python-telegram-bot sends form-urlencoded bodies with JSON-encoded fields,
multipart ones when a file is attached, JSON, or nothing; `read_request` takes
any of them and `Params` reads the values the way the Bot API does. What Telegram
would refuse is refused here as a `BotApiError` in Telegram's words, before any
state is touched.
"""

from __future__ import annotations

import email.parser
import itertools
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request

from telegram_double.entities import (
    EntityParseError,
    parse_formatted_text,
    sorted_entities,
    trimmed,
)

JsonDict = dict[str, Any]

# Limits of the real Bot API (telegram.constants mirrors them).
MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MAX_CALLBACK_DATA_BYTES = 64
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024


class BotApiError(Exception):
    """A refusal in Telegram's words: becomes `{"ok": false, "error_code", "description"}`."""

    def __init__(self, error_code: int, description: str) -> None:
        super().__init__(description)
        self.error_code = error_code
        self.description = description


def bad_request(reason: str) -> BotApiError:
    return BotApiError(400, f"Bad Request: {reason}")


@dataclass(frozen=True)
class Upload:
    """A file part of a multipart request."""

    filename: str | None
    content_type: str | None
    data: bytes


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


def normalized(name: str, value: Any) -> Any:
    """A parameter as the Bot API reads it: form fields arrive as strings, JSON ones typed."""
    if not isinstance(value, str):
        return value
    if name in _JSON_FIELDS:
        try:
            return json.loads(value)
        except ValueError:
            raise bad_request(_JSON_FIELDS[name]) from None
    if name in _INTEGER_FIELDS and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    if name in _BOOLEAN_FIELDS and value.lower() in {"true", "false", "1", "0"}:
        return value.lower() in {"true", "1"}
    return value


def _parse_multipart(body: bytes, content_type: str) -> tuple[dict[str, str], dict[str, Upload]]:
    headers = email.parser.HeaderParser().parsestr(f"Content-Type: {content_type}\r\n\r\n")
    boundary = headers.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise bad_request("can't parse multipart/form-data request")
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


async def read_request(request: Request) -> tuple[JsonDict, dict[str, Upload]]:
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
            raise bad_request("can't parse JSON object") from None
        if not isinstance(decoded, dict):
            raise bad_request("can't parse JSON object")
        values.update(decoded)
    elif media_type == "application/x-www-form-urlencoded":
        values.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    elif media_type == "multipart/form-data":
        fields, uploads = _parse_multipart(body, content_type)
        values.update(fields)
    return values, uploads


class Params:
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

    def formatted(self, text_field: str, entities_field: str) -> tuple[str, list[JsonDict]]:
        """A text and its entities as Telegram keeps them: given or parsed, then trimmed."""
        text = self.string(text_field)
        explicit = self.get(entities_field)
        parse_mode = self.string("parse_mode")
        if explicit is not None:
            entities = _checked_entities(explicit)
        elif parse_mode:
            try:
                text, entities = parse_formatted_text(text, parse_mode)
            except EntityParseError as error:
                raise bad_request(f"can't parse entities: {error}") from None
            except ValueError:
                raise bad_request("unsupported parse_mode") from None
        else:
            entities = []
        return trimmed(text, entities)

    def caption(self) -> JsonDict:
        """The caption and its entities as a Message carries them (absent when empty)."""
        caption, entities = self.formatted("caption", "caption_entities")
        if len(caption) > MAX_CAPTION_LENGTH:
            raise bad_request("message caption is too long")
        content: JsonDict = {}
        if caption:
            content["caption"] = caption
        if entities:
            content["caption_entities"] = entities
        return content

    def markup(self) -> JsonDict | None:
        markup = self.get("reply_markup")
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise bad_request("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" in markup:
            _check_inline_keyboard(markup["inline_keyboard"])
        elif "keyboard" in markup:
            _check_reply_keyboard(markup["keyboard"])
        elif not (markup.get("remove_keyboard") is True or markup.get("force_reply") is True):
            raise bad_request("can't parse reply keyboard markup JSON object")
        return markup

    def inline_markup(self) -> JsonDict | None:
        """An edit's markup, as a Message carries it; edits take inline keyboards only."""
        markup = self.markup()
        if markup is None:
            return None
        if "inline_keyboard" not in markup:
            raise bad_request("inline keyboard expected")
        return {"inline_keyboard": markup["inline_keyboard"]}


def _checked_entities(entities: Any) -> list[JsonDict]:
    if not isinstance(entities, list) or not all(
        isinstance(e, dict)
        and isinstance(e.get("type"), str)
        and isinstance(e.get("offset"), int)
        and isinstance(e.get("length"), int)
        for e in entities
    ):
        raise bad_request("can't parse entities JSON object")
    return sorted_entities([e for e in entities if e["length"] > 0])


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


def _check_inline_keyboard(rows: Any) -> None:
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise bad_request(
            'field "inline_keyboard" of the InlineKeyboardMarkup should be an Array of Arrays'
        )
    for button in itertools.chain.from_iterable(rows):
        if not isinstance(button, dict):
            raise bad_request(
                "can't parse inline keyboard button: InlineKeyboardButton must be an Object"
            )
        if not isinstance(button.get("text"), str):
            raise bad_request(
                'can\'t parse inline keyboard button: Field "text" must be of type String'
            )
        if not any(action in button for action in _BUTTON_ACTIONS):
            raise bad_request(
                "can't parse inline keyboard button: "
                "Text buttons are unallowed in the inline keyboard"
            )
        if "callback_data" in button:
            data = button["callback_data"]
            if not isinstance(data, str) or not 1 <= len(data.encode()) <= MAX_CALLBACK_DATA_BYTES:
                raise bad_request("BUTTON_DATA_INVALID")
        if "url" in button and not re.fullmatch(r"(https?|tg)://\S+", str(button["url"])):
            raise bad_request("BUTTON_URL_INVALID")


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
        raise bad_request("can't parse reply keyboard markup JSON object")
