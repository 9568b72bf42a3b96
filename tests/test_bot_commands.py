"""The commands and menus of SPEC §3, fed to the application as updates (both databases)."""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator

import pytest
from PIL import Image
from sqlalchemy import select

from bot.telegram_app import build_application
from handlers import texts
from handlers.charts import chart_size
from models.admins import add_admin, role_of
from models.chains import get_chain
from models.db import Database
from models.segments import add_segment
from models.tables import AuditEntry, ChainStatus, Customer, Role
from models.team_chats import is_subscribed
from telegram_double import TelegramDouble
from tests.test_bot_support import (
    ADMIN,
    GROUP,
    OWNER,
    STRANGER,
    VIEWER,
    BotUnderTest,
    bot_settings,
    buttons,
    make_chain,
    running_bot,
    screen,
)
from tests.test_reporting import seeded_chain


@pytest.fixture
async def bot(db: Database, double: TelegramDouble) -> AsyncIterator[BotUnderTest]:
    await add_admin(db, ADMIN, Role.ADMIN, name="Anton", actor="test")
    await add_admin(db, VIEWER, Role.VIEWER, name="Vera", actor="test")
    async with running_bot(db, double) as running:
        yield running


async def audit(db: Database, action: str) -> list[tuple[str, dict[str, object]]]:
    async with db.session() as session:
        rows = await session.execute(
            select(AuditEntry.actor, AuditEntry.details)
            .where(AuditEntry.action == action)
            .order_by(AuditEntry.id)
        )
        return [(actor, details) for actor, details in rows]


async def status(db: Database, chain_id: int) -> ChainStatus:
    return (await get_chain(db, chain_id)).status


# --- Menu ----------------------------------------------------------------------------


async def test_every_menu_button_opens_a_screen_in_the_same_message(
    bot: BotUnderTest, db: Database
) -> None:
    await make_chain(db, "Welcome")
    await add_segment(db, "vip", ["vip"], actor="test")
    menu = screen(await bot.send(OWNER, "/start"))
    # New chain (an owner builds chains too) opens the editor: tests/test_bot_editor.py.
    assert set(buttons(menu)) == {"chains:0", "new", "customers", "segments:0", "reports:0", "help"}
    for data in set(buttons(menu)) - {"new"}:
        events = await bot.press(OWNER, menu.message_id, data)
        shown = screen(events)
        assert shown.kind == "edited"
        assert shown.message_id == menu.message_id
        assert texts.FAILED not in shown.text
        assert [e.kind for e in events][-1] == "answered"
        # Back to the menu for the next button.
        back = await bot.press(OWNER, menu.message_id, "menu")
        assert screen(back).text == "Chainmail\nWhat would you like to look at?"


async def test_customers_screen_counts_and_says_how_to_import(
    bot: BotUnderTest, db: Database
) -> None:
    async with db.writer() as session:
        session.add_all(
            Customer(external_id=str(n), timezone="Europe/Moscow", timezone_source="default")
            for n in range(3)
        )
    menu = screen(await bot.send(ADMIN, "/start"))
    shown = screen(await bot.press(ADMIN, menu.message_id, "customers"))
    assert shown.text.startswith("👥 Customers: 3")
    assert "/import" in shown.text
    # A viewer cannot import: told who can, not a command of no use to them.
    menu = screen(await bot.send(VIEWER, "/start"))
    shown = screen(await bot.press(VIEWER, menu.message_id, "customers"))
    assert shown.text == "👥 Customers: 3\n\nAdmins add and update customers from CSV files."


ALL_COMMANDS = {
    "start", "help", "chains", "stats", "subscribe", "unsubscribe", "new", "pause", "resume",
    "pause_all", "import", "cancel", "admins", "language",
}  # fmt: skip
REFUSALS = (texts.NEEDS_ADMIN, texts.NEEDS_OWNER, texts.PRIVATE_ONLY, texts.NOT_AUTHORISED)


def listed_commands(help_text: str) -> set[str]:
    return set(re.findall(r"^/(\w+) — ", help_text, flags=re.MULTILINE))


