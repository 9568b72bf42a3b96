r"""The `callback_data` of inline buttons: `<action>[:<arg>…]`, ASCII, at most 64 bytes.

Telegram hands the string back when the button is pressed; the action picks the
handler (`pattern`), the arguments say what on (`decode`). Arguments are ids,
page numbers (from 0) or short ASCII words, never user text: names can be long
and the limit is in bytes.

| data                | the button                                          | for      |
|---------------------|-----------------------------------------------------|----------|
| `menu`              | back to the main menu                               | everyone |
| `chains:<page>`     | a page of the chain list                            | everyone |
| `chain:<id>:<page>` | a chain's card; `<page>` is the list page to go back to | everyone |
| `pause:<id>`        | pause the chain                                     | admin    |
| `resume:<id>`       | resume the chain                                    | admin    |
| `reports:<page>`    | a page of the chains to show stats of               | everyone |
| `stats:<id>:<page>` | a page of a chain's stats                           | everyone |
| `customers`         | the customer count and how to import                | everyone |
| `segments:<page>`   | a page of the segment list                          | everyone |
| `help`              | the help text                                       | everyone |
| `chart:<id>`        | send the chain's chart as a new photo (stats screen) | everyone |
| `lang:ru\|en\|tg`    | speak Russian / English / as the Telegram app says (/language) | everyone |
| `new`               | start a new chain (asks its name)                   | admin    |
| `eo:<chain>`        | the editor's map of a chain: its steps, Add step, Activate, Copy | admin |
| `es:<chain>:<pos>`  | a step: its four blocks                             | admin    |
| `eb:<chain>:<pos>:<b>` | edit a block: `a` who, `m` message, `t` schedule, `g` goal | admin |
| `ex:<op>[:<arg>]`   | change the open block's draft (a segment, a term, a day…) | admin |
| `ex:in:<field>`     | wait for the field to be typed                      | admin    |
| `ev` / `ed`         | Save / Discard the draft (a live step's Save asks first) | admin    |
| `ev:ok`             | Save, once what it does was shown ("✅ Save")       | admin    |
| `el:save\|drop\|keep` | the answer to "Save / Discard / Keep editing"      | admin    |
| `est:<chain>:<pos>` | stop the step (asks, with the numbers); `…:ok` stops it | admin |
| `erm:<chain>:<pos>` | remove the step (asks); `…:ok` removes it           | admin    |
| `en:<chain>`        | add a step (asks its name)                          | admin    |
| `esn:<chain>:<pos>` | add the step with its default name ("Step 2")       | admin    |
| `er:<chain>:<pos>`  | rename the step (`<pos>` 0: the chain)              | admin    |
| `eu:<chain>`        | switch enrollment once ⇄ continuous                 | admin    |
| `eh:<chain>`        | the chain's holdout (a draft's): `ex:hp:<n>` picks a share | admin |
| `ec:<chain>`        | copy the chain into a new draft                     | admin    |
| `ea:<chain>`        | activation forecast; `ey:<chain>` activates         | admin    |
| `eq`                | close the editor                                    | admin    |
| `ep:<chain>:<pos>`  | preview the step's message (the draft if one is open) | admin  |
| `ep:…:pick` / `ep:…:sample` | preview for a customer typed next / a sample one | admin |
| `et:<chain>:<pos>`  | send the step's message as a test to the admin      | admin    |
| `et:…:to`           | type another address to send tests to               | admin    |
| `sgo:<id>`          | a segment's card: its conditions and live count     | everyone |
| `sgn`               | a new segment (asks its name)                       | admin    |
| `sge:<id>`          | edit the segment: its draft with the live count     | admin    |
| `sgx:<op>[:<arg>]`  | change the segment draft (a tag, a key, days, remove…) | admin |
| `sgv` / `sgd`       | Save / Discard the segment draft                    | admin    |
| `sgrm:<id>`         | delete the segment (asks); `…:ok` deletes it        | admin    |
| `sgl:save\|drop\|keep` | the answer to the segment's "Save / Discard / Keep editing" | admin |

A new flow adds its actions to `Action` and a row to this table, and matches
them with `pattern(Action.…)`. `encode` refuses data over 64 bytes, so a button
that would be too long fails where it is built (in tests), not in Telegram.
Save, Stop and Remove confirm with the asking button's data and `ok` last.
"""

from __future__ import annotations

import re
from enum import StrEnum

from telegram.constants import InlineKeyboardButtonLimit

