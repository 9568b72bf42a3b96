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

| module | holds |
|---|---|
| `entities` | HTML, MarkdownV2, Markdown into text and entities; what clients mark |
| `requests` | request bodies read, parameters typed, markup and entities checked; `BotApiError` |
| `state` | chats, stored files, events, the request log, the change signal |
| `fake_bot` | `FakeBot`: one token's Bot API methods and the driver of its users |
| `server` | `TelegramDouble`: the HTTP app and its life cycle |

It imports nothing of Chainmail's. docs/telegram-double.md tells how to use it.
"""

from telegram_double.entities import EntityParseError, parse_formatted_text, utf16_length
from telegram_double.fake_bot import DriverError, FakeBot
from telegram_double.requests import BotApiError, Upload
from telegram_double.server import TelegramDouble
from telegram_double.state import BotEvent, RecordedRequest

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
