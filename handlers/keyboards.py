"""Inline keyboards, built in one place from `callbacks` data and `texts` labels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Generic, TypeVar

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from handlers import texts, when
from handlers.callbacks import Action, encode
from i18n import _, percent, weekday_names
from models.chainfile import Mechanic, Term, later_only_terms, mechanics_of, terms_for_channel
from models.chains import ChainSummary, ChainView, StepView
from models.segments import SegmentInfo
from models.tables import ChainStatus, Role
from services.editing import StepOptions
from services.forecast import Forecast

T = TypeVar("T")
Row = list[InlineKeyboardButton]

CHAINS_PER_PAGE = 8
SEGMENTS_PER_PAGE = 15


def button(label: str, action: Action, *args: int | str) -> InlineKeyboardButton:
    return InlineKeyboardButton(label, callback_data=encode(action, *args))


def keyboard(*rows: Row) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([row for row in rows if row])


def columns(buttons: Sequence[InlineKeyboardButton], width: int) -> list[Row]:
    return [list(buttons[i : i + width]) for i in range(0, len(buttons), width)]


@dataclass(frozen=True)
class Page(Generic[T]):
    items: Sequence[T]
    number: int  # from 0
    count: int


def paginate(items: Sequence[T], number: int, size: int) -> Page[T]:
    """One page of the items; a page number past the end (the list shrank) shows the last."""
    count = max(1, -(-len(items) // size))
    number = min(max(number, 0), count - 1)
    return Page(items[number * size : (number + 1) * size], number, count)


def pager(page: Page[T], action: Action, *args: int | str) -> Row:
    """◀ ▶ to the neighbouring pages: `<action>:<args…>:<page>`; nothing for a single page."""
    row = []
    if page.number > 0:
        row.append(button(_(texts.BUTTON_PREVIOUS), action, *args, page.number - 1))
    if page.number < page.count - 1:
        row.append(button(_(texts.BUTTON_NEXT), action, *args, page.number + 1))
    return row


def menu_row() -> Row:
    return [button(_(texts.BUTTON_MENU), Action.MENU)]


def main_menu(can_edit: bool = False) -> InlineKeyboardMarkup:
    """New chain only for those who may build one."""
    chains = [button(_(texts.BUTTON_CHAINS), Action.CHAINS, 0)]
    if can_edit:
        chains.append(button(_(texts.BUTTON_NEW_CHAIN), Action.NEW_CHAIN))
    return keyboard(
        chains,
        [
            button(_(texts.BUTTON_CUSTOMERS), Action.CUSTOMERS),
            button(_(texts.BUTTON_SEGMENTS), Action.SEGMENTS, 0),
        ],
        [
            button(_(texts.BUTTON_REPORTS), Action.REPORTS, 0),
            button(_(texts.BUTTON_HELP), Action.HELP),
        ],
    )


def chain_list(page: Page[ChainSummary]) -> InlineKeyboardMarkup:
    chains = [
        button(texts.chain_button(chain), Action.CHAIN, chain.id, page.number)
        for chain in page.items
    ]
    return keyboard(*columns(chains, 1), pager(page, Action.CHAINS), menu_row())


def chain_card(chain: ChainView, role: Role, list_page: int) -> InlineKeyboardMarkup:
    """Pause or Resume as the chain's status allows, for those who may change it."""
    actions = []
    if role is not Role.VIEWER and chain.status is ChainStatus.ACTIVE:
        actions.append(button(_(texts.BUTTON_PAUSE), Action.PAUSE, chain.id))
    if role is not Role.VIEWER and chain.status is ChainStatus.PAUSED:
        actions.append(button(_(texts.BUTTON_RESUME), Action.RESUME, chain.id))
    actions.append(button(_(texts.BUTTON_STATS), Action.STATS, chain.id, 0))
    editing: Row = []
    if role is not Role.VIEWER:
        editing = [
            button(_(texts.BUTTON_EDIT), Action.EDIT_CHAIN, chain.id),
            button(_(texts.BUTTON_COPY), Action.COPY_CHAIN, chain.id),
        ]
    return keyboard(
        actions, editing, [button(_(texts.BUTTON_BACK), Action.CHAINS, list_page), *menu_row()]
    )