LIMIT = InlineKeyboardButtonLimit.MAX_CALLBACK_DATA
SEPARATOR = ":"
# Ids and pages are stored and queried as BIGINT; a button's data is the user's to forge.
_INTEGER = re.compile(r"-?[0-9]{1,19}")
_BIGINT_BOUND = 2**63


class Action(StrEnum):
    MENU = "menu"
    CHAINS = "chains"
    CHAIN = "chain"
    PAUSE = "pause"
    RESUME = "resume"
    REPORTS = "reports"
    STATS = "stats"
    CUSTOMERS = "customers"
    SEGMENTS = "segments"
    HELP = "help"
    CHART = "chart"
    LANGUAGE = "lang"
    # The chain editor (handlers/chain_editor.py).
    NEW_CHAIN = "new"
    EDIT_CHAIN = "eo"
    EDIT_STEP = "es"
    EDIT_BLOCK = "eb"
    EDIT_OP = "ex"
    SAVE_BLOCK = "ev"
    DISCARD_BLOCK = "ed"
    LEAVE = "el"
    ADD_STEP = "en"
    STEP_NAME = "esn"
    RENAME = "er"
    ENROLLMENT = "eu"
    HOLDOUT = "eh"
    COPY_CHAIN = "ec"
    ACTIVATE = "ea"
    CONFIRM_ACTIVATE = "ey"
    CLOSE_EDITOR = "eq"
    PREVIEW = "ep"
    TEST_SEND = "et"
    STOP_STEP = "est"
    REMOVE_STEP = "erm"
    # The segment editor (handlers/segment_editor.py).
    SEGMENT = "sgo"
    NEW_SEGMENT = "sgn"
    EDIT_SEGMENT = "sge"
    SEGMENT_OP = "sgx"
    SAVE_SEGMENT = "sgv"
    DISCARD_SEGMENT = "sgd"
    DELETE_SEGMENT = "sgrm"
    LEAVE_SEGMENT = "sgl"


EDITOR_ACTIONS = frozenset(
    {
        Action.NEW_CHAIN,
        Action.EDIT_CHAIN,
        Action.EDIT_STEP,
        Action.EDIT_BLOCK,
        Action.EDIT_OP,
        Action.SAVE_BLOCK,
        Action.DISCARD_BLOCK,
        Action.LEAVE,
        Action.ADD_STEP,
        Action.STEP_NAME,
        Action.RENAME,
        Action.ENROLLMENT,
        Action.HOLDOUT,
        Action.COPY_CHAIN,
        Action.ACTIVATE,
        Action.CONFIRM_ACTIVATE,
        Action.CLOSE_EDITOR,
        Action.PREVIEW,
        Action.TEST_SEND,
        Action.STOP_STEP,
        Action.REMOVE_STEP,
    }
)


SEGMENT_EDITOR_ACTIONS = frozenset(
    {
        Action.NEW_SEGMENT,
        Action.EDIT_SEGMENT,
        Action.SEGMENT_OP,
        Action.SAVE_SEGMENT,
        Action.DISCARD_SEGMENT,
        Action.DELETE_SEGMENT,
        Action.LEAVE_SEGMENT,
    }
)


def encode(action: Action, *args: int | str) -> str:
    parts = [action.value, *(str(arg) for arg in args)]
    for part in parts[1:]:
        if SEPARATOR in part or not part.isascii() or not part:
            raise ValueError(f"callback argument {part!r} must be non-empty ASCII without ':'")
    data = SEPARATOR.join(parts)
    if len(data.encode()) > LIMIT:
        raise ValueError(f"callback data {data!r} is longer than {LIMIT} bytes")
    return data


def decode(data: str) -> tuple[str, list[str]]:
    """The action and the arguments of a pressed button's data."""
    action, *args = data.split(SEPARATOR)
    return action, args


def pattern(action: Action) -> str:
    """The regular expression a CallbackQueryHandler matches the action's buttons with."""
    return f"^{action.value}({SEPARATOR}|$)"


def int_arg(args: list[str], index: int, default: int = 0) -> int:
    """An integer argument; a missing, garbled or outsized one gives the default.

    Such data comes from an old button or a forged one: the default leads to the
    answer for a stale button, where a number beyond BIGINT would overflow the query.
    """
    if index >= len(args) or not _INTEGER.fullmatch(args[index]):
        return default
    value = int(args[index])
    return value if -_BIGINT_BOUND <= value < _BIGINT_BOUND else default
