"""Moments and delays as typed on a phone (handlers/when.py)."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from handlers import when

TODAY = date(2026, 11, 28)


@pytest.mark.parametrize(
    ("typed", "moment"),
    [
        ("2026-12-01 10:00", datetime(2026, 12, 1, 10, 0)),
        ("2026-12-1 9:05", datetime(2026, 12, 1, 9, 5)),
        ("01.12 10:00", datetime(2026, 12, 1, 10, 0)),
        ("01.12.2027 10.30", datetime(2027, 12, 1, 10, 30)),
        # Day and month that have passed this year: next year.
        ("15.01 08:00", datetime(2027, 1, 15, 8, 0)),
        ("28.11 23:59", datetime(2026, 11, 28, 23, 59)),
        ("tomorrow 10:00", datetime(2026, 11, 29, 10, 0)),
        ("  Tomorrow   7:00 ", datetime(2026, 11, 29, 7, 0)),
        ("today 18:00", datetime(2026, 11, 28, 18, 0)),
        ("завтра 10:00", datetime(2026, 11, 29, 10, 0)),
    ],
)
def test_typed_moments(typed: str, moment: datetime) -> None:
    assert when.parse_moment_typed(typed, TODAY) == moment


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("31.02 10:00", "there is no such day"),
        ("2026-13-01 10:00", "there is no such day"),
        ("tomorrow 25:00", "the time must be between 00:00 and 23:59"),
        # The examples are tomorrow's (TODAY + 1), never a moment already past.
        ("next week", "try 2026-11-29 10:00, 29.11 10:00 or tomorrow 10:00"),
        ("10:00", "try 2026-11-29 10:00"),
        ("yesterday 10:00", "try 2026-11-29 10:00"),
    ],
)
def test_what_is_not_a_moment_says_why(typed: str, reason: str) -> None:
    with pytest.raises(when.NotUnderstood, match=reason):
        when.parse_moment_typed(typed, TODAY)


def test_delays_take_the_chain_file_forms() -> None:
    assert when.parse_delay_typed(" 2 D ") == "2d"
    assert when.parse_delay_typed("90m") == "90m"
    with pytest.raises(ValueError, match="is not a duration"):
        when.parse_delay_typed("two days")


def test_a_month_is_whole_weeks_from_monday() -> None:
    weeks = when.month_days(2026, 12)
    assert weeks[0][:2] == [None, date(2026, 12, 1)]  # 1 December 2026 is a Tuesday
    assert all(len(week) == 7 for week in weeks)
    assert [d for week in weeks for d in week if d][-1] == date(2026, 12, 31)
    assert when.shift_month(2026, 12, 1) == (2027, 1)
    assert when.shift_month(2027, 1, -1) == (2026, 12)
