"""The chain editor (SPEC §3): build a chain step by step and block by block from a phone.

One message, the screen, is edited in place while navigating. Where the editor is
and the block being edited (the draft) live in `user_data["editor"]` as JSON,
saved in the database after every update (handlers/persistence.py), so a restart
keeps both. A draft is a block in the chain file's own form: Save hands it to
`services.editing.save_block`, the validation a chain file goes through, and nothing
is saved before. A draft that differs from the saved block is unsaved; leaving it
(another block, step or chain, the map, a command, /cancel, a button outside the
editor) asks Save / Discard / Keep editing first: `navigate` for the editor's own
buttons, `leave_guard` (handler group -1) for everything else.

The chain's holdout (`holdout_percent`) is a chain-level block of the same kind: its
draft is `{"holdout_percent": n}` under `block = "holdout"`, with Save / Discard and
the same leave question; it can change only while the chain is a draft.

A running chain is changed under the rules of `services.editing`, and the editor shows
their numbers before it acts: Save on a live step (one with messages, whose save makes
a new version) first shows what it does (`preview_block`, `describe`) with ✅ Save /
✏️ Keep editing, also when Save is the answer to the leave question; Stop step shows
how many waiting messages would be skipped (`preview_stop`); Remove step asks too.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from telegram import InlineKeyboardMarkup, Update
from telegram.constants import ChatType, FileSizeLimit
from telegram.error import BadRequest
from telegram.ext import (
    Application,
    ApplicationHandlerStop,
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    MessageHandler,
    TypeHandler,
    filters,
)

from handlers import (
    Context,
    Data,
    commands,
    keyboards,
    preview,
    progress,
    screen,
    show,
    texts,
    when,
)
from handlers.access import allowed, private_only, requires
from handlers.callbacks import EDITOR_ACTIONS, Action, decode, int_arg
from handlers.commands import on_unknown_message
from i18n import _
from models.amounts import NotAnAmount, parse_amount
from models.chainfile import (
    DEFAULT_MECHANICS,
    MAX_DAYS,
    MAX_HOLDOUT,
    BlockKind,
    Channel,
    InvalidBlock,
    Match,
    Mechanic,
    Problem,
    SegmentsAudience,
    Send,
    SmsAction,
    Term,
    later_only_terms,
    mechanics_of,
)
from models.chains import (
    HOLDOUT_FIXED,
    ChainView,
    StepView,
    add_step,
    copy_chain,
    create_chain,
    get_chain,
    rename_chain,
    rename_step,
    set_enrollment,
    set_holdout,
)
from models.errors import ChainmailError, InvalidValue
from models.segments import list_segments
from models.sms_parts import SampleCount
from models.tables import ChainStatus, Enrollment, Role
from services.editing import (
    Impact,
    Placeholders,
    Saved,
    check_placeholders,
    describe,
    preview_block,
    preview_remove,
    preview_stop,
    remove_step,
    save_block,
    step_options,
    stop_step,
)
from services.forecast import forecast_activation
from services.lifecycle import activate_chain
from services.preview import sms_sample_count

EDITOR = "editor"
GUARD_GROUP = -1
# The open block when it is the chain's holdout rather than one of a step's four.
HOLDOUT = "holdout"
BLOCK_CODES = {
    BlockKind.AUDIENCE: "a",
    BlockKind.ACTION: "m",
    BlockKind.SCHEDULE: "t",
    BlockKind.CONVERSION: "g",
}
BLOCKS_BY_CODE = {code: kind for kind, code in BLOCK_CODES.items()}
TERMS = list(Term)
MECHANICS = list(Mechanic)
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
# After… for a step whose terms are known only later (not opened…): the wait it starts with.
DEFAULT_WAIT = "2d"

State = dict[str, Any]
Input = Callable[[Update, Context, State, str], Awaitable[None]]


def install(application: Application) -> None:  # type: ignore[type-arg]
    """Before `commands.install`: the editor's text input comes before the private catch-all."""
    application.add_handler(TypeHandler(Update, leave_guard), group=GUARD_GROUP)
    handlers: list[BaseHandler[Update, Context, None]] = [
        CommandHandler("new", new_command),
        CommandHandler("cancel", cancel_command),
        CallbackQueryHandler(on_button, f"^({'|'.join(EDITOR_ACTIONS)})(:|$)"),
        MessageHandler(filters.ChatType.PRIVATE & filters.TEXT & ~filters.COMMAND, on_text),
        MessageHandler(filters.ChatType.PRIVATE & filters.Document.ALL, on_document),
    ]
    application.add_handlers(handlers)


# --- State --------------------------------------------------------------------------


def _state(context: Context) -> State:
    user_data: Data = context.user_data  # type: ignore[assignment]
    return user_data.setdefault(EDITOR, {})


def unsaved(state: State) -> bool:
    return state.get("draft") is not None and state.get("draft") != state.get("saved")


def _block(state: State) -> BlockKind | None:
    """The step block open, if one is (not the holdout)."""
    value = state.get("block")
    return BlockKind(value) if value in BlockKind._value2member_map_ else None


def _holdout_open(state: State) -> bool:
    return state.get("block") == HOLDOUT


def _where(state: State) -> tuple[int, int]:
    return state["chain"], state["step"]


def _close_block(state: State) -> None:
    for key in (
        "block",
        "draft",
        "saved",
        "input",
        "stash",
        "picker",
        "choices",
        "pending",
        "warned",
    ):
        state.pop(key, None)


def _today(context: Context) -> datetime:
    """Now as a wall-clock time in the shop's zone (DEFAULT_TIMEZONE), without the zone."""
    return datetime.now(ZoneInfo(context.deps.default_timezone)).replace(tzinfo=None)


