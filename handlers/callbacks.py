"""The `callback_data` of inline buttons: `<action>[:<arg>…]`, ASCII, at most 64 bytes.

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

A new flow adds its actions to `Action` and a row to this table, and matches
them with `pattern(Action.…)`. `encode` refuses data over 64 bytes, so a button
that would be too long fails where it is built (in tests), not in Telegram.
"""

from __future__ import annotations

from enum import StrEnum

from telegram.constants import InlineKeyboardButtonLimit

LIMIT = InlineKeyboardButtonLimit.MAX_CALLBACK_DATA
SEPARATOR = ":"


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
    """An integer argument; a missing or garbled one (an old button) gives the default."""
    try:
        return int(args[index])
    except (IndexError, ValueError):
        return default
