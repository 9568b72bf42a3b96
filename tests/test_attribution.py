"""Which message an order counts for (SPEC §2), as a pure function."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TypeVar

from hypothesis import given
from hypothesis import strategies as st

from models.attribution import (
    MessageFact,
    OrderFact,
    attribute,
    conversion_settings,
    engaged,
    qualifies,
    reached,
)

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def message(
    delivery_id: int,
    *,
    chain: int = 1,
    customer: int = 1,
    channel: str = "email",
    status: str = "sent",
    sent: datetime | None = T0,
    events: tuple[str, ...] = ("opened",),
    window_days: int = 7,
    min_amount: str = "0",
) -> MessageFact:
    return MessageFact(
        delivery_id=delivery_id,
        chain_id=chain,
        customer_id=customer,
        channel=channel,
        status=status,
        sent_at=sent,
        window_days=window_days,
        min_amount=Decimal(min_amount),
        events=frozenset(events),
    )


def order(
    at: datetime, *, order_id: int = 100, customer: int = 1, amount: str = "100.00"
) -> OrderFact:
    return OrderFact(order_id=order_id, customer_id=customer, amount=Decimal(amount), created_at=at)


def test_order_during_step_two_counts_for_step_two_only() -> None:
    main, follow_up = message(1, sent=day(0)), message(2, sent=day(3))
    assert attribute([order(day(4))], [main, follow_up]) == {100: 2}


def test_order_before_step_two_counts_for_the_main_step() -> None:
    main, follow_up = message(1, sent=day(0)), message(2, sent=day(3))
    assert attribute([order(day(2))], [main, follow_up]) == {100: 1}


def test_order_during_step_two_counts_for_the_main_step_when_step_two_was_not_opened() -> None:
    main, follow_up = message(1, sent=day(0)), message(2, sent=day(3), events=())
    assert attribute([order(day(4))], [main, follow_up]) == {100: 1}


def test_order_after_the_window_counts_for_nothing() -> None:
    sent = message(1, window_days=7)
    assert attribute([order(day(7))], [sent]) == {}
    assert attribute([order(day(7) - timedelta(microseconds=1))], [sent]) == {100: 1}


def test_order_before_the_message_counts_for_nothing() -> None:
    assert attribute([order(day(0) - timedelta(microseconds=1))], [message(1)]) == {}
    assert attribute([order(day(0))], [message(1)]) == {100: 1}


def test_email_not_opened_counts_for_nothing() -> None:
    assert attribute([order(day(1))], [message(1, events=())]) == {}
    assert attribute([order(day(1))], [message(1, events=("delivered",))]) == {}


def test_clicked_email_qualifies_without_an_open() -> None:
    assert attribute([order(day(1))], [message(1, events=("clicked",))]) == {100: 1}


def test_sms_sent_without_failure_qualifies() -> None:
    sms = message(1, channel="sms", events=())
    assert attribute([order(day(1))], [sms]) == {100: 1}


def test_sms_with_bounce_does_not_qualify() -> None:
    sms = message(1, channel="sms", events=("bounced",))
    assert attribute([order(day(1))], [sms]) == {}


def test_sms_whose_send_was_uncertain_qualifies_as_it_left_unless_it_bounced() -> None:
    """`uncertain` is most likely sent: one of LEFT_STATUSES, as for the `delivered` term."""
    uncertain = message(1, channel="sms", status="uncertain", events=())
    bounced = message(2, channel="sms", status="uncertain", events=("bounced",))
    delivered = message(3, channel="sms", status="uncertain", events=("bounced", "delivered"))
    assert attribute([order(day(1))], [uncertain]) == {100: 1}
    assert attribute([order(day(1))], [bounced]) == {}
    assert attribute([order(day(1))], [delivered]) == {100: 3}


def test_message_never_sent_counts_for_nothing() -> None:
    failed = message(1, channel="sms", status="failed", sent=None, events=())
    assert attribute([order(day(1))], [failed]) == {}


def test_two_chains_overlapping_the_order_counts_for_the_first() -> None:
    first = message(1, chain=1, sent=day(0))
    second = message(2, chain=2, sent=day(1))
    assert attribute([order(day(2))], [second, first]) == {100: 1}


def test_first_chain_keeps_the_order_for_its_own_latest_step() -> None:
    first_main = message(1, chain=1, sent=day(0))
    other = message(2, chain=2, sent=day(1))
    first_follow_up = message(3, chain=1, sent=day(2))
    assert attribute([order(day(3))], [first_main, other, first_follow_up]) == {100: 3}


def test_chains_sent_at_the_same_moment_go_to_the_lower_delivery_id() -> None:
    assert attribute([order(day(1))], [message(7, chain=2), message(5, chain=1)]) == {100: 5}


def test_min_amount_below_counts_for_nothing() -> None:
    sent = message(1, min_amount="100.00")
    assert attribute([order(day(1), amount="99.99")], [sent]) == {}
    assert attribute([order(day(1), amount="100.00")], [sent]) == {100: 1}


def test_step_with_a_higher_minimum_leaves_a_small_order_to_the_earlier_step() -> None:
    main = message(1, sent=day(0))
    follow_up = message(2, sent=day(3), min_amount="500")
    assert attribute([order(day(4), amount="200")], [main, follow_up]) == {100: 1}


def test_another_customers_message_never_counts() -> None:
    assert attribute([order(day(1), customer=2)], [message(1, customer=1)]) == {}


def test_each_order_is_attributed_on_its_own() -> None:
    main, follow_up = message(1, sent=day(0)), message(2, sent=day(3))
    orders = [order(day(1), order_id=10), order(day(4), order_id=11), order(day(30), order_id=12)]
    assert attribute(orders, [main, follow_up]) == {10: 1, 11: 2}


def test_conversion_settings_default_to_seven_days_and_no_minimum() -> None:
    assert conversion_settings(None) == (7, Decimal(0))
    assert conversion_settings({"goal": "order"}) == (7, Decimal(0))
    assert conversion_settings({"window_days": 3, "min_amount": 99.99}) == (3, Decimal("99.99"))


def test_reached_and_engaged_read_the_events() -> None:
    assert reached(message(1, events=()))
    assert not reached(message(1, events=("bounced",)))
    assert reached(message(1, status="uncertain", events=("opened",)))
    assert reached(message(1, status="uncertain", events=()))
    assert not reached(message(1, status="uncertain", events=("bounced",)))
    assert not reached(message(1, status="failed", events=()))
    assert not engaged(message(1, events=()))
    assert engaged(message(1, channel="sms", events=("bounced", "delivered")))


Fact = TypeVar("Fact", MessageFact, OrderFact)

# Small domains so that collisions (same customer, moment, chain) are common.
moments = st.integers(min_value=0, max_value=10 * 24).map(lambda h: T0 + timedelta(hours=h))
event_sets = st.frozensets(st.sampled_from(["delivered", "opened", "clicked", "bounced"]))
messages = st.builds(
    MessageFact,
    delivery_id=st.integers(min_value=1, max_value=10_000),
    chain_id=st.integers(min_value=1, max_value=3),
    customer_id=st.integers(min_value=1, max_value=2),
    channel=st.sampled_from(["email", "sms"]),
    status=st.sampled_from(["sent", "sent", "uncertain", "failed"]),
    sent_at=st.one_of(st.none(), moments),
    window_days=st.integers(min_value=1, max_value=10),
    min_amount=st.sampled_from([Decimal(0), Decimal("50.00"), Decimal("100.00")]),
    events=event_sets,
)
orders = st.builds(
    OrderFact,
    order_id=st.integers(min_value=1, max_value=10_000),
    customer_id=st.integers(min_value=1, max_value=2),
    amount=st.sampled_from([Decimal("10.00"), Decimal("50.00"), Decimal("75.50"), Decimal(200)]),
    created_at=moments,
)


def _unique(items: list[Fact], key: str) -> list[Fact]:
    return list({getattr(item, key): item for item in items}.values())


@given(st.lists(orders, max_size=12), st.lists(messages, max_size=25))
def test_attribution_invariants(
    order_list: list[OrderFact], message_list: list[MessageFact]
) -> None:
    order_list = _unique(order_list, "order_id")
    message_list = _unique(message_list, "delivery_id")
    result = attribute(order_list, message_list)
    by_id = {m.delivery_id: m for m in message_list}
    for o in order_list:
        qualifying = [m for m in message_list if qualifies(m, o)]
        if not qualifying:
            assert o.order_id not in result
            continue
        winner = by_id[result[o.order_id]]
        assert qualifies(winner, o)
        assert winner.sent_at is not None
        # No later qualifying message of the same chain before the order.
        assert all(
            (m.sent_at, m.delivery_id) <= (winner.sent_at, winner.delivery_id)
            for m in qualifying
            if m.chain_id == winner.chain_id
        )
        # No other chain reached the customer first.
        first_of_winner = min(
            (m.sent_at, m.delivery_id) for m in qualifying if m.chain_id == winner.chain_id
        )
        assert all(
            first_of_winner <= (m.sent_at, m.delivery_id)
            for m in qualifying
            if m.chain_id != winner.chain_id
        )
    assert set(result) <= {o.order_id for o in order_list}


@given(st.lists(orders, max_size=8), st.lists(messages, max_size=15), st.randoms())
def test_attribution_does_not_depend_on_input_order(
    order_list: list[OrderFact], message_list: list[MessageFact], rng: random.Random
) -> None:
    order_list = _unique(order_list, "order_id")
    message_list = _unique(message_list, "delivery_id")
    shuffled = list(message_list)
    rng.shuffle(shuffled)
    assert attribute(order_list, message_list) == attribute(reversed(order_list), shuffled)