# --- Answering ----------------------------------------------------------------------


async def _screen(
    update: Update,
    context: Context,
    text: str,
    markup: InlineKeyboardMarkup | None = None,
    *,
    toast: str | None = None,
) -> None:
    await screen(update, context, _state(context), text, markup, toast=toast)


# --- Screens ------------------------------------------------------------------------


async def show_overview(
    update: Update,
    context: Context,
    chain_id: int,
    *,
    page: int | None = None,
    toast: str | None = None,
) -> None:
    """The chain and its minimap; without a page, the page of the step last worked on."""
    state = _state(context)
    chain = await get_chain(context.deps.db, chain_id)
    if state.get("chain") != chain_id or _holdout_open(state):
        _close_block(state)
    state.update(chain=chain_id, step=state.get("step") if state.get("chain") == chain_id else 1)
    if page is None:
        page = ((state.get("step") or 1) - 1) // keyboards.MINIMAP_PER_PAGE
    await _screen(
        update,
        context,
        texts.editor_overview(chain, _unsaved_step(state)),
        keyboards.editor_overview(chain, _unsaved_step(state), page),
        toast=toast,
    )


def _unsaved_step(state: State) -> int | None:
    return state.get("step") if unsaved(state) and not _holdout_open(state) else None


async def show_step(
    update: Update,
    context: Context,
    chain_id: int,
    position: int,
    *,
    toast: str | None = None,
    note: str | None = None,
) -> None:
    """`note`: what a change just made to the step did, in the services' words."""
    state = _state(context)
    chain = await get_chain(context.deps.db, chain_id)
    if not chain.steps:
        await _ask_new_step_name(update, context, chain_id)
        return
    step = _step_of(chain, position)
    if (state.get("chain"), state.get("step")) != (chain_id, position) or _holdout_open(state):
        _close_block(state)
    state.update(chain=chain_id, step=step.position)
    state.pop("input", None)
    running = chain.status in (ChainStatus.ACTIVE, ChainStatus.PAUSED)
    options = await step_options(context.deps.db, chain_id, step.position) if running else None
    sms_count = None
    if isinstance(step.action, SmsAction):
        sms_count = await _sms_count(context, chain, step.position, step.action.text)
    await _screen(
        update,
        context,
        texts.editor_step(
            chain,
            step,
            _block(state) if unsaved(state) else None,
            note,
            sms_frame=context.deps.messages.sms_frame,
            currency=context.deps.currency,
            sms_count=sms_count,
        ),
        keyboards.editor_step(chain, step, options),
        toast=toast,
    )


async def _sms_count(
    context: Context, chain: ChainView, position: int, text: str
) -> SampleCount | None:
    """The SMS counted as the step's customers (the main step's segments, else any) get it."""
    if not text:
        return None
    main = chain.steps[0].audience if chain.steps else None
    segments = main.segments if position == 1 and isinstance(main, SegmentsAudience) else ()
    return await sms_sample_count(
        context.deps.db,
        context.deps.messages,
        text,
        segments=segments,
        default_timezone=context.deps.default_timezone,
        now=datetime.now(UTC),
    )


def _step_of(chain: ChainView, position: int) -> StepView:
    for step in chain.steps:
        if step.position == position:
            return step
    return chain.steps[-1] if position > chain.steps[-1].position else chain.steps[0]


async def open_block(
    update: Update, context: Context, chain_id: int, position: int, kind: BlockKind
) -> None:
    state = _state(context)
    same = (state.get("chain"), state.get("step"), state.get("block")) == (
        chain_id,
        position,
        kind.value,
    )
    chain = None
    if not same:
        chain = await get_chain(context.deps.db, chain_id)
        step = _step_of(chain, position)
        saved = getattr(step, kind.value)
        saved_json = saved.to_block() if saved is not None else None
        _close_block(state)
        state.update(
            chain=chain_id,
            step=step.position,
            block=kind.value,
            saved=saved_json,
            draft=copy.deepcopy(saved_json) or _new_block(kind, step),
        )
        if kind is BlockKind.AUDIENCE and step.position == 1:
            state["choices"] = [segment.name for segment in await list_segments(context.deps.db)]
        if saved_json is None and state["draft"].get("send") == Send.AFTER:
            # The wait preselected for later terms: a typed delay replaces it.
            state["input"] = "after"
    await show_block(update, context, chain=chain)


def _new_block(kind: BlockKind, step: StepView) -> dict[str, Any]:
    match kind:
        case BlockKind.AUDIENCE:
            return {"segments": []} if step.position == 1 else {"who": "all"}
        case BlockKind.ACTION:
            return {"channel": Channel.EMAIL.value}
        case BlockKind.SCHEDULE:
            if later_only_terms(step.audience):
                return {"send": Send.AFTER.value, "after": DEFAULT_WAIT}
            return {"send": Send.NOW.value}
        case BlockKind.CONVERSION:
            return {"goal": "order", "window_days": 7, "min_amount": 0}


