"""The bot's memory lives in the database: a restart, even a crash, keeps conversations
and user data (SPEC §3, §8), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from telegram import Update
from telegram.ext import TypeHandler

from handlers import Context
from handlers.bot_state import save_state
from handlers.persistence import DatabasePersistence
from models.admins import add_admin
from models.db import Database
from models.tables import BotState, BotStateKind, Customer, Role
from telegram_double import TelegramDouble
from tests.test_bot_support import ADMIN, OWNER, new_double, running_bot, screen

CSV = b"external_id,email\nc1,ann@example.com\n"


@pytest.fixture
async def double(db: Database) -> TelegramDouble:
    await add_admin(db, ADMIN, Role.ADMIN, name=None, actor="test")
    return new_double()


async def rows(db: Database) -> dict[tuple[str, str], object]:
    async with db.session() as session:
        found = await session.execute(select(BotState.kind, BotState.key, BotState.data))
        return {(kind, key): data for kind, key, data in found}


async def test_a_bot_killed_mid_conversation_resumes_it(
    db: Database, double: TelegramDouble
) -> None:
    async with running_bot(db, double) as first:
        await first.send(ADMIN, "/import")
        # The state is in the database as soon as the update is handled, before any
        # shutdown: the first bot is never stopped while the second one runs.
        assert await rows(db) == {
            ("conversation", f'["import", {ADMIN}, {ADMIN}]'): "waiting_for_csv"
        }
        async with running_bot(db, double) as second:
            report = screen(await second.send_document(ADMIN, "shop.csv", CSV))
    assert report.text.startswith("✅ shop.csv: imported 1 customer")
    async with db.session() as session:
        assert list(await session.scalars(select(Customer.external_id))) == ["c1"]
    # The conversation ended: its row is gone.
    assert not [key for key in await rows(db) if key[0] == "conversation"]


async def count_updates(update: Update, context: Context) -> None:
    context.user_data["updates"] = context.user_data.get("updates", 0) + 1  # type: ignore[index]
    context.chat_data["last"] = update.effective_message.text  # type: ignore[index, union-attr]
    context.bot_data.setdefault("users", [])
    if update.effective_user.id not in context.bot_data["users"]:  # type: ignore[union-attr]
        context.bot_data["users"].append(update.effective_user.id)  # type: ignore[union-attr]


async def test_user_chat_and_bot_data_survive_a_restart(
    db: Database, double: TelegramDouble
) -> None:
    async with running_bot(db, double) as first:
        first.app.add_handler(TypeHandler(Update, count_updates), group=1)
        await first.send(OWNER, "/help")
        await first.send(OWNER, "/chains")
        async with running_bot(db, double) as second:
            assert second.app.user_data[OWNER] == {"updates": 2}
            assert second.app.chat_data[OWNER] == {"last": "/chains"}
            assert second.app.bot_data == {"users": [OWNER]}


async def test_data_json_would_change_is_refused(db: Database) -> None:
    persistence = DatabasePersistence(db)
    for data in ({"at": datetime.now(UTC)}, {1: "int key"}, {"pair": (1, 2)}, {"x": {1, 2}}):
        with pytest.raises(TypeError, match="bot state must be JSON data"):
            await persistence.update_user_data(OWNER, data)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await persistence.update_conversation("editor", (1, 1), ("tuple", "state"))
    assert await rows(db) == {}


async def test_unchanged_data_is_not_written_again(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[str] = []

    async def recorded(db: Database, kind: BotStateKind, key: str, data: object) -> None:
        writes.append(key)
        await save_state(db, kind, key, data)

    monkeypatch.setattr("handlers.persistence.save_state", recorded)
    persistence = DatabasePersistence(db)
    await persistence.update_user_data(OWNER, {"draft": {"chain_id": 3}})
    await persistence.update_user_data(OWNER, {"draft": {"chain_id": 3}})
    assert writes == [str(OWNER)]
    # Read back by a new process, the same data is not written again either.
    restarted = DatabasePersistence(db)
    assert await restarted.get_user_data() == {OWNER: {"draft": {"chain_id": 3}}}
    await restarted.update_user_data(OWNER, {"draft": {"chain_id": 3}})
    await restarted.update_user_data(OWNER, {"draft": {"chain_id": 4}})
    assert writes == [str(OWNER), str(OWNER)]


async def test_dropped_data_and_ended_conversations_leave_no_rows(db: Database) -> None:
    persistence = DatabasePersistence(db)
    # Empty data, such as a stranger's, is not kept at all.
    await persistence.update_user_data(4, {})
    await persistence.update_user_data(5, {"a": 1})
    await persistence.update_user_data(5, {})
    await persistence.update_user_data(OWNER, {"a": 1})
    await persistence.update_chat_data(-5, {"b": 2})
    await persistence.update_conversation("editor", (OWNER, OWNER), "step")
    await persistence.update_conversation("other", (OWNER, OWNER), 3)
    assert await DatabasePersistence(db).get_conversations("editor") == {(OWNER, OWNER): "step"}
    await persistence.drop_user_data(OWNER)
    await persistence.drop_chat_data(-5)
    await persistence.update_conversation("editor", (OWNER, OWNER), None)
    assert await rows(db) == {("conversation", f'["other", {OWNER}, {OWNER}]'): 3}