@pytest.mark.parametrize(
    ("user", "chat", "expected"),
    [
        (VIEWER, None, {"start", "help", "chains", "stats", "subscribe", "unsubscribe",
                        "language"}),
        (ADMIN, None, ALL_COMMANDS - {"admins"}),
        (OWNER, None, ALL_COMMANDS),
        # A team group's members are viewers there; its admins subscribe it and pause.
        (STRANGER, GROUP, {"start", "help", "chains", "stats", "language"}),
        (ADMIN, GROUP, {"start", "help", "chains", "stats", "subscribe", "unsubscribe",
                        "pause", "resume", "pause_all", "language"}),
    ],
)  # fmt: skip
async def test_help_lists_every_command_the_role_may_use_there_and_no_other(
    bot: BotUnderTest,
    db: Database,
    double: TelegramDouble,
    user: int,
    chat: int | None,
    expected: set[str],
) -> None:
    await make_chain(db, "Welcome")
    if chat is not None:
        for member in {ADMIN, user}:
            double.add_to_group(member, chat, "Team")
        await bot.send(ADMIN, "/subscribe", chat)
    listed = listed_commands(screen(await bot.send(user, "/help", chat)).text)
    assert listed == expected
    for command in sorted(ALL_COMMANDS - {"cancel"}):
        # Each on its own: a conversation one starts is left before the next.
        answer = screen(await bot.send(user, f"/{command}", chat))
        await bot.send(user, "/cancel", chat)
        refused = answer.text in REFUSALS
        assert refused is (command not in listed), (command, answer.text)


async def test_an_admin_with_no_chains_is_told_to_build_one(bot: BotUnderTest) -> None:
    assert "/new builds one" in screen(await bot.send(ADMIN, "/chains")).text
    told = screen(await bot.send(VIEWER, "/chains")).text
    assert told.startswith("There are no chains yet. An operator can import one")
    assert "/new" not in told


async def test_help_and_cancel_with_nothing_to_cancel(bot: BotUnderTest) -> None:
    assert "/pause" not in screen(await bot.send(VIEWER, "/help")).text
    assert "/admins" in screen(await bot.send(OWNER, "/help")).text
    assert screen(await bot.send(ADMIN, "/cancel")).text == texts.NOTHING_TO_CANCEL
    assert screen(await bot.send(ADMIN, "what now?")).text == texts.UNKNOWN_MESSAGE


# --- Chains --------------------------------------------------------------------------


async def test_chain_list_pages_are_edited_in_place(bot: BotUnderTest, db: Database) -> None:
    for n in range(10):
        await make_chain(db, f"Chain {n}", ChainStatus.DRAFT)
    first = screen(await bot.send(VIEWER, "/chains"))
    assert "page 1/2" in first.text
    assert "chains:1" in buttons(first)
    assert "#8" in first.text
    assert "#9" not in first.text
    second = screen(await bot.press(VIEWER, first.message_id, "chains:1"))
    assert second.message_id == first.message_id
    assert "page 2/2" in second.text
    assert "#10 Chain 9 — 📝 draft, 1 step" in second.text
    assert set(buttons(second)) == {"chain:9:1", "chain:10:1", "chains:0", "menu"}
    card = screen(await bot.press(VIEWER, first.message_id, "chain:10:1"))
    assert card.text.startswith("Chain 9 (#10)")
    assert "1. Step 1 — email, to everyone" in card.text
    back = screen(await bot.press(VIEWER, first.message_id, "chains:1"))
    assert "page 2/2" in back.text


async def test_an_owner_pauses_a_chain_by_name(bot: BotUnderTest, db: Database) -> None:
    chain_id = await make_chain(db, "Welcome series")
    reply = screen(await bot.send(OWNER, "/pause welcome SERIES"))
    assert reply.text == texts.paused("Welcome series").replace("<b>", "").replace("</b>", "")
    assert await status(db, chain_id) is ChainStatus.PAUSED
    assert await audit(db, "chain.paused") == [(f"tg:{OWNER}", {"chain_id": chain_id})]
    resumed = screen(await bot.send(ADMIN, f"/resume #{chain_id}"))
    assert "running again" in resumed.text
    assert await status(db, chain_id) is ChainStatus.ACTIVE