async def show_block(
    update: Update,
    context: Context,
    *,
    problems: list[Problem] | None = None,
    note: str | None = None,
    toast: str | None = None,
    chain: ChainView | None = None,
    placeholders: Placeholders | None = None,
) -> None:
    """`chain`: the chain as just read, if the caller has it; `placeholders`: unknown ones
    to warn about before Save goes on."""
    state = _state(context)
    if _holdout_open(state):
        await show_holdout(update, context, note=note, toast=toast)
        return
    kind = _block(state)
    if kind is None:
        await show_step(update, context, *_where(state))
        return
    if chain is None:
        chain = await get_chain(context.deps.db, state["chain"])
    step = _step_of(chain, state["step"])
    draft = state["draft"]
    sms_count = None
    if kind is BlockKind.ACTION and draft.get("channel") == Channel.SMS:
        sms_count = await _sms_count(context, chain, step.position, draft.get("text") or "")
    view = texts.BlockScreen(
        chain=chain,
        step=step,
        kind=kind,
        draft=draft,
        unsaved=unsaved(state),
        waiting_for=state.get("input"),
        problems=problems or [],
        note=note,
        currency=context.deps.currency,
        sms_frame=context.deps.messages.sms_frame,
        today=_today(context).date(),
        sms_count=sms_count,
        placeholders=placeholders,
    )
    await _screen(
        update,
        context,
        texts.editor_block(view),
        keyboards.editor_block(view, state, _today(context).date()),
        toast=toast,
    )


# --- Leaving with unsaved changes ----------------------------------------------------


def _same_block(state: State, data: str) -> bool:
    action, args = decode(data)
    if action == Action.HOLDOUT:
        return _holdout_open(state) and int_arg(args, 0) == state.get("chain")
    if action != Action.EDIT_BLOCK:
        return False
    return (
        int_arg(args, 0),
        int_arg(args, 1),
        BLOCKS_BY_CODE.get(args[2] if len(args) > 2 else ""),
    ) == (
        state.get("chain"),
        state.get("step"),
        _block(state),
    )


async def _ask_to_leave(update: Update, context: Context, pending: str) -> None:
    state = _state(context)
    state["pending"] = pending
    state.pop("input", None)
    chain = await get_chain(context.deps.db, state["chain"])
    if _holdout_open(state):
        question = texts.holdout_leave_question(chain)
    else:
        question = texts.leave_question(_step_of(chain, state["step"]), _block(state))  # type: ignore[arg-type]
    before = state.get("screen")
    shown = await _screen(update, context, question, keyboards.leave_question())
    if before and before != shown:
        # A command's question comes as a new message: the block's screen above it still
        # says "● unsaved" until the answer settles it (`_settle_left_screen`).
        state["left_screen"] = before


async def _settle_left_screen(
    update: Update, context: Context, kind: BlockKind | None, *, saved: bool
) -> None:
    """The block's older screen, left behind by the leave question, says what became of
    its changes instead of "● unsaved"; `kind` None: the holdout's."""
    state = _state(context)
    message_id = state.pop("left_screen", None)
    chat = update.effective_chat
    if not message_id or chat is None:
        return
    chain = await get_chain(context.deps.db, state["chain"])
    if kind is None:
        text = texts.holdout_left_behind(chain, saved=saved)
    else:
        text = texts.left_behind(_step_of(chain, state["step"]), kind, saved=saved)
    # Gone or too old to edit: nothing to settle.
    with contextlib.suppress(BadRequest):
        await context.bot.edit_message_text(text, chat.id, message_id)


async def navigate(update: Update, context: Context, data: str) -> None:
    """Go where a button points, asking first if that would leave an unsaved draft."""
    state = _state(context)
    if unsaved(state) and not _same_block(state, data):
        await _ask_to_leave(update, context, data)
        return
    await _go(update, context, data)


async def _go(update: Update, context: Context, data: str) -> None:
    state = _state(context)
    if data.startswith("/"):
        command, *args = data.split()
        _close_block(state)
        if command == "/cancel":
            state.clear()
            await _screen(update, context, _(texts.EDITOR_CLOSED))
        elif command in commands.REPLAYABLE:
            # Where the command was going: its answer, in place of the question.
            context.args = args
            await commands.REPLAYABLE[command](update, context)
        else:
            await _screen(update, context, texts.carry_on(command))
        return
    action, args = decode(data)
    chain_id = int_arg(args, 0)
    match action:
        case Action.EDIT_CHAIN:
            page = int_arg(args, 1) if len(args) > 1 else None
            await show_overview(update, context, chain_id, page=page)
        case Action.EDIT_STEP:
            await show_step(update, context, chain_id, int_arg(args, 1, 1))
        case Action.EDIT_BLOCK:
            kind = BLOCKS_BY_CODE.get(args[2] if len(args) > 2 else "", BlockKind.AUDIENCE)
            await open_block(update, context, chain_id, int_arg(args, 1, 1), kind)
        case Action.ADD_STEP:
            await _ask_new_step_name(update, context, chain_id)
        case Action.ACTIVATE:
            await _forecast(update, context, chain_id)
        case Action.COPY_CHAIN:
            await _copy(update, context, chain_id)
        case Action.RENAME:
            await _ask_rename(update, context, chain_id, int_arg(args, 1, 0))
        case Action.ENROLLMENT:
            await _toggle_enrollment(update, context, chain_id)
        case Action.HOLDOUT:
            await open_holdout(update, context, chain_id)
        case Action.NEW_CHAIN:
            await _ask_chain_name(update, context)
        case Action.STOP_STEP:
            await _stop_step(update, context, chain_id, int_arg(args, 1, 1), sure=_sure(args, 2))
        case Action.REMOVE_STEP:
            await _remove_step(update, context, chain_id, int_arg(args, 1, 1), sure=_sure(args, 2))
        case Action.CLOSE_EDITOR:
            state.clear()
            await show(update, _(texts.MENU), keyboards.main_menu(_can_edit(context)))
        case _:
            # A button outside the editor, pressed while a draft was unsaved: its
            # screen cannot be rebuilt from here, so the menu leads on.
            _close_block(state)
            await show(update, _(texts.MENU), keyboards.main_menu(_can_edit(context)))


def _can_edit(context: Context) -> bool:
    return allowed(context.role, Role.ADMIN)


