"""Button data is the user's to forge: outsized numbers answer as an old button would."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from telegram import Update

from handlers import texts
from handlers.callbacks import Action, int_arg
from models.admins import add_admin
from models.db import Database
from models.tables import Role
from telegram_double import BotEvent, TelegramDouble
from tests.test_bot_support import ADMIN, OWNER, BotUnderTest, make_chain, running_bot

TWENTY_THREE_DIGITS = "1" * 23
BEYOND_BIGINT = str(2**63)
LARGEST_BIGINT = str(2**63 - 1)


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        (TWENTY_THREE_DIGITS, 0),
        (BEYOND_BIGINT, 0),
        (LARGEST_BIGINT, 2**63 - 1),
        ("-1", -1),
        ("١٢", 0),  # int() reads Arabic-Indic digits; our buttons never carry them
        (" 7", 0),
        ("1_000", 0),
    ],
)
def test_int_arg_reads_only_what_our_buttons_write(arg: str, expected: int) -> None:
    assert int_arg([arg], 0) == expected


async def press_with_data(
    bot: BotUnderTest, user_id: int, message_id: int, button: str, data: str
) -> list[BotEvent]:
    """The user presses `button` and Telegram hands the bot `data` instead: what an old
    client, an old button or a forged one can do (the double only presses real buttons)."""
    start = len(bot.fake.events)
    bot.fake.press(user_id, message_id, button)
    status, body = await bot.fake.call("getUpdates", {"timeout": "0"})
    assert status == 200, body
    for raw in body["result"]:
        raw["callback_query"]["data"] = data
        await bot.app.process_update(Update.de_json(raw, bot.app.bot))
    offset = body["result"][-1]["update_id"] + 1
    await bot.fake.call("getUpdates", {"offset": str(offset), "timeout": "0"})
    return bot.fake.events[start:]


@pytest.fixture
async def bot(db: Database, double: TelegramDouble) -> AsyncIterator[BotUnderTest]:
    await add_admin(db, ADMIN, Role.ADMIN, name="Anton", actor="test")
    async with running_bot(db, double) as running:
        yield running


@pytest.mark.parametrize("number", [TWENTY_THREE_DIGITS, LARGEST_BIGINT])
async def test_buttons_with_outsized_numbers_never_fail(
    bot: BotUnderTest, db: Database, number: str
) -> None:
    await make_chain(db, "Welcome")
    for action in Action:
        for data in (f"{action.value}:{number}", f"{action.value}:1:{number}"):
            menu = [e for e in await bot.send(OWNER, "/start") if e.kind == "sent"][-1]
            events = await press_with_data(bot, OWNER, menu.message_id, "help", data)
            shown = [e.text for e in events if e.kind in ("sent", "edited", "answered")]
            assert not [text for text in shown if text and texts.FAILED in text], data


async def test_a_chain_card_with_a_23_digit_id_answers_as_an_old_button(
    bot: BotUnderTest, db: Database
) -> None:
    await make_chain(db, "Welcome")
    menu = [e for e in await bot.send(OWNER, "/start") if e.kind == "sent"][-1]
    events = await press_with_data(
        bot, OWNER, menu.message_id, "help", f"chain:{TWENTY_THREE_DIGITS}:0"
    )
    # As any garbled id: the default, 0, which no chain has.
    assert [(e.kind, e.text) for e in events] == [("answered", "⚠️ There is no chain 0")]
