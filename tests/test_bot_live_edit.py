"""Editing a running chain from the bot (issue 12): Save on a live step shows what it does
first, a channel switch is refused with the reason, steps are stopped and removed —
through the Telegram double, on both databases, with the numbers of services/editing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select

from models import reasons
from models.admins import add_admin
from models.chainfile import EmailAction
from models.chains import get_chain
from models.db import Database
from models.tables import AuditEntry, Role
from telegram_double import TelegramDouble
from tests.editor_driver import Phone
from tests.test_bot_editor import open_in_editor
from tests.test_bot_support import ADMIN, BotUnderTest, running_bot
from tests.test_editing_stop import draft_chain, live_chain, statuses

SAVE_CONFIRM = ["✅ Save", "✏️ Keep editing"]


@pytest.fixture
async def bot(db: Database, double: TelegramDouble) -> AsyncIterator[BotUnderTest]:
    await add_admin(db, ADMIN, Role.ADMIN, name="Anton", actor="test")
    async with running_bot(db, double) as running:
        yield running


async def audit(db: Database, action: str) -> list[dict[str, Any]]:
    async with db.session() as session:
        found = await session.scalars(
            select(AuditEntry.details).where(AuditEntry.action == action).order_by(AuditEntry.id)
        )
    return list(found)


async def subject_of(db: Database, chain_id: int, position: int = 1) -> str:
    action = (await get_chain(db, chain_id)).steps[position - 1].action
    assert isinstance(action, EmailAction)
    return action.subject


async def at_step(bot: BotUnderTest, step: str = "1 · Welcome") -> Phone:
    """The admin on a step's screen of the running chain Welcome."""
    phone = Phone(bot, ADMIN)
    await open_in_editor(phone, "▶️ Welcome")
    await phone.tap(step)
    return phone


async def change_subject(bot: BotUnderTest, subject: str) -> Phone:
    phone = await at_step(bot)
    await phone.tap("✉️ Message")
    await phone.tap("✏️ Subject")
    await phone.send(subject)
    return phone


async def test_save_on_a_live_step_shows_its_impact_then_saves_a_new_version(
    bot: BotUnderTest, db: Database
) -> None:
    chain_id = await live_chain(db, customers=5, sent=3)
    phone = await change_subject(bot, "Spring is here")
    await phone.tap("💾 Save")
    assert phone.labels() == SAVE_CONFIRM
    assert "Save ✉️ Message of step 1 (Welcome)?" in phone.text
    assert "saving makes version 2" in phone.text
    assert (
        "step 1 (Welcome): action → version 2 · 3 already got the old text and keep it"
        " · 2 still to go get the new one"
    ) in phone.text
    # Nothing is written before the answer.
    assert (await get_chain(db, chain_id)).steps[0].version == 1
    assert await subject_of(db, chain_id) == "Hi"

    await phone.tap("✏️ Keep editing")
    assert "Subject: Spring is here" in phone.text
    assert "● unsaved" in phone.text
    await phone.tap("✏️ Subject")
    await phone.send("Spring is really here")
    await phone.tap("💾 Save")
    await phone.tap("✅ Save")
    assert phone.answered() == ["Saved as version 2"]
    assert "Step 1 of 2 · Welcome" in phone.text
    assert "· version 2" in phone.text
    assert "✅ step 1 (Welcome): action → version 2 · 3 already got" in phone.text

    step = (await get_chain(db, chain_id)).steps[0]
    assert step.version == 2
    assert await subject_of(db, chain_id) == "Spring is really here"
    [entry] = await audit(db, "step.save")
    assert entry["block"] == "action"
    assert entry["impact"] == {
        "position": 1,
        "change": "saved",
        "blocks": ["action"],
        "version": 2,
        "kept": 3,
        "to_go": 2,
    }


async def test_save_chosen_in_the_leave_question_asks_with_the_impact_too(
    bot: BotUnderTest, db: Database
) -> None:
    chain_id = await live_chain(db, customers=4, sent=1)
    phone = await change_subject(bot, "Last call")
    await phone.tap("◀ Step 1")
    assert "Save them, discard them, or keep editing?" in phone.text
    await phone.tap("💾 Save")
    assert phone.labels() == SAVE_CONFIRM
    assert "1 already got the old text and keep it · 3 still to go get the new one" in phone.text
    # Keep editing goes back to the draft, the leave question forgotten.
    await phone.tap("✏️ Keep editing")
    assert "Subject: Last call" in phone.text
    await phone.tap("◀ Step 1")
    await phone.tap("💾 Save")
    await phone.tap("✅ Save")
    # Then where the way out led: the step.
    assert "Step 1 of 2 · Welcome" in phone.text
    assert (await get_chain(db, chain_id)).steps[0].version == 2
    assert await subject_of(db, chain_id) == "Last call"
    [entry] = await audit(db, "step.save")
    assert (entry["impact"]["version"], entry["impact"]["kept"]) == (2, 1)