async def leave_guard(update: Update, context: Context) -> None:
    """Group -1, after the access gate: anything that leaves the editor while a draft is
    unsaved gets the question instead. Typed input is forgotten when the user moves on."""
    chat = update.effective_chat
    if chat is None or chat.type != ChatType.PRIVATE or context.user_data is None:
        return
    state: State | None = context.user_data.get(EDITOR)
    if not state:
        return
    query = update.callback_query
    message = update.message
    if query is not None:
        action = decode(query.data or "")[0]
        if action in EDITOR_ACTIONS:
            return
        state.pop("input", None)
        if unsaved(state):
            await _ask_to_leave(update, context, query.data or Action.MENU.value)
            raise ApplicationHandlerStop
    elif message is not None and (message.text or "").startswith("/"):
        command, *args = message.text.split()  # type: ignore[union-attr]
        command = command.split("@")[0]
        if command in ("/cancel", "/new"):
            return
        state.pop("input", None)
        if unsaved(state):
            # Its arguments too: the answer replays it (`_go`).
            await _ask_to_leave(update, context, " ".join([command, *args])[:200])
            raise ApplicationHandlerStop


def _now() -> datetime:
    return datetime.now(UTC)


def _sure(args: list[str], index: int) -> bool:
    """A confirming button: the asking button's data with `ok` after it (handlers/callbacks.py)."""
    return len(args) == index + 1 and args[index] == "ok"


async def _refused(update: Update, context: Context, refused: InvalidBlock) -> None:
    """The block again, every problem under the draft; where a leave question led is
    forgotten (the draft is still unsaved)."""
    _state(context).pop("pending", None)
    await show_block(update, context, problems=refused.problems)


async def on_save(update: Update, context: Context, *, impact_seen: bool) -> None:
    """Save, pressed under the block or answering the leave question. A change to a live
    step is first shown in numbers, with ✅ Save / ✏️ Keep editing (`impact_seen` once
    confirmed); a refusal is shown under the draft before anything is asked; a step
    without messages saves at once. Then the step, or where the leave question led."""
    state = _state(context)
    if _holdout_open(state):
        await _save_holdout(update, context)
        return
    kind = _block(state)
    if kind is None:
        await _nothing_open(update, context)
        return
    chain_id, position = _where(state)
    if kind is BlockKind.ACTION and state.get("warned") != state["draft"]:
        found = await check_placeholders(context.deps.db, state["draft"])
        if found.unknown:
            # Said once for this draft; Save anyway (Save again) goes on.
            state["warned"] = copy.deepcopy(state["draft"])
            state.pop("pending", None)
            await show_block(update, context, placeholders=found)
            return
    if not impact_seen:
        try:
            impact = await preview_block(
                context.deps.db,
                chain_id,
                position,
                kind,
                state["draft"],
                sms_frame=context.deps.messages.sms_frame,
            )
        except InvalidBlock as refused:
            await _refused(update, context, refused)
            return
        if impact.version is not None:
            await _show_impact(update, context, kind, impact, impact.version)
            return
    # Saving closes the block, and with it the leave question's destination.
    pending = state.pop("pending", None)
    saved = await _save(update, context, kind)
    if saved is None:
        return
    if pending is not None:
        await _settle_left_screen(update, context, kind, saved=True)
        await _go(update, context, pending)
        return
    version = saved.impact.version
    await show_step(
        update,
        context,
        chain_id,
        position,
        toast=texts.saved_toast(saved.warnings, version),
        note=describe(saved.impact, _now()) if version is not None else None,
    )


async def _nothing_open(update: Update, context: Context) -> None:
    """Save or Discard of a block no longer open (an older screen, another device): said
    so, and the screen shows where the editor is now."""
    state = _state(context)
    query = update.callback_query
    if query is None or query.message is None:
        await show(update, texts.STALE_BUTTON)
        return
    await query.answer(_(texts.ALREADY_SAVED_OR_DISCARDED), show_alert=True)
    if state.get("chain") and state.get("screen") in (None, query.message.message_id):
        await _back_to_place(update, context, toast=None)
    else:
        # The live screen is further down: this one only loses its buttons.
        with contextlib.suppress(BadRequest):
            await query.edit_message_reply_markup(reply_markup=None)


async def _show_impact(
    update: Update, context: Context, kind: BlockKind, impact: Impact, version: int
) -> None:
    state = _state(context)
    state.pop("input", None)
    text = texts.save_impact(kind, impact.position, impact.name, version, describe(impact, _now()))
    await _screen(update, context, text, keyboards.confirm_save())


async def _save(update: Update, context: Context, kind: BlockKind) -> Saved | None:
    """Save the draft; None if refused, the block shown again with every problem."""
    state = _state(context)
    chain_id, position = _where(state)
    try:
        saved = await save_block(
            context.deps.db,
            chain_id,
            position,
            kind,
            state["draft"],
            actor=context.actor,
            sms_frame=context.deps.messages.sms_frame,
        )
    except InvalidBlock as refused:
        await _refused(update, context, refused)
        return None
    _close_block(state)
    return saved


async def _show_step_after(update: Update, context: Context, state: State, toast: str) -> None:
    await show_step(update, context, state["chain"], state["step"], toast=toast)


async def on_leave(update: Update, context: Context, args: list[str]) -> None:
    state = _state(context)
    choice = args[0] if args else "keep"
    if choice == "keep" or state.get("pending") is None:
        state.pop("pending", None)
        state.pop("left_screen", None)
        await show_block(update, context)
        return
    if choice == "save":
        # A live step's save is shown in numbers first; the answer leads on (on_save).
        await on_save(update, context, impact_seen=False)
        return
    pending = state.pop("pending")
    kind, holdout = _block(state), _holdout_open(state)
    _close_block(state)
    if kind is not None or holdout:
        await _settle_left_screen(update, context, kind, saved=False)
    await _go(update, context, pending)


