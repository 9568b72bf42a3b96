"""Pure time arithmetic of the engine: local moments per zone, quiet hours. No clock: pass `now`."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo


def local_moment_to_utc(local: datetime, zone: str) -> datetime:
    """The UTC instant at which clocks in `zone` show `local` (a naive wall-clock time).

    A time skipped by a DST jump (02:30 on a spring-forward night) is read as the
    same wall time after the jump; a time that occurs twice is the first one.
    """
    if local.tzinfo is not None:
        raise ValueError("expected a naive local date and time")
    # fold=0 reads an ambiguous time with the earlier offset (its first
    # occurrence) and a nonexistent one with the offset from before the jump,
    # which lands just after the jump: the moment that wall time "exists".
    return local.replace(tzinfo=ZoneInfo(zone), fold=0).astimezone(UTC)


def due_at_for_zones(local: datetime, zones: Iterable[str]) -> dict[str, datetime]:
    """`local` read in every zone: the small table joined into set-based planning."""
    return {zone: local_moment_to_utc(local, zone) for zone in set(zones)}


def in_quiet_hours(local: time, quiet: tuple[time, time] | None) -> bool:
    """Whether a local time of day falls in a quiet window such as 21:00-09:00."""
    if quiet is None:
        return False
    start, end = quiet
    if start == end:
        return False
    if start < end:
        return start <= local < end
    return local >= start or local < end


def quiet_hours_end(now: datetime, zone: str, quiet: tuple[time, time] | None) -> datetime:
    """The first instant at or after `now` outside the quiet window in `zone`."""
    if quiet is None:
        return now
    tz = ZoneInfo(zone)
    local = now.astimezone(tz)
    if not in_quiet_hours(local.time(), quiet):
        return now
    end = quiet[1]
    candidate = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
    if candidate <= local:
        candidate += timedelta(days=1)
    return local_moment_to_utc(candidate.replace(tzinfo=None), zone)
