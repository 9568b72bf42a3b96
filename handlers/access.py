"""Who may use the bot, and for what (SPEC §1).

Owners are the ids of ADMIN_IDS; admins and viewers are rows the owners add. In a
group chat subscribed with /subscribe (a team chat) every member counts at least
as a viewer; a member with a role of their own keeps it there.

The gate runs before every other handler (group -1): it looks the user up once per
update, puts the role on the context, and stops anyone else after one polite
refusal, in the stranger's own language (their Telegram app's). Handlers that change
things are wrapped in `requires(Role.ADMIN)`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Concatenate, ParamSpec, TypeVar

from telegram import Update
from telegram.constants import ChatType
from telegram.ext import Application, ApplicationHandlerStop, TypeHandler

from handlers import Context, RoleCache, tell, texts
from i18n import _
from models.admins import role_of
from models.tables import Role
from models.team_chats import is_subscribed

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")
Handler = Callable[Concatenate[Update, Context, P], Awaitable[R]]

RANK = {Role.VIEWER: 0, Role.ADMIN: 1, Role.OWNER: 2}
# The segment editor's guard runs in group -2 and the chain editor's in -1, after the gate.
GATE_GROUP = -3


def install(application: Application) -> None:  # type: ignore[type-arg]
    application.add_handler(TypeHandler(Update, gate), group=GATE_GROUP)


def in_group(update: Update) -> bool:
    chat = update.effective_chat
    return chat is not None and chat.type in (ChatType.GROUP, ChatType.SUPERGROUP)


def attempt(update: Update) -> str:
    """What a refused user tried, for the log."""
    if update.callback_query is not None:
        return f"button {update.callback_query.data!r}"
    message = update.effective_message
    if message is not None and message.document is not None:
        return f"file {message.document.file_name!r}"
    if message is not None and message.text is not None:
        return f"text {message.text[:100]!r}"
    return "an update without text"


async def _role(context: Context, user_id: int) -> Role | None:
    cache: RoleCache = context.application.roles  # type: ignore[attr-defined]
    known, role = cache.get(user_id)
    if not known:
        deps = context.deps
        role = await role_of(deps.db, user_id, list(deps.owner_ids))
        cache.put(user_id, role)
    return role


async def gate(update: Update, context: Context) -> None:
    user = update.effective_user
    if user is None:
        # Channel posts and the like: nobody to answer.
        raise ApplicationHandlerStop
    deps = context.deps
    role = await _role(context, user.id)
    if role is None and in_group(update):
        chat_id = update.effective_chat.id  # type: ignore[union-attr]
        if await is_subscribed(deps.db, chat_id):
            role = Role.VIEWER
    if role is not None:
        context.role = role
        # For what the worker sends them later (hold notices) in their language.
        await context.application.languages.seen(user)  # type: ignore[attr-defined]
        return
    chat = update.effective_chat
    log.warning(
        "refused Telegram user %s (%s) in chat %s: %s",
        user.id,
        user.name,
        chat.id if chat else None,
        attempt(update),
    )
    if update.callback_query is not None or _meant_for_bot(update):
        await tell(update, _(texts.NOT_AUTHORISED))
    raise ApplicationHandlerStop


def _meant_for_bot(update: Update) -> bool:
    """A new message in a private chat, or a command in a group (not the group's chatter)."""
    message = update.message
    if message is None:
        return False
    return not in_group(update) or (message.text or "").startswith("/")


def allowed(role: Role | None, needed: Role) -> bool:
    return role is not None and RANK[role] >= RANK[needed]


def requires(needed: Role) -> Callable[[Handler[P, R]], Handler[P, R | None]]:
    """Let the handler run only for `needed` or a higher role; others hear why not."""
    refusal = texts.NEEDS_OWNER if needed is Role.OWNER else texts.NEEDS_ADMIN

    def decorate(handler: Handler[P, R]) -> Handler[P, R | None]:
        @functools.wraps(handler)
        async def guarded(
            update: Update, context: Context, *args: P.args, **kwargs: P.kwargs
        ) -> R | None:
            if not allowed(context.role, needed):
                await tell(update, _(refusal))
                return None
            return await handler(update, context, *args, **kwargs)

        return guarded

    return decorate


def private_only(handler: Handler[P, R]) -> Handler[P, R | None]:
    """For what should not happen in front of a group: customer files, the admin list."""

    @functools.wraps(handler)
    async def guarded(
        update: Update, context: Context, *args: P.args, **kwargs: P.kwargs
    ) -> R | None:
        chat = update.effective_chat
        if chat is None or chat.type != ChatType.PRIVATE:
            await tell(update, _(texts.PRIVATE_ONLY))
            return None
        return await handler(update, context, *args, **kwargs)

    return guarded
