"""Moments and delays as a manager types them on a phone (SPEC §3).

`2026-12-01 10:00`, `01.12 10:00` (this year, or next if that day has passed),
`01.12.2026 10:00`, `today 18:00`, `tomorrow 10:00`; delays as in chain files
(`90m`, `2d`). A moment is a wall-clock time read in each customer's own zone;
the bot refuses one that has already passed in the shop's zone (DEFAULT_TIMEZONE).
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

from handlers import texts
from i18n import _
from models.chainfile import FIRST_YEAR, LAST_YEAR, parse_duration

_TIME = r"(?P<hour>[0-9]{1,2})[:.](?P<minute>[0-9]{2})"
_ISO = re.compile(rf"(?P<year>[0-9]{{4}})-(?P<month>[0-9]{{1,2}})-(?P<day>[0-9]{{1,2}})\s+{_TIME}")
_DOTTED = re.compile(
    rf"(?P<day>[0-9]{{1,2}})\.(?P<month>[0-9]{{1,2}})(?:\.(?P<year>[0-9]{{4}}))?\s+{_TIME}"
)
_RELATIVE = re.compile(rf"(?P<word>\w+)\s+{_TIME}")


class NotUnderstood(ValueError):
    """The typed text; the message says what forms work."""


def _moment(day: date, hour: str, minute: str) -> datetime:
    # The chain file's bounds (models.chainfile.parse_moment), said before Save.
    if not FIRST_YEAR <= day.year <= LAST_YEAR:
        raise NotUnderstood(_(texts.YEAR_OUT_OF_RANGE).format(first=FIRST_YEAR, last=LAST_YEAR))
    try:
        return datetime(day.year, day.month, day.day, int(hour), int(minute))
    except ValueError:
        raise NotUnderstood(_(texts.NO_SUCH_TIME)) from None


def parse_moment_typed(text: str, today: date) -> datetime:
    """A naive moment from what the manager typed; `today` is the shop's local date."""
    typed = " ".join(text.strip().lower().split())
    if found := _ISO.fullmatch(typed):
        try:
            day = date(int(found["year"]), int(found["month"]), int(found["day"]))
        except ValueError:
            raise NotUnderstood(_(texts.NO_SUCH_DATE)) from None
        return _moment(day, found["hour"], found["minute"])
    if found := _DOTTED.fullmatch(typed):
        year = int(found["year"]) if found["year"] else today.year
        try:
            day = date(year, int(found["month"]), int(found["day"]))
        except ValueError:
            raise NotUnderstood(_(texts.NO_SUCH_DATE)) from None
        if not found["year"] and day < today:
            # «01.02» typed in December means next February.
            try:
                day = day.replace(year=year + 1)
            except ValueError:
                raise NotUnderstood(_(texts.NO_SUCH_DATE)) from None
        return _moment(day, found["hour"], found["minute"])
    if found := _RELATIVE.fullmatch(typed):
        offset = texts.DAY_WORDS.get(found["word"])
        if offset is not None:
            return _moment(today + timedelta(days=offset), found["hour"], found["minute"])
    raise NotUnderstood(texts.moment_forms(today))


def parse_delay_typed(text: str) -> str:
    """A delay in the chain file's own form (`2d`); refused with the chain file's reason."""
    typed = "".join(text.strip().lower().split())
    parse_duration(typed)
    return typed


def month_days(year: int, month: int) -> list[list[date | None]]:
    """The month as calendar weeks from Monday; None pads the first and last week."""
    first = date(year, month, 1)
    following = date(year + month // 12, month % 12 + 1, 1)
    days: list[date | None] = [None] * first.weekday()
    days += [first + timedelta(days=n) for n in range((following - first).days)]
    days += [None] * (-len(days) % 7)
    return [days[i : i + 7] for i in range(0, len(days), 7)]


def shift_month(year: int, month: int, by: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + by
    return index // 12, index % 12 + 1
