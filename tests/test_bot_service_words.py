"""What the services say reaches the manager in the bot's language (issue 14): a refusal,
a CSV import's refused lines, the impact of a save on a live step, a typed value refused,
a segment refused. The CLI and the API keep saying it in English. Through the Telegram
double, on both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from handlers.texts import skip_reason
from i18n import Phrase, _, use_language
from models import reasons
from models.admins import add_admin
from models.db import Database
from models.errors import ChainmailError
from models.segment_rules import InvalidSegment, parse_definition
from models.tables import ChainStatus, Role
from services.lifecycle import pause_chain
from telegram_double import TelegramDouble
from tests.editor_driver import Phone
from tests.test_bot_commands import CSV
from tests.test_bot_editor import open_first_step
from tests.test_bot_support import ADMIN, OWNER, BotUnderTest, make_chain, running_bot, screen
from tests.test_editing_stop import live_chain


def ru(message: str) -> str:
    with use_language("ru"):
        return _(message)


@pytest.fixture
async def bot(db: Database, double: TelegramDouble) -> AsyncIterator[BotUnderTest]:
    await add_admin(db, ADMIN, Role.ADMIN, name="Anton", actor="test")
    # Anton's Telegram app is in Russian; Olga's (the owner) says nothing: English.
    double.user(ADMIN, "Anton", "anton", language_code="ru")
    async with running_bot(db, double) as running:
        yield running


async def test_a_refusal_of_the_service_is_said_in_each_users_language(
    bot: BotUnderTest, db: Database
) -> None:
    draft = await make_chain(db, "Черновик", ChainStatus.DRAFT)
    russian = screen(await bot.send(ADMIN, f"/pause {draft}")).text
    assert russian == f"⚠️ Цепочка {draft}: черновик; приостановить можно только запущенную цепочку"
    english = screen(await bot.send(OWNER, f"/pause {draft}")).text
    assert english == f"⚠️ Chain {draft} is draft; only an active chain can be paused"
    # The CLI and the API read the English, whoever raised it.
    with pytest.raises(ChainmailError) as raised, use_language("ru"):
        await pause_chain(db, draft, actor="test")
    assert str(raised.value) == f"chain {draft} is draft; only an active chain can be paused"


async def test_the_refused_lines_of_an_import_are_said_in_russian(bot: BotUnderTest) -> None:
    await bot.send(ADMIN, "/import")
    report = screen(await bot.send_document(ADMIN, "shop.csv", CSV.encode())).text
    assert report.splitlines()[1:] == [
        "⚠️ Не приняты 2 строки:",
        "строка 3: неверный email 'not-an-email'",
        "строка 4: нет external_id",
    ]


async def test_what_a_save_on_a_live_step_does_is_said_in_russian(
    bot: BotUnderTest, db: Database
) -> None:
    await live_chain(db, customers=5, sent=3)
    phone = Phone(bot, ADMIN)
    await phone.send("/chains")
    await phone.tap("▶️ Welcome")
    await phone.tap(ru("✏️ Edit"))
    await phone.tap("1 · Welcome")
    await phone.tap(ru("✉️ Message"))
    await phone.tap(ru("✏️ Subject"))
    await phone.send("Весна пришла")
    await phone.tap(ru("💾 Save"))
    assert (
        "шаг 1 (Welcome): сообщение → версия 2 · 3 уже получили старый текст и остаются с ним"
        " · 2 из ещё не отправленных получат новый"
    ) in phone.text
    assert "already got" not in phone.text


async def test_a_typed_delay_is_refused_in_russian(bot: BotUnderTest) -> None:
    phone = Phone(bot, ADMIN)
    await open_first_step(phone, "Весна")
    await phone.tap(ru("⏰ When"))
    await phone.tap(next(label for label in phone.labels() if label.endswith(ru("After…"))))
    await phone.send("скоро")
    assert "'скоро' — не длительность" in phone.text
    assert "is not a duration" not in phone.text


def test_a_refused_segment_and_an_impact_line_in_either_language() -> None:
    with pytest.raises(InvalidSegment) as raised:
        parse_definition({"attributes": [{"key": "city", "operator": "equals", "value": " "}]})
    assert str(raised.value) == "the value to compare 'city' with is empty"
    with use_language("ru"):
        assert raised.value.translated_problems() == ["значение для сравнения с 'city' пустое"]


def test_a_phrase_is_its_english_text_and_translates_its_values_too() -> None:
    inner = Phrase("step {position} ({name}) is already stopped", position=2, name="Напоминание")
    outer = Phrase("{refused}: mark it `stopped: true`", refused=inner)
    assert outer == "step 2 (Напоминание) is already stopped: mark it `stopped: true`"
    with use_language("ru"):
        assert outer.translated() == (
            "шаг 2 (Напоминание) уже остановлен: отметьте его `stopped: true`"
        )


def test_stored_skip_reasons_are_shown_in_the_readers_language() -> None:
    with use_language("ru"):
        assert skip_reason(reasons.NO_EMAIL) == "нет email"
        assert skip_reason(reasons.TERMS_FALSE) == "условия не выполнены"
        # A channel's own words, and none at all.
        assert skip_reason("550 5.1.1 user unknown") == "550 5.1.1 user unknown"
        assert skip_reason(None) == "другое"
    assert skip_reason(reasons.NO_EMAIL) == "no email"
