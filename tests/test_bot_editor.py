"""The chain editor (SPEC §3) through the Telegram double, on both databases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from channels.sms import OutboxSmsTransport
from channels.smtp import OutboxEmailTransport
from handlers import progress
from models.admins import add_admin
from models.chainfile import dump_yaml
from models.chains import export_chain, get_chain, import_chain, list_chains
from models.customers import save_customers
from models.db import Database
from models.segments import add_segment
from models.tables import ChainStatus, Role
from scheduler.engine import Engine, EngineConfig
from services.lifecycle import activate_chain
from telegram_double import TelegramDouble
from tests.editor_driver import Phone
from tests.test_bot_support import (
    ADMIN,
    OWNER,
    STRANGER,
    VIEWER,
    BotUnderTest,
    buttons,
    running_bot,
    screen,
)

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
    # No HTML yet: the manager learns that opens and clicks are counted all the same.
    assert "HTML: none of your own; one is made from the text, so opens and clicks" in phone.text
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
    # Not opened is known only after a wait: Now is not offered, After… is preselected.
    assert phone.labels()[:2] == ["● After…", "At…"]
    assert "someone who has not opened the message yet may still open it" in phone.text
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
    assert "1 SMS part (GSM-7)" in phone.text
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


# --- Drafts are never lost -------------------------------------------------------------


async def open_in_editor(phone: Phone, card: str) -> None:
    await phone.send("/chains")
    await phone.tap(card)
    await phone.tap("✏️ Edit")


async def open_first_step(phone: Phone, name: str = "Spring sale") -> None:
    await phone.send(f"/new {name}")
    await phone.send("Main")


async def test_leaving_a_block_with_unsaved_changes_asks_and_discard_drops_them(
    bot: BotUnderTest, db: Database
) -> None:
    phone = Phone(bot, ADMIN)
    await open_first_step(phone)
    await phone.tap("👥 Who")
    await phone.tap("☐ vip")
    # A command while the draft is unsaved gets the question, not the command.
    await phone.send("/chains")
    assert "unsaved changes in step 1 (Main)" in phone.text
    await phone.tap("🗑 Discard")
    # Where the command was going: the chain list, in place of the question.
    assert phone.text.startswith("📋 Chains")
    assert "Spring sale" in phone.text
    [chain] = await list_chains(db)
    assert (await get_chain(db, chain.id)).steps[0].audience is None
    # /cancel asks too; Save there saves.
    await open_in_editor(phone, "📝 Spring sale")
    await phone.tap("1 · Main")
    await phone.tap("👥 Who")
    await phone.tap("☐ vip")
    await phone.send("/cancel")
    assert "Save them, discard them, or keep editing?" in phone.text
    await phone.tap("💾 Save")
    assert phone.text == "Editor closed. /start shows the menu."
    saved = (await get_chain(db, chain.id)).steps[0].audience
    assert saved is not None
    assert saved.to_block() == {"segments": ["vip"]}


async def test_a_button_outside_the_editor_asks_before_leaving_a_draft(
    bot: BotUnderTest, db: Database
) -> None:
    phone = Phone(bot, ADMIN)
    await phone.send("/start")
    menu = phone.shown
    await open_first_step(phone)
    await phone.tap("👥 Who")
    await phone.tap("☐ vip")
    assert menu is not None
    assert menu.message_id is not None
    phone._took(await bot.press(ADMIN, menu.message_id, "chains:0"))
    assert "unsaved changes" in phone.text
    await phone.tap("✏️ Keep editing")
    assert "Segments: vip" in phone.text


async def test_a_restart_in_the_middle_of_a_block_keeps_the_draft(
    db: Database, double: TelegramDouble
) -> None:
    await add_admin(db, ADMIN, Role.ADMIN, name="Anton", actor="test")
    await add_segment(db, "vip", ["vip"], actor="test")
    async with running_bot(db, double) as first:
        phone = Phone(first, ADMIN)
        await open_first_step(phone)
        await phone.tap("✉️ Message")
        await phone.tap("✏️ Subject")
        await phone.send("Spring is here")
        await phone.tap("✏️ Text")
    async with running_bot(db, double) as second:
        phone.bot = second
        # The bot was waiting for the text when it stopped; it still is.
        await phone.send("Flowers -20% until Sunday")
        assert "Subject: Spring is here" in phone.text
        assert "Text: Flowers -20% until Sunday" in phone.text
        assert "unsaved" in phone.text
        await phone.tap("💾 Save")
    [chain] = await list_chains(db)
    action = (await get_chain(db, chain.id)).steps[0].action
    assert action is not None
    assert action.to_block() == {
        "channel": "email",
        "subject": "Spring is here",
        "text": "Flowers -20% until Sunday",
    }


async def test_save_refuses_what_a_chain_file_would_refuse_and_keeps_the_draft(
    bot: BotUnderTest, db: Database
) -> None:
    phone = Phone(bot, ADMIN)
    await open_first_step(phone)
    await phone.tap("✉️ Message")
    await phone.tap("✏️ Text")
    await phone.send("Hello {{ first_name ")
    await phone.tap("💾 Save")
    assert "Not saved:" in phone.text
    assert "subject: missing" in phone.text
    assert "text: " in phone.text
    assert "unsaved" in phone.text
    [chain] = await list_chains(db)
    assert (await get_chain(db, chain.id)).steps[0].action is None


async def test_later_terms_cannot_be_sent_now_and_the_reason_is_given(
    bot: BotUnderTest, db: Database
) -> None:
    chain_id = (await import_chain(db, THREE_STEPS, actor="test")).chain_id
    phone = Phone(bot, ADMIN)
    await open_in_editor(phone, "📝 Welcome series")
    await phone.tap("2 · Reminder")
    await phone.tap("⏰ When")
    # Now is not offered, and the manager reads why.
    assert "Now" not in phone.labels()
    assert "● After…" in phone.labels()
    assert (
        "“Now” is not offered: someone who has not opened the message yet may still open it."
        " Choose how long to wait (After…) or a moment (At…)" in phone.text
    )
    # Step 3 goes out Now: a term known only later is refused in the bot's words,
    # never in the chain file's.
    await phone.tap("◀ Step 2")
    await phone.tap("Step ▶")
    await phone.tap("👥 Who")
    await phone.tap("☐ not ordered")
    await phone.tap("💾 Save")
    assert "Not saved:" in phone.text
    assert "«not ordered» need a wait: someone who has not ordered yet may still order" in (
        phone.text
    )
    assert "⏰ When is “Now”: set it to After… or At… first" in phone.text
    assert "send:" not in phone.text
    assert "not_ordered" not in phone.text
    stored = (await get_chain(db, chain_id)).steps[1].schedule
    assert stored is not None
    assert stored.send.value == "after"


# --- Dates ------------------------------------------------------------------------------


async def test_typed_moments_and_the_date_picker(bot: BotUnderTest, db: Database) -> None:
    phone = Phone(bot, ADMIN)
    await open_first_step(phone)
    await phone.tap("⏰ When")
    await phone.tap("At")
    await phone.send("2020-01-01 10:00")
    assert "has already passed (Europe/Moscow)" in phone.text
    await phone.send("31.02 10:00")
    assert "there is no such day" in phone.text
    await phone.send("next week")
    # The examples are tomorrow's, in the shop's zone: never a moment already past.
    tomorrow = datetime.now(ZoneInfo("Europe/Moscow")).date() + timedelta(days=1)
    forms = f"{tomorrow:%Y-%m-%d} 10:00, {tomorrow:%d.%m} 10:00 or tomorrow 10:00"
    assert f"try {forms}" in phone.text
    assert f"✏️ Or type a moment: {forms}." in phone.text
    await phone.send("tomorrow 10:00")
    assert "At 20" in phone.text
    assert "10:00, in each customer's own time zone" in phone.text
    # The picker: a later month, a day, an hour, a minute.
    await phone.tap("● At…")
    await phone.tap("▶")
    days = [label for label in phone.labels() if label.isdigit()]
    assert days[0] == "1"
    await phone.tap("1")
    await phone.tap("18:…")
    await phone.tap("18:30")
    assert "-01 18:30, in each customer's own time zone" in phone.text
    await phone.tap("💾 Save")
    [chain] = await list_chains(db)
    schedule = (await get_chain(db, chain.id)).steps[0].schedule
    assert schedule is not None
    assert schedule.at is not None
    assert (schedule.at.day, schedule.at.hour, schedule.at.minute) == (1, 18, 30)


# --- Who may edit -----------------------------------------------------------------------


async def test_a_viewer_cannot_edit(bot: BotUnderTest, db: Database) -> None:
    chain_id = (await import_chain(db, THREE_STEPS, actor="test")).chain_id
    phone = Phone(bot, VIEWER)
    await phone.send("/new Mine")
    assert "Only admins can change things" in phone.text
    await phone.send("/start")
    assert "➕ New chain" not in phone.labels()
    await phone.send("/chains")
    await phone.tap("📝 Welcome series")
    assert "✏️ Edit" not in phone.labels()
    assert "📄 Copy" not in phone.labels()
    assert [chain.id for chain in await list_chains(db)] == [chain_id]


async def test_owner_copies_a_chain_from_its_card(bot: BotUnderTest, db: Database) -> None:
    await import_chain(db, THREE_STEPS, actor="test")
    phone = Phone(bot, OWNER)
    await phone.send("/chains")
    await phone.tap("📝 Welcome series")
    await phone.tap("📄 Copy")
    assert "Welcome series (copy)" in phone.text
    assert len([label for label in phone.labels() if label[0].isdigit()]) == 3
    copy, original = sorted(await list_chains(db), key=lambda c: -c.id)
    assert copy.name == "Welcome series (copy)"
    assert copy.status is ChainStatus.DRAFT
    exported = (await export_chain(db, copy.id)).replace("Welcome series (copy)", "Welcome series")
    assert exported.replace("welcome_series_copy", "welcome_series") == await export_chain(
        db, original.id
    )


# --- Activation, progress, pause ----------------------------------------------------------


def outbox_engine(db: Database, outbox: Path) -> Engine:
    return Engine(
        db,
        EngineConfig(
            mail_from="Shop <news@shop.example>",
            public_base_url="https://mail.shop.example",
            secret_key="secret",
            quiet_hours_sms=None,
            batch_size=2,
        ),
        email=OutboxEmailTransport(outbox),
        sms=OutboxSmsTransport(outbox, "Shop"),
    )


async def customers(db: Database, count: int, **extra: object) -> None:
    rows = [
        {"external_id": f"c{n}", "email": f"c{n}@example.com", "tags": ["new"], **extra}
        for n in range(count)
    ]
    rows.append({"external_id": "no-email", "phone": "+79161234567", "tags": ["new"]})
    await save_customers(
        db, rows, default_timezone="Europe/Moscow", default_phone_region="RU", actor="test"
    )


def emails_in(outbox: Path) -> int:
    return len(list(outbox.glob("*.eml")))


async def text_of(double: TelegramDouble, chat_id: int, message_id: int, wanted: str) -> str:
    """The message's text once it contains `wanted` (the progress task edits it on its own)."""
    for _ in range(200):
        [message] = [m for m in double.chat_messages(chat_id) if m["message_id"] == message_id]
        if wanted in message.get("text", ""):
            return str(message["text"])
        await asyncio.sleep(0.02)
    raise AssertionError(f"{wanted!r} never shown; last: {message.get('text')!r}")