# --- Stopping and removing a step ------------------------------------------------------


async def _stop_step(
    update: Update, context: Context, chain_id: int, position: int, *, sure: bool
) -> None:
    """Asked first with the numbers of `preview_stop`; once sure, stopped and the step
    shown with what the stop did."""
    db = context.deps.db
    if not sure:
        impact = await preview_stop(db, chain_id, position)
        _state(context).pop("input", None)
        await _screen(
            update,
            context,
            texts.stop_question(impact.position, impact.name, impact.to_go, impact.kept),
            keyboards.confirm_step_change(Action.STOP_STEP, chain_id, impact.position),
        )
        return
    impact = await stop_step(db, chain_id, position, actor=context.actor)
    await show_step(
        update,
        context,
        chain_id,
        impact.position,
        toast=_(texts.STOPPED_TOAST),
        note=describe(impact, _now()),
    )


async def _remove_step(
    update: Update, context: Context, chain_id: int, position: int, *, sure: bool
) -> None:
    db = context.deps.db
    if not sure:
        impact = await preview_remove(db, chain_id, position)
        chain = await get_chain(db, chain_id)
        _state(context).pop("input", None)
        await _screen(
            update,
            context,
            texts.remove_question(chain, _step_of(chain, impact.position)),
            keyboards.confirm_step_change(Action.REMOVE_STEP, chain_id, impact.position),
        )
        return
    impact = await remove_step(db, chain_id, position, actor=context.actor)
    state = _state(context)
    _close_block(state)
    state.update(chain=chain_id, step=max(impact.position - 1, 1))
    await show_overview(update, context, chain_id, toast=_(texts.REMOVED_TOAST))


# --- Commands and buttons -----------------------------------------------------------


@private_only
@requires(Role.ADMIN)
async def new_command(update: Update, context: Context) -> None:
    state = _state(context)
    if unsaved(state):
        await _ask_to_leave(update, context, Action.NEW_CHAIN.value)
        return
    name = " ".join(context.args or []).strip()
    if name:
        await _create_chain(update, context, name)
        return
    await _ask_chain_name(update, context)


async def cancel_command(update: Update, context: Context) -> None:
    state = (context.user_data or {}).get(EDITOR)
    if not state:
        await show(update, _(texts.NOTHING_TO_CANCEL))
        return
    if unsaved(state):
        await _ask_to_leave(update, context, "/cancel")
        return
    if _holdout_open(state):
        # Nothing unsaved: back to the chain's map.
        _close_block(state)
        await show_overview(update, context, state["chain"])
        return
    if state.pop("input", None) and state.get("chain"):
        await _back_to_place(update, context, toast=None)
        return
    state.clear()
    await show(update, _(texts.EDITOR_CLOSED))


async def _back_to_place(update: Update, context: Context, *, toast: str | None) -> None:
    state = _state(context)
    if state.get("block"):
        await show_block(update, context, toast=toast)
    elif state.get("step"):
        await show_step(update, context, state["chain"], state["step"], toast=toast)
    else:
        await show_overview(update, context, state["chain"], toast=toast)


@requires(Role.ADMIN)
async def on_button(update: Update, context: Context) -> None:
    data = update.callback_query.data or ""  # type: ignore[union-attr]
    action, args = decode(data)
    state = _state(context)
    match action:
        case Action.LEAVE:
            await on_leave(update, context, args)
        case Action.SAVE_BLOCK:
            await on_save(update, context, impact_seen=_sure(args, 0))
        case Action.DISCARD_BLOCK:
            if not state.get("block"):
                await _nothing_open(update, context)
                return
            holdout = _holdout_open(state)
            _close_block(state)
            if holdout:
                await show_overview(update, context, state["chain"], toast=_(texts.DISCARDED_TOAST))
                return
            await _show_step_after(update, context, state, _(texts.DISCARDED_TOAST))
        case Action.EDIT_OP:
            await _edit(update, context, args)
        case Action.CONFIRM_ACTIVATE:
            await _activate(update, context, int_arg(args, 0))
        case Action.PREVIEW | Action.TEST_SEND:
            await preview.on_button(update, context, Action(action), args)
        case Action.STEP_NAME:
            await _add_step(
                update, context, int_arg(args, 0), texts.default_step_name(int_arg(args, 1, 2))
            )
        case _:
            await navigate(update, context, data)


async def _ask_chain_name(update: Update, context: Context) -> None:
    state = _state(context)
    state.clear()
    state["input"] = "chain_name"
    await _screen(update, context, _(texts.ASK_CHAIN_NAME))


async def _create_chain(update: Update, context: Context, name: str) -> None:
    try:
        chain_id = await create_chain(context.deps.db, name, actor=context.actor)
    except InvalidBlock as refused:
        # Still waiting for the name: asked again, with what was wrong.
        await _screen(
            update,
            context,
            texts.name_refused(name, refused.problems) + "\n\n" + texts.ASK_CHAIN_NAME,
        )
        return
    state = _state(context)
    state.clear()
    state.update(chain=chain_id)
    await _ask_new_step_name(update, context, chain_id)


async def _ask_new_step_name(update: Update, context: Context, chain_id: int) -> None:
    chain = await get_chain(context.deps.db, chain_id)
    state = _state(context)
    _close_block(state)
    position = len(chain.steps) + 1
    state.update(chain=chain_id, input="step_name")
    await _screen(
        update,
        context,
        texts.ask_step_name(chain, position),
        keyboards.default_step_name(chain_id, position),
    )


