"""The chat page's JSON API: a thin door onto the Telegram double's driver.

The page is the Telegram client of the demo users: it reads a chat's messages
(long-polling for the bot's next event there), and makes a user write, tap a
button or send a file. Messages go to the page as the Bot API shapes them
(text plus entities), and the page renders them.

- `GET /api/chat/people`: the bot, the demo users and the chats the page shows;
- `GET /api/chat/{chat_id}?after=SEQ&boot=ID`: the chat's messages once the bot
  did something there after its event SEQ (or after a while; `wait=0`: at once);
  `notices` are the callback answers (toasts, alerts) since, `answered` the ids
  of the button taps answered since;
- `POST /api/chat/{chat_id}/messages` `{user_id, text}`: the user writes;
- `POST /api/chat/{chat_id}/press` `{user_id, message_id, callback_data}`: a tap;
- `POST /api/chat/{chat_id}/documents?user_id=&name=`: the body is a file the user sends;
- `GET /api/chat/files/{file_id}`: a photo or document of a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from playground import texts
from playground.demo_data import DEMO_USERS, GROUP_CHAT_ID
from telegram_double import BotEvent, DriverError, FakeBot

# How long a read waits for the bot before answering with nothing new.
LONG_POLL_SECONDS = 20.0
# The newest messages of a chat the page is given.
SHOWN_MESSAGES = 200
MAX_DOCUMENT_BYTES = 20 * 1024 * 1024
# Tells the page that the process (and so the event numbering) changed under it.
BOOT = secrets.token_hex(4)

_IMAGE_TYPES = ((b"\x89PNG", "image/png"), (b"\xff\xd8", "image/jpeg"), (b"GIF8", "image/gif"))


class Written(BaseModel):
    user_id: int
    text: str


class Pressed(BaseModel):
    user_id: int
    message_id: int
    callback_data: str


def meet_the_people(bot: FakeBot) -> None:
    """The demo users have opened the bot, and all of them are in the team's group."""
    for user in DEMO_USERS:
        bot.user(user.id, user.first_name, user.username)
        bot.add_to_group(user.id, GROUP_CHAT_ID, texts.GROUP_TITLE)


def _refused(error: DriverError) -> JSONResponse:
    return JSONResponse({"error": str(error)}, status_code=400)


def chat_router(bot: FakeBot, closing: asyncio.Event) -> APIRouter:
    """The routes; reads waiting for the bot end when `closing` is set."""
    router = APIRouter(prefix="/api/chat")

    @router.get("/people")
    async def people() -> dict[str, Any]:
        users = [
            {"id": user.id, "name": user.first_name, "key": user.key, "role": user.role_name}
            for user in DEMO_USERS
        ]
        chats = [
            {"id": user.id, "kind": "private", "title": user.first_name} for user in DEMO_USERS
        ]
        chats.append({"id": GROUP_CHAT_ID, "kind": "group", "title": texts.GROUP_TITLE})
        return {"bot": bot.as_user(), "users": users, "chats": chats, "boot": BOOT}

    @router.get("/files/{file_id}")
    async def file(file_id: str, name: str = "") -> Response:
        try:
            data = bot.file_content(file_id)
        except DriverError:
            return Response(status_code=404)
        for magic, media_type in _IMAGE_TYPES:
            if data.startswith(magic):
                return Response(data, media_type=media_type)
        disposition = {"Content-Disposition": f'attachment; filename="{_safe_name(name)}"'}
        return Response(data, media_type="application/octet-stream", headers=disposition)

    @router.get("/{chat_id}", response_model=None)
    async def read(
        chat_id: int, after: int = 0, boot: str = "", wait: bool = True
    ) -> dict[str, Any]:
        fresh = boot != BOOT or after > len(bot.events)
        if fresh:
            after = 0
        elif wait and not _events_in(bot, chat_id, after):
            await _bot_acts_or_closing(bot, chat_id, after, closing)
        if closing.is_set():
            # The page tries again a second later, by when the playground is back or gone.
            return JSONResponse({"error": texts.STOPPING}, status_code=503)
        everything = bot.events
        # A page that was not following gets the chat as it is, without old notices.
        events = [] if fresh else everything[after:]
        answered = [
            e.detail["callback_query_id"]
            for e in events
            if e.kind == "answered" and e.chat_id == chat_id
        ]
        notices = [
            {"text": e.detail["text"], "alert": bool(e.detail.get("show_alert"))}
            for e in events
            if e.kind == "answered" and e.chat_id == chat_id and e.detail.get("text")
        ]  # fmt: skip
        return {
            "boot": BOOT,
            "seq": len(everything),
            "messages": bot.chat_messages(chat_id)[-SHOWN_MESSAGES:],
            "notices": notices,
            "answered": answered,
        }

    @router.post("/{chat_id}/messages", response_model=None)
    async def write(chat_id: int, written: Written) -> dict[str, Any] | JSONResponse:
        try:
            return bot.send_text(written.user_id, written.text, chat_id)
        except DriverError as error:
            return _refused(error)

    @router.post("/{chat_id}/press", response_model=None)
    async def press(chat_id: int, pressed: Pressed) -> dict[str, Any] | JSONResponse:
        try:
            return bot.press(pressed.user_id, pressed.message_id, pressed.callback_data, chat_id)
        except DriverError as error:
            return _refused(error)

    @router.post("/{chat_id}/documents", response_model=None)
    async def send_document(
        request: Request, chat_id: int, user_id: int, name: str
    ) -> dict[str, Any] | JSONResponse:
        content = await request.body()
        if len(content) > MAX_DOCUMENT_BYTES:
            return JSONResponse({"error": texts.FILE_TOO_BIG}, status_code=413)
        mime_type = request.headers.get("content-type") or "application/octet-stream"
        try:
            return bot.send_document(user_id, _safe_name(name), content, mime_type, chat_id=chat_id)
        except DriverError as error:
            return _refused(error)

    return router


async def _bot_acts_or_closing(
    bot: FakeBot, chat_id: int, after: int, closing: asyncio.Event
) -> None:
    acted = asyncio.ensure_future(
        bot.wait_for(lambda e: e.chat_id == chat_id, LONG_POLL_SECONDS, after=after)
    )
    closed = asyncio.ensure_future(closing.wait())
    try:
        await asyncio.wait({acted, closed}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in (acted, closed):
            waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await acted


def _events_in(bot: FakeBot, chat_id: int, after: int) -> list[BotEvent]:
    return [event for event in bot.events[after:] if event.chat_id == chat_id]


def _safe_name(name: str) -> str:
    cleaned = "".join(c for c in name if c.isalnum() or c in "._- ")
    return cleaned.strip() or "file"
