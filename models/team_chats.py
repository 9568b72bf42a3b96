"""Team group chats subscribed to daily summaries (SPEC §3 `/subscribe`, §4 summaries).

Members of a subscribed chat may ask the bot for stats there: the chat is the team.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from i18n import N_
from models import audit
from models.db import Database
from models.errors import ChainmailError
from models.tables import SubscribedChat
from models.timezones import is_valid_timezone


@dataclass(frozen=True)
class TeamChat:
    chat_id: int
    title: str | None
    # None: summaries follow DEFAULT_TIMEZONE.
    timezone: str | None
    # The subscriber's language (i18n.LANGUAGES); None: subscribed before there was one.
    language: str | None = None


async def subscribe_chat(
    db: Database,
    chat_id: int,
    *,
    title: str | None,
    timezone: str | None,
    by: int | None,
    language: str | None = None,
    actor: str,
) -> TeamChat:
    """Subscribe a chat, or update its title, zone and language if it already is; the
    language is the subscriber's (models/bot_users.py moves it along with their choice)."""
    if timezone is not None and not is_valid_timezone(timezone):
        raise ChainmailError(
            N_("{timezone} is not a time zone like Europe/Moscow"), timezone=repr(timezone)
        )
    async with db.writer() as session:
        chat = await session.get(SubscribedChat, chat_id)
        if chat is None:
            chat = SubscribedChat(chat_id=chat_id, subscribed_by=by)
            session.add(chat)
        chat.title = title
        chat.timezone = timezone
        chat.subscribed_by = by
        chat.language = language
        audit.record(
            session, actor, "chat.subscribe", chat_id=chat_id, timezone=timezone, language=language
        )
        return TeamChat(chat_id, title, timezone, language)


async def unsubscribe_chat(db: Database, chat_id: int, *, actor: str) -> bool:
    """False if the chat was not subscribed."""
    async with db.writer() as session:
        chat = await session.get(SubscribedChat, chat_id)
        if chat is None:
            return False
        await session.delete(chat)
        audit.record(session, actor, "chat.unsubscribe", chat_id=chat_id)
        return True


async def is_subscribed(db: Database, chat_id: int) -> bool:
    async with db.session() as session:
        found = await session.scalar(
            select(SubscribedChat.chat_id).where(SubscribedChat.chat_id == chat_id)
        )
        return found is not None
