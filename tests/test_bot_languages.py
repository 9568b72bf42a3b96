"""The bot speaks Russian and English (issue 14, item 1): the Telegram app's language,
/language remembered across a restart, a stranger refused in their own language, team
chats in their subscriber's language, every message within Telegram's limit in Russian
too. Through the Telegram double, on both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, time

import pytest
from sqlalchemy import select

from bot.telegram_app import announce_commands
from handlers import texts
from i18n import use_language
from models.admins import add_admin
from models.bot_users import languages_of, spoken_languages
from models.chainfile import EmailAction, SegmentsAudience
from models.chains import ChainView, StepView
from models.customers import ImportReport, LineError
from models.db import Database
from models.segments import SegmentInfo
from models.stats import DailyStats
from models.summaries import summary_period
from models.tables import ChainStatus, Enrollment, Role, SubscribedChat
from telegram_double import TelegramDouble
from tests.test_bot_support import (
    ADMIN,
    GROUP,
    OWNER,
    STRANGER,
    VIEWER,
    BotUnderTest,
    buttons,
    make_chain,
    running_bot,
    screen,
)
from tests.test_bot_texts import LIMIT, LONG_NAME, stats

RUSSIAN_MENU = "Chainmail\nЧто посмотрим?"
ENGLISH_MENU = "Chainmail\nWhat would you like to look at?"


@pytest.fixture
async def bot(db: Database, double: TelegramDouble) -> AsyncIterator[BotUnderTest]:
    await add_admin(db, ADMIN, Role.ADMIN, name="Anton", actor="test")
    await add_admin(db, VIEWER, Role.VIEWER, name="Vera", actor="test")
    # Anton's Telegram app is in Russian; Olga's (the owner) says nothing: English.
    double.user(ADMIN, "Anton", "anton", language_code="ru")
    async with running_bot(db, double) as running:
        yield running


async def chat_language(db: Database, chat_id: int) -> str | None:
    async with db.session() as session:
        return await session.scalar(
            select(SubscribedChat.language).where(SubscribedChat.chat_id == chat_id)
        )


async def test_a_russian_user_gets_the_menu_and_chains_in_russian_an_english_one_in_english(
    bot: BotUnderTest, db: Database
) -> None:
    await make_chain(db, "Зимняя распродажа", steps=2)
    russian = screen(await bot.send(ADMIN, "/start"))
    assert russian.text == RUSSIAN_MENU
    assert set(buttons(russian).values()) >= {"📋 Цепочки", "➕ Новая цепочка", "❓ Помощь"}
    assert screen(await bot.send(ADMIN, "/chains")).text.splitlines()[::2] == [
        "📋 Цепочки",
        "#1 Зимняя распродажа — ▶️ работает, 2 шага",
    ]
    english = screen(await bot.send(OWNER, "/start"))
    assert english.text == ENGLISH_MENU
    assert "📋 Chains" in buttons(english).values()
    assert screen(await bot.send(OWNER, "/chains")).text.splitlines()[::2] == [
        "📋 Chains",
        "#1 Зимняя распродажа — ▶️ active, 2 steps",
    ]


async def test_a_telegram_app_in_another_language_without_a_catalogue_gets_english(
    bot: BotUnderTest, double: TelegramDouble
) -> None:
    double.user(OWNER, "Olga", "olga", language_code="de")
    assert screen(await bot.send(OWNER, "/start")).text == ENGLISH_MENU


async def test_language_switches_and_is_remembered_across_a_restart(
    db: Database, double: TelegramDouble, bot: BotUnderTest
) -> None:
    question = screen(await bot.send(OWNER, "/language"))
    assert question.text == (
        "🌐 Which language should I speak with you?\nNow: English, as your Telegram app is set."
    )
    assert buttons(question) == {
        "lang:ru": "🇷🇺 Русский",
        "lang:en": "🇬🇧 English",
        "lang:tg": "● 📱 As my Telegram",
    }
    chosen = screen(await bot.press(OWNER, question.message_id, "lang:ru"))
    assert chosen.text.splitlines()[0] == "✅ Буду говорить с вами по-русски."
    assert buttons(chosen)["lang:ru"] == "● 🇷🇺 Русский"
    assert (await languages_of(db, OWNER)).chosen == "ru"
    async with running_bot(db, double) as restarted:
        assert screen(await restarted.send(OWNER, "/start")).text == RUSSIAN_MENU
        again = screen(await restarted.send(OWNER, "/language"))
        assert again.text.endswith("Сейчас: Русский, как вы выбрали.")
        back = screen(await restarted.press(OWNER, again.message_id, "lang:tg"))
        assert back.text.splitlines()[0] == "✅ I will speak the language of your Telegram app."
        assert screen(await restarted.send(OWNER, "/start")).text == ENGLISH_MENU


async def test_a_choice_outlasts_what_the_telegram_app_says(
    bot: BotUnderTest, double: TelegramDouble
) -> None:
    question = screen(await bot.send(ADMIN, "/language"))
    await bot.press(ADMIN, question.message_id, "lang:en")
    assert screen(await bot.send(ADMIN, "/start")).text == ENGLISH_MENU


async def test_a_stranger_is_refused_in_their_own_language(
    bot: BotUnderTest, double: TelegramDouble, db: Database
) -> None:
    double.user(STRANGER, "Незнакомец", "stranger", language_code="ru")
    refusal = screen(await bot.send(STRANGER, "/start"))
    assert refusal.text == "Извините, это закрытый бот, и у вас нет к нему доступа."
    # Nothing is kept of strangers.
    assert (await languages_of(db, STRANGER)).telegram is None


async def test_help_lists_language_in_the_users_language(bot: BotUnderTest) -> None:
    assert "/language — Язык: русский или английский" in screen(await bot.send(ADMIN, "/help")).text
    assert "/language — Language: English or Russian" in screen(await bot.send(OWNER, "/help")).text


async def test_a_group_takes_its_subscribers_language_and_follows_their_choice(
    bot: BotUnderTest, double: TelegramDouble, db: Database
) -> None:
    double.add_to_group(ADMIN, GROUP, "Team")
    double.add_to_group(OWNER, GROUP, "Team")
    answer = screen(await bot.send(ADMIN, "/subscribe", GROUP))
    assert answer.text.startswith("📬 Теперь этот чат получает ежедневную сводку")
    assert await chat_language(db, GROUP) == "ru"
    # Anyone answers in their own language there; the chat keeps its subscriber's.
    assert screen(await bot.send(OWNER, "/chains", GROUP)).text.startswith("There are no")
    question = screen(await bot.send(ADMIN, "/language", GROUP))
    await bot.press(ADMIN, question.message_id, "lang:en", GROUP)
    assert await chat_language(db, GROUP) == "en"


async def test_the_worker_writes_to_each_person_in_the_language_the_bot_speaks_with_them(
    bot: BotUnderTest, db: Database
) -> None:
    await bot.send(ADMIN, "/start")
    await bot.send(OWNER, "/start")
    question = screen(await bot.send(VIEWER, "/language"))
    await bot.press(VIEWER, question.message_id, "lang:ru")
    languages = await spoken_languages(db, [ADMIN, OWNER, VIEWER, 999], "en")
    assert languages == {ADMIN: "ru", OWNER: "en", VIEWER: "ru", 999: "en"}


async def test_commands_menu_is_in_english_and_russian(
    bot: BotUnderTest, double: TelegramDouble
) -> None:
    await announce_commands(bot.app)  # type: ignore[arg-type]
    menus = [r for r in double.requests if r.method == "setMyCommands"]
    russian = [r for r in menus if r.params.get("language_code") == "ru"]
    assert len(russian) == len(menus) // 2
    descriptions = {c["description"] for r in russian for c in r.params["commands"]}
    assert "Язык: русский или английский" in descriptions
    assert "Main menu" not in descriptions


# --- Telegram's limit in Russian ----------------------------------------------------------


@pytest.mark.parametrize("steps", [1, 20, 100])
def test_russian_stats_and_summaries_stay_within_the_limit(steps: int) -> None:
    day, zone = date(2026, 12, 4), "Asia/Vladivostok"
    with use_language("ru"):
        pages = texts.stats_pages(stats(steps), currency="RUB")
        summary = texts.summary_messages(
            DailyStats(stats(steps), stats(steps), stats(steps)),
            texts.summary_header(day, zone, *summary_period(day, zone, time(18, 30))),
            currency="RUB",
        )
    for page in pages + summary:
        assert len(page) <= LIMIT
    assert "стр. 1/" in pages[0] or len(pages) == 1


def test_russian_lists_and_reports_are_cut_to_fit() -> None:
    errors = [LineError(line, f"bad email '{'x' * 60}…'") for line in range(2, 1002)]
    report = ImportReport(created=5, updated=1, refused=5000, errors=errors)
    people = [(10_000_000_000 + n, "viewer", "Н" * 200) for n in range(500)]
    steps = tuple(
        StepView(n, n, LONG_NAME, SegmentsAudience(("а" * 100,)), EmailAction("s", "t"), None, None)
        for n in range(1, 101)
    )
    chain = ChainView(1, LONG_NAME, ChainStatus.DRAFT, Enrollment.ONCE, "tag", True, steps)
    segments = [SegmentInfo(n, "с" * 100, ("т" * 100,) * 20, "all") for n in range(15)]
    with use_language("ru"):
        shown = [
            texts.import_report("клиенты.csv", report),
            texts.admin_list([1, 2, 3], people),
            texts.chain_card(chain),
            texts.segment_list(segments, 0, 1),
            *(texts.stats_pages(stats(100), currency="RUB")),
        ]
        assert texts.import_report("клиенты.csv", report).splitlines()[:2] == [
            "✅ клиенты.csv: загружено 6 клиентов (новых 5, обновлено 1).",
            "⚠️ Не принято 5000 строк:",
        ]
        assert texts.chain_card(chain).splitlines()[-1].startswith("… и ещё ")
    assert all(len(text) <= LIMIT for text in shown)


def test_russian_plural_forms() -> None:
    with use_language("ru"):
        assert [texts.steps_count(n) for n in (1, 2, 5, 11, 21, 22)] == [
            "1 шаг",
            "2 шага",
            "5 шагов",
            "11 шагов",
            "21 шаг",
            "22 шага",
        ]
