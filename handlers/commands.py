"""The commands and menus of SPEC §3 except the chain and segment editors (the Segments
menu is handlers/segment_editor.py): each parses, calls a service, shows.

Screens reached by buttons edit the pressed message in place; commands answer with
a new message. A service's refusal (a ChainmailError) is not caught here: the
application's error handler shows it in the service's words.
"""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import NamedTuple
from zoneinfo import ZoneInfo

from telegram import Document, Update
from telegram.constants import FileSizeLimit
from telegram.ext import (
    Application,
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)

from handlers import Context, keyboards, show, tell, texts
from handlers.access import allowed, in_group, private_only, requires
from handlers.callbacks import Action, decode, int_arg, pattern
from handlers.charts import chain_chart_png
from i18n import LANGUAGES, _, current_language, set_language
from models.admins import add_admin, list_people, remove_admin
from models.chains import ChainSummary, get_chain, list_chains
from models.customers import count_customers, import_customers_csv
from models.errors import ChainmailError
from models.stats import ChainStats, chain_stats
from models.tables import ChainStatus, Role
from models.team_chats import subscribe_chat, unsubscribe_chat
from services.lifecycle import pause_all, pause_chain, resume_chain

# States are persisted as JSON (handlers/persistence.py): plain strings.
WAITING_FOR_CSV = "waiting_for_csv"
IMPORT_CONVERSATION = "import"
CSV_TYPES = frozenset({"text/csv", "text/plain", "text/comma-separated-values"})
CHOICES_SHOWN = 20


def conversations() -> list[ConversationHandler[Context]]:
    """Conversations go in before the plain commands, so their /cancel and states come first."""
    return [
        ConversationHandler(
            entry_points=[CommandHandler("import", import_command)],
            states={
                WAITING_FOR_CSV: [
                    MessageHandler(filters.Document.ALL, receive_csv),
                    MessageHandler(~filters.COMMAND, remind_csv),
                ]
            },
            fallbacks=[CommandHandler("cancel", cancel_command)],
            name=IMPORT_CONVERSATION,
            persistent=True,
        )
    ]


def install(application: Application) -> None:  # type: ignore[type-arg]
    handlers: list[BaseHandler[Update, Context, None]] = [
        CommandHandler("start", start_command),
        CommandHandler("help", help_command),
        CommandHandler("chains", chains_command),
        CommandHandler("pause", pause_command),
        CommandHandler("resume", resume_command),
        CommandHandler("pause_all", pause_all_command),
        CommandHandler("stats", stats_command),
        CommandHandler("subscribe", subscribe_command),
        CommandHandler("unsubscribe", unsubscribe_command),
        CommandHandler("admins", admins_command),
        CommandHandler("language", language_command),
        CommandHandler("cancel", nothing_to_cancel),
        CallbackQueryHandler(on_menu, pattern(Action.MENU)),
        CallbackQueryHandler(on_help, pattern(Action.HELP)),
        CallbackQueryHandler(on_chains, pattern(Action.CHAINS)),
        CallbackQueryHandler(on_chain, pattern(Action.CHAIN)),
        CallbackQueryHandler(on_pause, pattern(Action.PAUSE)),
        CallbackQueryHandler(on_resume, pattern(Action.RESUME)),
        CallbackQueryHandler(on_reports, pattern(Action.REPORTS)),
        CallbackQueryHandler(on_stats, pattern(Action.STATS)),
        CallbackQueryHandler(on_chart, pattern(Action.CHART)),
        CallbackQueryHandler(on_customers, pattern(Action.CUSTOMERS)),
        CallbackQueryHandler(on_language, pattern(Action.LANGUAGE)),
        # Last: a button no handler knows (from an older version of the bot).
        CallbackQueryHandler(on_unknown_button),
        # Last in private chats: anything else gets a pointer to the menu.
        MessageHandler(filters.ChatType.PRIVATE, on_unknown_message),
    ]
    application.add_handlers(handlers)


def _args(context: Context) -> list[str]:
    return context.args or []


def _button_args(update: Update) -> list[str]:
    return decode(update.callback_query.data or "")[1]  # type: ignore[union-attr]