async def test_an_ambiguous_name_offers_the_chains_to_choose_from(
    bot: BotUnderTest, db: Database
) -> None:
    first = await make_chain(db, "Welcome series")
    second = await make_chain(db, "Welcome back")
    await make_chain(db, "Welcome draft", ChainStatus.DRAFT)
    await make_chain(db, "Winter sale")
    choice = screen(await bot.send(ADMIN, "/pause welcome"))
    assert choice.text == "Several chains match «welcome». Which one?"
    # Only the chains that can be paused are offered.
    assert buttons(choice) == {
        f"pause:{first}": "▶️ Welcome series",
        f"pause:{second}": "▶️ Welcome back",
    }
    events = await bot.press(ADMIN, choice.message_id, f"pause:{second}")
    card = screen(events)
    assert card.message_id == choice.message_id
    assert "⏸ paused" in card.text
    assert f"resume:{second}" in buttons(card)
    assert events[-1].kind == "answered"
    assert events[-1].text == texts.PAUSED_TOAST
    assert (await status(db, first), await status(db, second)) == (
        ChainStatus.ACTIVE,
        ChainStatus.PAUSED,
    )


async def test_an_unknown_name_lists_what_can_be_resumed(bot: BotUnderTest, db: Database) -> None:
    paused = await make_chain(db, "Summer", ChainStatus.PAUSED)
    await make_chain(db, "Autumn")
    choice = screen(await bot.send(ADMIN, "/resume Spring"))
    assert choice.text == "No chain matches «Spring». Pick one:"
    assert set(buttons(choice)) == {f"resume:{paused}"}
    assert screen(await bot.send(ADMIN, "/resume")).text == "Which chain?"
    await bot.send(ADMIN, f"/resume {paused}")
    assert screen(await bot.send(ADMIN, "/resume")).text == texts.NOTHING_TO_RESUME


async def test_a_refusal_of_the_service_is_shown_in_its_words(
    bot: BotUnderTest, db: Database
) -> None:
    draft = await make_chain(db, "Draft one", ChainStatus.DRAFT)
    reply = screen(await bot.send(ADMIN, "/pause Draft one"))
    assert reply.text == f"⚠️ Chain {draft} is draft; only an active chain can be paused"
    # No such chain, and none to choose instead.
    assert screen(await bot.send(ADMIN, "/pause 99")).text == texts.NOTHING_TO_PAUSE


async def test_pause_all_pauses_every_active_chain(bot: BotUnderTest, db: Database) -> None:
    one = await make_chain(db, "One")
    two = await make_chain(db, "Two")
    await make_chain(db, "Three", ChainStatus.DRAFT)
    reply = screen(await bot.send(ADMIN, "/pause_all"))
    assert reply.text == "⏸ Paused 2 chains: One, Two."
    assert await audit(db, "chain.pause_all") == [(f"tg:{ADMIN}", {"chain_ids": [one, two]})]
    assert screen(await bot.send(ADMIN, "/pause_all")).text == texts.paused_all([])


async def test_html_in_names_is_shown_as_written(bot: BotUnderTest, db: Database) -> None:
    # The double parses HTML as Telegram does: an unescaped name would be refused.
    await make_chain(db, "<b>Sale</b> & more")
    listing = screen(await bot.send(VIEWER, "/chains"))
    assert "<b>Sale</b> & more" in listing.text


# --- Stats ---------------------------------------------------------------------------


async def test_stats_of_a_twenty_step_chain_fit_one_message(
    bot: BotUnderTest, db: Database
) -> None:
    chain_id = await make_chain(db, "Long " * 30, steps=20)
    shown = screen(await bot.send(VIEWER, f"/stats {chain_id}"))
    assert len(shown.text) <= 4096
    assert "20. Step 20" in shown.text
    refreshed = await bot.press(VIEWER, shown.message_id, f"stats:{chain_id}:0")
    # Nothing changed: Telegram refuses the identical edit, the user just sees the toast go.
    assert [e.kind for e in refreshed] == ["answered"]


async def test_stats_without_a_chain_offers_the_chains(bot: BotUnderTest, db: Database) -> None:
    chain_id = await make_chain(db, "Welcome")
    picker = screen(await bot.send(VIEWER, "/stats"))
    assert picker.text.startswith("📊 Reports")
    shown = screen(await bot.press(VIEWER, picker.message_id, f"stats:{chain_id}:0"))
    assert shown.text.startswith("📊 Welcome · ▶️ active")
    assert "sent 0 of 0" not in shown.text
    assert "nothing sent yet" in shown.text


