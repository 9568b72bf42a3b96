"""Rows of what the Telegram bot remembers between updates (`bot_state`), read and written.

The bot's persistence (handlers/persistence.py) is the only caller; it decides the
keys. A write is an upsert, so saving the same key again replaces its value.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite

from models.db import Database
from models.tables import BotState, BotStateKind, utcnow


async def load_states(db: Database, kind: BotStateKind) -> dict[str, Any]:
    """{key: data} of every row of one kind."""
    async with db.session() as session:
        rows = await session.execute(
            select(BotState.key, BotState.data).where(BotState.kind == kind.value)
        )
        return {key: data for key, data in rows}


async def save_state(db: Database, kind: BotStateKind, key: str, data: Any) -> None:
    async with db.writer() as session:
        insert = postgresql.insert if session.bind.dialect.name == "postgresql" else sqlite.insert
        statement = insert(BotState).values(
            kind=kind.value, key=key, data=data, updated_at=utcnow()
        )
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=[BotState.kind, BotState.key],
                set_={"data": statement.excluded.data, "updated_at": statement.excluded.updated_at},
            )
        )


async def delete_state(db: Database, kind: BotStateKind, key: str) -> None:
    async with db.writer() as session:
        await session.execute(
            delete(BotState).where(BotState.kind == kind.value, BotState.key == key)
        )
