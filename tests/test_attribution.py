"""Which message an order counts for (SPEC §2), as a pure function."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TypeVar

from hypothesis import given
from hypothesis import strategies as st

from models.attribution import (
    PRECEDENCE,
    Conversion,
    MessageFact,
    OrderFact,
    OrderState,
    attribute,
    conversion_settings,
    conversions,
    converted,
    engaged,
    is_cancelled,
    reached,
)
from models.chainfile import Mechanic

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
    mechanics: tuple[str, ...] = ("new_order",),
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
        mechanics=frozenset(mechanics),
    )


def order(
    at: datetime,
    *,
    order_id: int = 100,
    customer: int = 1,
    amount: str = "100.00",
    status: str = "new",
    changes: tuple[tuple[datetime, str, str], ...] = (),
) -> OrderFact:
    """An order placed at `at`, then changed: (moment, amount, status) each."""
    history = (
        OrderState(at, Decimal(amount), status),
        *(OrderState(moment, Decimal(value), state) for moment, value, state in changes),
    )
    return OrderFact(order_id, customer, history[-1].amount, at, history)


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


def test_conversion_settings_default_to_seven_days_no_minimum_and_new_orders() -> None:
    new_orders = frozenset({"new_order"})
    assert conversion_settings(None) == (7, Decimal(0), new_orders)
    assert conversion_settings({"goal": "order"}) == (7, Decimal(0), new_orders)
    assert conversion_settings({"window_days": 3, "min_amount": 99.99}) == (
        3,
        Decimal("99.99"),
        new_orders,
    )
    block = {"mechanics": ["order_increase", "order_restored"]}
    assert conversion_settings(block).mechanics == {"order_increase", "order_restored"}


def test_reached_and_engaged_read_the_events() -> None:
    assert reached(message(1, events=()))
    assert not reached(message(1, events=("bounced",)))
    assert reached(message(1, status="uncertain", events=("opened",)))
    assert reached(message(1, status="uncertain", events=()))
    assert not reached(message(1, status="uncertain", events=("bounced",)))
    assert not reached(message(1, status="failed", events=()))
    assert not engaged(message(1, events=()))
    assert engaged(message(1, channel="sms", events=("bounced", "delivered")))


# Mechanics: orders with a life.

EVERY = ("new_order", "order_increase", "order_restored")


def test_order_increase_counts_once_with_the_growth_from_the_send_to_the_windows_end() -> None:
    """Grown twice and shrunk once within the window: one conversion, its revenue what the
    order gained between the message and the window's end."""
    placed = order(
        day(-1),
        amount="1000.00",
        changes=((day(1), "1500.00", "new"), (day(2), "1400.00", "new"), (day(3), "1800", "paid")),
    )
    sent = message(1, mechanics=EVERY)
    assert conversions([placed], [sent]) == {
        100: Conversion(1, Mechanic.ORDER_INCREASE, Decimal("800.00"), day(1))
    }


def test_growth_before_the_message_or_after_its_window_counts_for_nothing() -> None:
    before = order(day(-2), amount="10", changes=((day(-1), "90", "new"),))
    after = order(day(-2), order_id=101, amount="10", changes=((day(7), "90", "new"),))
    assert conversions([before, after], [message(1, mechanics=EVERY)]) == {}


def test_a_default_step_ignores_increases_and_restorations() -> None:
    grown = order(day(-1), amount="10", changes=((day(1), "90", "new"),))
    restored = order(
        day(-1), order_id=101, amount="10", status="cancelled", changes=((day(1), "10", "new"),)
    )
    assert conversions([grown, restored], [message(1)]) == {}


def test_order_restored_counts_once_with_its_amount_at_the_windows_end() -> None:
    restored = order(
        day(-3),
        amount="500",
        changes=((day(-1), "500", "Cancelled"), (day(2), "450", "new"), (day(4), "480", "paid")),
    )
    sent = message(1, mechanics=("order_restored",))
    assert conversions([restored], [sent]) == {
        100: Conversion(1, Mechanic.ORDER_RESTORED, Decimal("480"), day(2))
    }


def test_a_cancelled_order_counts_for_nothing_whatever_the_mechanic() -> None:
    new_then_cancelled = order(day(1), changes=((day(2), "100", "canceled"),))
    grown_then_cancelled = order(
        day(-1), order_id=101, changes=((day(1), "900", "new"), (day(2), "900", "cancelled"))
    )
    still_cancelled = order(
        day(-2), order_id=102, changes=((day(-1), "100", "cancelled"), (day(1), "200", "CANCELLED"))
    )
    orders = [new_then_cancelled, grown_then_cancelled, still_cancelled]
    assert conversions(orders, [message(1, mechanics=EVERY)]) == {}


def test_cancelled_after_the_window_still_counts() -> None:
    """An order reads as it stood at the window's end; a later change is not the message's."""
    placed = order(day(1), changes=((day(8), "100", "cancelled"),))
    assert attribute([placed], [message(1)]) == {100: 1}


def test_a_new_order_counts_its_amount_at_the_windows_end() -> None:
    placed = order(day(1), amount="100", changes=((day(2), "150", "new"), (day(9), "999", "new")))
    assert conversions([placed], [message(1)]) == {
        100: Conversion(1, Mechanic.NEW_ORDER, Decimal("150"), day(1))
    }


def test_an_order_placed_after_a_message_is_its_new_order_not_a_later_steps_increase() -> None:
    placed = order(day(1), amount="100", changes=((day(4), "300", "new"),))
    main = message(1, sent=day(0))
    follow_up = message(2, sent=day(3), mechanics=EVERY)
    assert conversions([placed], [main, follow_up]) == {
        100: Conversion(1, Mechanic.NEW_ORDER, Decimal("300"), day(1))
    }


