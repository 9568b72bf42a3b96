"""The Telegram bot as a part of a process: the Application built from settings, and polling.

TELEGRAM_API_BASE_URL is passed as python-telegram-bot's `base_url` (the token is
appended to it); the file URL is the same with `/file/bot` for `/bot`, so a
self-hosted Bot API server or a test double serves downloads too.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import logging
from collections.abc import Awaitable
from typing import Any

from telegram import (
    BotCommand,
    BotCommandScopeAllGroupChats,
    BotCommandScopeAllPrivateChats,
    BotCommandScopeChat,
    LinkPreviewOptions,
    Update,
)
from telegram.constants import ParseMode, UpdateType
from telegram.error import InvalidToken, NetworkError, TelegramError
from telegram.ext import (
    AIORateLimiter,
    ApplicationBuilder,
    BaseUpdateProcessor,
    ContextTypes,
    Defaults,
)
from telegram.request import BaseRequest

from bot.settings import Settings
from bot.transports import message_setup
from handlers import (
    ChainmailApplication,
    Context,
    Deps,
    access,
    chain_editor,
    commands,
    progress,
    segment_editor,
    tell,
    texts,
)
from handlers.persistence import DatabasePersistence
from i18n import LANGUAGES, SOURCE_LANGUAGE, _, use_language
from models.db import Database, secret_key
from models.errors import ChainmailError
from models.tables import Role

log = logging.getLogger(__name__)

ALLOWED_UPDATES = [UpdateType.MESSAGE, UpdateType.CALLBACK_QUERY]
# A Retry-After from Telegram is waited out and the request sent again, this many times.
RATE_LIMIT_RETRIES = 3
# Updates handled at once (of different people; one person's go one by one).
CONCURRENT_UPDATES = 32
# Waits between attempts to reach Telegram at start-up, in seconds, the last repeated.
START_RETRY_DELAYS = (1, 5, 15, 60)


class PerUserUpdates(BaseUpdateProcessor):
    """Updates of different people are handled concurrently, one person's strictly in order.

    Conversation state and drafts belong to one person (ConversationHandler keys are
    per chat and user), so serialising per user keeps them consistent while a database
    write or a Telegram call for one person no longer holds up everyone else. An update
    without a user (none reach the handlers) is serialised per chat.
    """

    def __init__(self, max_concurrent_updates: int) -> None:
        super().__init__(max_concurrent_updates)
        self._locks: dict[int, asyncio.Lock] = {}
        self._users: dict[int, int] = {}

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        key = _person(update)
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with lock:
                await coroutine
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key], self._locks[key]

    async def initialize(self) -> None:
        """Nothing to set up: locks are made as people write."""

    async def shutdown(self) -> None:
        """Nothing to free."""


def _person(update: object) -> int:
    if isinstance(update, Update):
        if update.effective_user is not None:
            return update.effective_user.id
        if update.effective_chat is not None:
            return update.effective_chat.id
    return 0


def file_url_for(base_url: str) -> str:
    """`…/bot` → `…/file/bot` (also with a `{token}` placeholder after it)."""
    head, found, tail = base_url.rpartition("/bot")
    if not found:
        raise ChainmailError(
            f"TELEGRAM_API_BASE_URL {base_url!r} must end with /bot, as in "
            "https://api.telegram.org/bot"
        )
    return f"{head}/file/bot{tail}"


def build_application(
    settings: Settings, db: Database, *, request: BaseRequest | None = None
) -> ChainmailApplication:
    """The bot with its handlers; `request` replaces the HTTP client (in-memory in tests)."""
    deps = Deps(
        db=db,
        owner_ids=tuple(settings.admin_ids),
        default_timezone=settings.default_timezone,
        default_phone_region=settings.default_phone_region,
        currency=settings.shop_currency,
        messages=message_setup(settings),
        frequency_caps=settings.frequency_caps,
    )
    builder = (
        ApplicationBuilder()
        .application_class(ChainmailApplication, kwargs={"deps": deps})
        .context_types(ContextTypes(context=Context, user_data=dict, chat_data=dict, bot_data=dict))
        .token(settings.telegram_bot_token)
        .base_url(settings.telegram_api_base_url)
        .base_file_url(file_url_for(settings.telegram_api_base_url))
        .defaults(
            Defaults(
                parse_mode=ParseMode.HTML,
                link_preview_options=LinkPreviewOptions(is_disabled=True),
            )
        )
        .rate_limiter(AIORateLimiter(max_retries=RATE_LIMIT_RETRIES))
        .concurrent_updates(PerUserUpdates(CONCURRENT_UPDATES))
        .persistence(DatabasePersistence(db))
        # The engine's APScheduler is the process's clock; the bot needs no second one.
        .job_queue(None)
    )
    if request is not None:
        builder = builder.request(request)
    application: ChainmailApplication = builder.build()  # type: ignore[assignment]
    access.install(application)
    for conversation in commands.conversations():
        application.add_handler(conversation)
    segment_editor.install(application)
    chain_editor.install(application)
    commands.install(application)
    application.add_error_handler(on_error)
    return application


async def on_error(update: object, context: Context) -> None:
    """A refusal in the service's words, anything else logged and told in one sentence."""
    error = context.error
    if not isinstance(update, Update):
        log.error("bot error outside an update", exc_info=error)
        return
    if isinstance(error, ChainmailError):
        message = texts.refused(error.translated())
    else:
        log.error("update %s failed", update.update_id, exc_info=error)
        message = _(texts.FAILED)
    try:
        await tell(update, message)
    except TelegramError as exc:
        log.warning("could not tell the user about the failure: %s", exc)


