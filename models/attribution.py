"""Which message an order counts for (SPEC §2, Conversion attribution), over plain data.

A message *qualifies* for an order when

- the customer engaged with it: an email was opened or clicked; an SMS reached
  the customer (see `reached`);
- it was sent no later than the order was placed, and the order came within its
  step's conversion window: ``sent_at <= created_at < sent_at + window_days``;
- the order's amount is at least the step's minimum amount.

When the engagement happened does not matter: an email opened after the order
was placed still qualifies, because opens are recorded late (or never, when
images are blocked) and the customer had the message in hand before ordering.

Within a chain an order counts for the step whose qualifying message came last
(steps never overlap). Across chains it counts once, for the chain whose first
qualifying message came first. Ties between equal `sent_at` go to the lower
delivery id across chains and to the higher one within a chain, so the answer
never depends on row order. `models.attribution_table` keeps the same rule in
SQL, in the `attributions` table; the tests hold the two to agree.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from models.chainfile import DEFAULT_WINDOW_DAYS
from models.tables import LEFT_STATUSES, Channel, EventType

DEFAULT_MIN_AMOUNT = Decimal(0)

# Events that prove a message reached the customer, whatever the channel says.
ARRIVAL_EVENTS = frozenset({EventType.DELIVERED, EventType.OPENED, EventType.CLICKED})
OPEN_EVENTS = frozenset({EventType.OPENED, EventType.CLICKED})


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


@dataclass(frozen=True, slots=True)
class OrderFact:
    order_id: int
    customer_id: int
    amount: Decimal
    created_at: datetime


def conversion_settings(block: Mapping[str, Any] | None) -> tuple[int, Decimal]:
    """A step's (window_days, min_amount); a block never saved means the defaults."""
    block = block or {}
    window_days = block.get("window_days")
    min_amount = block.get("min_amount")
    return (
        DEFAULT_WINDOW_DAYS if window_days is None else int(window_days),
        DEFAULT_MIN_AMOUNT if min_amount is None else Decimal(str(min_amount)),
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


def qualifies(message: MessageFact, order: OrderFact) -> bool:
    if message.sent_at is None or message.customer_id != order.customer_id:
        return False
    if order.amount < message.min_amount:
        return False
    window_end = message.sent_at + timedelta(days=message.window_days)
    return message.sent_at <= order.created_at < window_end and engaged(message)


def _sending_order(message: MessageFact) -> tuple[datetime, int]:
    assert message.sent_at is not None
    return message.sent_at, message.delivery_id


def attribute(orders: Iterable[OrderFact], messages: Iterable[MessageFact]) -> dict[int, int]:
    """{order id: delivery id} for every order that counts for some message."""
    by_customer: dict[int, list[MessageFact]] = defaultdict(list)
    for message in messages:
        if message.sent_at is not None and engaged(message):
            by_customer[message.customer_id].append(message)
    attributed: dict[int, int] = {}
    for order in orders:
        candidates = [m for m in by_customer.get(order.customer_id, ()) if qualifies(m, order)]
        if not candidates:
            continue
        chain_id = min(candidates, key=_sending_order).chain_id
        last = max((m for m in candidates if m.chain_id == chain_id), key=_sending_order)
        attributed[order.order_id] = last.delivery_id
    return attributed