def chain_choices(chains: Sequence[ChainSummary], action: Action) -> InlineKeyboardMarkup:
    """One button per chain, pressing it does the action (`stats` shows the first page)."""
    args = (0,) if action is Action.STATS else ()
    return keyboard(
        *([button(texts.chain_button(chain), action, chain.id, *args)] for chain in chains)
    )


def reports(page: Page[ChainSummary]) -> InlineKeyboardMarkup:
    chains = [button(texts.chain_button(chain), Action.STATS, chain.id, 0) for chain in page.items]
    return keyboard(*columns(chains, 1), pager(page, Action.REPORTS), menu_row())


def stats(chain_id: int, page: Page[str]) -> InlineKeyboardMarkup:
    return keyboard(
        pager(page, Action.STATS, chain_id),
        [
            button(_(texts.BUTTON_REFRESH), Action.STATS, chain_id, page.number),
            button(_(texts.BUTTON_BACK), Action.CHAIN, chain_id, 0),
        ],
        [button(_(texts.BUTTON_CHART), Action.CHART, chain_id)],
    )


def segments(page: Page[SegmentInfo], can_edit: bool = False) -> InlineKeyboardMarkup:
    """Each segment opens its card; ➕ New segment for those who may make one."""
    cards = [
        button(f"🎯 {texts.short(segment.name, 40)}", Action.SEGMENT, segment.id)
        for segment in page.items
    ]
    new = [button(_(texts.BUTTON_NEW_SEGMENT), Action.NEW_SEGMENT)] if can_edit else []
    return keyboard(*columns(cards, 2), pager(page, Action.SEGMENTS), new, menu_row())


def segment_card(segment_id: int, can_edit: bool) -> InlineKeyboardMarkup:
    editing: Row = []
    if can_edit:
        editing = [
            button(_(texts.BUTTON_EDIT_SEGMENT), Action.EDIT_SEGMENT, segment_id),
            button(_(texts.BUTTON_DELETE_SEGMENT), Action.DELETE_SEGMENT, segment_id),
        ]
    return keyboard(editing, [button(_(texts.BUTTON_BACK), Action.SEGMENTS, 0), *menu_row()])


def segment_draft(draft: dict[str, Any]) -> InlineKeyboardMarkup:
    """The draft's screen: add conditions, tap one to remove it, Save / Discard."""
    removals = [
        button(f"✖ {n}. {texts.short(item['key'], 20)}", Action.SEGMENT_OP, "rma", index)
        for index, (n, item) in enumerate(enumerate(draft.get("attributes") or [], 1))
    ]
    first = len(removals) + 1
    removals += [
        button(f"✖ {n}.", Action.SEGMENT_OP, "rmb", index)
        for index, n in enumerate(range(first, first + len(draft.get("behaviour") or [])))
    ]
    return keyboard(
        [
            button(_(texts.BUTTON_SEGMENT_TAGS), Action.SEGMENT_OP, "tags"),
            button(_(texts.BUTTON_ADD_ATTRIBUTE), Action.SEGMENT_OP, "attr"),
        ],
        [button(_(texts.BUTTON_ADD_BEHAVIOUR), Action.SEGMENT_OP, "beh")],
        *columns(removals, 4),
        [
            button(_(texts.BUTTON_SAVE), Action.SAVE_SEGMENT),
            button(_(texts.BUTTON_DISCARD), Action.DISCARD_SEGMENT),
        ],
    )