async def test_a_channel_switch_of_a_step_that_sent_is_refused_before_anything_is_asked(
    bot: BotUnderTest, db: Database
) -> None:
    chain_id = await live_chain(db, customers=5, sent=3)
    phone = await at_step(bot)
    await phone.tap("✉️ Message")
    await phone.tap("📱 SMS")
    await phone.tap("✏️ Text")
    await phone.send("Spring sale: -20% until Sunday")
    await phone.tap("💾 Save")
    assert "✅ Save" not in phone.labels()
    assert "Not saved:" in phone.text
    assert (
        "channel: step 1 (Welcome) has sent 3 messages by email: its channel cannot change."
        " Add a step with sms after it, or copy the chain and change the copy"
    ) in phone.text
    assert "● unsaved" in phone.text
    step = (await get_chain(db, chain_id)).steps[0]
    assert (step.version, isinstance(step.action, EmailAction)) == (1, True)
    assert await audit(db, "step.save") == []


async def test_stop_step_asks_with_the_waiting_count_then_skips_them(
    bot: BotUnderTest, db: Database
) -> None:
    chain_id = await live_chain(db, customers=5, sent=3)
    phone = await at_step(bot)
    assert "🗑 Remove step" not in phone.labels()
    await phone.tap("⏹ Stop step")
    assert "Stop step 1 (Welcome)?" in phone.text
    assert '2 waiting messages will be skipped ("step stopped")' in phone.text
    assert "The 3 already sent stay sent." in phone.text
    assert await statuses(db, chain_id) == {("sent", None): 3, ("planned", None): 2}
    # Back changes nothing.
    await phone.tap("◀ Back")
    assert "Step 1 of 2 · Welcome" in phone.text
    await phone.tap("⏹ Stop step")
    await phone.tap("⏹ Stop step")
    assert phone.answered() == ["Step stopped"]
    assert "⏹ stopped" in phone.text
    assert "⏹ Stop step" not in phone.labels()
    assert "✅ step 1 (Welcome): stopped: 2 waiting skipped, nobody moves past it" in phone.text
    assert await statuses(db, chain_id) == {
        ("sent", None): 3,
        ("skipped", reasons.STEP_STOPPED): 2,
    }
    assert (await get_chain(db, chain_id)).steps[0].stopped
    [entry] = await audit(db, "step.stop")
    assert (entry["to_go"], entry["kept"]) == (2, 3)

    # Marked on the map; its blocks are shown, not editable.
    await phone.tap("🗺 Map")
    assert "1 · Welcome · ✉️ · new-customers ⏹" in phone.labels()
    await phone.tap("1 · Welcome")
    await phone.tap("✉️ Message")
    assert "Subject: Hi" in phone.text
    assert "⏹ stopped: its blocks are shown as they were" in phone.text
    assert "💾 Save" not in phone.labels()
    assert [label for label in phone.labels() if label.startswith("✏️")] == []


async def test_remove_step_of_a_step_without_messages(bot: BotUnderTest, db: Database) -> None:
    chain_id = await live_chain(db, customers=2, sent=2)
    phone = await at_step(bot, "2 · Reminder")
    assert "⏹ Stop step" not in phone.labels()
    await phone.tap("🗑 Remove step")
    assert "Remove step 2 (Reminder)?" in phone.text
    assert "No message has come of it yet." in phone.text
    await phone.tap("🗑 Remove step")
    assert phone.answered() == ["Step removed"]
    assert [label for label in phone.labels() if label[0].isdigit()] == [
        "1 · Welcome · ✉️ · new-customers"
    ]
    assert [step.name for step in (await get_chain(db, chain_id)).steps] == ["Welcome"]
    [entry] = await audit(db, "step.remove")
    assert (entry["position"], entry["change"]) == (2, "removed")


async def test_a_draft_chain_saves_in_one_tap(bot: BotUnderTest, db: Database) -> None:
    chain_id = await draft_chain(db)
    phone = Phone(bot, ADMIN)
    await open_in_editor(phone, "📝 Welcome")
    await phone.tap("1 · Welcome")
    assert "⏹ Stop step" not in phone.labels()
    assert "🗑 Remove step" not in phone.labels()
    await phone.tap("✉️ Message")
    await phone.tap("✏️ Subject")
    await phone.send("Spring is here")
    await phone.tap("💾 Save")
    assert phone.answered() == ["Saved"]
    assert "Step 1 of 2 · Welcome" in phone.text
    assert await subject_of(db, chain_id) == "Spring is here"
    step = (await get_chain(db, chain_id)).steps[0]
    assert step.version == 1
    [entry] = await audit(db, "step.save")
    # Changed in place: no version in the audit log's impact.
    assert entry["impact"] == {
        "position": 1,
        "change": "saved",
        "blocks": ["action"],
        "notes": ["nothing-sent-yet"],
    }
