"""The Telegram bot's handlers: a thin door onto the services of `models/` and `services/`.

Shared here: what every handler gets (`Deps` through `Context`), the Application
subclass that carries them and saves state after every update, and the two ways the
bot answers (`show`, `tell`). The flows live in modules of their own: `access` (who
may do what), `commands` (commands and menus), later `chain_editor`; bot/telegram_app.py
puts them together. docs/bot.md tells how to add a flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

from telegram import InlineKeyboardMarkup, Update, User
from telegram.error import BadRequest
from telegram.ext import Application, CallbackContext, ExtBot

from i18n import SOURCE_LANGUAGE, language_of, use_language
from models.bot_users import (
    Languages,
    choose_language,
    languages_of,
    remember_telegram_language,
)
from models.db import Database
from models.frequency_caps import FrequencyCaps
from models.tables import Role
from services.preview import MessageSetup

# user_data, chat_data and bot_data: plain dicts of JSON values (handlers/persistence.py).
Data = dict[str, Any]
# How long the access gate trusts a role it read (RoleCache).
ROLE_SECONDS = 2.0
ROLES_KEPT = 10_000


@dataclass(frozen=True)
class Deps:
    """What handlers need from the process: the database and a few settings."""

    db: Database
    owner_ids: tuple[int, ...]
    default_timezone: str
    default_phone_region: str
    # SHOP_CURRENCY: what amounts (revenue, minimum amounts) are shown in.
    currency: str
    # Rendering and test sends of a step's message (handlers/preview.py).
    messages: MessageSetup
    # FREQUENCY_CAP_*: named, and counted, in the activation forecast.
    frequency_caps: FrequencyCaps = field(default_factory=FrequencyCaps)


class RoleCache:
    """Roles as read a moment ago: the gate runs for every update, and one database read
    less per update is a good share of the bot's work. Changes made through this bot
    (`/admins`) clear it; one made elsewhere (`chainmail admins add`) shows within
    ROLE_SECONDS."""

    def __init__(self) -> None:
        self._roles: dict[int, tuple[float, Role | None]] = {}

    def get(self, user_id: int) -> tuple[bool, Role | None]:
        found = self._roles.get(user_id)
        if found is None or time.monotonic() - found[0] > ROLE_SECONDS:
            return False, None
        return True, found[1]

    def put(self, user_id: int, role: Role | None) -> None:
        if len(self._roles) > ROLES_KEPT:
            self._roles.clear()
        self._roles[user_id] = (time.monotonic(), role)

    def clear(self) -> None:
        self._roles.clear()


class LanguageBook:
    """Each person's languages (models/bot_users.py) as read once and written since: this
    process is the only one that changes them (SPEC §8: one bot process)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._known: dict[int, Languages] = {}

    async def _of(self, user_id: int) -> Languages:
        known = self._known.get(user_id)
        if known is None:
            if len(self._known) > ROLES_KEPT:
                self._known.clear()
            known = self._known[user_id] = await languages_of(self._db, user_id)
        return known

    async def spoken(self, user: User) -> str:
        """The person's choice, else what their Telegram app says now, else what it said
        last (Telegram leaves `language_code` out at times), else English."""
        known = await self._of(user.id)
        if user.language_code:
            return known.chosen or language_of(user.language_code)
        return known.spoken(SOURCE_LANGUAGE)

    async def chosen(self, user_id: int) -> str | None:
        return (await self._of(user_id)).chosen

    async def seen(self, user: User) -> None:
        """Remember the Telegram app's language of someone who may use the bot, for what
        the worker sends them; written only when it changed."""
        if not user.language_code:
            return
        known = await self._of(user.id)
        telegram = language_of(user.language_code)
        if known.telegram != telegram:
            await remember_telegram_language(self._db, user.id, telegram)
            self._known[user.id] = Languages(known.chosen, telegram)

    async def choose(self, user: User, chosen: str | None, *, actor: str) -> str:
        """/language: `chosen`, or None for the Telegram app's; the language spoken now."""
        known = await self._of(user.id)
        after = Languages(chosen, known.telegram)
        if user.language_code:
            after = Languages(chosen, language_of(user.language_code))
        spoken = after.spoken(SOURCE_LANGUAGE)
        await choose_language(self._db, user.id, chosen, spoken=spoken, actor=actor)
        self._known[user.id] = after
        return spoken


