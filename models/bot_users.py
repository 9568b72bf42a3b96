"""The language the bot speaks with each person (`bot_users`, SPEC §3; docs/i18n.md).

A person's language is the one they chose with /language, else the one their
Telegram app says (`language_code`, remembered when it changes), else English. The
bot process reads it once per person and keeps it (handlers); the worker reads it
for the notices it sends people (bot/summaries.py). The chats a person subscribed
speak their language: choosing another one moves those chats along.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select, update

from models import audit
from models.db import Database
from models.tables import BotUser, SubscribedChat, utcnow


@dataclass(frozen=True)
class Languages:
    # /language's choice; None: as their Telegram app says.
    chosen: str | None
    telegram: str | None

    def spoken(self, default: str) -> str:
        return self.chosen or self.telegram or default


NOT_KNOWN = Languages(None, None)


async def languages_of(db: Database, telegram_id: int) -> Languages:
    async with db.session() as session:
        row = await session.get(BotUser, telegram_id)
    return NOT_KNOWN if row is None else Languages(row.chosen_language, row.telegram_language)


async def spoken_languages(
    db: Database, telegram_ids: Iterable[int], default: str
) -> dict[int, str]:
    """{person: the language to write to them in}, `default` for those never heard from."""
    ids = list(telegram_ids)
    async with db.session() as session:
        rows = await session.execute(
            select(BotUser.telegram_id, BotUser.chosen_language, BotUser.telegram_language).where(
                BotUser.telegram_id.in_(ids)
            )
        )
        found = {row[0]: Languages(row[1], row[2]) for row in rows}
    return {person: found.get(person, NOT_KNOWN).spoken(default) for person in ids}


async def remember_telegram_language(db: Database, telegram_id: int, language: str) -> None:
    """What the person's Telegram app says now (only written when it changed)."""
    async with db.writer() as session:
        row = await session.get(BotUser, telegram_id)
        if row is None:
            session.add(BotUser(telegram_id=telegram_id, telegram_language=language))
            return
        row.telegram_language = language
        row.updated_at = utcnow()


async def choose_language(
    db: Database, telegram_id: int, chosen: str | None, *, spoken: str, actor: str
) -> None:
    """/language: `chosen` (None: as the Telegram app says); `spoken` is the language that
    makes, which the chats the person subscribed take too."""
    async with db.writer() as session:
        row = await session.get(BotUser, telegram_id)
        if row is None:
            session.add(BotUser(telegram_id=telegram_id, chosen_language=chosen))
        else:
            row.chosen_language = chosen
            row.updated_at = utcnow()
        await session.execute(
            update(SubscribedChat)
            .where(SubscribedChat.subscribed_by == telegram_id)
            .values(language=spoken)
        )
        audit.record(session, actor, "user.language", telegram_id=telegram_id, language=chosen)