# --- Menu and help -----------------------------------------------------------------


async def start_command(update: Update, context: Context) -> None:
    await show(update, _(texts.MENU), keyboards.main_menu(_may_build(update, context)))


async def on_menu(update: Update, context: Context) -> None:
    await show(update, _(texts.MENU), keyboards.main_menu(_may_build(update, context)))


def _may_build(update: Update, context: Context) -> bool:
    """New chain is offered to admins in their private chat, where the editor works."""
    return allowed(context.role, Role.ADMIN) and not in_group(update)


def _help(update: Update, context: Context) -> str:
    return texts.help_text(context.role or Role.VIEWER, group=in_group(update))


async def help_command(update: Update, context: Context) -> None:
    await show(update, _help(update, context))


async def on_help(update: Update, context: Context) -> None:
    await show(update, _help(update, context), keyboards.back_to_menu())


def _no_chains(update: Update, context: Context) -> str:
    return _(texts.NO_CHAINS_BUILD_ONE) if _may_build(update, context) else texts.NO_CHAINS


async def nothing_to_cancel(update: Update, context: Context) -> None:
    await show(update, _(texts.NOTHING_TO_CANCEL))


async def on_unknown_button(update: Update, context: Context) -> None:
    await tell(update, _(texts.STALE_BUTTON))


async def on_unknown_message(update: Update, context: Context) -> None:
    await show(update, _(texts.UNKNOWN_MESSAGE))


# --- Chains ------------------------------------------------------------------------


async def _chain_list(update: Update, context: Context, page_number: int) -> None:
    chains = await list_chains(context.deps.db)
    if not chains:
        await show(update, _no_chains(update, context), keyboards.back_to_menu())
        return
    page = keyboards.paginate(chains, page_number, keyboards.CHAINS_PER_PAGE)
    await show(
        update, texts.chain_list(page.items, page.number, page.count), keyboards.chain_list(page)
    )


async def chains_command(update: Update, context: Context) -> None:
    await _chain_list(update, context, 0)


async def on_chains(update: Update, context: Context) -> None:
    await _chain_list(update, context, int_arg(_button_args(update), 0))


async def _chain_card(
    update: Update, context: Context, chain_id: int, list_page: int, toast: str | None = None
) -> None:
    chain = await get_chain(context.deps.db, chain_id)
    role = context.role or Role.VIEWER
    await show(
        update, texts.chain_card(chain), keyboards.chain_card(chain, role, list_page), toast=toast
    )


async def on_chain(update: Update, context: Context) -> None:
    args = _button_args(update)
    await _chain_card(update, context, int_arg(args, 0), int_arg(args, 1))


def find_chains(chains: Sequence[ChainSummary], query: str) -> list[ChainSummary]:
    """The chains a user may mean: by id (`3`, `#3`), else by name (any case), else part of it."""
    wanted = query.strip().removeprefix("#")
    if wanted.isdigit():
        return [chain for chain in chains if chain.id == int(wanted)]
    folded = query.strip().casefold()
    exact = [chain for chain in chains if chain.name.casefold() == folded]
    return exact or [chain for chain in chains if folded in chain.name.casefold()]


class Change(NamedTuple):
    """A change of a chain's status: from which status, by which service, what is said."""

    source: ChainStatus
    service: Callable[..., Awaitable[None]]
    done: Callable[[str], str]
    # Untranslated (N_): `_()` where shown.
    toast: str
    nothing_to_do: str


CHANGES = {
    Action.PAUSE: Change(
        ChainStatus.ACTIVE,
        pause_chain,
        texts.paused,
        texts.PAUSED_TOAST,
        texts.NOTHING_TO_PAUSE,
    ),
    Action.RESUME: Change(
        ChainStatus.PAUSED,
        resume_chain,
        texts.resumed,
        texts.RESUMED_TOAST,
        texts.NOTHING_TO_RESUME,
    ),
}