def segment_tags(choices: Sequence[str], draft: dict[str, Any]) -> InlineKeyboardMarkup:
    chosen = set(draft.get("tags") or [])
    tags = [
        button(("✅ " if tag in chosen else "") + texts.short(tag, 30), Action.SEGMENT_OP, "tag", i)
        for i, tag in enumerate(choices)
    ]
    match = _(texts.BUTTON_MATCH_ALL) if draft.get("match") == "all" else _(texts.BUTTON_MATCH_ANY)
    return keyboard(
        *columns(tags, 3),
        [button(f"🔁 {match}", Action.SEGMENT_OP, "match")],
        [
            button(_(texts.BUTTON_TYPE_TAG), Action.SEGMENT_OP, "in", "tag"),
            button(_(texts.BUTTON_DONE), Action.SEGMENT_OP, "back"),
        ],
    )


def segment_keys(keys: Sequence[str]) -> InlineKeyboardMarkup:
    choices = [
        button(texts.short(key, 30), Action.SEGMENT_OP, "key", i) for i, key in enumerate(keys)
    ]
    return keyboard(
        *columns(choices, 3),
        [
            button(_(texts.BUTTON_TYPE_KEY), Action.SEGMENT_OP, "in", "key"),
            button(_(texts.BUTTON_BACK), Action.SEGMENT_OP, "back"),
        ],
    )


def segment_operators() -> InlineKeyboardMarkup:
    choices = [
        button(_(label), Action.SEGMENT_OP, "op", operator)
        for operator, label in texts.SEGMENT_OPERATOR_BUTTONS.items()
    ]
    return keyboard(*columns(choices, 2), [button(_(texts.BUTTON_BACK), Action.SEGMENT_OP, "back")])


def segment_behaviours() -> InlineKeyboardMarkup:
    choices = [
        [button(_(label), Action.SEGMENT_OP, "kind", kind)]
        for kind, label in texts.SEGMENT_BEHAVIOUR_BUTTONS.items()
    ]
    return keyboard(*choices, [button(_(texts.BUTTON_BACK), Action.SEGMENT_OP, "back")])


def segment_days() -> InlineKeyboardMarkup:
    choices = [
        button(str(days), Action.SEGMENT_OP, "days", days) for days in texts.SEGMENT_DAYS_CHOICES
    ]
    return keyboard(
        choices,
        [
            button(_(texts.BUTTON_TYPE_DAYS), Action.SEGMENT_OP, "in", "days"),
            button(_(texts.BUTTON_BACK), Action.SEGMENT_OP, "back"),
        ],
    )


def segment_back() -> InlineKeyboardMarkup:
    return keyboard([button(_(texts.BUTTON_BACK), Action.SEGMENT_OP, "back")])


def segment_leave_question() -> InlineKeyboardMarkup:
    return keyboard(
        [
            button(_(texts.BUTTON_SAVE), Action.LEAVE_SEGMENT, "save"),
            button(_(texts.BUTTON_DISCARD), Action.LEAVE_SEGMENT, "drop"),
        ],
        [button(_(texts.BUTTON_KEEP_EDITING), Action.LEAVE_SEGMENT, "keep")],
    )


def segment_delete_question(segment_id: int) -> InlineKeyboardMarkup:
    return keyboard(
        [
            button(_(texts.BUTTON_DELETE_SEGMENT), Action.DELETE_SEGMENT, segment_id, "ok"),
            button(_(texts.BUTTON_BACK), Action.SEGMENT, segment_id),
        ]
    )


# /language's choice for "as my Telegram app says".
TELEGRAM_LANGUAGE = "tg"


def languages(chosen: str | None) -> InlineKeyboardMarkup:
    """A button per language, named in its own words, and "as my Telegram"; ● the choice."""
    names = [
        button(_chosen(name, chosen == code), Action.LANGUAGE, code)
        for code, name in texts.LANGUAGE_NAMES.items()
    ]
    telegram = _chosen(_(texts.BUTTON_TELEGRAM_LANGUAGE), chosen is None)
    return keyboard(names, [button(telegram, Action.LANGUAGE, TELEGRAM_LANGUAGE)])


