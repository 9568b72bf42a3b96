"""Which message an order counts for (SPEC §2, Conversion attribution), over plain data.

An order has a history: the states (amount, status) it went through, the first when
it was placed. A message of a step with mechanics (docs/attribution.md) converts an
order of its customer when

- the customer engaged with it: an email was opened or clicked; an SMS reached
  the customer (see `reached`);
- one of its step's mechanics saw the order convert within the window
  ``[sent_at, sent_at + window_days)``, reading the order as it stood just before
  the message was sent and at the window's end (a cancelled order at the end counts
  for nothing):
  - `new_order`: placed within the window; counts its amount at the end;
  - `order_restored`: placed before, cancelled when the message was sent, not any
    more at the end; counts its amount at the end;
  - `order_increase`: placed before, not cancelled when sent, its amount at the end
    higher than when sent; counts the increase;
- what it counts (its revenue) is at least the step's minimum amount.

When the engagement happened does not matter: an email opened after the order was
placed still qualifies, because opens are recorded late (or never, when images are
blocked) and the customer had the message in hand before ordering.

An order counts once. Of its candidate messages those of the first mechanic in
`PRECEDENCE` are kept (an order placed after a message is that message's new order,
whatever a later message saw it grow to); within a chain it counts for the step
whose message came last (steps never overlap); across chains, for the chain whose
first such message came first. Ties between equal `sent_at` go to the lower
delivery id across chains and to the higher one within a chain, so the answer never
depends on row order. `models.attribution_table` keeps the same rule in SQL, in the
`attributions` table; the tests hold the two to agree.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

from models.chainfile import DEFAULT_MECHANICS, DEFAULT_WINDOW_DAYS, Mechanic, mechanics_of
from models.tables import LEFT_STATUSES, Channel, EventType

DEFAULT_MIN_AMOUNT = Decimal(0)
# The statuses of a cancelled order, compared without regard to (ASCII) case; any
# other status (`new`, the shop's `paid`, `shipped`…) is an order that stands.
CANCELLED_STATUSES = frozenset({"cancelled", "canceled"})
# When an order converts by several mechanics (for different messages), the first of
# these is what it counts as: its placement, else its restoration, else its growth.
PRECEDENCE = (Mechanic.NEW_ORDER, Mechanic.ORDER_RESTORED, Mechanic.ORDER_INCREASE)

# Events that prove a message reached the customer, whatever the channel says.
ARRIVAL_EVENTS = frozenset({EventType.DELIVERED, EventType.OPENED, EventType.CLICKED})
OPEN_EVENTS = frozenset({EventType.OPENED, EventType.CLICKED})


def is_cancelled(status: str) -> bool:
    # ASCII case only, as SQL's LOWER() on both databases folds it.
    return status.isascii() and status.lower() in CANCELLED_STATUSES


@dataclass(frozen=True, slots=True)
class MessageFact:
    """A delivery as attribution sees it, with its step's conversion settings."""

    delivery_id: int
    chain_id: int
    customer_id: int
    channel: str
    status: str
    sent_at: datetime | None
    window_days: int
    min_amount: Decimal
    # The types of the events recorded for this delivery.
    events: frozenset[str]
    mechanics: frozenset[str] = frozenset(DEFAULT_MECHANICS)


@dataclass(frozen=True, slots=True)
class OrderState:
    """What an order said from `at` on."""

    at: datetime
    amount: Decimal
    status: str


@dataclass(frozen=True, slots=True)
class OrderFact:
    order_id: int
    customer_id: int
    # The current amount; with no `history`, the only one it ever had.
    amount: Decimal
    created_at: datetime
    # Every state in the order they took effect (by moment, then as they arrived),
    # the first at `created_at`; empty: placed with `amount` as `new` and never changed.
    history: tuple[OrderState, ...] = ()

    @property
    def states(self) -> tuple[OrderState, ...]:
        return self.history or (OrderState(self.created_at, self.amount, "new"),)

    def state_before(self, moment: datetime) -> OrderState | None:
        """The order as it stood just before `moment`; None: not placed yet."""
        found = None
        for state in self.states:
            if state.at >= moment:
                break
            found = state
        return found


