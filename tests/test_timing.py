"""Due moments across time zones and quiet hours: pure functions, no clock."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, available_timezones

from hypothesis import given
from hypothesis import strategies as st

from scheduler.timing import (
    due_at_for_zones,
    in_quiet_hours,
    local_moment_to_utc,
    quiet_hours_end,
)

QUIET = (time(21, 0), time(9, 0))
ZONES = sorted(z for z in available_timezones() if "/" in z and not z.startswith("Etc"))


def test_ten_o_clock_in_moscow_and_vladivostok_is_seven_hours_apart() -> None:
    local = datetime(2026, 12, 1, 10, 0)
    moments = due_at_for_zones(local, ["Europe/Moscow", "Asia/Vladivostok"])
    assert moments["Europe/Moscow"] == datetime(2026, 12, 1, 7, 0, tzinfo=UTC)
    assert moments["Asia/Vladivostok"] == datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
    assert moments["Europe/Moscow"] - moments["Asia/Vladivostok"] == timedelta(hours=7)


def test_wall_time_skipped_by_dst_is_sent_right_after_the_jump() -> None:
    # 2026-03-29 02:30 does not exist in Berlin: clocks go 02:00 -> 03:00.
    instant = local_moment_to_utc(datetime(2026, 3, 29, 2, 30), "Europe/Berlin")
    assert instant.astimezone(ZoneInfo("Europe/Berlin")).hour == 3


def test_ambiguous_wall_time_is_its_first_occurrence() -> None:
    instant = local_moment_to_utc(datetime(2026, 10, 25, 2, 30), "Europe/Berlin")
    assert instant == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)


@given(
    zone=st.sampled_from(ZONES),
    local=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2037, 12, 31)),
)
def test_local_moment_reads_back_as_the_same_wall_time_unless_skipped(
    zone: str, local: datetime
) -> None:
    instant = local_moment_to_utc(local, zone)
    back = instant.astimezone(ZoneInfo(zone)).replace(tzinfo=None)
    # Equal, or later by the size of a DST jump when the wall time did not exist.
    assert timedelta(0) <= back - local <= timedelta(hours=2)


def test_quiet_window_over_midnight() -> None:
    assert in_quiet_hours(time(21, 0), QUIET)
    assert in_quiet_hours(time(23, 59), QUIET)
    assert in_quiet_hours(time(0, 0), QUIET)
    assert in_quiet_hours(time(8, 59), QUIET)
    assert not in_quiet_hours(time(9, 0), QUIET)
    assert not in_quiet_hours(time(20, 59), QUIET)


def test_quiet_window_within_a_day_and_none() -> None:
    assert in_quiet_hours(time(13, 30), (time(13, 0), time(14, 0)))
    assert not in_quiet_hours(time(14, 0), (time(13, 0), time(14, 0)))
    assert not in_quiet_hours(time(3, 0), None)


@given(
    zone=st.sampled_from(["Europe/Moscow", "Asia/Vladivostok", "Europe/Kaliningrad", "UTC"]),
    now=st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)
    ),
)
def test_quiet_hours_end_is_the_first_allowed_moment(zone: str, now: datetime) -> None:
    end = quiet_hours_end(now, zone, QUIET)
    assert end >= now
    assert not in_quiet_hours(end.astimezone(ZoneInfo(zone)).time(), QUIET)
    assert end - now <= timedelta(hours=12)
    if end > now:
        assert in_quiet_hours((end - timedelta(minutes=1)).astimezone(ZoneInfo(zone)).time(), QUIET)