class ChainmailApplication(Application[ExtBot[None], "Context", Data, Data, Data, None]):
    def __init__(self, *, deps: Deps, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.deps = deps
        # Background tasks following sending waves (handlers/progress.py), by message.
        self.watchers: dict[str, asyncio.Task[None]] = {}
        # Roles read by the access gate a moment ago (handlers/access.py).
        self.roles = RoleCache()
        # The language of each person the bot speaks with (docs/i18n.md).
        self.languages = LanguageBook(deps.db)

    async def shutdown(self) -> None:
        for task in list(self.watchers.values()):
            task.cancel()
        if self.watchers:
            await asyncio.gather(*self.watchers.values(), return_exceptions=True)
        await super().shutdown()

    async def process_update(self, update: object) -> None:
        # The whole update, its error handler included, in the language of who sent it.
        user = update.effective_user if isinstance(update, Update) else None
        language = SOURCE_LANGUAGE if user is None else await self.languages.spoken(user)
        with use_language(language):
            await super().process_update(update)
        # PTB saves state on a timer (and at shutdown). Saving after each update
        # instead means a bot killed mid-conversation resumes where the user was;
        # the persistence skips rows that did not change, so this stays cheap.
        await self.update_persistence()


class Context(CallbackContext[ExtBot[None], Data, Data, Data]):
    """The callback context of every handler; `role` and `actor` are set by the access gate."""

    def __init__(
        self,
        application: Application[ExtBot[None], Context, Data, Data, Data, Any],
        chat_id: int | None = None,
        user_id: int | None = None,
    ) -> None:
        super().__init__(application, chat_id, user_id)
        self.role: Role | None = None
        # Who the audit log names for changes made through this update.
        self.actor = f"tg:{user_id}"

    @property
    def deps(self) -> Deps:
        return cast(ChainmailApplication, self.application).deps


async def show(
    update: Update,
    text: str,
    markup: InlineKeyboardMarkup | None = None,
    *,
    toast: str | None = None,
) -> None:
    """A screen: a pressed button's message is edited in place (one message while
    navigating, SPEC §3), a command gets a new message."""
    query = update.callback_query
    if query is None:
        await update.effective_message.reply_text(text, reply_markup=markup)  # type: ignore[union-attr]
        return
    try:
        await query.edit_message_text(text, reply_markup=markup)
    except BadRequest as exc:
        # Refresh when nothing changed: Telegram refuses an edit that changes nothing.
        if "not modified" not in exc.message:
            raise
    await query.answer(toast)


async def tell(update: Update, text: str) -> None:
    """A short answer where the user is: a pop-up for a pressed button, else a reply."""
    if update.callback_query is not None:
        await update.callback_query.answer(text, show_alert=True)
    elif update.effective_message is not None:
        await update.effective_message.reply_text(text)


async def screen(
    update: Update,
    context: Context,
    state: Data,
    text: str,
    markup: InlineKeyboardMarkup | None = None,
    *,
    toast: str | None = None,
    below: Callable[[], Awaitable[object]] | None = None,
) -> int:
    """The editor's screen rule: a button edits its message in place; typed input, or
    something sent first (`below`, e.g. a file), makes a new screen under it and the old
    one loses its buttons, so the screen to press is always the last message. The
    screen's message id is kept in `state["screen"]`; returns it."""
    query = update.callback_query
    if query is not None and query.message is not None and below is None:
        await show(update, text, markup, toast=toast)
        state["screen"] = query.message.message_id
        return query.message.message_id
    if below is not None:
        if query is not None:
            await query.answer(toast)
        await below()
    chat_id = update.effective_chat.id  # type: ignore[union-attr]
    sent = await context.bot.send_message(chat_id, text, reply_markup=markup)
    old = state.get("screen")
    state["screen"] = sent.message_id
    if old and old != sent.message_id:
        # Gone, or already without buttons: nothing to take away.
        with contextlib.suppress(BadRequest):
            await context.bot.edit_message_reply_markup(chat_id, old, reply_markup=None)
    return sent.message_id