@pytest.fixture
async def bot_over_http(db: Database, double: TelegramDouble) -> AsyncIterator[BotUnderTest]:
    """The bot talking HTTP to the double on loopback: photos are uploaded as multipart."""
    await add_admin(db, VIEWER, Role.VIEWER, name="Vera", actor="test")
    with double:
        app = build_application(bot_settings(telegram_api_base_url=double.api_base_url), db)
        async with app:
            yield BotUnderTest(app, double)


async def test_stats_of_a_chain_come_with_its_chart(
    bot_over_http: BotUnderTest, db: Database, double: TelegramDouble
) -> None:
    bot = bot_over_http
    chain_id = await seeded_chain(db)
    photo, page = await bot.send(VIEWER, f"/stats {chain_id}")
    assert photo.message is not None
    png = double.file_content(photo.message["photo"][-1]["file_id"])
    assert Image.open(io.BytesIO(png)).size == chart_size(2)
    assert photo.text == texts.chart_caption("Welcome").replace("<b>", "").replace("</b>", "")
    assert buttons(page)[f"chart:{chain_id}"] == texts.BUTTON_CHART
    # Turning pages edits the text alone; the Chart button sends the picture anew.
    refreshed = await bot.press(VIEWER, page.message_id, f"stats:{chain_id}:0")
    assert [e.kind for e in refreshed] == ["answered"]
    again = await bot.press(VIEWER, page.message_id, f"chart:{chain_id}")
    assert [e.kind for e in again] == ["sent", "answered"]
    assert again[0].message is not None
    assert "photo" in again[0].message


async def test_amounts_are_shown_in_the_shops_currency(
    db: Database, double: TelegramDouble
) -> None:
    await add_admin(db, VIEWER, Role.VIEWER, name="Vera", actor="test")
    chain_id = await seeded_chain(db)
    with double:
        settings = bot_settings(telegram_api_base_url=double.api_base_url, shop_currency="EUR")
        app = build_application(settings, db)
        async with app:
            _photo, page = await BotUnderTest(app, double).send(VIEWER, f"/stats {chain_id}")
    assert "🛒 2 orders · €150.00 · conv. 66.7%" in page.text
    assert "🛒 1 order · €250.00 · conv. 100.0%" in page.text


async def test_no_chart_when_there_is_nothing_to_draw(bot: BotUnderTest, db: Database) -> None:
    chain_id = await make_chain(db, "Welcome")
    (page,) = await bot.send(VIEWER, f"/stats {chain_id}")
    answer = await bot.press(VIEWER, page.message_id, f"chart:{chain_id}")
    assert [(e.kind, e.text) for e in answer] == [("answered", texts.NOTHING_TO_DRAW)]


async def test_anyone_allowed_subscribes_their_private_chat(
    bot: BotUnderTest, db: Database
) -> None:
    shown = screen(await bot.send(VIEWER, "/subscribe Asia/Novosibirsk"))
    assert "Time zone: Asia/Novosibirsk" in shown.text
    assert await is_subscribed(db, VIEWER)
    assert screen(await bot.send(VIEWER, "/unsubscribe")).text == texts.UNSUBSCRIBED
    assert not await is_subscribed(db, VIEWER)
    assert screen(await bot.send(VIEWER, "/unsubscribe")).text == texts.NOT_SUBSCRIBED
    refused = screen(await bot.send(ADMIN, "/subscribe Mars/Olympus"))
    assert "is not a time zone" in refused.text
    assert not await is_subscribed(db, ADMIN)


# --- Import --------------------------------------------------------------------------

CSV = (
    "external_id,email,phone,first_name\n"
    "c1,ann@example.com,+7 913 123-45-67,Ann\n"
    "c2,not-an-email,,Bob\n"
    ",carl@example.com,,Carl\n"
    "c4,dina@example.com,,Dina\n"
)