async def test_activation_shows_the_forecast_then_the_wave_in_one_message(
    bot: BotUnderTest,
    db: Database,
    double: TelegramDouble,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(progress, "INTERVAL_SECONDS", 0.02)
    await customers(db, 5)
    chain_id = (await import_chain(db, THREE_STEPS, actor="test")).chain_id
    phone = Phone(bot, OWNER)
    await open_in_editor(phone, "📝 Welcome series")
    await phone.tap("🚀 Activate")
    assert "Main step (email): 6 customers in its segments." in phone.text
    assert "✅ 5 would get it now." in phone.text
    assert "no email: 1" in phone.text
    assert "Later steps (email, SMS)" in phone.text
    # No SMTP server or SMS gateway in the tests' settings: the bot says so, without the
    # server's paths (the engine's log has them).
    assert "📂 No SMTP server is set: emails are saved to the outbox, not sent." in phone.text
    assert "📂 No SMS gateway is set: SMS are saved to the outbox, not sent." in phone.text
    assert "outbox/" not in phone.text
    await phone.tap("✅ Activate now")
    assert (await get_chain(db, chain_id)).status is ChainStatus.ACTIVE
    assert phone.shown is not None
    message_id = phone.shown.message_id
    assert message_id is not None
    await text_of(double, OWNER, message_id, "📤 Sending")
    assert wave_buttons(double, message_id) == {}

    await outbox_engine(db, tmp_path).run_until_idle()
    final = await text_of(double, OWNER, message_id, "✅ Wave finished")
    assert "6/6 done · sent 5 · failed 0" in final
    assert "no email: 1" in final
    # Then where to go: the numbers, or the chain.
    assert wave_buttons(double, message_id) == {
        f"stats:{chain_id}:0": "📊 Stats",
        f"chain:{chain_id}:0": "📋 Open chain",
    }
    assert emails_in(tmp_path) == 5
    # The watch is over and forgotten.
    for _ in range(100):
        if not bot.app.bot_data.get(progress.WAVES):
            break
        await asyncio.sleep(0.02)
    assert not bot.app.bot_data.get(progress.WAVES)
    stats = screen(await bot.press(OWNER, message_id, f"stats:{chain_id}:0"))
    assert stats.message_id == message_id
    assert stats.text.startswith("📊 Welcome series · ▶️ active")
    card = screen(await bot.press(OWNER, message_id, f"chain:{chain_id}:0"))
    assert "✏️ Edit" in buttons(card).values()


def wave_buttons(double: TelegramDouble, message_id: int) -> dict[str, str]:
    [message] = [m for m in double.chat_messages(OWNER) if m["message_id"] == message_id]
    rows = (message.get("reply_markup") or {}).get("inline_keyboard", [])
    return {b["callback_data"]: b["text"] for row in rows for b in row}


async def test_pause_stops_sending_within_one_engine_tick(
    bot: BotUnderTest, db: Database, tmp_path: Path
) -> None:
    await customers(db, 4)
    chain_id = (await import_chain(db, THREE_STEPS, actor="test")).chain_id
    await activate_chain(db, chain_id, actor="test")
    engine = outbox_engine(db, tmp_path)
    phone = Phone(bot, ADMIN)
    await phone.send("/pause Welcome series")
    assert "is paused" in phone.text
    await engine.tick()
    assert emails_in(tmp_path) == 0
    await phone.send("/resume Welcome series")
    await engine.tick()
    assert emails_in(tmp_path) == 4


async def test_a_step_added_after_activation_is_edited_like_any_other(
    bot: BotUnderTest, db: Database
) -> None:
    chain_id = (await import_chain(db, THREE_STEPS, actor="test")).chain_id
    await activate_chain(db, chain_id, actor="test")
    phone = Phone(bot, ADMIN)
    await open_in_editor(phone, "▶️ Welcome series")
    assert "🚀 Activate" not in phone.labels()
    await phone.tap("➕ Add step")
    await phone.tap("Step 4")
    assert "Step 4 of 4 · Step 4" in phone.text
    await phone.tap("👥 Who")
    await phone.tap("💾 Save")
    steps = (await get_chain(db, chain_id)).steps
    assert len(steps) == 4
    assert steps[3].audience is not None


async def test_a_long_chain_with_long_names_pages_its_map_within_telegram_limits(
    bot: BotUnderTest, db: Database
) -> None:
    name = "Очень длинное название " * 8
    lines = ["format: chainmail/1", f"name: {name[:200]!r}", "steps:"]
    for position in range(1, 26):
        audience = "{segments: [new-customers]}" if position == 1 else "{who: all}"
        lines += [
            f"  - name: {('Шаг ' + str(position) + ' ') * 20!r}",
            f"    audience: {audience}",
            f"    action: {{channel: sms, text: {'Текст ' * 60!r}}}",
            "    schedule: {send: after, after: 1d}",
        ]
    await import_chain(db, "\n".join(lines) + "\n", actor="test")
    phone = Phone(bot, ADMIN)
    await open_in_editor(phone, "📝 Очень")
    steps = [label for label in phone.labels() if label[0].isdigit()]
    assert len(steps) == 10
    await phone.tap("▶")
    await phone.tap("▶")
    assert [label.split(" · ")[0] for label in phone.labels() if label[0].isdigit()] == [
        "21",
        "22",
        "23",
        "24",
        "25",
    ]
    await phone.tap("25 · ")
    assert "Step 25 of 25" in phone.text
    await phone.tap("✉️ Message")
    assert "6 SMS parts (UCS-2)" in phone.text
    # The map opens on the page of the step worked on.
    await phone.tap("◀ Step 25")
    await phone.tap("🗺 Map")
    assert phone.labels()[0].startswith("21 · ")


async def test_a_stranger_gets_one_refusal_and_no_chain(bot: BotUnderTest, db: Database) -> None:
    events = await bot.send(STRANGER, "/new Mine")
    assert [event.text for event in events if event.kind == "sent"] == [
        "Sorry, this bot is private and you are not authorised to use it."
    ]
    assert await list_chains(db) == []


async def test_the_goal_takes_a_window_and_a_minimum_amount(
    bot: BotUnderTest, db: Database
) -> None:
    phone = Phone(bot, ADMIN)
    await open_first_step(phone)
    await phone.tap("🎯 Goal")
    await phone.tap("14d")
    await phone.tap("✏️ Minimum amount")
    await phone.send("много")
    assert "«много» is not an amount" in phone.text
    await phone.send("1 500,50")
    assert "Minimum amount: RUB1,500.50" in phone.text
    await phone.tap("✏️ Other window")
    await phone.send("0")
    assert "is not a number of days from 1 to 3650" in phone.text
    await phone.send("21")
    await phone.tap("💾 Save")
    [chain] = await list_chains(db)
    conversion = (await get_chain(db, chain.id)).steps[0].conversion
    assert conversion is not None
    assert conversion.to_block() == {"goal": "order", "window_days": 21, "min_amount": 1500.5}


async def test_the_goal_counts_bigger_and_restored_orders_when_ticked(
    bot: BotUnderTest, db: Database
) -> None:
    phone = Phone(bot, ADMIN)
    await open_first_step(phone)
    await phone.tap("🎯 Goal")
    assert [label for label in phone.labels() if "order" in label] == [
        "☑ 🆕 New order",
        "☐ 📈 Bigger order",
        "☐ ♻️ Restored order",
    ]
    assert "• 🆕 New order: an order placed within the window: its amount counts" in phone.text
    await phone.tap("☐ 📈 Bigger order")
    await phone.tap("☐ ♻️ Restored order")
    await phone.tap("☑ 🆕 New order")
    assert "the increase counts" in phone.text
    assert "New order:" not in phone.text
    # Nothing left to count is refused on the spot, not at Save.
    await phone.tap("☑ 📈 Bigger order")
    await phone.tap("☑ ♻️ Restored order")
    assert "At least one kind of order must count." in phone.text
    assert "☑ ♻️ Restored order" in phone.labels()
    await phone.tap("💾 Save")
    assert "orders within 7 days: restored" in phone.text

    [chain] = await list_chains(db)
    conversion = (await get_chain(db, chain.id)).steps[0].conversion
    assert conversion is not None
    assert conversion.to_block()["mechanics"] == ["order_restored"]
    # As a chain file writes it.
    assert "mechanics: [order_restored]" in dump_yaml({"conversion": conversion.to_block()})

    # Back to the default: the block is stored without a list, as before mechanics.
    await phone.tap("🎯 Goal")
    await phone.tap("☐ 🆕 New order")
    await phone.tap("☑ ♻️ Restored order")
    await phone.tap("💾 Save")
    conversion = (await get_chain(db, chain.id)).steps[0].conversion
    assert conversion is not None
    assert "mechanics" not in conversion.to_block()
