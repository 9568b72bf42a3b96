"""The fake Bot API server: a real python-telegram-bot Application polls it, and raw
HTTP calls (form-encoded, multipart, JSON, empty) get Telegram's answers."""

from __future__ import annotations

import asyncio
import json
import struct
import zlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.constants import ParseMode
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)
from telegram.request import HTTPXRequest

from telegram_double import (
    BotEvent,
    DriverError,
    EntityParseError,
    TelegramDouble,
    parse_formatted_text,
)

TOKEN = "123:ABC"
ANN = 1001
BOB = 1002
GROUP = -5001


def png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def keyboard(*callback_data: str) -> str:
    buttons = [[{"text": data or "?", "callback_data": data} for data in callback_data]]
    return json.dumps({"inline_keyboard": buttons})


def sent(event: BotEvent) -> bool:
    return event.kind == "sent"


@pytest.fixture(scope="module")
def server() -> Iterator[TelegramDouble]:
    # One server for the module: stopping uvicorn takes a fixed ~0.15 s.
    with TelegramDouble(TOKEN) as running:
        yield running


@pytest.fixture
def double(server: TelegramDouble) -> TelegramDouble:
    server.reset()
    server.user(ANN, "Ann", "ann")
    return server


@pytest.fixture
async def api(double: TelegramDouble) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"{double.api_base_url}{TOKEN}/") as client:
        yield client


async def call(api: httpx.AsyncClient, method: str, **fields: Any) -> dict[str, Any]:
    """A call the way PTB makes it: form-encoded, non-string values JSON-encoded."""
    data = {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}
    response = await api.post(method, data=data)
    body = response.json()
    assert response.status_code == body.get("error_code", 200)
    return body


# ------------------------------------------------------- a real PTB application