@dataclass(frozen=True, slots=True)
class Conversion:
    """An order counted for a message."""

    delivery_id: int
    mechanic: Mechanic
    revenue: Decimal
    # When it converted: placed (new order), else the first state within the window
    # that was restored or above the amount when the message was sent.
    at: datetime


class ConversionSettings(NamedTuple):
    window_days: int
    min_amount: Decimal
    mechanics: frozenset[str]


def conversion_settings(block: Mapping[str, Any] | None) -> ConversionSettings:
    """A step's conversion settings; a block never saved means the defaults."""
    window_days = (block or {}).get("window_days")
    min_amount = (block or {}).get("min_amount")
    return ConversionSettings(
        DEFAULT_WINDOW_DAYS if window_days is None else int(window_days),
        DEFAULT_MIN_AMOUNT if min_amount is None else Decimal(str(min_amount)),
        frozenset(mechanics_of(block)),
    )


def reached(message: MessageFact) -> bool:
    """The message reached the customer as far as anyone told us.

    A delivery, open or click report proves it; otherwise a message that left
    (`LEFT_STATUSES`: sent, or uncertain, most likely sent) counts until a bounce
    says it did not arrive.
    """
    if message.events & ARRIVAL_EVENTS:
        return True
    return message.status in LEFT_STATUSES and EventType.BOUNCED not in message.events


def engaged(message: MessageFact) -> bool:
    """The customer engaged with it: an email opened or clicked, an SMS that reached them."""
    if message.channel == Channel.EMAIL:
        return bool(message.events & OPEN_EVENTS)
    return reached(message)


def converted(message: MessageFact, order: OrderFact) -> Conversion | None:
    """What the order counts as for this message, if it counts for it at all."""
    if message.sent_at is None or message.customer_id != order.customer_id:
        return None
    if not engaged(message):
        return None
    sent_at = message.sent_at
    window_end = sent_at + timedelta(days=message.window_days)
    end = order.state_before(window_end)
    if end is None or is_cancelled(end.status):
        return None
    if sent_at <= order.created_at:
        mechanic, revenue, at = Mechanic.NEW_ORDER, end.amount, order.created_at
    else:
        base = order.state_before(sent_at)
        assert base is not None
        within = [s for s in order.states if sent_at <= s.at < window_end]
        if is_cancelled(base.status):
            mechanic, revenue = Mechanic.ORDER_RESTORED, end.amount
            at = next(s.at for s in within if not is_cancelled(s.status))
        elif end.amount > base.amount:
            mechanic, revenue = Mechanic.ORDER_INCREASE, end.amount - base.amount
            at = next(s.at for s in within if s.amount > base.amount)
        else:
            return None
    if mechanic not in message.mechanics or revenue < message.min_amount:
        return None
    return Conversion(message.delivery_id, mechanic, revenue, at)


def qualifies(message: MessageFact, order: OrderFact) -> bool:
    return converted(message, order) is not None


def _sending_order(message: MessageFact) -> tuple[datetime, int]:
    assert message.sent_at is not None
    return message.sent_at, message.delivery_id


def conversions(
    orders: Iterable[OrderFact], messages: Iterable[MessageFact]
) -> dict[int, Conversion]:
    """{order id: its conversion} for every order that counts for some message."""
    by_customer: dict[int, list[MessageFact]] = defaultdict(list)
    for message in messages:
        if message.sent_at is not None and engaged(message):
            by_customer[message.customer_id].append(message)
    counted: dict[int, Conversion] = {}
    for order in orders:
        found = [
            (message, conversion)
            for message in by_customer.get(order.customer_id, ())
            if (conversion := converted(message, order)) is not None
        ]
        if not found:
            continue
        first = min(PRECEDENCE.index(conversion.mechanic) for _, conversion in found)
        found = [item for item in found if PRECEDENCE.index(item[1].mechanic) == first]
        chain_id = min((message for message, _ in found), key=_sending_order).chain_id
        _, winner = max(
            ((m, c) for m, c in found if m.chain_id == chain_id),
            key=lambda item: _sending_order(item[0]),
        )
        counted[order.order_id] = winner
    return counted


def attribute(orders: Iterable[OrderFact], messages: Iterable[MessageFact]) -> dict[int, int]:
    """{order id: delivery id} for every order that counts for some message."""
    return {
        order_id: conversion.delivery_id
        for order_id, conversion in conversions(orders, messages).items()
    }