async def _add_step(update: Update, context: Context, chain_id: int, name: str) -> None:
    try:
        step = await add_step(context.deps.db, chain_id, name, actor=context.actor)
    except InvalidBlock as refused:
        chain = await get_chain(context.deps.db, chain_id)
        position = len(chain.steps) + 1
        await _screen(
            update,
            context,
            texts.name_refused(name, refused.problems)
            + "\n\n"
            + texts.ask_step_name(chain, position),
            keyboards.default_step_name(chain_id, position),
        )
        return
    state = _state(context)
    state.pop("input", None)
    await show_step(update, context, chain_id, step.position, toast=_(texts.STEP_ADDED_TOAST))


async def _ask_rename(update: Update, context: Context, chain_id: int, position: int) -> None:
    state = _state(context)
    state.update(chain=chain_id, input="step_rename" if position else "chain_rename")
    if position:
        state["step"] = position
    await _screen(
        update, context, _(texts.ASK_NEW_NAME), keyboards.cancel_input(chain_id, position)
    )


async def _toggle_enrollment(update: Update, context: Context, chain_id: int) -> None:
    chain = await get_chain(context.deps.db, chain_id)
    other = Enrollment.CONTINUOUS if chain.enrollment is Enrollment.ONCE else Enrollment.ONCE
    await set_enrollment(context.deps.db, chain_id, other, actor=context.actor)
    await show_overview(update, context, chain_id, toast=texts.enrollment_toast(other))


async def _copy(update: Update, context: Context, chain_id: int) -> None:
    copy_id = await copy_chain(context.deps.db, chain_id, actor=context.actor)
    _state(context).clear()
    await show_overview(update, context, copy_id, toast=_(texts.COPIED_TOAST))


async def _forecast(update: Update, context: Context, chain_id: int) -> None:
    chain = await get_chain(context.deps.db, chain_id)
    problems = [step for step in chain.steps if step.missing]
    if not chain.steps or chain.status is not ChainStatus.DRAFT or problems:
        await show(
            update,
            texts.cannot_activate(chain, problems),
            keyboards.back_to_chain(chain_id),
        )
        return
    forecast = await forecast_activation(
        context.deps.db, chain, now=_now(), caps=context.deps.frequency_caps
    )
    messages = context.deps.messages
    channels = {forecast.channel, *forecast.later_channels} & messages.to_outbox
    text = texts.forecast(chain, forecast) + texts.outbox_notice(channels)
    await show(update, text, keyboards.confirm_activation(chain_id, forecast))


async def _activate(update: Update, context: Context, chain_id: int) -> None:
    activation = await activate_chain(context.deps.db, chain_id, actor=context.actor)
    chain = await get_chain(context.deps.db, chain_id)
    state = _state(context)
    state.clear()
    query = update.callback_query
    await show(update, texts.activated(chain, activation.enrolled), toast=_(texts.ACTIVATED_TOAST))
    if query is not None and query.message is not None:
        progress.watch(
            context.application,
            step_id=chain.steps[0].id,
            chain_id=chain_id,
            chat_id=query.message.chat.id,
            message_id=query.message.message_id,
        )


# --- The holdout: a chain-level block ---------------------------------------------------


async def open_holdout(update: Update, context: Context, chain_id: int) -> None:
    """The holdout's block with its saved share as the draft; for a chain that is no
    longer a draft (an older button), the reason it cannot change, and the way back."""
    chain = await get_chain(context.deps.db, chain_id)
    state = _state(context)
    if chain.status is not ChainStatus.DRAFT:
        refusal = ChainmailError(HOLDOUT_FIXED, id=chain.id, percent=chain.holdout_percent)
        await _screen(
            update,
            context,
            texts.refused(refusal.translated()),
            keyboards.back_to_chain(chain_id),
        )
        return
    if not (_holdout_open(state) and state.get("chain") == chain_id):
        _close_block(state)
        saved = {"holdout_percent": chain.holdout_percent}
        state.update(chain=chain_id, block=HOLDOUT, saved=saved, draft=dict(saved), input=HOLDOUT)
    await show_holdout(update, context, chain=chain)


async def show_holdout(
    update: Update,
    context: Context,
    *,
    note: str | None = None,
    toast: str | None = None,
    chain: ChainView | None = None,
) -> None:
    state = _state(context)
    if chain is None:
        chain = await get_chain(context.deps.db, state["chain"])
    state["input"] = HOLDOUT
    draft = int(state["draft"]["holdout_percent"])
    await _screen(
        update,
        context,
        texts.holdout_screen(chain, draft, unsaved=unsaved(state), note=note),
        keyboards.holdout(chain.id, draft),
        toast=toast,
    )


async def _save_holdout(update: Update, context: Context) -> None:
    """Save the draft share; a refusal (the chain was activated meanwhile) is shown under
    it, still unsaved. Then the map, or where the leave question led."""
    state = _state(context)
    chain_id = state["chain"]
    try:
        await set_holdout(
            context.deps.db, chain_id, state["draft"]["holdout_percent"], actor=context.actor
        )
    except ChainmailError as refused:
        state.pop("pending", None)
        await show_holdout(update, context, note=texts.esc(refused.translated()))
        return
    # Saving closes the block, and with it the leave question's destination.
    pending = state.pop("pending", None)
    _close_block(state)
    if pending is not None:
        await _settle_left_screen(update, context, None, saved=True)
        await _go(update, context, pending)
        return
    await show_overview(update, context, chain_id, toast=_(texts.HOLDOUT_SAVED_TOAST))


def _typed_share(text: str) -> int | None:
    """A share typed as `10`, `10%` or `10 %`: a whole number 0–50, else None."""
    digits = text.strip().removesuffix("%").strip()
    if not digits.isascii() or not digits.isdigit():
        return None
    share = int(digits)
    return share if share <= MAX_HOLDOUT else None