def tiny_bot(double: TelegramDouble) -> Application:  # type: ignore[type-arg]
    app = (
        ApplicationBuilder()
        .token(TOKEN)
        .base_url(double.api_base_url)
        .base_file_url(double.file_base_url)
        .build()
    )

    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.message is not None
        menu = InlineKeyboardMarkup([[InlineKeyboardButton("Chains", callback_data="menu:chains")]])
        await update.message.reply_text(
            "<b>Main menu</b>", parse_mode=ParseMode.HTML, reply_markup=menu
        )

    async def tap(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        await query.answer("Opening…")
        back = InlineKeyboardMarkup([[InlineKeyboardButton("Back", callback_data="menu")]])
        await query.edit_message_text(f"You chose {query.data}", reply_markup=back)

    async def document(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.message is not None
        assert update.message.document is not None
        file = await update.message.document.get_file()
        data = await file.download_as_bytearray()
        await update.message.reply_text(f"{update.message.document.file_name}: {len(data)} bytes")

    async def chart(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.message is not None
        await update.message.reply_chat_action("upload_photo")
        await update.message.reply_photo(png(3, 2), caption="Opens this week")

    app.add_handler(CommandHandler("start", start))
    app.add_handler(CommandHandler("chart", chart))
    app.add_handler(CallbackQueryHandler(tap))
    app.add_handler(MessageHandler(filters.Document.ALL, document))
    return app


@asynccontextmanager
async def polling(app: Application) -> AsyncIterator[None]:  # type: ignore[type-arg]
    async with app:
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(poll_interval=0)
        try:
            yield
        finally:
            await app.updater.stop()
            await app.stop()


async def test_start_shows_a_keyboard_and_a_tap_edits_that_message(double: TelegramDouble) -> None:
    async with polling(tiny_bot(double)):
        double.send_text(ANN, "/start")
        menu = await double.wait_for(sent)
        assert menu.chat_id == ANN
        assert menu.text == "Main menu"
        assert menu.message is not None
        assert menu.message["entities"] == [{"type": "bold", "offset": 0, "length": 9}]
        assert menu.buttons() == [[{"text": "Chains", "callback_data": "menu:chains"}]]

        double.press(ANN, menu.message_id or 0, "menu:chains")
        answer = await double.wait_for(lambda e: e.kind == "answered")
        edit = await double.wait_for(lambda e: e.kind == "edited")

    assert answer.text == "Opening…"
    assert edit.message_id == menu.message_id
    assert edit.text == "You chose menu:chains"
    assert edit.buttons() == [[{"text": "Back", "callback_data": "menu"}]]
    command, reply = double.chat_messages(ANN)
    assert command["entities"] == [{"type": "bot_command", "offset": 0, "length": 6}]
    assert reply["text"] == "You chose menu:chains"
    assert "edit_date" in reply
    assert "entities" not in reply
    methods = [r.method for r in double.requests if r.method != "getUpdates"]
    assert methods[:2] == ["getMe", "deleteWebhook"]
    assert methods[2:] == ["sendMessage", "answerCallbackQuery", "editMessageText"]
    assert all(r.error is None for r in double.requests)


async def test_the_bot_downloads_a_document_the_user_sends(double: TelegramDouble) -> None:
    content = b"external_id,email\n1,ann@example.com\n"
    async with polling(tiny_bot(double)):
        double.send_document(ANN, "customers.csv", content, "text/csv")
        reply = await double.wait_for(sent)

    assert reply.text == f"customers.csv: {len(content)} bytes"
    get_file = next(r for r in double.requests if r.method == "getFile")
    assert get_file.error is None
    document = double.chat_messages(ANN)[0]["document"]
    assert document["mime_type"] == "text/csv"
    assert double.file_content(document["file_id"]) == content


async def test_the_bot_sends_a_photo_as_telegram_would_return_it(double: TelegramDouble) -> None:
    async with polling(tiny_bot(double)):
        double.send_text(ANN, "/chart")
        action = await double.wait_for()
        photo = await double.wait_for(sent)

    assert action.kind == "action"
    assert action.detail == {"action": "upload_photo"}
    assert photo.text == "Opens this week"
    assert photo.message is not None
    parsed = Message.de_json(photo.message, None)
    assert parsed.photo[-1].width == 3
    assert parsed.photo[-1].height == 2
    assert parsed.caption == "Opens this week"
    upload = next(r for r in double.requests if r.method == "sendPhoto")
    assert "photo" in upload.files
    assert double.file_content(parsed.photo[-1].file_id) == png(3, 2)


# --------------------------------------------------------------- raw HTTP calls


async def test_get_me_answers_an_empty_body_and_json_bodies_work(
    double: TelegramDouble, api: httpx.AsyncClient
) -> None:
    me = (await api.post("getMe")).json()
    assert me["ok"] is True
    assert me["result"]["id"] == 123
    assert me["result"]["is_bot"] is True

    sent = (await api.post("sendMessage", json={"chat_id": ANN, "text": "json"})).json()
    assert sent["result"]["text"] == "json"
    assert sent["result"]["chat"] == {
        "id": ANN,
        "first_name": "Ann",
        "username": "ann",
        "type": "private",
    }

    lower_case = (await api.get("getme")).json()
    assert lower_case["result"]["username"] == "chainmail_test_bot"


async def test_unknown_methods_paths_and_tokens_are_refused(
    double: TelegramDouble, api: httpx.AsyncClient
) -> None:
    assert await call(api, "sendTelepathy", chat_id=ANN) == {
        "ok": False,
        "error_code": 404,
        "description": "Not Found",
    }
    async with httpx.AsyncClient(base_url=double.url) as raw:
        stray = await raw.get("/nothing/here")
        assert (stray.status_code, stray.json()["description"]) == (404, "Not Found")
        stranger = await raw.post("/bot999:XYZ/getMe")
        assert (stranger.status_code, stranger.json()["description"]) == (401, "Unauthorized")
        missing = await raw.get(f"/file/bot{TOKEN}/documents/file_9.csv")
        assert missing.status_code == 404


async def test_text_length_counts_after_entities_are_parsed(api: httpx.AsyncClient) -> None:
    bold = "<b>" + "я" * 4096 + "</b>"
    assert (await call(api, "sendMessage", chat_id=ANN, text=bold, parse_mode="HTML"))["ok"]

    too_long = await call(api, "sendMessage", chat_id=ANN, text="я" * 4097)
    assert too_long["description"] == "Bad Request: message is too long"
    for empty in ("", "  \n", "<b> </b>"):
        refused = await call(api, "sendMessage", chat_id=ANN, text=empty, parse_mode="HTML")
        assert refused["description"] == "Bad Request: message text is empty"


async def test_formatting_mistakes_are_refused_as_telegram_words_them(
    api: httpx.AsyncClient,
) -> None:
    html = await call(api, "sendMessage", chat_id=ANN, text="a <br> b", parse_mode="HTML")
    assert html["description"] == (
        'Bad Request: can\'t parse entities: Unsupported start tag "br" at byte offset 2'
    )
    markdown = await call(
        api, "sendMessage", chat_id=ANN, text="Total: 5.", parse_mode="MarkdownV2"
    )
    assert markdown["description"] == (
        "Bad Request: can't parse entities: "
        "Character '.' is reserved and must be escaped with the preceding '\\'"
    )
    mode = await call(api, "sendMessage", chat_id=ANN, text="x", parse_mode="BBCode")
    assert mode["description"] == "Bad Request: unsupported parse_mode"


async def test_callback_data_must_be_one_to_64_bytes(api: httpx.AsyncClient) -> None:
    fits = "ж" * 32
    assert (await call(api, "sendMessage", chat_id=ANN, text="ok", reply_markup=keyboard(fits)))[
        "ok"
    ]
    for data in ("ж" * 33, ""):
        refused = await call(api, "sendMessage", chat_id=ANN, text="x", reply_markup=keyboard(data))
        assert refused["description"] == "Bad Request: BUTTON_DATA_INVALID"
    bare = json.dumps({"inline_keyboard": [[{"text": "no action"}]]})
    refused = await call(api, "sendMessage", chat_id=ANN, text="x", reply_markup=bare)
    assert "Text buttons are unallowed in the inline keyboard" in refused["description"]


async def test_edits_need_a_change_and_an_existing_message(
    double: TelegramDouble, api: httpx.AsyncClient
) -> None:
    first = await call(api, "sendMessage", chat_id=ANN, text="Step 1", reply_markup=keyboard("a"))
    message_id = first["result"]["message_id"]

    same = await call(
        api, "editMessageText", chat_id=ANN, message_id=message_id, text="Step 1",
        reply_markup=keyboard("a"),
    )  # fmt: skip
    assert same["description"].startswith("Bad Request: message is not modified: ")
    # Without reply_markup the keyboard goes, so this is a change.
    plain = await call(api, "editMessageText", chat_id=ANN, message_id=message_id, text="Step 1")
    assert "reply_markup" not in plain["result"]
    assert plain["result"]["edit_date"] >= plain["result"]["date"]

    gone = await call(api, "editMessageText", chat_id=ANN, message_id=99, text="x")
    assert gone["description"] == "Bad Request: message to edit not found"
    nowhere = await call(api, "sendMessage", chat_id=42, text="x")
    assert nowhere["description"] == "Bad Request: chat not found"
    double.user(BOB, "Bob", started=False)
    shy = await call(api, "sendMessage", chat_id=BOB, text="x")
    assert shy == {
        "ok": False,
        "error_code": 403,
        "description": "Forbidden: bot can't initiate conversation with a user",
    }

    double.send_text(ANN, "hello")
    users_message = double.chat_messages(ANN)[-1]["message_id"]
    theirs = await call(api, "editMessageText", chat_id=ANN, message_id=users_message, text="y")
    assert theirs["description"] == "Bad Request: message can't be edited"
    assert (await call(api, "deleteMessage", chat_id=ANN, message_id=message_id))["result"] is True
    twice = await call(api, "deleteMessage", chat_id=ANN, message_id=message_id)
    assert twice["description"] == "Bad Request: message to delete not found"
    assert [m["text"] for m in double.chat_messages(ANN)] == ["hello"]


async def test_multipart_uploads_are_kept_and_served(
    double: TelegramDouble, api: httpx.AsyncClient
) -> None:
    report = "Отчёт;1\n".encode()
    response = await api.post(
        "sendDocument",
        data={"chat_id": str(ANN), "caption": "<i>Weekly</i>", "parse_mode": "HTML"},
        files={"document": ("отчёт.csv", report, "text/csv")},
    )
    message = response.json()["result"]
    assert message["caption"] == "Weekly"
    assert message["caption_entities"] == [{"type": "italic", "offset": 0, "length": 6}]
    assert message["document"]["file_name"] == "отчёт.csv"
    assert message["document"]["file_size"] == len(report)

    file = (await call(api, "getFile", file_id=message["document"]["file_id"]))["result"]
    async with httpx.AsyncClient() as raw:
        download = await raw.get(f"{double.file_base_url}{TOKEN}/{file['file_path']}")
    assert download.content == report

    again = await call(api, "sendDocument", chat_id=ANN, document=message["document"]["file_id"])
    assert again["result"]["document"]["file_id"] == message["document"]["file_id"]
    as_photo = await call(api, "sendPhoto", chat_id=ANN, photo=message["document"]["file_id"])
    assert as_photo["description"] == "Bad Request: can't use file of type Document as Photo"

    long_caption = await api.post(
        "sendPhoto",
        data={"chat_id": str(ANN), "caption": "c" * 1025},
        files={"photo": ("chart.png", png(2, 2), "image/png")},
    )
    assert long_caption.json()["description"] == "Bad Request: message caption is too long"
    not_an_image = await api.post(
        "sendPhoto", data={"chat_id": str(ANN)}, files={"photo": ("a.png", b"text", "image/png")}
    )
    assert not_an_image.json()["description"] == "Bad Request: IMAGE_PROCESS_FAILED"
    unknown = await call(api, "getFile", file_id="nope")
    assert unknown["description"] == "Bad Request: invalid file_id"


async def test_long_polling_waits_for_an_update_and_offset_confirms(
    double: TelegramDouble, api: httpx.AsyncClient
) -> None:
    assert (await call(api, "getUpdates", timeout=0))["result"] == []

    poll = asyncio.create_task(call(api, "getUpdates", timeout=5))
    await asyncio.sleep(0.05)
    assert not poll.done()
    double.send_text(ANN, "hi")
    updates = (await asyncio.wait_for(poll, 2))["result"]
    assert [u["message"]["text"] for u in updates] == ["hi"]

    double.send_text(ANN, "again")
    unconfirmed = (await call(api, "getUpdates", timeout=0))["result"]
    assert len(unconfirmed) == 2
    after_offset = await call(api, "getUpdates", offset=updates[0]["update_id"] + 1, timeout=0)
    assert [u["message"]["text"] for u in after_offset["result"]] == ["again"]

    first = asyncio.create_task(
        call(api, "getUpdates", offset=unconfirmed[-1]["update_id"] + 1, timeout=5)
    )
    await asyncio.sleep(0.05)
    await call(api, "getUpdates", timeout=0)
    assert (await asyncio.wait_for(first, 2))["description"].startswith(
        "Conflict: terminated by other getUpdates request"
    )


async def test_allowed_updates_filter_what_gets_queued(
    double: TelegramDouble, api: httpx.AsyncClient
) -> None:
    sent_menu = await call(
        api, "sendMessage", chat_id=ANN, text="menu", reply_markup=keyboard("go")
    )
    await call(api, "getUpdates", timeout=0, allowed_updates=["callback_query"])
    double.send_text(ANN, "ignored")
    query = double.press(ANN, sent_menu["result"]["message_id"], "go")
    updates = (await call(api, "getUpdates", timeout=0))["result"]
    assert [list(u) for u in updates] == [["update_id", "callback_query"]]
    assert updates[0]["callback_query"]["id"] == query["id"]

    assert (await call(api, "answerCallbackQuery", callback_query_id=query["id"]))["ok"]
    twice = await call(api, "answerCallbackQuery", callback_query_id=query["id"])
    assert twice["description"].startswith("Bad Request: query is too old")


async def test_groups_deliver_only_what_is_meant_for_the_bot(
    double: TelegramDouble, api: httpx.AsyncClient
) -> None:
    double.user(BOB, "Bob")
    double.add_to_group(ANN, GROUP, "Shop team")
    double.add_to_group(BOB, GROUP, "Shop team")
    double.send_text(ANN, "good morning", chat_id=GROUP)
    double.send_text(BOB, "/stats@other_bot", chat_id=GROUP)
    double.send_text(ANN, "/subscribe@chainmail_test_bot", chat_id=GROUP)

    updates = (await call(api, "getUpdates", timeout=0))["result"]
    assert [u["message"]["text"] for u in updates] == ["/subscribe@chainmail_test_bot"]
    assert updates[0]["message"]["chat"] == {"id": GROUP, "title": "Shop team", "type": "group"}
    assert len(double.chat_messages(GROUP)) == 3
    with pytest.raises(DriverError, match="not in chat"):
        double.send_text(ANN, "hi", chat_id=-999)


async def test_pressing_a_button_the_message_does_not_have_fails_loudly(
    double: TelegramDouble, api: httpx.AsyncClient
) -> None:
    menu = await call(api, "sendMessage", chat_id=ANN, text="menu", reply_markup=keyboard("a", "b"))
    with pytest.raises(DriverError, match=r"\['a', 'b'\]"):
        double.press(ANN, menu["result"]["message_id"], "c")
    with pytest.raises(TimeoutError, match="no matching bot event"):
        await double.wait_for(lambda event: event.kind == "edited", timeout=0.05)


async def test_reply_keyboards_are_tracked_per_chat(
    double: TelegramDouble, api: httpx.AsyncClient
) -> None:
    reply_keyboard = {"keyboard": [["Yes", "No"]], "one_time_keyboard": True}
    await call(api, "sendMessage", chat_id=ANN, text="Sure?", reply_markup=reply_keyboard)
    assert "reply_markup" not in double.last_bot_message(ANN)  # type: ignore[operator]
    assert double.reply_keyboard(ANN) == reply_keyboard
    double.send_text(ANN, "Yes")
    assert double.reply_keyboard(ANN) is None


async def test_each_token_has_a_state_of_its_own() -> None:
    async with TelegramDouble("456:DEF") as double:
        second = double.add_bot("789:GHI", username="second_bot")
        second.user(ANN, "Ann")
        async with httpx.AsyncClient() as api:
            me = await api.post(f"{double.api_base_url}789:GHI/getMe")
            assert me.json()["result"]["username"] == "second_bot"
            for token, text in (("789:GHI", "a"), ("456:DEF", "b")):
                sent = await api.post(
                    f"{double.api_base_url}{token}/sendMessage", json={"chat_id": ANN, "text": text}
                )
                assert sent.json().get("description") == (
                    None if token == "789:GHI" else "Bad Request: chat not found"
                )
        assert [m["text"] for m in second.chat_messages(ANN)] == ["a"]
        assert double.chat_messages(ANN) == []


async def test_a_bot_can_poll_the_asgi_app_without_sockets() -> None:
    double = TelegramDouble(TOKEN)
    double.user(ANN, "Ann")
    transport = httpx.ASGITransport(app=double.app)
    app = (
        ApplicationBuilder()
        .token(TOKEN)
        .base_url("http://telegram.test/bot")
        .request(HTTPXRequest(httpx_kwargs={"transport": transport}))
        .get_updates_request(HTTPXRequest(httpx_kwargs={"transport": transport}))
        .build()
    )

    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.message is not None
        await update.message.reply_text("in process")

    app.add_handler(CommandHandler("start", start))
    async with polling(app):
        double.send_text(ANN, "/start")
        reply = await double.wait_for(sent)

    assert reply.text == "in process"
    # Stopping abandons a long poll; the double drops it instead of logging a conflict.
    assert [r.error for r in double.requests if r.error] == []


# -------------------------------------------------------------- formatted text


def test_entity_offsets_are_in_utf16_code_units() -> None:
    text, entities = parse_formatted_text("👍 <b>да</b> &lt;3", "HTML")
    assert text == "👍 да <3"
    assert entities == [{"type": "bold", "offset": 3, "length": 2}]


def test_html_links_code_blocks_and_nesting() -> None:
    text, entities = parse_formatted_text(
        '<a href="https://x.test">site</a> <b>bold <i>both</i></b>\n'
        '<pre><code class="language-python">print(1)</code></pre>',
        "HTML",
    )
    assert text == "site bold both\nprint(1)"
    assert entities == [
        {"type": "text_link", "offset": 0, "length": 4, "url": "https://x.test"},
        {"type": "bold", "offset": 5, "length": 9},
        {"type": "italic", "offset": 10, "length": 4},
        {"type": "pre", "offset": 15, "length": 8, "language": "python"},
    ]
    with pytest.raises(
        EntityParseError, match='Can\'t find end tag corresponding to start tag "b"'
    ):
        parse_formatted_text("<b>open", "HTML")


def test_markdown_v2_entities_and_escapes() -> None:
    text, entities = parse_formatted_text(
        "*Total* \\- __5__ ||x|| [shop](https://x.test/a\\)b) `a\\`b`\n>quoted", "MarkdownV2"
    )
    assert text == "Total - 5 x shop a`b\nquoted"
    assert [(e["type"], e["offset"], e["length"]) for e in entities] == [
        ("bold", 0, 5),
        ("underline", 8, 1),
        ("spoiler", 10, 1),
        ("text_link", 12, 4),
        ("code", 17, 3),
        ("blockquote", 21, 6),
    ]
    assert entities[3]["url"] == "https://x.test/a)b"
    with pytest.raises(EntityParseError, match="Can't find end of Bold entity at byte offset 3"):
        parse_formatted_text("ab *c", "MarkdownV2")