def wave_finished(chain_id: int) -> InlineKeyboardMarkup:
    """Under a finished wave's tally: where the manager goes next."""
    return keyboard(
        [
            button(_(texts.BUTTON_STATS), Action.STATS, chain_id, 0),
            button(_(texts.BUTTON_OPEN_CHAIN), Action.CHAIN, chain_id, 0),
        ]
    )


def back_to_menu() -> InlineKeyboardMarkup:
    return keyboard(menu_row())


# --- The chain editor (handlers/chain_editor.py) ------------------------------------

SEGMENT_CHOICES_PER_PAGE = 8
MINIMAP_PER_PAGE = 10
QUICK_DELAYS = ("1h", "3h", "12h", "1d", "2d", "3d", "7d")
QUICK_WINDOWS = (1, 3, 7, 14, 30)
PICKER_HOURS = range(7, 23)
PICKER_MINUTES = (0, 15, 30, 45)
_BLOCK_CODES = {"audience": "a", "action": "m", "schedule": "t", "conversion": "g"}


def _edit(label: str, *args: int | str) -> InlineKeyboardButton:
    return button(label, Action.EDIT_OP, *args)


def _chosen(label: str, chosen: bool) -> str:
    return f"● {label}" if chosen else label


def editor_overview(
    chain: ChainView, unsaved_step: int | None, page_number: int
) -> InlineKeyboardMarkup:
    """The minimap: a button per step (a page of them), then what can be done with the chain."""
    page = paginate(chain.steps, page_number, MINIMAP_PER_PAGE)
    steps = [
        button(
            texts.minimap_label(step, step.position == unsaved_step),
            Action.EDIT_STEP,
            chain.id,
            step.position,
        )
        for step in page.items
    ]
    actions: list[Row] = [[button(_(texts.BUTTON_ADD_STEP), Action.ADD_STEP, chain.id)]]
    if chain.status is ChainStatus.DRAFT:
        actions.append(
            [
                button(_(texts.BUTTON_ACTIVATE), Action.ACTIVATE, chain.id),
                button(texts.enrollment_button(chain.enrollment), Action.ENROLLMENT, chain.id),
            ]
        )
        actions.append(
            [button(texts.holdout_button(chain.holdout_percent), Action.HOLDOUT, chain.id)]
        )
    elif chain.status is ChainStatus.ACTIVE:
        actions.append([button(_(texts.BUTTON_PAUSE), Action.PAUSE, chain.id)])
    elif chain.status is ChainStatus.PAUSED:
        actions.append([button(_(texts.BUTTON_RESUME), Action.RESUME, chain.id)])
    actions.append(
        [
            button(_(texts.BUTTON_RENAME), Action.RENAME, chain.id, 0),
            button(_(texts.BUTTON_COPY), Action.COPY_CHAIN, chain.id),
        ]
    )
    actions.append(
        [
            button(_(texts.BUTTON_STATS), Action.STATS, chain.id, 0),
            button(_(texts.BUTTON_CLOSE), Action.CLOSE_EDITOR),
        ]
    )
    return keyboard(*columns(steps, 1), pager(page, Action.EDIT_CHAIN, chain.id), *actions)


