"""The chain editor (SPEC §3) through the Telegram double, on both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.telegram_double import TelegramDouble
from models.admins import add_admin
from models.chains import export_chain, import_chain, list_chains
from models.customers import save_customers
from models.db import Database
from models.segments import add_segment
from models.tables import ChainStatus, Role
from tests.editor_driver import Phone
from tests.test_bot_support import ADMIN, VIEWER, BotUnderTest, new_double, running_bot

THREE_STEPS = """\
format: chainmail/1
name: Welcome series
steps:
  - name: Welcome
    audience: {segments: [new-customers]}
    action:
      channel: email
      subject: "Hi {{ first_name }}"
      text: "Welcome to the shop."
      html: "<p>Welcome to the shop.</p>"
    schedule: {send: now}
  - name: Reminder
    audience: {who: terms, match: any, terms: [not_opened]}
    action: {channel: email, subject: "Still there?", text: "We saved your cart."}
    schedule: {send: after, after: 2d}
  - name: Sorry to see you go
    audience: {who: terms, match: all, terms: [unsubscribed_email]}
    action: {channel: sms, text: "You can always come back: -10% with code BACK"}
    schedule: {send: now, wait_days: 30}
"""


@pytest.fixture
def double() -> TelegramDouble:
    return new_double()


@pytest.fixture
async def bot(db: Database, double: TelegramDouble) -> AsyncIterator[BotUnderTest]:
    await add_admin(db, ADMIN, Role.ADMIN, name="Anton", actor="test")
    await add_admin(db, VIEWER, Role.VIEWER, name="Vera", actor="test")
    await add_segment(db, "new-customers", ["new"], actor="test")
    await add_segment(db, "vip", ["vip"], actor="test")
    async with running_bot(db, double) as running:
        yield running


async def test_build_the_three_step_chain_by_taps_and_text(bot: BotUnderTest, db: Database) -> None:
    phone = Phone(bot, ADMIN)
    await phone.send("/start")
    await phone.tap("➕ New chain")
    assert "What is it called?" in phone.text
    await phone.send("Welcome series")
    assert "main step" in phone.text
    await phone.send("Welcome")
    assert "Step 1 of 1 · Welcome" in phone.text, phone.events

    # Step 1: who.
    await phone.tap("👥 Who")
    await phone.tap("☐ new-customers")
    assert "☑ new-customers" in phone.labels()
    await phone.tap("💾 Save")
    assert "Saved" in phone.answered()
    assert "to new-customers" in phone.text

    # Step 1: message, with HTML as a file.
    await phone.tap("✉️ Message")
    await phone.tap("✏️ Subject")
    await phone.send("Hi {{ first_name }}")
    await phone.tap("✏️ Text")
    await phone.send("Welcome to the shop.")
    await phone.tap("✏️ HTML")
    await phone.send_file("welcome.html", b"<p>Welcome to the shop.</p>", "text/html")
    assert "HTML: 27 characters" in phone.text
    assert "unsaved" in phone.text
    # Leaving with unsaved changes asks first; keep editing goes back to the block.
    await phone.tap("◀ Step 1")
    assert "unsaved changes" in phone.text
    await phone.tap("✏️ Keep editing")
    assert "Subject: Hi {{ first_name }}" in phone.text
    await phone.tap("💾 Save")

    # Step 1: when (now is the default) and goal (defaults saved with the step).
    await phone.tap("⏰ When")
    await phone.tap("💾 Save")

    # Step 2.
    await phone.tap("➕ Add step")
    await phone.send("Reminder")
    assert "Step 2 of 2 · Reminder" in phone.text
    await phone.tap("👥 Who")
    await phone.tap("Only if")
    await phone.tap("☐ not opened")
    await phone.tap("💾 Save")
    await phone.tap("✉️ Message")
    await phone.tap("✏️ Subject")
    await phone.send("Still there?")
    await phone.tap("✏️ Text")
    await phone.send("We saved your cart.")
    await phone.tap("💾 Save")
    await phone.tap("⏰ When")
    await phone.tap("After")
    await phone.send("2d")
    assert "After 2d" in phone.text
    await phone.tap("💾 Save")

    # Step 3, through the minimap.
    await phone.tap("🗺 Map")
    await phone.tap("➕ Add step")
    await phone.send("Sorry to see you go")
    await phone.tap("👥 Who")
    await phone.tap("Only if")
    await phone.tap("☐ unsubscribed email")
    await phone.tap("Match: any")
    await phone.tap("💾 Save")
    await phone.tap("✉️ Message")
    await phone.tap("📱 SMS")
    await phone.tap("✏️ Text")
    await phone.send("You can always come back: -10% with code BACK")
    assert "1 SMS (GSM-7)" in phone.text
    await phone.tap("💾 Save")
    await phone.tap("⏰ When")
    await phone.tap("💾 Save")

    # The map jumps between steps and shows them all complete.
    await phone.tap("🗺 Map")
    assert [label for label in phone.labels() if label[0].isdigit()] == [
        "1 · Welcome · ✉️ · new-customers",
        "2 · Reminder · ✉️ · if not opened",
        "3 · Sorry to see you go · 📱 · if unsubscribed email",
    ]
    await phone.tap("2 · Reminder")
    assert "Step 2 of 3 · Reminder" in phone.text

    await save_customers(
        db,
        [
            {"external_id": "1", "email": "a@example.com", "tags": ["new"]},
            {"external_id": "2", "phone": "+79161234567", "tags": ["new"]},
        ],
        default_timezone="Europe/Moscow",
        default_phone_region="RU",
        actor="test",
    )
    await phone.tap("🗺 Map")
    await phone.tap("🚀 Activate")
    assert "2 customers in its segments" in phone.text
    assert "1 would get it now" in phone.text
    assert "no email: 1" in phone.text
    await phone.tap("✅ Activate now")
    [chain] = await list_chains(db)
    assert chain.status is ChainStatus.ACTIVE

    expected = await import_chain(db, THREE_STEPS, actor="test")
    assert await export_chain(db, chain.id) == await export_chain(db, expected.chain_id)