async def _typed_holdout(update: Update, context: Context, state: State, text: str) -> None:
    if not _holdout_open(state):
        await on_unknown_message(update, context)
        return
    share = _typed_share(text)
    if share is None:
        # Still waiting for a share: asked again, the draft as it was.
        await show_holdout(update, context, note=texts.not_a_holdout(text))
        return
    state["draft"] = {"holdout_percent": share}
    await show_holdout(update, context)


# --- Editing a draft ------------------------------------------------------------------


async def _edit(update: Update, context: Context, args: list[str]) -> None:
    state = _state(context)
    if _holdout_open(state) and args and args[0] == "hp":
        share = int_arg(args, 1, -1)
        if 0 <= share <= MAX_HOLDOUT:
            state["draft"] = {"holdout_percent": share}
        await show_holdout(update, context)
        return
    kind = _block(state)
    if kind is None or not args:
        await show(update, _(texts.STALE_BUTTON))
        return
    op, rest = args[0], args[1:]
    draft: dict[str, Any] = state["draft"]
    note: str | None = None
    if op == "in":
        state["input"] = rest[0] if rest else None
    elif op == "nop":
        await update.callback_query.answer()  # type: ignore[union-attr]
        return
    elif kind is BlockKind.AUDIENCE:
        _edit_audience(state, draft, op, rest)
    elif kind is BlockKind.ACTION:
        _edit_action(state, draft, op)
    elif kind is BlockKind.SCHEDULE:
        note = _edit_schedule(context, state, draft, op, rest)
    elif kind is BlockKind.CONVERSION:
        note = _edit_conversion(draft, op, rest)
    await show_block(update, context, note=note)


def _toggle(items: list[Any], item: Any) -> None:
    if item in items:
        items.remove(item)
    else:
        items.append(item)


def _edit_conversion(draft: dict[str, Any], op: str, rest: list[str]) -> str | None:
    if op == "win":
        draft["window_days"] = int_arg(rest, 0, 7)
    elif op == "mech":
        index = int_arg(rest, 0, -1)
        if 0 <= index < len(MECHANICS):
            chosen = mechanics_of(draft)
            _toggle(chosen, MECHANICS[index])
            if not chosen:
                return _(texts.ONE_MECHANIC_AT_LEAST)
            # The default is no list, as a block saved before mechanics existed.
            draft.pop("mechanics", None)
            if tuple(chosen) != DEFAULT_MECHANICS:
                draft["mechanics"] = [m.value for m in Mechanic if m in chosen]
    return None


def _edit_audience(state: State, draft: dict[str, Any], op: str, rest: list[str]) -> None:
    if op == "seg":
        choices = state.get("choices") or []
        index = int_arg(rest, 0, -1)
        if 0 <= index < len(choices):
            segments = draft.setdefault("segments", [])
            _toggle(segments, choices[index])
    elif op == "segp":
        state["page"] = int_arg(rest, 0)
    elif op == "all":
        draft.clear()
        draft["who"] = "all"
    elif op == "terms":
        kept = draft.get("terms") or []
        match = draft.get("match", Match.ANY.value)
        draft.clear()
        draft.update(who="terms", match=match, terms=kept)
    elif op == "term":
        index = int_arg(rest, 0, -1)
        if 0 <= index < len(TERMS):
            _toggle(draft.setdefault("terms", []), TERMS[index].value)
    elif op == "match":
        draft["match"] = (
            Match.ALL.value if draft.get("match") == Match.ANY.value else Match.ANY.value
        )


def _edit_action(state: State, draft: dict[str, Any], op: str) -> None:
    if op == "sms" and draft.get("channel") != Channel.SMS:
        state["stash"] = {key: draft[key] for key in ("subject", "html") if key in draft}
        text = draft.get("text")
        draft.clear()
        draft["channel"] = Channel.SMS.value
        if text is not None:
            draft["text"] = text
    elif op == "email" and draft.get("channel") != Channel.EMAIL:
        draft["channel"] = Channel.EMAIL.value
        draft.update(state.pop("stash", {}))
    elif op == "nohtml":
        draft.pop("html", None)


def _edit_schedule(
    context: Context, state: State, draft: dict[str, Any], op: str, rest: list[str]
) -> str | None:
    wait = draft.get("wait_days")
    if op == "send" and rest:
        draft.clear()
        draft["send"] = rest[0]
        if wait is not None:
            draft["wait_days"] = wait
        if rest[0] == Send.AFTER:
            state["input"] = "after"
        elif rest[0] == Send.AT:
            state["input"] = "at"
            state["picker"] = {"month": _today(context).strftime("%Y-%m")}
    elif op == "after" and rest:
        draft.clear()
        draft.update(send=Send.AFTER.value, after=rest[0])
        if wait is not None:
            draft["wait_days"] = wait
        state.pop("input", None)
    elif op == "cal" and rest:
        state.setdefault("picker", {})["month"] = rest[0]
    elif op == "day" and rest:
        state.setdefault("picker", {})["day"] = rest[0]
    elif op == "hour" and rest:
        state.setdefault("picker", {})["hour"] = int_arg(rest, 0)
    elif op == "min" and rest:
        picker = state.setdefault("picker", {})
        try:
            day = date.fromisoformat(picker.get("day", ""))
        except ValueError:
            return _(texts.PICK_A_DAY)
        moment = datetime(day.year, day.month, day.day, picker.get("hour", 10), int_arg(rest, 0))
        return _set_moment(context, state, draft, moment)
    return None