async def _change_by_name(update: Update, context: Context, action: Action) -> None:
    """`/pause <chain>`, `/resume <chain>`: one match is acted on; otherwise choices."""
    change = CHANGES[action]
    query = " ".join(_args(context))
    chains = await list_chains(context.deps.db)
    found = find_chains(chains, query) if query else []
    if len(found) == 1:
        await change.service(context.deps.db, found[0].id, actor=context.actor)
        await show(update, change.done(found[0].name))
        return
    candidates = [chain for chain in (found or chains) if chain.status is change.source]
    if not candidates:
        await show(update, _(change.nothing_to_do))
        return
    await show(
        update,
        texts.which_chain(query, len(found) > 1),
        keyboards.chain_choices(candidates[:CHOICES_SHOWN], action),
    )


@requires(Role.ADMIN)
async def pause_command(update: Update, context: Context) -> None:
    await _change_by_name(update, context, Action.PAUSE)


@requires(Role.ADMIN)
async def resume_command(update: Update, context: Context) -> None:
    await _change_by_name(update, context, Action.RESUME)


async def _change_by_button(update: Update, context: Context, action: Action) -> None:
    change = CHANGES[action]
    chain_id = int_arg(_button_args(update), 0)
    await change.service(context.deps.db, chain_id, actor=context.actor)
    await _chain_card(update, context, chain_id, 0, toast=_(change.toast))


@requires(Role.ADMIN)
async def on_pause(update: Update, context: Context) -> None:
    await _change_by_button(update, context, Action.PAUSE)


@requires(Role.ADMIN)
async def on_resume(update: Update, context: Context) -> None:
    await _change_by_button(update, context, Action.RESUME)


@requires(Role.ADMIN)
async def pause_all_command(update: Update, context: Context) -> None:
    db = context.deps.db
    names = {chain.id: chain.name for chain in await list_chains(db)}
    paused = await pause_all(db, actor=context.actor)
    await show(
        update, texts.paused_all([names.get(chain_id, f"#{chain_id}") for chain_id in paused])
    )


# --- Stats -------------------------------------------------------------------------


async def _chart(context: Context, stats: ChainStats) -> bytes | None:
    """The chain's chart with its orders per day up to today (DEFAULT_TIMEZONE)."""
    zone = context.deps.default_timezone
    today = datetime.now(ZoneInfo(zone)).date()
    return await chain_chart_png(context.deps.db, stats, last_day=today, zone=zone)


async def _send_chart(update: Update, context: Context, stats: ChainStats) -> bool:
    """The chart as a new photo in the chat; False when there is nothing to draw."""
    png = await _chart(context, stats)
    if png is None:
        return False
    message = update.effective_message
    assert message is not None  # commands and buttons come with one
    await message.reply_photo(png, caption=texts.chart_caption(stats.name))
    return True


async def _stats(
    update: Update, context: Context, chain_id: int, page_number: int, *, with_chart: bool = False
) -> None:
    """A page of a chain's stats; `with_chart`: the chart first, as a photo of its own
    (for a command: pages turned by buttons keep one message edited in place)."""
    stats = await chain_stats(context.deps.db, chain_id)
    if with_chart:
        await _send_chart(update, context, stats)
    pages = texts.stats_pages(stats, currency=context.deps.currency)
    page = keyboards.paginate(pages, page_number, 1)
    await show(update, page.items[0], keyboards.stats(chain_id, page))


async def _reports(update: Update, context: Context, page_number: int) -> None:
    chains = await list_chains(context.deps.db)
    if not chains:
        await show(update, _no_chains(update, context), keyboards.back_to_menu())
        return
    page = keyboards.paginate(chains, page_number, keyboards.CHAINS_PER_PAGE)
    await show(
        update, _(texts.REPORTS) + texts.page_note(page.number, page.count), keyboards.reports(page)
    )


async def stats_command(update: Update, context: Context) -> None:
    query = " ".join(_args(context))
    if not query:
        await _reports(update, context, 0)
        return
    chains = await list_chains(context.deps.db)
    found = find_chains(chains, query)
    if len(found) == 1:
        await _stats(update, context, found[0].id, 0, with_chart=True)
        return
    await show(
        update,
        texts.which_chain(query, len(found) > 1),
        keyboards.chain_choices((found or chains)[:CHOICES_SHOWN], Action.STATS),
    )