async def announce_commands(application: ChainmailApplication) -> None:
    """Telegram's command menu: admin commands in private chats (viewers are refused the
    changing ones with a reason), the owner's own menu for each owner, team commands in groups.
    Only a convenience: a failure is logged, never stops the bot."""
    bot = application.bot

    def menu(pairs: tuple[tuple[str, str], ...]) -> list[BotCommand]:
        return [BotCommand(command, _(description)) for command, description in pairs]

    menus = [
        (texts.commands_for(Role.ADMIN), BotCommandScopeAllPrivateChats()),
        (texts.GROUP_COMMANDS, BotCommandScopeAllGroupChats()),
        *(
            (texts.commands_for(Role.OWNER), BotCommandScopeChat(owner))
            for owner in application.deps.owner_ids
        ),
    ]
    # English for everyone, and each other language's for the Telegram apps set to it.
    for language in LANGUAGES:
        code = None if language == SOURCE_LANGUAGE else language
        with use_language(language):
            for commands_, scope in menus:
                try:
                    await bot.set_my_commands(menu(commands_), scope=scope, language_code=code)
                except TelegramError as exc:
                    # E.g. an owner who never wrote to the bot has no chat with it yet.
                    log.info("command menu for %s not set: %s", scope.type, exc)


async def _started(application: ChainmailApplication, stop: asyncio.Event) -> bool:
    """Initialize, retrying while Telegram cannot be reached; False if stopped meanwhile."""
    for delay in itertools.chain(START_RETRY_DELAYS, itertools.repeat(START_RETRY_DELAYS[-1])):
        try:
            await application.initialize()
            return True
        except InvalidToken as exc:
            raise ChainmailError(f"Telegram refused TELEGRAM_BOT_TOKEN: {exc}") from None
        except NetworkError as exc:
            log.warning("cannot reach Telegram (%s); trying again in %s s", exc, delay)
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                continue
            return False
    return False


class WebhookInbox:
    """Where this process's web app hands the updates Telegram posts to its bot."""

    def __init__(self) -> None:
        self.secret = ""
        self.application: ChainmailApplication | None = None

    async def deliver(self, data: dict[str, object]) -> bool:
        """False while the bot is not running (Telegram retries later)."""
        application = self.application
        if application is None or not application.running:
            return False
        await application.update_queue.put(Update.de_json(data, application.bot))
        return True


def webhook_secret(key: str) -> str:
    """The secret token Telegram sends with every webhook post, derived from SECRET_KEY."""
    return hmac.new(key.encode(), b"telegram-webhook", hashlib.sha256).hexdigest()


async def run_bot(
    settings: Settings, db: Database, stop: asyncio.Event, inbox: WebhookInbox | None = None
) -> None:
    """Take updates until `stop` is set (SPEC §8: one bot process per database): by polling,
    or, with TELEGRAM_WEBHOOK_URL, from `inbox`, which this process's web app fills."""
    application = build_application(settings, db)
    if not await _started(application, stop):
        return
    updater = application.updater
    assert updater is not None  # built with the default updater
    try:
        await announce_commands(application)
        await application.start()
        if settings.telegram_webhook_url:
            if inbox is None:
                raise ChainmailError("TELEGRAM_WEBHOOK_URL is set but no web app serves it")
            inbox.secret = webhook_secret(await secret_key(db, settings.secret_key))
            inbox.application = application
            await application.bot.set_webhook(
                settings.telegram_webhook_url,
                secret_token=inbox.secret,
                allowed_updates=ALLOWED_UPDATES,
            )
            how = f"takes updates at {settings.telegram_webhook_url}"
        else:
            await updater.start_polling(allowed_updates=ALLOWED_UPDATES)
            how = "is polling for updates"
        progress.resume(application)
        log.info("bot @%s %s", application.bot.username, how)
        await stop.wait()
    finally:
        if inbox is not None:
            inbox.application = None
        if updater.running:
            await updater.stop()
        if application.running:
            await application.stop()
        await application.shutdown()
