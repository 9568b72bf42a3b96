"""Inline keyboards, built in one place from `callbacks` data and `texts` labels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from handlers import texts
from handlers.callbacks import Action, encode
from models.chains import ChainSummary, ChainView
from models.tables import ChainStatus, Role

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
        row.append(button(texts.BUTTON_PREVIOUS, action, *args, page.number - 1))
    if page.number < page.count - 1:
        row.append(button(texts.BUTTON_NEXT, action, *args, page.number + 1))
    return row


def menu_row() -> Row:
    return [button(texts.BUTTON_MENU, Action.MENU)]


def main_menu() -> InlineKeyboardMarkup:
    return keyboard(
        [button(texts.BUTTON_CHAINS, Action.CHAINS, 0)],
        [
            button(texts.BUTTON_CUSTOMERS, Action.CUSTOMERS),
            button(texts.BUTTON_SEGMENTS, Action.SEGMENTS, 0),
        ],
        [button(texts.BUTTON_REPORTS, Action.REPORTS, 0), button(texts.BUTTON_HELP, Action.HELP)],
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
        actions.append(button(texts.BUTTON_PAUSE, Action.PAUSE, chain.id))
    if role is not Role.VIEWER and chain.status is ChainStatus.PAUSED:
        actions.append(button(texts.BUTTON_RESUME, Action.RESUME, chain.id))
    actions.append(button(texts.BUTTON_STATS, Action.STATS, chain.id, 0))
    return keyboard(actions, [button(texts.BUTTON_BACK, Action.CHAINS, list_page), *menu_row()])


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
            button(texts.BUTTON_REFRESH, Action.STATS, chain_id, page.number),
            button(texts.BUTTON_BACK, Action.CHAIN, chain_id, 0),
        ],
    )


def segments(page: Page[object]) -> InlineKeyboardMarkup:
    return keyboard(pager(page, Action.SEGMENTS), menu_row())


def back_to_menu() -> InlineKeyboardMarkup:
    return keyboard(menu_row())
