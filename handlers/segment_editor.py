"""The segment editor: make, change and delete audiences from a phone (SPEC §2 "Segment").

Reached from the Segments menu: the list opens a segment's card (its conditions and
how many customers it finds now), where admins find ✏️ Edit and 🗑 Delete, and
➕ New segment under the list. A draft is the segment's definition document
(models/segment_rules.py) in `user_data["segment_editor"]`, saved in the database
after every update like the chain editor's (handlers/persistence.py); each change
shows the live count of the draft, and only 💾 Save stores it (`create_segment` /
`update_segment`, audited with the admin's id). Leaving an unsaved draft (any other
button, a command) asks Save / Discard / Keep editing first: `guard`, handler group
-2, which also takes the text the editor waits for (a name, a value, a number of
days) before the chain editor's text input sees it.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from telegram import InlineKeyboardMarkup, Update
from telegram.constants import ChatType
from telegram.ext import Application, ApplicationHandlerStop, CallbackQueryHandler, TypeHandler

from handlers import Context, Data, keyboards, screen, show, texts
from handlers.access import allowed, private_only, requires
from handlers.callbacks import SEGMENT_EDITOR_ACTIONS, Action, decode, int_arg, pattern
from i18n import _
from models.chains import known_attribute_keys
from models.errors import ChainmailError
from models.segment_rules import (
    WITH_DAYS,
    Behaviour,
    InvalidSegment,
    Operator,
    parse_attribute,
    parse_days,
    parse_definition,
)
from models.segments import (
    chains_using,
    count_members,
    create_segment,
    delete_segment,
    is_segment_name,
    list_segments,
    recent_tags,
    segment_by_id,
    update_segment,
)
from models.tables import Role

EDITOR = "segment_editor"
GUARD_GROUP = -2
# Choices offered are read off the newest customers, so a screen never scans them all.
CHOICES_FROM_LATEST = 10_000
CHOICES_SHOWN = 30

State = dict[str, Any]


def install(application: Application) -> None:  # type: ignore[type-arg]
    """Before `commands.install`, whose catch-all would take the editor's buttons."""
    application.add_handler(TypeHandler(Update, guard), group=GUARD_GROUP)
    application.add_handlers(
        [
            CallbackQueryHandler(on_list, pattern(Action.SEGMENTS)),
            CallbackQueryHandler(on_card, pattern(Action.SEGMENT)),
            CallbackQueryHandler(on_button, f"^({'|'.join(SEGMENT_EDITOR_ACTIONS)})(:|$)"),
        ]
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _state(context: Context) -> State:
    user_data: Data = context.user_data  # type: ignore[assignment]
    return user_data.setdefault(EDITOR, {})


def unsaved(state: State) -> bool:
    return state.get("draft") is not None and state.get("draft") != state.get("saved")


def _empty() -> dict[str, Any]:
    return {"tags": [], "match": "any", "attributes": [], "behaviour": []}


async def _screen(
    update: Update,
    context: Context,
    text: str,
    markup: InlineKeyboardMarkup | None = None,
    *,
    toast: str | None = None,
) -> None:
    await screen(update, context, _state(context), text, markup, toast=toast)


# --- Looking ----------------------------------------------------------------------------


async def on_list(update: Update, context: Context) -> None:
    args = decode(update.callback_query.data or "")[1]  # type: ignore[union-attr]
    await show_list(update, context, int_arg(args, 0), toast=None)


async def show_list(update: Update, context: Context, page: int, *, toast: str | None) -> None:
    segments = await list_segments(context.deps.db)
    can_edit = _may_edit(update, context)
    if not segments:
        empty = keyboards.paginate(segments, 0, keyboards.SEGMENTS_PER_PAGE)
        await show(update, _(texts.NO_SEGMENTS), keyboards.segments(empty, can_edit), toast=toast)
        return
    shown = keyboards.paginate(segments, page, keyboards.SEGMENTS_PER_PAGE)
    await show(
        update,
        texts.segment_list(shown.items, shown.number, shown.count),
        keyboards.segments(shown, can_edit),
        toast=toast,
    )


def _may_edit(update: Update, context: Context) -> bool:
    """Admins, in their private chat, where the editor can wait for typed input."""
    chat = update.effective_chat
    return allowed(context.role, Role.ADMIN) and chat is not None and chat.type == ChatType.PRIVATE


async def on_card(update: Update, context: Context) -> None:
    args = decode(update.callback_query.data or "")[1]  # type: ignore[union-attr]
    await _show_card(update, context, int_arg(args, 0))


async def _show_card(
    update: Update, context: Context, segment_id: int, *, toast: str | None = None
) -> None:
    db = context.deps.db
    segment = await segment_by_id(db, segment_id)
    if segment is None:
        await show_list(update, context, 0, toast=_(texts.STALE_BUTTON))
        return
    count = await count_members(db, segment, now=_now())
    async with db.session() as session:
        used_by = await chains_using(session, segment.name)
    await show(
        update,
        texts.segment_card(segment.name, segment.definition.to_json(), count, used_by),
        keyboards.segment_card(segment.id, _may_edit(update, context)),
        toast=toast,
    )


# --- The draft --------------------------------------------------------------------------


async def show_draft(
    update: Update,
    context: Context,
    *,
    problems: list[str] | None = None,
    question: str | None = None,
    markup: InlineKeyboardMarkup | None = None,
    toast: str | None = None,
) -> None:
    """The draft with its live count; `question` and `markup`: a step of adding a condition."""
    state = _state(context)
    draft = state["draft"]
    count = await count_members(context.deps.db, parse_definition(draft), now=_now())
    text = texts.segment_draft(
        state["name"],
        state.get("id") is None,
        draft,
        count,
        unsaved=unsaved(state),
        problems=problems or [],
        question=question,
    )
    await _screen(update, context, text, markup or keyboards.segment_draft(draft), toast=toast)


async def _open(update: Update, context: Context, segment_id: int) -> None:
    segment = await segment_by_id(context.deps.db, segment_id)
    if segment is None:
        await show_list(update, context, 0, toast=_(texts.STALE_BUTTON))
        return
    saved = segment.definition.to_json()
    state = _state(context)
    state.clear()
    state.update(id=segment.id, name=segment.name, saved=saved, draft=copy.deepcopy(saved))
    await show_draft(update, context)


async def _ask_name(update: Update, context: Context) -> None:
    state = _state(context)
    state.clear()
    state["input"] = "name"
    await _screen(update, context, _(texts.ASK_SEGMENT_NAME))


async def _edit(update: Update, context: Context, args: list[str]) -> None:
    state = _state(context)
    if state.get("draft") is None or not args:
        await show(update, _(texts.STALE_BUTTON))
        return
    op, rest = args[0], args[1:]
    draft: dict[str, Any] = state["draft"]
    state.pop("input", None)
    match op:
        case "tags" | "tag" | "match":
            if op == "tags":
                chosen = list(draft.get("tags") or [])
                recent = await recent_tags(context.deps.db, CHOICES_FROM_LATEST)
                state["choices"] = (chosen + [t for t in recent if t not in chosen])[:CHOICES_SHOWN]
            elif op == "tag":
                _toggle_tag(state, draft, int_arg(rest, 0, -1))
            else:
                draft["match"] = "all" if draft.get("match") == "any" else "any"
            await _tags_screen(update, context)
        case "attr":
            async with context.deps.db.session() as session:
                keys = await known_attribute_keys(session, latest=CHOICES_FROM_LATEST)
            state["choices"] = sorted(keys)[:CHOICES_SHOWN]
            question = _(texts.PICK_ATTRIBUTE_KEY) if keys else _(texts.NO_ATTRIBUTE_KEYS)
            await show_draft(
                update, context, question=question, markup=keyboards.segment_keys(state["choices"])
            )
        case "key":
            choices = state.get("choices") or []
            index = int_arg(rest, 0, -1)
            if not 0 <= index < len(choices):
                await show_draft(update, context)
                return
            await _pick_operator(update, context, choices[index])
        case "op" if rest and rest[0] in set(Operator) and state.get("key"):
            state.update(operator=rest[0], input="value")
            question = texts.ask_attribute_value(state["key"], rest[0])
            await show_draft(update, context, question=question, markup=keyboards.segment_back())
        case "beh":
            await show_draft(
                update,
                context,
                question=_(texts.PICK_BEHAVIOUR),
                markup=keyboards.segment_behaviours(),
            )
        case "kind" if rest and rest[0] in set(Behaviour):
            kind = Behaviour(rest[0])
            if kind in WITH_DAYS:
                state["behaviour"] = kind.value
                await show_draft(
                    update,
                    context,
                    question=_(texts.ASK_SEGMENT_DAYS),
                    markup=keyboards.segment_days(),
                )
                return
            _add(draft, "behaviour", {"behaviour": kind.value})
            await show_draft(update, context)
        case "days" if state.get("behaviour"):
            await _add_days(update, context, rest[0] if rest else "")
        case "rma" | "rmb":
            items = draft.get("attributes" if op == "rma" else "behaviour") or []
            index = int_arg(rest, 0, -1)
            if 0 <= index < len(items):
                items.pop(index)
            await show_draft(update, context)
        case "in" if rest and rest[0] in ("tag", "key", "days"):
            await _ask(update, context, rest[0])
        case _:
            await show_draft(update, context)


def _toggle_tag(state: State, draft: dict[str, Any], index: int) -> None:
    choices = state.get("choices") or []
    if not 0 <= index < len(choices):
        return
    tags = draft.setdefault("tags", [])
    if choices[index] in tags:
        tags.remove(choices[index])
    else:
        tags.append(choices[index])


def _add(draft: dict[str, Any], part: str, item: dict[str, Any]) -> None:
    items = draft.setdefault(part, [])
    if item not in items:
        items.append(item)


async def _tags_screen(update: Update, context: Context) -> None:
    state = _state(context)
    choices = state.get("choices") or []
    await show_draft(
        update,
        context,
        question=_(texts.PICK_SEGMENT_TAGS) if choices else _(texts.NO_TAGS_TO_PICK),
        markup=keyboards.segment_tags(choices, state["draft"]),
    )


async def _pick_operator(update: Update, context: Context, key: str) -> None:
    _state(context)["key"] = key
    await show_draft(
        update, context, question=texts.pick_operator(key), markup=keyboards.segment_operators()
    )


async def _ask(update: Update, context: Context, field: str) -> None:
    state = _state(context)
    state["input"] = field
    questions = {
        "tag": _(texts.ASK_SEGMENT_TAG),
        "key": _(texts.ASK_ATTRIBUTE_KEY),
        "days": _(texts.ASK_SEGMENT_DAYS),
    }
    await show_draft(update, context, question=questions[field], markup=keyboards.segment_back())


async def _add_days(update: Update, context: Context, typed: str) -> None:
    state = _state(context)
    try:
        days = parse_days(typed)
    except InvalidSegment as refused:
        state["input"] = "days"
        await show_draft(
            update,
            context,
            problems=refused.translated_problems(),
            question=_(texts.ASK_SEGMENT_DAYS),
            markup=keyboards.segment_days(),
        )
        return
    _add(state["draft"], "behaviour", {"behaviour": state.pop("behaviour"), "days": days})
    await show_draft(update, context)


# --- Typed input --------------------------------------------------------------------------


async def _typed(update: Update, context: Context, text: str) -> None:
    state = _state(context)
    field = state.pop("input")
    if field == "name":
        if not is_segment_name(text):
            state["input"] = "name"
            await _screen(update, context, texts.not_a_segment_name(text))
            return
        if text in {segment.name for segment in await list_segments(context.deps.db)}:
            state["input"] = "name"
            await _screen(update, context, texts.segment_name_taken(text))
            return
        state.update(id=None, name=text, saved=None, draft=_empty())
        await show_draft(update, context)
    elif field == "tag":
        _add(state["draft"], "tags", text)
        try:
            parse_definition(state["draft"])
        except InvalidSegment as refused:
            state["draft"]["tags"].remove(text)
            await show_draft(update, context, problems=refused.translated_problems())
            return
        await show_draft(update, context)
    elif field == "key":
        await _pick_operator(update, context, text)
    elif field == "value":
        try:
            condition = parse_attribute(state.get("key"), state.get("operator"), text)
        except InvalidSegment as refused:
            state["input"] = "value"
            question = texts.ask_attribute_value(state["key"], state["operator"])
            await show_draft(
                update,
                context,
                problems=refused.translated_problems(),
                question=question,
                markup=keyboards.segment_back(),
            )
            return
        _add(state["draft"], "attributes", condition.to_json())
        await show_draft(update, context)
    elif field == "days":
        await _add_days(update, context, text)


# --- Save, Discard, Delete, and leaving ---------------------------------------------------


async def _save(update: Update, context: Context) -> bool:
    """Save the draft; False if refused, the draft shown again with the reason."""
    state = _state(context)
    db = context.deps.db
    try:
        definition = parse_definition(state["draft"])
        if state.get("id") is None:
            segment = await create_segment(db, state["name"], definition, actor=context.actor)
        else:
            segment = await update_segment(db, state["name"], definition, actor=context.actor)
    except InvalidSegment as refused:
        await show_draft(update, context, problems=refused.translated_problems())
        return False
    except ChainmailError as refused:
        await show_draft(update, context, problems=[refused.translated()])
        return False
    state.clear()
    state["last"] = segment.id
    return True


async def _after_editing(update: Update, context: Context, *, toast: str) -> None:
    """The saved segment's card, or the list when there is none (a new one discarded)."""
    state = _state(context)
    last = state.pop("last", None) or state.get("id")
    context.user_data.pop(EDITOR, None)  # type: ignore[union-attr]
    if last is None:
        await show_list(update, context, 0, toast=toast)
    else:
        await _show_card(update, context, last, toast=toast)


async def _delete(update: Update, context: Context, segment_id: int, *, sure: bool) -> None:
    db = context.deps.db
    segment = await segment_by_id(db, segment_id)
    if segment is None:
        await show_list(update, context, 0, toast=_(texts.STALE_BUTTON))
        return
    if not sure:
        await show(
            update,
            texts.segment_delete_question(segment.name),
            keyboards.segment_delete_question(segment.id),
        )
        return
    await delete_segment(db, segment.name, actor=context.actor)
    context.user_data.pop(EDITOR, None)  # type: ignore[union-attr]
    await show_list(update, context, 0, toast=_(texts.SEGMENT_DELETED_TOAST))


async def _ask_to_leave(update: Update, context: Context, pending: str) -> None:
    state = _state(context)
    state["pending"] = pending
    await _screen(
        update,
        context,
        texts.segment_leave_question(state["name"]),
        keyboards.segment_leave_question(),
    )


async def _on_leave(update: Update, context: Context, answer: str) -> None:
    state = _state(context)
    pending = state.pop("pending", None)
    if answer == "keep" or pending is None:
        await show_draft(update, context)
        return
    if answer == "save" and not await _save(update, context):
        return
    context.user_data.pop(EDITOR, None)  # type: ignore[union-attr]
    if pending.startswith("/"):
        command = pending.split()[0]
        text = _(texts.SEGMENT_EDITOR_CLOSED) if command == "/cancel" else texts.carry_on(command)
        await _screen(update, context, text)
        return
    action, args = decode(pending)
    if action in SEGMENT_EDITOR_ACTIONS or action == Action.SEGMENT:
        await _go(update, context, action, args)
    elif action == Action.SEGMENTS:
        await show_list(update, context, int_arg(args, 0), toast=None)
    else:
        # Another screen, pressed with the draft unsaved: it cannot be rebuilt from
        # here, so the menu leads on.
        await show(update, texts.MENU, keyboards.main_menu(allowed(context.role, Role.ADMIN)))


@requires(Role.ADMIN)
@private_only
async def on_button(update: Update, context: Context) -> None:
    action, args = decode(update.callback_query.data or "")  # type: ignore[union-attr]
    await _go(update, context, action, args)


async def _go(update: Update, context: Context, action: str, args: list[str]) -> None:
    state = _state(context)
    match action:
        case Action.SEGMENT:
            await _show_card(update, context, int_arg(args, 0))
        case Action.NEW_SEGMENT:
            await _ask_name(update, context)
        case Action.EDIT_SEGMENT:
            await _open(update, context, int_arg(args, 0))
        case Action.SEGMENT_OP:
            await _edit(update, context, args)
        case Action.SAVE_SEGMENT if state.get("draft") is not None:
            if await _save(update, context):
                await _after_editing(update, context, toast=_(texts.SEGMENT_SAVED_TOAST))
        case Action.DISCARD_SEGMENT if state.get("draft") is not None:
            await _after_editing(update, context, toast=texts.DISCARDED_TOAST)
        case Action.DELETE_SEGMENT:
            sure = len(args) == 2 and args[1] == "ok"
            await _delete(update, context, int_arg(args, 0), sure=sure)
        case Action.LEAVE_SEGMENT if state.get("draft") is not None:
            await _on_leave(update, context, args[0] if args else "keep")
        case _:
            await show(update, _(texts.STALE_BUTTON))


# --- The guard --------------------------------------------------------------------------


def _stays(action: str, args: list[str], state: State) -> bool:
    """Whether a button keeps to the open draft rather than leaving it."""
    if action in (Action.SEGMENT_OP, Action.SAVE_SEGMENT, Action.DISCARD_SEGMENT):
        return True
    return action == Action.LEAVE_SEGMENT and state.get("pending") is not None


async def guard(update: Update, context: Context) -> None:
    """Group -2, after the access gate: typed input the editor waits for goes to it; a
    button or a command that would leave an unsaved draft gets the question first."""
    chat = update.effective_chat
    if chat is None or chat.type != ChatType.PRIVATE or not context.user_data:
        return
    state: State | None = context.user_data.get(EDITOR)
    if not state:
        return
    query = update.callback_query
    message = update.message
    if query is not None:
        action, args = decode(query.data or "")
        if _stays(action, args, state):
            return
        state.pop("input", None)
        if unsaved(state):
            await _ask_to_leave(update, context, query.data or Action.MENU.value)
            raise ApplicationHandlerStop
        if action not in SEGMENT_EDITOR_ACTIONS:
            context.user_data.pop(EDITOR, None)
        return
    if message is None or message.text is None:
        return
    text = message.text.strip()
    if text.startswith("/"):
        command = text.split()[0].split("@")[0]
        state.pop("input", None)
        if unsaved(state):
            await _ask_to_leave(update, context, command)
            raise ApplicationHandlerStop
        context.user_data.pop(EDITOR, None)
        if command == "/cancel":
            await show(update, _(texts.SEGMENT_EDITOR_CLOSED))
            raise ApplicationHandlerStop
        return
    if state.get("input") and allowed(context.role, Role.ADMIN):
        await _typed(update, context, text)
        raise ApplicationHandlerStop