async def on_reports(update: Update, context: Context) -> None:
    await _reports(update, context, int_arg(_button_args(update), 0))


async def on_stats(update: Update, context: Context) -> None:
    args = _button_args(update)
    await _stats(update, context, int_arg(args, 0), int_arg(args, 1))


async def on_chart(update: Update, context: Context) -> None:
    """The chart as a new photo under the stats message, which stays where it is."""
    stats = await chain_stats(context.deps.db, int_arg(_button_args(update), 0))
    if await _send_chart(update, context, stats):
        await update.callback_query.answer()  # type: ignore[union-attr]
    else:
        await tell(update, _(texts.NOTHING_TO_DRAW))


# --- Customers and segments --------------------------------------------------------


async def on_customers(update: Update, context: Context) -> None:
    count = await count_customers(context.deps.db)
    may_import = allowed(context.role, Role.ADMIN)
    await show(update, texts.customers(count, may_import=may_import), keyboards.back_to_menu())


# --- Import ------------------------------------------------------------------------


@private_only
@requires(Role.ADMIN)
async def import_command(update: Update, context: Context) -> str:
    await show(update, _(texts.SEND_CSV))
    return WAITING_FOR_CSV


def looks_like_csv(document: Document) -> bool:
    # By name first: phones and Windows label CSV files with all sorts of types.
    name = (document.file_name or "").lower()
    return name.endswith((".csv", ".txt")) or (document.mime_type or "") in CSV_TYPES


