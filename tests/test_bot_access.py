"""Who may use the bot (SPEC §1): strangers get one refusal, viewers look, admins change."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from handlers import texts
from models.admins import add_admin
from models.chains import get_chain
from models.db import Database
from models.tables import AuditEntry, BotState, ChainStatus, Role, SubscribedChat
from models.team_chats import subscribe_chat
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


@pytest.fixture
async def bot(db: Database, double: TelegramDouble) -> AsyncIterator[BotUnderTest]:
    await add_admin(db, ADMIN, Role.ADMIN, name="Anton", actor="test")
    await add_admin(db, VIEWER, Role.VIEWER, name="Vera", actor="test")
    async with running_bot(db, double) as running:
        yield running


async def test_a_stranger_gets_one_not_authorised_and_nothing_else(
    bot: BotUnderTest, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    chain_id = await make_chain(db, "Welcome")
    with caplog.at_level(logging.WARNING, logger="handlers.access"):
        for text in ("/start", "/pause Welcome", "hello", "/stats"):
            events = await bot.send(STRANGER, text)
            assert [(e.kind, e.text) for e in events] == [("sent", texts.NOT_AUTHORISED)]
    assert (await get_chain(db, chain_id)).status is ChainStatus.ACTIVE
    refusals = [r.getMessage() for r in caplog.records]
    assert len(refusals) == 4
    assert all(f"user {STRANGER}" in line for line in refusals)
    assert "'/pause Welcome'" in refusals[1]
    # Nothing of them is kept either.
    async with db.session() as session:
        assert not list(await session.scalars(select(BotState.key)))


async def test_a_stranger_pressing_a_button_gets_only_a_callback_answer(
    bot: BotUnderTest, double: TelegramDouble
) -> None:
    # A stranger can only reach a button in a group the bot posted in.
    double.add_to_group(OWNER, GROUP, "Team")
    double.add_to_group(STRANGER, GROUP, "Team")
    menu = screen(await bot.send(OWNER, "/start", GROUP))
    events = await bot.press(STRANGER, menu.message_id, "chains:0", GROUP)
    assert [(e.kind, e.text) for e in events] == [("answered", texts.NOT_AUTHORISED)]


async def test_a_viewer_can_see_stats_but_not_pause(bot: BotUnderTest, db: Database) -> None:
    chain_id = await make_chain(db, "Welcome")
    stats = screen(await bot.send(VIEWER, "/stats Welcome"))
    assert stats.text.startswith("📊 Welcome")
    refused = await bot.send(VIEWER, "/pause Welcome")
    assert [e.text for e in refused] == [texts.NEEDS_ADMIN]
    assert (await get_chain(db, chain_id)).status is ChainStatus.ACTIVE


async def test_a_viewer_sees_no_pause_button_and_pressing_an_admins_is_refused(
    bot: BotUnderTest, db: Database, double: TelegramDouble
) -> None:
    chain_id = await make_chain(db, "Welcome")
    listing = screen(await bot.send(VIEWER, "/chains"))
    card = screen(await bot.press(VIEWER, listing.message_id, f"chain:{chain_id}:0"))
    assert set(buttons(card)) == {f"stats:{chain_id}:0", "chains:0", "menu"}
    # In a group they share, the viewer reaches the card an admin opened.
    double.add_to_group(ADMIN, GROUP, "Team")
    double.add_to_group(VIEWER, GROUP, "Team")
    listing = screen(await bot.send(ADMIN, "/chains", GROUP))
    card = screen(await bot.press(ADMIN, listing.message_id, f"chain:{chain_id}:0", GROUP))
    assert f"pause:{chain_id}" in buttons(card)
    events = await bot.press(VIEWER, card.message_id, f"pause:{chain_id}", GROUP)
    assert [(e.kind, e.text) for e in events] == [("answered", texts.NEEDS_ADMIN)]
    assert (await get_chain(db, chain_id)).status is ChainStatus.ACTIVE


async def test_group_members_follow_their_role_and_a_subscribed_group_is_the_team(
    bot: BotUnderTest, db: Database, double: TelegramDouble
) -> None:
    await make_chain(db, "Welcome")
    for user_id in (ADMIN, VIEWER, STRANGER):
        double.add_to_group(user_id, GROUP, "Team")
    # Not subscribed yet: a stranger in the group is a stranger.
    assert [e.text for e in await bot.send(STRANGER, "/stats Welcome", GROUP)] == [
        texts.NOT_AUTHORISED
    ]
    assert [e.text for e in await bot.send(VIEWER, "/subscribe", GROUP)] == [texts.NEEDS_ADMIN]
    subscribed = await bot.send(ADMIN, "/subscribe Asia/Novosibirsk", GROUP)
    assert "Asia/Novosibirsk" in subscribed[-1].text
    async with db.session() as session:
        chat = await session.get(SubscribedChat, GROUP)
        assert (chat.title, chat.timezone, chat.subscribed_by) == (
            "Team",
            "Asia/Novosibirsk",
            ADMIN,
        )
        actions = list(
            await session.scalars(
                select(AuditEntry.actor).where(AuditEntry.action == "chat.subscribe")
            )
        )
    assert actions == [f"tg:{ADMIN}"]
    # Subscribed: the stranger asks for stats like a viewer, and cannot change anything.
    assert (await bot.send(STRANGER, "/stats Welcome", GROUP))[-1].text.startswith("📊 Welcome")
    assert [e.text for e in await bot.send(STRANGER, "/pause Welcome", GROUP)] == [
        texts.NEEDS_ADMIN
    ]
    # A plain message in the group is not for the bot: no answer at all.
    assert await bot.send(STRANGER, "good morning", GROUP) == []
    paused = await bot.send(ADMIN, "/pause Welcome", GROUP)
    assert "is paused" in paused[-1].text
    assert [e.text for e in await bot.send(ADMIN, "/unsubscribe", GROUP)] == [texts.UNSUBSCRIBED]


async def test_a_stranger_in_a_subscribed_group_stays_out_of_private_chats(
    bot: BotUnderTest, db: Database, double: TelegramDouble
) -> None:
    await subscribe_chat(db, GROUP, title="Team", timezone=None, by=OWNER, actor="test")
    double.add_to_group(STRANGER, GROUP, "Team")
    assert [e.text for e in await bot.send(STRANGER, "/chains")] == [texts.NOT_AUTHORISED]