def editor_step(
    chain: ChainView, step: StepView, options: StepOptions | None = None
) -> InlineKeyboardMarkup:
    """The four blocks, Add step right under the conversion block, Stop or Remove step as
    `options` allow (a running chain's), then the way around."""
    blocks = [
        button(
            texts.block_button(kind, getattr(step, kind) is not None),
            Action.EDIT_BLOCK,
            chain.id,
            step.position,
            code,
        )
        for kind, code in _BLOCK_CODES.items()
    ]
    around: Row = []
    if step.position > 1:
        around.append(
            button(_(texts.BUTTON_PREVIOUS_STEP), Action.EDIT_STEP, chain.id, step.position - 1)
        )
    around.append(button(_(texts.BUTTON_MAP), Action.EDIT_CHAIN, chain.id))
    if step.position < len(chain.steps):
        around.append(
            button(_(texts.BUTTON_NEXT_STEP), Action.EDIT_STEP, chain.id, step.position + 1)
        )
    whole: Row = []
    if options is not None and options.stop is not None:
        whole.append(button(_(texts.BUTTON_STOP_STEP), Action.STOP_STEP, chain.id, step.position))
    if options is not None and options.remove is not None:
        whole.append(
            button(_(texts.BUTTON_REMOVE_STEP), Action.REMOVE_STEP, chain.id, step.position)
        )
    return keyboard(
        *([block] for block in blocks),
        [button(_(texts.BUTTON_ADD_STEP), Action.ADD_STEP, chain.id)],
        whole,
        preview_row(chain.id, step.position) if step.action is not None else [],
        [button(_(texts.BUTTON_RENAME_STEP), Action.RENAME, chain.id, step.position)],
        around,
    )


def editor_block(
    view: texts.BlockScreen, state: dict[str, Any], today: date
) -> InlineKeyboardMarkup:
    """The draft's buttons, Save and Discard; a stopped step's block is only shown."""
    back = [
        button(
            texts.back_to_step(view.step.position),
            Action.EDIT_STEP,
            view.chain.id,
            view.step.position,
        )
    ]
    if view.step.stopped:
        preview = view.kind.value == "action"
        return keyboard(preview_row(view.chain.id, view.step.position) if preview else [], back)
    match view.kind.value:
        case "audience":
            rows = _audience_rows(view, state)
        case "action":
            rows = [*_action_rows(view), preview_row(view.chain.id, view.step.position)]
        case "schedule":
            rows = _schedule_rows(view, state, today)
        case _:
            rows = _conversion_rows(view)
    warned = view.placeholders is not None and bool(view.placeholders.unknown)
    save = [
        button(_(texts.BUTTON_SAVE_ANYWAY if warned else texts.BUTTON_SAVE), Action.SAVE_BLOCK),
        button(_(texts.BUTTON_DISCARD), Action.DISCARD_BLOCK),
    ]
    return keyboard(*rows, save, back)


def preview_row(chain_id: int, position: int) -> Row:
    return [
        button(_(texts.BUTTON_PREVIEW), Action.PREVIEW, chain_id, position),
        button(_(texts.BUTTON_TEST_SEND), Action.TEST_SEND, chain_id, position),
    ]


def _audience_rows(view: texts.BlockScreen, state: dict[str, Any]) -> list[Row]:
    draft = view.draft
    if view.step.position == 1:
        chosen = set(draft.get("segments") or [])
        names: list[str] = state.get("choices") or []
        page = paginate(list(enumerate(names)), state.get("page", 0), SEGMENT_CHOICES_PER_PAGE)
        toggles = [
            _edit(texts.checkbox(name, name in chosen), "seg", index) for index, name in page.items
        ]
        return [*columns(toggles, 1), pager(page, Action.EDIT_OP, "segp")]
    terms = draft.get("who") == "terms"
    rows = [
        [
            _edit(_chosen(texts.everyone_from(view.step.position - 1), not terms), "all"),
            _edit(_chosen(_(texts.BUTTON_ONLY_IF), terms), "terms"),
        ]
    ]
    if terms:
        chosen = set(draft.get("terms") or [])
        # Only terms that can come true after the previous step's channel, and any already
        # chosen (a file may have them), to be taken off. The index stays Term's own.
        offered = terms_for_channel(view.previous_channel)
        toggles = [
            _edit(texts.checkbox(_(texts.TERM_LABELS[term]), term.value in chosen), "term", index)
            for index, term in enumerate(Term)
            if term in offered or term.value in chosen
        ]
        rows += columns(toggles, 2)
        rows.append([_edit(texts.match_button(draft.get("match", "any")), "match")])
    return rows