@requires(Role.ADMIN)
async def receive_csv(update: Update, context: Context) -> str | int:
    """Download the file and import it with the service the CLI uses; the report replaces
    the "Importing…" message. A file that cannot be read leaves the user here to send another."""
    message = update.message
    # The state's filter lets only messages with a document in.
    assert message is not None
    assert message.document is not None
    document = message.document
    name = document.file_name or "customers.csv"
    if not looks_like_csv(document):
        await show(update, _(texts.NOT_A_CSV))
        return WAITING_FOR_CSV
    if (document.file_size or 0) > FileSizeLimit.FILESIZE_DOWNLOAD:
        await show(update, texts.too_big(FileSizeLimit.FILESIZE_DOWNLOAD // 1_000_000))
        return ConversationHandler.END
    progress = await message.reply_text(texts.importing(name))
    telegram_file = await document.get_file()
    stream = io.BytesIO(await telegram_file.download_as_bytearray())
    # The service names the file in its audit entry.
    stream.name = name
    deps = context.deps
    try:
        report = await import_customers_csv(
            deps.db,
            stream,
            default_timezone=deps.default_timezone,
            default_phone_region=deps.default_phone_region,
            actor=context.actor,
        )
    except ChainmailError as exc:
        await progress.edit_text(f"{texts.refused(exc.translated())}\n{_(texts.SEND_ANOTHER)}")
        return WAITING_FOR_CSV
    await progress.edit_text(texts.import_report(name, report))
    return ConversationHandler.END


async def remind_csv(update: Update, context: Context) -> str:
    await show(update, _(texts.STILL_WAITING_FOR_CSV))
    return WAITING_FOR_CSV


async def cancel_command(update: Update, context: Context) -> int:
    await show(update, _(texts.CANCELLED))
    return ConversationHandler.END


# --- Group chats -------------------------------------------------------------------


async def _may_subscribe(update: Update, context: Context) -> bool:
    """Anyone who may use the bot subscribes their private chat; a group takes an admin
    (a group's members are viewers there once it is subscribed)."""
    if in_group(update) and not allowed(context.role, Role.ADMIN):
        await tell(update, _(texts.NEEDS_ADMIN))
        return False
    return True


async def subscribe_command(update: Update, context: Context) -> None:
    if not await _may_subscribe(update, context):
        return
    chat = update.effective_chat
    user = update.effective_user
    # The gate lets only updates with a user (and so a chat) through.
    assert chat is not None
    assert user is not None
    zone = _args(context)[0] if _args(context) else None
    team_chat = await subscribe_chat(
        context.deps.db,
        chat.id,
        title=chat.title if in_group(update) else user.full_name,
        timezone=zone,
        by=user.id,
        # Summaries there speak the subscriber's language (and follow their /language).
        language=current_language(),
        actor=context.actor,
    )
    await show(update, texts.subscribed(team_chat.timezone, context.deps.default_timezone))


async def unsubscribe_command(update: Update, context: Context) -> None:
    if not await _may_subscribe(update, context):
        return
    chat_id = update.effective_chat.id  # type: ignore[union-attr]
    was = await unsubscribe_chat(context.deps.db, chat_id, actor=context.actor)
    await show(update, _(texts.UNSUBSCRIBED) if was else _(texts.NOT_SUBSCRIBED))


# --- Language ----------------------------------------------------------------------


async def language_command(update: Update, context: Context) -> None:
    user = update.effective_user
    assert user is not None  # the gate lets only updates with a user through
    book = context.application.languages  # type: ignore[attr-defined]
    chosen = await book.chosen(user.id)
    await show(
        update,
        texts.language_question(chosen, current_language()),
        keyboards.languages(chosen),
    )


async def on_language(update: Update, context: Context) -> None:
    """The choice, remembered (models/bot_users.py), and said in the new language."""
    user = update.effective_user
    assert user is not None
    code = _button_args(update)[0] if _button_args(update) else ""
    if code != keyboards.TELEGRAM_LANGUAGE and code not in LANGUAGES:
        await tell(update, _(texts.STALE_BUTTON))
        return
    chosen = None if code == keyboards.TELEGRAM_LANGUAGE else code
    book = context.application.languages  # type: ignore[attr-defined]
    # The rest of this update speaks it already (the application resets it afterwards).
    set_language(await book.choose(user, chosen, actor=context.actor))
    await show(update, texts.language_chosen(chosen), keyboards.languages(chosen))


# --- Admins ------------------------------------------------------------------------


@private_only
@requires(Role.OWNER)
async def admins_command(update: Update, context: Context) -> None:
    """`/admins`, `/admins add <id> admin|viewer [name]`, `/admins remove <id>`."""
    deps = context.deps
    args = _args(context)
    if not args:
        await show(update, texts.admin_list(deps.owner_ids, await list_people(deps.db)))
        return
    roles = {Role.ADMIN.value, Role.VIEWER.value}
    verb, ids = args[0].lower(), args[1:2]
    if not ids or not ids[0].isdigit():
        await show(update, _(texts.ADMINS_USAGE))
        return
    telegram_id = int(ids[0])
    if telegram_id in deps.owner_ids:
        await show(update, _(texts.OWNER_FROM_SETTINGS))
    elif verb == "add" and len(args) >= 3 and args[2].lower() in roles:
        role = Role(args[2].lower())
        name = " ".join(args[3:]) or None
        await add_admin(deps.db, telegram_id, role, name=name, actor=context.actor)
        context.application.roles.clear()  # type: ignore[attr-defined]
        await show(update, texts.admin_added(telegram_id, role))
    elif verb == "remove" and len(args) == 2:
        removed = await remove_admin(deps.db, telegram_id, actor=context.actor)
        context.application.roles.clear()  # type: ignore[attr-defined]
        await show(
            update,
            texts.admin_removed(telegram_id) if removed else texts.admin_unknown(telegram_id),
        )
    else:
        await show(update, _(texts.ADMINS_USAGE))


# Commands the chain editor carries out once its leave question is answered (Save or
# Discard): they answer with `show`, so from the question's button they edit the question
# into their answer. /import is a conversation of its own and is only named.
REPLAYABLE: dict[str, Callable[[Update, Context], Awaitable[None]]] = {
    "/start": start_command,
    "/help": help_command,
    "/chains": chains_command,
    "/pause": pause_command,
    "/resume": resume_command,
    "/pause_all": pause_all_command,
    "/stats": stats_command,
    "/subscribe": subscribe_command,
    "/unsubscribe": unsubscribe_command,
    "/admins": admins_command,
}