def test_a_restoration_counts_before_a_later_messages_increase() -> None:
    restored = order(
        day(-2),
        amount="100",
        status="cancelled",
        changes=((day(1), "100", "new"), (day(4), "200", "new")),
    )
    first = message(1, sent=day(0), mechanics=EVERY)
    second = message(2, sent=day(3), mechanics=EVERY)
    assert conversions([restored], [first, second]) == {
        100: Conversion(1, Mechanic.ORDER_RESTORED, Decimal("200"), day(1))
    }


def test_an_increase_counts_for_the_latest_step_that_saw_the_order_grow() -> None:
    """Steps never overlap: the growth after step 2 counts for step 2, from the amount
    step 2 was sent at; the chain's earlier growth is not counted twice."""
    grown = order(day(-1), amount="100", changes=((day(1), "150", "new"), (day(4), "200", "new")))
    main = message(1, sent=day(0), mechanics=EVERY)
    follow_up = message(2, sent=day(3), mechanics=EVERY)
    assert conversions([grown], [main, follow_up]) == {
        100: Conversion(2, Mechanic.ORDER_INCREASE, Decimal("50"), day(4))
    }


def test_an_increase_counts_for_the_chain_that_reached_the_customer_first() -> None:
    grown = order(day(-1), amount="100", changes=((day(2), "300", "new"),))
    first = message(1, chain=1, sent=day(0), mechanics=EVERY)
    second = message(2, chain=2, sent=day(1), mechanics=EVERY)
    assert attribute([grown], [second, first]) == {100: 1}


def test_the_minimum_amount_is_of_what_the_conversion_counts() -> None:
    small = order(day(-1), amount="1000", changes=((day(1), "1040", "new"),))
    enough = order(day(-1), order_id=101, amount="1000", changes=((day(1), "1050", "new"),))
    sent = message(1, mechanics=EVERY, min_amount="50")
    assert attribute([small, enough], [sent]) == {101: 1}


def test_only_cancelled_and_canceled_count_as_cancelled_in_any_ascii_case() -> None:
    assert all(is_cancelled(status) for status in ("cancelled", "Canceled", "CANCELLED"))
    assert not any(is_cancelled(status) for status in ("new", "paid", "cancel", "ca\u0301nceled"))


Fact = TypeVar("Fact", MessageFact, OrderFact)

# Small domains so that collisions (same customer, moment, chain) are common.
moments = st.integers(min_value=0, max_value=10 * 24).map(lambda h: T0 + timedelta(hours=h))
event_sets = st.frozensets(st.sampled_from(["delivered", "opened", "clicked", "bounced"]))
mechanic_sets = st.frozensets(st.sampled_from(EVERY), min_size=1)
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
    mechanics=mechanic_sets,
)
amounts = st.sampled_from([Decimal("10.00"), Decimal("50.00"), Decimal("75.50"), Decimal(200)])
statuses = st.sampled_from(["new", "new", "paid", "cancelled", "Canceled"])


@st.composite
def orders(draw: st.DrawFn) -> OrderFact:
    """An order and the states it went through, some at the same moment."""
    placed = draw(moments)
    history = [OrderState(placed, draw(amounts), draw(statuses))]
    for hours in sorted(draw(st.lists(st.integers(0, 5 * 24), max_size=4))):
        history.append(OrderState(placed + timedelta(hours=hours), draw(amounts), draw(statuses)))
    return OrderFact(
        order_id=draw(st.integers(min_value=1, max_value=10_000)),
        customer_id=draw(st.integers(min_value=1, max_value=2)),
        amount=history[-1].amount,
        created_at=placed,
        history=tuple(history),
    )


def _unique(items: list[Fact], key: str) -> list[Fact]:
    return list({getattr(item, key): item for item in items}.values())


@given(st.lists(orders(), max_size=12), st.lists(messages, max_size=25))
def test_attribution_invariants(
    order_list: list[OrderFact], message_list: list[MessageFact]
) -> None:
    order_list = _unique(order_list, "order_id")
    message_list = _unique(message_list, "delivery_id")
    result = conversions(order_list, message_list)
    by_id = {m.delivery_id: m for m in message_list}
    for o in order_list:
        found = {m.delivery_id: c for m in message_list if (c := converted(m, o)) is not None}
        if not found:
            assert o.order_id not in result
            continue
        conversion = result[o.order_id]
        winner = by_id[conversion.delivery_id]
        assert found[winner.delivery_id] == conversion
        assert winner.sent_at is not None
        # The first mechanic that converted it counts: its placement, restoration, growth.
        assert conversion.mechanic == min(
            (c.mechanic for c in found.values()), key=PRECEDENCE.index
        )
        assert conversion.mechanic in winner.mechanics
        assert conversion.revenue >= winner.min_amount
        qualifying = [by_id[d] for d, c in found.items() if c.mechanic == conversion.mechanic]
        # No later qualifying message of the same chain.
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
        # It converted within the window, and a cancelled order never counts.
        assert winner.sent_at <= conversion.at < winner.sent_at + timedelta(winner.window_days)
        end = o.state_before(winner.sent_at + timedelta(winner.window_days))
        assert end is not None
        assert not is_cancelled(end.status)
    assert set(result) <= {o.order_id for o in order_list}


@given(st.lists(orders(), max_size=8), st.lists(messages, max_size=15), st.randoms())
def test_attribution_does_not_depend_on_input_order(
    order_list: list[OrderFact], message_list: list[MessageFact], rng: random.Random
) -> None:
    order_list = _unique(order_list, "order_id")
    message_list = _unique(message_list, "delivery_id")
    shuffled = list(message_list)
    rng.shuffle(shuffled)
    assert attribute(order_list, message_list) == attribute(reversed(order_list), shuffled)