def _action_rows(view: texts.BlockScreen) -> list[Row]:
    sms = view.draft.get("channel") == "sms"
    rows = [
        [
            _edit(_chosen(_(texts.BUTTON_EMAIL), not sms), "email"),
            _edit(_chosen(_(texts.BUTTON_SMS), sms), "sms"),
        ]
    ]
    if sms:
        rows.append([_edit(_(texts.BUTTON_TYPE_TEXT), "in", "sms")])
        return rows
    rows.append(
        [
            _edit(_(texts.BUTTON_TYPE_SUBJECT), "in", "subject"),
            _edit(_(texts.BUTTON_TYPE_TEXT), "in", "text"),
        ]
    )
    html = [_edit(texts.BUTTON_TYPE_HTML, "in", "html")]
    if view.draft.get("html") is not None:
        html.append(_edit(_(texts.BUTTON_NO_HTML), "nohtml"))
    rows.append(html)
    return rows


def _schedule_rows(view: texts.BlockScreen, state: dict[str, Any], today: date) -> list[Row]:
    send = view.draft.get("send")
    # A term known only later (not opened…) needs a wait: Now is not offered.
    kinds = ("after", "at") if later_only_terms(view.step.audience) else ("now", "after", "at")
    rows = [
        [_edit(_chosen(_(texts.SEND_LABELS[kind]), send == kind), "send", kind) for kind in kinds]
    ]
    if send == "after":
        rows += columns([_edit(delay, "after", delay) for delay in QUICK_DELAYS], 4)
    if send == "at" and view.waiting_for == "at":
        rows += _picker_rows(state.get("picker") or {}, today)
    if view.step.position > 1 and view.terms_audience:
        wait = view.draft.get("wait_days", 30)
        rows.append([_edit(texts.wait_button(wait), "in", "wait")])
    return rows


def _picker_rows(picker: dict[str, Any], today: date) -> list[Row]:
    """A month of days; once a day is picked, its hours; once an hour is, its minutes."""
    day = picker.get("day")
    if day and "hour" in picker:
        minutes = [
            _edit(f"{picker['hour']:02d}:{minute:02d}", "min", minute) for minute in PICKER_MINUTES
        ]
        return [minutes, [_edit(_(texts.BUTTON_OTHER_HOUR), "day", day)]]
    if day:
        hours = [_edit(f"{hour:02d}:…", "hour", hour) for hour in PICKER_HOURS]
        month = day[:7]
        return [*columns(hours, 4), [_edit(_(texts.BUTTON_OTHER_DAY), "cal", month)]]
    try:
        year, month_number = (int(part) for part in picker.get("month", "").split("-"))
        date(year, month_number, 1)
    except ValueError:
        year, month_number = today.year, today.month
    previous = when.shift_month(year, month_number, -1)
    following = when.shift_month(year, month_number, 1)
    header: Row = []
    if previous >= (today.year, today.month):
        header.append(_edit(_(texts.BUTTON_PREVIOUS), "cal", f"{previous[0]}-{previous[1]:02d}"))
    header.append(_edit(texts.month_title(year, month_number), "nop"))
    header.append(_edit(_(texts.BUTTON_NEXT), "cal", f"{following[0]}-{following[1]:02d}"))
    rows = [header, [_edit(name, "nop") for name in weekday_names()]]
    for week in when.month_days(year, month_number):
        rows.append(
            [
                _edit(str(d.day), "day", d.isoformat())
                if d is not None and d >= today
                else _edit(texts.NO_DAY, "nop")
                for d in week
            ]
        )
    return rows