def _set_moment(
    context: Context, state: State, draft: dict[str, Any], moment: datetime
) -> str | None:
    """The moment into the draft, or why not (it has passed in the shop's zone)."""
    if moment <= _today(context):
        return texts.moment_passed(moment, context.deps.default_timezone)
    wait = draft.get("wait_days")
    draft.clear()
    draft.update(send=Send.AT.value, at=moment.strftime("%Y-%m-%d %H:%M"))
    if wait is not None:
        draft["wait_days"] = wait
    state.pop("input", None)
    state.pop("picker", None)
    return None


# --- Typed input ----------------------------------------------------------------------


async def on_text(update: Update, context: Context) -> None:
    state: State = (context.user_data or {}).get(EDITOR) or {}
    expected = state.get("input")
    handler = INPUTS.get(expected or "")
    if handler is None or not _can_edit(context):
        await on_unknown_message(update, context)
        return
    await handler(update, context, state, (update.message.text or "").strip())  # type: ignore[union-attr]


async def on_document(update: Update, context: Context) -> None:
    """An .html file while the editor waits for an email's HTML; anything else as text would be."""
    state: State = (context.user_data or {}).get(EDITOR) or {}
    document = update.message.document  # type: ignore[union-attr]
    if state.get("input") != "html" or document is None or not _can_edit(context):
        await on_unknown_message(update, context)
        return
    name = (document.file_name or "").lower()
    if document.mime_type not in HTML_TYPES and not name.endswith((".html", ".htm")):
        await show_block(update, context, note=_(texts.NOT_HTML))
        return
    if (document.file_size or 0) > FileSizeLimit.FILESIZE_DOWNLOAD:
        await show_block(update, context, note=_(texts.NOT_HTML))
        return
    data = await (await document.get_file()).download_as_bytearray()
    try:
        html = bytes(data).decode("utf-8-sig")
    except UnicodeDecodeError:
        await show_block(update, context, note=texts.HTML_NOT_UTF8)
        return
    await _typed_field(update, context, state, html)


async def _typed_chain_name(update: Update, context: Context, state: State, text: str) -> None:
    await _create_chain(update, context, text)


async def _typed_step_name(update: Update, context: Context, state: State, text: str) -> None:
    await _add_step(update, context, state["chain"], text)


async def _typed_rename(update: Update, context: Context, state: State, text: str) -> None:
    chain_id = state["chain"]
    step = state["input"] == "step_rename"
    try:
        if step:
            await rename_step(context.deps.db, chain_id, state["step"], text, actor=context.actor)
        else:
            await rename_chain(context.deps.db, chain_id, text, actor=context.actor)
    except InvalidBlock as refused:
        # Still waiting for the new name.
        await _screen(
            update,
            context,
            texts.name_refused(text, refused.problems),
            keyboards.cancel_input(chain_id, state["step"] if step else 0),
        )
        return
    state.pop("input")
    if step:
        await show_step(update, context, chain_id, state["step"], toast=_(texts.RENAMED_TOAST))
    else:
        await show_overview(update, context, chain_id, toast=_(texts.RENAMED_TOAST))


async def _typed_field(update: Update, context: Context, state: State, text: str) -> None:
    """Subject, text or HTML of the message being edited."""
    field = state.pop("input")
    if _block(state) is not BlockKind.ACTION:
        await show_block(update, context)
        return
    state["draft"]["text" if field == "sms" else field] = text
    await show_block(update, context)


async def _typed_after(update: Update, context: Context, state: State, text: str) -> None:
    try:
        delay = when.parse_delay_typed(text)
    except InvalidValue as exc:
        await show_block(update, context, note=texts.not_understood(text, exc.translated()))
        return
    draft = state["draft"]
    wait = draft.get("wait_days")
    draft.clear()
    draft.update(send=Send.AFTER.value, after=delay)
    if wait is not None:
        draft["wait_days"] = wait
    state.pop("input", None)
    await show_block(update, context)


async def _typed_at(update: Update, context: Context, state: State, text: str) -> None:
    try:
        moment = when.parse_moment_typed(text, _today(context).date())
    except when.NotUnderstood as exc:
        await show_block(update, context, note=texts.not_understood(text, str(exc)))
        return
    note = _set_moment(context, state, state["draft"], moment)
    await show_block(update, context, note=note)


def _whole_days(text: str) -> int | None:
    try:
        days = int(text.strip().split()[0])
    except (ValueError, IndexError):
        return None
    return days if 1 <= days <= MAX_DAYS else None


async def _typed_days(update: Update, context: Context, state: State, text: str) -> None:
    days = _whole_days(text)
    if days is None:
        await show_block(update, context, note=texts.not_days(text, MAX_DAYS))
        return
    key = state.pop("input")
    state["draft"]["wait_days" if key == "wait" else "window_days"] = days
    await show_block(update, context)


async def _typed_amount(update: Update, context: Context, state: State, text: str) -> None:
    try:
        amount = parse_amount(text)
    except NotAnAmount as refused:
        # Still waiting for the amount: the block says what is wrong and asks again.
        await show_block(update, context, note=texts.not_amount(text, refused.problem))
        return
    state.pop("input")
    whole = amount == amount.to_integral_value()
    state["draft"]["min_amount"] = int(amount) if whole else float(amount)
    await show_block(update, context)


INPUTS: dict[str, Input] = {
    "chain_name": _typed_chain_name,
    "step_name": _typed_step_name,
    "step_rename": _typed_rename,
    "chain_rename": _typed_rename,
    "subject": _typed_field,
    "text": _typed_field,
    "html": _typed_field,
    "sms": _typed_field,
    "after": _typed_after,
    "at": _typed_at,
    "wait": _typed_days,
    "window": _typed_days,
    "amount": _typed_amount,
    HOLDOUT: _typed_holdout,
    **preview.INPUTS,
}