async def test_import_takes_a_csv_and_lists_the_refused_lines(
    bot: BotUnderTest, db: Database
) -> None:
    assert screen(await bot.send(ADMIN, "/import")).text.startswith("Send me the CSV file")
    assert screen(await bot.send(ADMIN, "here it comes")).text == texts.STILL_WAITING_FOR_CSV
    events = await bot.send_document(ADMIN, "shop.csv", CSV.encode())
    report = screen(events)
    # The "Importing…" message becomes the report.
    assert [e.kind for e in events] == ["sent", "edited"]
    assert report.text.splitlines() == [
        "✅ shop.csv: imported 2 customers (2 new, 0 updated).",
        "⚠️ 2 lines refused:",
        "line 3: bad email 'not-an-email'",
        "line 4: missing external_id",
    ]
    async with db.session() as session:
        ids = set(await session.scalars(select(Customer.external_id)))
    assert ids == {"c1", "c4"}
    [(actor, details)] = await audit(db, "customers.import")
    assert actor == f"tg:{ADMIN}"
    assert details["file"] == "shop.csv"
    # The conversation is over: another file is not imported.
    assert screen(await bot.send_document(ADMIN, "again.csv", CSV.encode())).text == (
        texts.UNKNOWN_MESSAGE
    )


async def test_import_refuses_what_is_not_a_csv_and_can_be_cancelled(bot: BotUnderTest) -> None:
    await bot.send(ADMIN, "/import")
    wrong = await bot.send_document(ADMIN, "photo.jpg", b"\xff\xd8", "image/jpeg")
    assert screen(wrong).text == texts.NOT_A_CSV
    assert screen(await bot.send(ADMIN, "/cancel")).text == texts.CANCELLED
    assert screen(await bot.send(ADMIN, "/cancel")).text == texts.NOTHING_TO_CANCEL


async def test_an_unreadable_file_keeps_waiting_for_another(bot: BotUnderTest) -> None:
    await bot.send(ADMIN, "/import")
    events = await bot.send_document(ADMIN, "empty.csv", b"\n")
    assert screen(events).text.startswith("⚠️ ")
    assert texts.SEND_ANOTHER in screen(events).text
    again = await bot.send_document(ADMIN, "shop.csv", CSV.encode())
    assert screen(again).text.startswith("✅ shop.csv")


async def test_import_is_for_admins_in_private(bot: BotUnderTest, double: TelegramDouble) -> None:
    assert screen(await bot.send(VIEWER, "/import")).text == texts.NEEDS_ADMIN
    double.add_to_group(ADMIN, GROUP, "Team")
    assert screen(await bot.send(ADMIN, "/import", GROUP)).text == texts.PRIVATE_ONLY


# --- Admins --------------------------------------------------------------------------


async def test_an_owner_manages_admins(bot: BotUnderTest, db: Database) -> None:
    listing = screen(await bot.send(OWNER, "/admins"))
    assert f"{OWNER} — owner" in listing.text
    assert f"{VIEWER} — viewer (Vera)" in listing.text
    added = screen(await bot.send(OWNER, "/admins add 2002 viewer Petra Smith"))
    assert added.text == "✅ 2002 is now viewer."
    assert await role_of(db, 2002, [OWNER]) is Role.VIEWER
    assert screen(await bot.send(OWNER, "/admins add 2002 admin")).text == "✅ 2002 is now admin."
    assert screen(await bot.send(OWNER, "/admins remove 2002")).text.startswith("✅ 2002 may")
    assert await role_of(db, 2002, [OWNER]) is None
    assert "was neither" in screen(await bot.send(OWNER, "/admins remove 2002")).text
    assert screen(await bot.send(OWNER, f"/admins remove {OWNER}")).text == (
        texts.OWNER_FROM_SETTINGS
    )
    assert screen(await bot.send(OWNER, "/admins promote 5")).text.startswith("/admins — the list")
    actors = {actor for actor, _ in await audit(db, "admin.add")}
    assert actors == {"test", f"tg:{OWNER}"}


async def test_admins_is_for_owners_only(bot: BotUnderTest) -> None:
    assert screen(await bot.send(ADMIN, "/admins add 5 admin")).text == texts.NEEDS_OWNER


# --- Failures ------------------------------------------------------------------------


async def test_a_failure_is_told_in_one_sentence_and_logged(
    bot: BotUnderTest, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*_args: object) -> None:
        raise RuntimeError("database on fire")

    monkeypatch.setattr("handlers.commands.list_chains", broken)
    events = await bot.send(VIEWER, "/chains")
    assert [e.text for e in events] == [texts.FAILED]
    assert "database on fire" in caplog.text