def _conversion_rows(view: texts.BlockScreen) -> list[Row]:
    window = view.draft.get("window_days")
    quick = [
        _edit(_chosen(texts.days_short(days), window == days), "win", days)
        for days in QUICK_WINDOWS
    ]
    chosen = mechanics_of(view.draft)
    mechanics = [
        [_edit(texts.checkbox(_(texts.MECHANIC_LABELS[mechanic]), mechanic in chosen), "mech", i)]
        for i, mechanic in enumerate(Mechanic)
    ]
    return [
        quick,
        [
            _edit(_(texts.BUTTON_OTHER_WINDOW), "in", "window"),
            _edit(_(texts.BUTTON_MIN_AMOUNT), "in", "amount"),
        ],
        *mechanics,
    ]


def holdout(chain_id: int, draft: int) -> InlineKeyboardMarkup:
    """The holdout's shares to pick, Save and Discard, the way back to the map."""
    shares = [
        _edit(_chosen(percent(share / 100, 0), share == draft), "hp", share)
        for share in texts.HOLDOUT_CHOICES
    ]
    return keyboard(
        shares,
        [
            button(_(texts.BUTTON_SAVE), Action.SAVE_BLOCK),
            button(_(texts.BUTTON_DISCARD), Action.DISCARD_BLOCK),
        ],
        [button(_(texts.BUTTON_MAP), Action.EDIT_CHAIN, chain_id)],
    )


def leave_question() -> InlineKeyboardMarkup:
    return keyboard(
        [
            button(_(texts.BUTTON_SAVE), Action.LEAVE, "save"),
            button(_(texts.BUTTON_DISCARD), Action.LEAVE, "drop"),
        ],
        [button(_(texts.BUTTON_KEEP_EDITING), Action.LEAVE, "keep")],
    )


def confirm_save() -> InlineKeyboardMarkup:
    """Under what a live step's save would do: Save it, or back to the draft as it is."""
    return keyboard(
        [
            button(_(texts.BUTTON_CONFIRM_SAVE), Action.SAVE_BLOCK, "ok"),
            button(_(texts.BUTTON_KEEP_EDITING), Action.LEAVE, "keep"),
        ]
    )


def confirm_step_change(action: Action, chain_id: int, position: int) -> InlineKeyboardMarkup:
    """Under Stop step's or Remove step's question: do it, or back to the step."""
    label = _(texts.BUTTON_STOP_STEP) if action is Action.STOP_STEP else _(texts.BUTTON_REMOVE_STEP)
    return keyboard(
        [
            button(label, action, chain_id, position, "ok"),
            button(_(texts.BUTTON_BACK), Action.EDIT_STEP, chain_id, position),
        ]
    )


def default_step_name(chain_id: int, position: int) -> InlineKeyboardMarkup:
    return keyboard(
        [button(texts.default_step_name(position), Action.STEP_NAME, chain_id, position)],
        [button(_(texts.BUTTON_MAP), Action.EDIT_CHAIN, chain_id)] if position > 1 else [],
    )


def cancel_input(chain_id: int, position: int) -> InlineKeyboardMarkup:
    if position:
        return keyboard([button(_(texts.BUTTON_BACK), Action.EDIT_STEP, chain_id, position)])
    return keyboard([button(_(texts.BUTTON_BACK), Action.EDIT_CHAIN, chain_id)])


def back_to_chain(chain_id: int) -> InlineKeyboardMarkup:
    return keyboard([button(_(texts.BUTTON_MAP), Action.EDIT_CHAIN, chain_id)])


def confirm_activation(chain_id: int, forecast: Forecast) -> InlineKeyboardMarkup:
    go = (
        [button(_(texts.BUTTON_CONFIRM_ACTIVATE), Action.CONFIRM_ACTIVATE, chain_id)]
        if forecast.audience or forecast.enrollment == "continuous"
        else []
    )
    return keyboard(go, [button(_(texts.BUTTON_BACK), Action.EDIT_CHAIN, chain_id)])
