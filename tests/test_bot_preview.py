"""Preview and "Send test to me" in the chain editor, through the Telegram double, on both
databases; test sends through a real SMTP server and HTTP gateway on 127.0.0.1, or the outbox."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.telegram_app import build_application
from models.admins import add_admin
from models.chains import import_chain
from models.customers import save_customers
from models.db import Database
from models.segments import add_segment
from models.tables import AuditEntry, Delivery, Role
from telegram_double import TelegramDouble
from tests.editor_driver import Phone
from tests.servers import SmsGatewayTestServer, SmtpTestServer
from tests.test_bot_support import ADMIN, BotUnderTest, bot_settings

CHAIN = """\
format: chainmail/1
name: Welcome series
steps:
  - name: Welcome
    audience: {segments: [new-customers]}
    action:
      channel: email
      subject: "Hi {{ first_name }}"
      text: "Welcome from {{ city }}! New things: https://shop.example/new"
      html: '<p>Hello {{ first_name }}, see <a href="https://shop.example/new">what is new</a></p>'
    schedule: {send: now}
  - name: Reminder
    audience: {who: all}
    action: {channel: sms, text: "{{ first_name }}, your cart is waiting"}
    schedule: {send: after, after: 2d}
"""
CUSTOMERS = [
    {
        "external_id": "c-1",
        "email": "maria@example.com",
        "phone": "+79161234567",
        "first_name": "Maria",
        "tags": ["new"],
        "attributes": {"city": "Kazan"},
    },
    {"external_id": "c-2", "email": "ivan@example.com", "first_name": "Ivan", "tags": ["vip"]},
]


@asynccontextmanager
async def editor(
    db: Database, double: TelegramDouble, tmp_path: Path, *, customers: bool = True, **settings: Any
) -> AsyncIterator[Phone]:
    """The admin at step 1 of "Welcome series"; nothing configured writes to `tmp_path`."""
    await add_admin(db, ADMIN, Role.ADMIN, name="Anton", actor="test")
    await add_segment(db, "new-customers", ["new"], actor="test")
    if customers:
        await save_customers(
            db, CUSTOMERS, default_timezone="Europe/Moscow", default_phone_region="RU", actor="t"
        )
    await import_chain(db, CHAIN, actor="test")
    options = {"outbox_dir": tmp_path, "mail_from": "Shop <news@shop.example>", **settings}
    # Over HTTP on loopback, so that the HTML preview is uploaded as a file.
    with double:
        options["telegram_api_base_url"] = double.api_base_url
        app = build_application(bot_settings(**options), db)
        async with app:
            phone = Phone(BotUnderTest(app, double), ADMIN)
            await phone.send("/chains")
            await phone.tap("📝 Welcome series")
            await phone.tap("✏️ Edit")
            await phone.tap("1 · Welcome")
            yield phone


def sent_documents(phone: Phone) -> list[dict[str, Any]]:
    return [
        event.message["document"]
        for event in phone.events
        if event.kind == "sent" and event.message and "document" in event.message
    ]


async def deliveries(db: Database) -> int:
    async with db.session() as session:
        return await session.scalar(select(func.count()).select_from(Delivery)) or 0


async def test_preview_fills_in_a_sample_customer_of_the_main_steps_segments(
    db: Database, double: TelegramDouble, tmp_path: Path
) -> None:
    async with editor(db, double, tmp_path) as phone:
        await phone.tap("👁 Preview")
        assert "Preview</b>" not in phone.text  # parsed HTML, as the user sees it
        assert "Preview · step 1 · Welcome · email" in phone.text
        assert "For Maria (id c-1, sample)" in phone.text
        assert "Subject: Hi Maria" in phone.text
        assert "Welcome from Kazan! New things: https://shop.example/new?utm_source=chainmail" in (
            phone.text
        )
        # The footer the engine adds, with its unsubscribe link.
        assert "http://127.0.0.1:8000/u/" in phone.text
        assert "🌐 The HTML version is in the file above." in phone.text
        [document] = sent_documents(phone)
        assert document["file_name"] == "welcome-preview.html"
        page = double.file_content(document["file_id"]).decode()
        assert "Hello Maria" in page
        # Links go straight to their (UTM-tagged) targets, so they work on the phone.
        assert 'href="https://shop.example/new?utm_source=chainmail&amp;utm_medium=email' in page
        assert "/t/c/" not in page
        # The screen to press comes after the file.
        assert "👤 Pick a customer" in phone.labels()
        assert await deliveries(db) == 0


async def test_a_customer_picked_by_email_then_back_to_the_sample(
    db: Database, double: TelegramDouble, tmp_path: Path
) -> None:
    async with editor(db, double, tmp_path) as phone:
        await phone.tap("👁 Preview")
        await phone.tap("👤 Pick a customer")
        assert "external id, email or phone" in phone.text
        await phone.send("nobody@example.com")
        assert "No customer has the external id, email or phone «nobody@example.com»" in phone.text
        await phone.send("IVAN@example.com")
        assert "For Ivan (id c-2, picked)" in phone.text
        assert "Subject: Hi Ivan" in phone.text
        # An unknown attribute renders empty, as in the engine.
        assert "Welcome from ! New things" in phone.text

        # The pick holds for the other steps: step 2 is an SMS, Ivan has no phone.
        await phone.tap("◀ Step 1")
        await phone.tap("Step ▶")
        await phone.tap("👁 Preview")
        assert "For Ivan (id c-2, picked)" in phone.text
        assert "This customer has no phone: the engine would skip them." in phone.text
        assert ", your cart is waiting" in phone.text

        await phone.tap("🎲 Sample customer")
        assert "For Maria (id c-1, sample)" in phone.text
        assert "Maria, your cart is waiting" in phone.text
        assert "📏 27 characters · 1 SMS part (GSM-7)" in phone.text


async def test_an_unsaved_draft_is_previewed_and_back_returns_to_it(
    db: Database, double: TelegramDouble, tmp_path: Path
) -> None:
    async with editor(db, double, tmp_path) as phone:
        await phone.tap("✉️ Message")
        await phone.tap("✏️ Subject")
        await phone.send("Only today, {{ first_name }}")
        await phone.tap("🗑 No HTML")
        assert "one is made from the text, so opens and clicks are counted" in phone.text
        await phone.tap("👁 Preview")
        assert "(draft, unsaved changes included)" in phone.text
        assert "Subject: Only today, Maria" in phone.text
        assert "The HTML version in the file above is made from the text" in phone.text
        # The HTML the engine would send: the text in paragraphs, its link tracked.
        [document] = sent_documents(phone)
        page = double.file_content(document["file_id"]).decode()
        assert "<p>Welcome from Kazan! New things: <a href=" in page
        assert 'href="https://shop.example/new?utm_source=chainmail&amp;utm_medium=email' in page
        assert ">https://shop.example/new</a></p>" in page
        assert "/t/c/" not in page
        await phone.tap("◀ Message")
        assert "unsaved" in phone.text
        assert "Only today" in phone.text


async def test_a_long_message_is_cut_to_fit_telegram(
    db: Database, double: TelegramDouble, tmp_path: Path
) -> None:
    async with editor(db, double, tmp_path) as phone:
        await phone.tap("✉️ Message")
        await phone.tap("✏️ Text")
        await phone.send("Tom & Jerry <3 " * 250)
        await phone.tap("👁 Preview")
        assert len(phone.text) <= 4096
        assert "Subject: Hi Maria" in phone.text
        assert "more characters not shown" in phone.text


async def test_a_template_that_fails_is_shown_in_words(
    db: Database, double: TelegramDouble, tmp_path: Path
) -> None:
    async with editor(db, double, tmp_path) as phone:
        await phone.tap("✉️ Message")
        await phone.tap("✏️ Text")
        await phone.send("You saved {{ 100 / 0 }}%")
        await phone.tap("👁 Preview")
        assert "The message cannot be built for this customer" in phone.text
        assert "text: division by zero" in phone.text
        assert "Traceback" not in phone.text
        await phone.tap("◀ Message")
        await phone.tap("✏️ Subject")
        await phone.send("Hi {{ first_name")
        await phone.tap("👁 Preview")
        assert "subject" in phone.text
        assert "line 1" in phone.text


async def test_a_made_up_customer_when_there_are_none(
    db: Database, double: TelegramDouble, tmp_path: Path
) -> None:
    async with editor(db, double, tmp_path, customers=False) as phone:
        await phone.tap("👁 Preview")
        assert "A made-up customer, Anna: there are no customers yet." in phone.text
        assert "Subject: Hi Anna" in phone.text


async def test_send_test_email_through_smtp_is_not_a_delivery(
    db: Database, double: TelegramDouble, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    settings = {"smtp_host": smtp_server.host, "smtp_port": smtp_server.port}
    async with editor(db, double, tmp_path, **settings) as phone:
        await phone.tap("🧪 Send test to me")
        assert "Send your own email address" in phone.text
        await phone.send("not an address")
        assert "bad email" in phone.text
        assert smtp_server.messages == []
        await phone.send("Olga.Admin@Example.org")
        assert "Test sent to O***@example.org." in phone.text
        assert "nothing shows in the stats" in phone.text

        [received] = smtp_server.messages
        assert received.rcpt_tos == ("Olga.Admin@example.org",)
        assert received.mail_from == "news@shop.example"
        message = received.parsed()
        assert str(make_header(decode_header(message["Subject"]))) == "[TEST] Hi Maria"
        assert message["To"] == "Maria <Olga.Admin@example.org>"
        assert received.message_id is not None
        assert received.message_id.startswith("<cm.test.")
        assert received.message_id.endswith("@shop.example>")
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert "/u/" in message["List-Unsubscribe"]
        text = message.get_body(("plain",)).get_content()
        assert "Welcome from Kazan!" in text
        html = message.get_body(("html",)).get_content()
        assert "Hello Maria" in html

        # The address is remembered: the next test goes at once, with a Message-ID of its own.
        await phone.tap("🧪 Send test to me")
        assert "Test sent to O***@example.org." in phone.text
        first, second = smtp_server.message_ids()
        assert first != second
        assert "✏️ Change my email" in phone.labels()

    assert await deliveries(db) == 0
    async with db.session() as session:
        entries = list(
            await session.scalars(select(AuditEntry).where(AuditEntry.action == "step.test_send"))
        )
    assert [(e.actor, e.details["to"], e.details["status"]) for e in entries] == [
        (f"tg:{ADMIN}", "Olga.Admin@example.org", "sent")
    ] * 2


async def test_send_test_sms_through_the_gateway(
    db: Database, double: TelegramDouble, tmp_path: Path, sms_gateway: SmsGatewayTestServer
) -> None:
    settings = {
        "sms_gateway_url": sms_gateway.url,
        "sms_gateway_token": sms_gateway.token,
        "sms_sender": "Shop",
    }
    async with editor(db, double, tmp_path, **settings) as phone:
        await phone.tap("Step ▶")
        await phone.tap("🧪 Send test to me")
        assert "Send your own phone number" in phone.text
        await phone.send("8 (916) 000-11-22")
        assert "Test sent to +79*******22." in phone.text
        [request] = sms_gateway.requests
        assert request.body == {
            "id": "0",
            "to": "+79160001122",
            "text": "Maria, your cart is waiting",
            "sender": "Shop",
        }
        # Another number for the next tests.
        await phone.tap("✏️ Change my phone")
        await phone.send("+7 916 000 33 44")
        assert [r.body["to"] for r in sms_gateway.requests] == ["+79160001122", "+79160003344"]
    assert await deliveries(db) == 0


async def test_a_test_sms_ends_with_the_opt_out_line_as_every_sms_does(
    db: Database, double: TelegramDouble, tmp_path: Path, sms_gateway: SmsGatewayTestServer
) -> None:
    settings = {
        "sms_gateway_url": sms_gateway.url,
        "sms_gateway_token": sms_gateway.token,
        "sms_opt_out_text": "STOP: 0000",
    }
    async with editor(db, double, tmp_path, **settings) as phone:
        await phone.tap("Step ▶")
        await phone.tap("👁 Preview")
        assert "STOP: 0000" in phone.text
        assert "📏 38 characters · 1 SMS part (GSM-7)" in phone.text
        await phone.tap("◀ Step 2")
        await phone.tap("🧪 Send test to me")
        await phone.send("8 (916) 000-11-22")
        [request] = sms_gateway.requests
        assert request.body["text"] == "Maria, your cart is waiting\nSTOP: 0000"


async def test_test_sends_go_to_the_outbox_when_nothing_is_configured(
    db: Database, double: TelegramDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="services.preview")
    async with editor(db, double, tmp_path) as phone:
        await phone.tap("🧪 Send test to me")
        await phone.send("olga@example.org")
        [eml] = await asyncio.to_thread(lambda: list(tmp_path.glob("cm.test.*.eml")))
        assert "🧪 Saved to the outbox (no SMTP server is set): no email was sent." in phone.text
        # The server's paths are the operator's: in the log, not in the chat.
        assert str(tmp_path) not in phone.text
        assert f"written to {eml}" in caplog.text
        assert b"Subject: [TEST] Hi Maria" in eml.read_bytes()

        await phone.tap("◀ Step 1")
        await phone.tap("Step ▶")
        await phone.tap("🧪 Send test to me")
        await phone.send("+79160001122")
        outbox = tmp_path / "sms.jsonl"
        assert "🧪 Saved to the outbox (no SMS gateway is set): no SMS was sent." in phone.text
        assert str(tmp_path) not in phone.text
        assert f"written to {outbox}" in caplog.text
        [line] = outbox.read_text().splitlines()
        record = json.loads(line)
        assert (record["id"], record["to"], record["text"]) == (
            "0",
            "+79160001122",
            "Maria, your cart is waiting",
        )
    assert await deliveries(db) == 0


async def test_a_test_the_outbox_cannot_take_is_told_without_the_servers_paths(
    db: Database, double: TelegramDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The outbox "directory" is a file: nothing can be written under it.
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    async with editor(db, double, tmp_path, outbox_dir=blocked) as phone:
        await phone.tap("🧪 Send test to me")
        await phone.send("olga@example.org")
        assert (
            "⚠️ The test could not be saved to the outbox; the server's log says why." in phone.text
        )
        assert str(tmp_path) not in phone.text
    assert f"test send to the outbox {blocked}" in caplog.text
