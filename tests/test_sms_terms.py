"""`opened` / `not_opened` after an SMS step (issue 13, item 4): refused with the reason,
in a chain file and in the bot, whichever of the two blocks is saved second, and when
removing a step would put such terms after an SMS. An SMS can be delivered and its
links clicked; nothing tells whether it was read."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from models.chainfile import InvalidBlock, load_yaml, validate_chain
from models.chains import import_chain
from models.db import Database
from models.errors import ChainmailError
from models.segments import add_segment
from services.editing import remove_step, save_block
from telegram_double import TelegramDouble
from tests.editor_driver import Phone
from tests.test_bot_support import ADMIN, BotUnderTest
from tests.test_sms_opt_out import admin_bot, new_sms_chain

REASON = (
    "step 1 sends an SMS, and whether an SMS was opened is never known; "
    "use delivered or clicked (and their not_ forms)"
)


def two_steps(first: str, terms: str) -> str:
    action = (
        '{channel: sms, text: "Sale"}'
        if first == "sms"
        else '{channel: email, subject: "Sale", text: "Sale"}'
    )
    return f"""
format: chainmail/1
name: Sale
steps:
  - name: Offer
    audience: {{segments: [new-customers]}}
    action: {action}
    schedule: {{send: now}}
  - name: Follow-up
    audience: {{who: terms, match: any, terms: [{terms}]}}
    action: {{channel: email, subject: "Still there?", text: "…"}}
    schedule: {{send: after, after: 2d}}
"""


def problems_of(text: str) -> list[str]:
    checked = validate_chain(load_yaml(text), known_segments=["new-customers"], known_attributes=[])
    return [str(problem) for problem in checked.problems]


@pytest.mark.parametrize(
    ("terms", "named"),
    [("opened", "opened"), ("not_opened, clicked", "not_opened"), ("opened, not_opened", None)],
)
def test_a_chain_file_with_opened_terms_after_an_sms_is_refused_with_the_reason(
    terms: str, named: str | None
) -> None:
    shown = named or "opened, not_opened"
    assert problems_of(two_steps("sms", terms)) == [f"steps[1].audience.terms: {shown}: {REASON}"]


@pytest.mark.parametrize("terms", ["delivered", "clicked, not_clicked", "not_delivered, ordered"])
def test_terms_an_sms_can_tell_are_accepted_after_it(terms: str) -> None:
    assert problems_of(two_steps("sms", terms)) == []


def test_opened_terms_after_an_email_are_accepted() -> None:
    assert problems_of(two_steps("email", "opened, not_opened")) == []


async def import_two_steps(db: Database, first: str, terms: str) -> int:
    await add_segment(db, "new-customers", ["new"], actor="test")
    return (await import_chain(db, two_steps(first, terms), actor="test")).chain_id


async def test_saving_opened_terms_after_a_saved_sms_step_is_refused(db: Database) -> None:
    chain_id = await import_two_steps(db, "sms", "delivered")

    with pytest.raises(InvalidBlock) as refused:
        await save_block(
            db,
            chain_id,
            2,
            "audience",
            {"who": "terms", "match": "all", "terms": ["not_opened"]},
            actor="test",
        )

    assert [str(p) for p in refused.value.problems] == [f"terms: not_opened: {REASON}"]


async def test_saving_an_sms_before_a_step_that_asks_opened_is_refused(db: Database) -> None:
    chain_id = await import_two_steps(db, "email", "opened")

    with pytest.raises(InvalidBlock) as refused:
        await save_block(db, chain_id, 1, "action", {"channel": "sms", "text": "Hi"}, actor="t")

    assert [str(p) for p in refused.value.problems] == [
        "channel: step 2 goes by whether this message was opened (opened), which an SMS never "
        "tells: change step 2's terms first"
    ]
    # Another email is fine.
    await save_block(
        db, chain_id, 1, "action", {"channel": "email", "subject": "Hi", "text": "Hi"}, actor="t"
    )


async def test_removing_a_step_that_would_put_opened_after_an_sms_is_refused(
    db: Database,
) -> None:
    await add_segment(db, "new-customers", ["new"], actor="test")
    three = two_steps("sms", "delivered") + (
        "  - name: Last\n"
        "    audience: {who: terms, match: all, terms: [opened]}\n"
        '    action: {channel: email, subject: "Last", text: "…"}\n'
        "    schedule: {send: after, after: 2d}\n"
    )
    chain_id = (await import_chain(db, three, actor="test")).chain_id

    with pytest.raises(ChainmailError) as refused:
        await remove_step(db, chain_id, 2, actor="test")

    assert str(refused.value) == f"step 3 would follow step 1: opened: {REASON}"


@pytest.fixture
async def bot(db: Database, double: TelegramDouble) -> AsyncIterator[BotUnderTest]:
    async with admin_bot(db, double) as running:
        yield running


async def test_the_bot_offers_only_the_terms_an_sms_can_tell_after_an_sms_step(
    bot: BotUnderTest,
) -> None:
    phone = Phone(bot, ADMIN)
    await new_sms_chain(phone, "Sale today")
    await phone.tap("💾 Save")

    await phone.tap("➕ Add step")
    await phone.send("Follow-up")
    await phone.tap("👥 Who")
    await phone.tap("Only if")
    # Opened is never known of an SMS, and an email unsubscribe is not about it.
    assert [label for label in phone.labels() if label.startswith("☐")] == [
        "☐ clicked",
        "☐ not clicked",
        "☐ delivered",
        "☐ not delivered",
        "☐ unsubscribed SMS",
        "☐ ordered",
        "☐ not ordered",
    ]
    assert "never whether it was opened, so only those terms are offered" in phone.text
    # Terms an SMS can tell save.
    await phone.tap("☐ not clicked")
    await phone.tap("💾 Save")
    assert "Saved" in phone.answered()
