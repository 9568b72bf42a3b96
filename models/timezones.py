"""A customer's time zone: given explicitly, told by the phone number, or the default.

The rule, here and nowhere else (docs/timezones.md):

1. an explicit zone;
2. else the prefix table (`phone_zones.tsv`) where it names one zone: Russian mobile
   ranges in the zone of the region the numbering plan gives them, Russian area codes in
   their region's zone, Kazakhstan (one zone since 2024-03-01);
3. else `phonenumbers` where it names one zone, or several that keep one clock all
   through this year and the next (the UK's four, Finland's two): one of them;
4. else the default.

The table has no row for a number it cannot place in one zone (a region spanning zones,
a range opened after the plan it was made from), so it only ever answers where it knows
better than `phonenumbers` — Kaliningrad is not on Bucharest's summer time, Saratov left
Moscow time in 2016, a +7 9XX mobile is not in all sixteen Russian zones at once — and
never makes an answer worse. scripts/phone_zones.py writes the table; nothing edits it
by hand.
"""

from __future__ import annotations

import sys
import zoneinfo
from collections import Counter
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cache
from pathlib import Path

import phonenumbers
from phonenumbers import timezone as phonenumbers_timezone
from phonenumbers.tzdata import TIMEZONE_DATA

PHONE_ZONES_TABLE = Path(__file__).with_name("phone_zones.tsv")


class TimezoneSource(StrEnum):
    EXPLICIT = "explicit"
    PHONE = "phone"
    DEFAULT = "default"


def normalize_phone(raw: str, default_region: str) -> str:
    """Return `raw` in E.164 ('+79131234567'), reading numbers without '+' as from
    `default_region` (so '8 (913) 123-45-67' with 'RU'); raise ValueError otherwise."""
    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"{raw!r} is not a valid phone number") from exc
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"{raw!r} is not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# Files in the zoneinfo directory that are not zones a person lives in: "localtime" is
# the host's own setting, "Factory" is tzdata's placeholder for "zone not set yet".
_NOT_CUSTOMER_ZONES = frozenset({"localtime", "posixrules", "Factory"})


@cache
def _known_timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones() - _NOT_CUSTOMER_ZONES)


def is_valid_timezone(name: str) -> bool:
    """Whether `name` is an IANA zone name ('Europe/Moscow') known to zoneinfo."""
    return name in _known_timezones()


def timezone_for_phone(e164: str) -> str | None:
    """The IANA zone of an E.164 number, or None when the number does not tell one zone
    (steps 2 and 3 of the module's rule)."""
    zone = _zone_by_prefix_table(e164)
    if zone is None and not e164.startswith(_PHONENUMBERS_PLACES_NONE_OF):
        zone = _zone_by_phonenumbers(e164)
    return zone


# Numbers phonenumbers never places in one zone, so it is not asked (asking costs about
# 20 µs a number, ten times the table): every +7 9XX number is a mobile to it, and a +7
# mobile gets all the zones of Russia and Kazakhstan. tests/test_timezones.py holds
# phonenumbers to that.
_PHONENUMBERS_PLACES_NONE_OF = ("+79",)


def resolve_timezone(
    explicit: str | None, phone_e164: str | None, default: str
) -> tuple[str, TimezoneSource]:
    """The customer's zone and where it came from: `explicit` (already validated by the
    caller; an empty string counts as not given), else the phone's, else `default`."""
    if explicit:
        return explicit, TimezoneSource.EXPLICIT
    if phone_e164:
        zone = timezone_for_phone(phone_e164)
        if zone is not None:
            return zone, TimezoneSource.PHONE
    return default, TimezoneSource.DEFAULT


def phone_zones_sources() -> dict[str, str]:
    """What the prefix table was made from, by its header: 'numbering-plan' (the plan's
    date and where the file came from), 'area-codes', 'kazakhstan', 'generated'."""
    sources = {}
    with PHONE_ZONES_TABLE.open(encoding="utf-8") as table:
        for line in table:
            if not line.startswith("#"):
                break
            key, colon, value = line[1:].partition(":")
            if colon and " " not in key.strip():
                sources[key.strip()] = value.strip()
    return sources


def tzdata_version() -> str:
    """The tzdata release zoneinfo reads zones from: the system's, else the tzdata
    package's ('2025b')."""
    for directory in zoneinfo.TZPATH:
        if Path(directory, "UTC").is_file():
            version_file = Path(directory, "tzdata.zi")
            if version_file.is_file():
                with version_file.open(encoding="utf-8") as lines:
                    return lines.readline().removeprefix("# version").strip()
            return f"unknown ({directory})"
    try:
        import tzdata
    except ImportError:
        return "none"
    return str(tzdata.IANA_VERSION)


# The table's prefixes are read in two steps: the first four digits ('+7913'), then the
# lengths of the table's prefixes that start with them, longest first. A number probes
# one to four lengths (seven at most), not all ten the table has.
_HEAD = len("+7913")


@cache
def _prefix_table() -> tuple[dict[str, str], dict[str, tuple[int, ...]]]:
    """The table as '+7913…' prefixes to zones, and the lengths of those under each head.
    No prefix of the table starts another, so the first one found is the one."""
    zones: dict[str, str] = {}
    with PHONE_ZONES_TABLE.open(encoding="utf-8") as table:
        for line in table:
            if not line.startswith("#"):
                prefix, zone = line.split()
                zone = sys.intern(zone)
                # Shorter than a head ('+77', Kazakhstan): one entry per head under it.
                for head in _heads_under("+" + prefix):
                    zones[head] = zone
    lengths: dict[str, set[int]] = {}
    for prefix in zones:
        lengths.setdefault(prefix[:_HEAD], set()).add(len(prefix))
    return zones, {head: tuple(sorted(found, reverse=True)) for head, found in lengths.items()}


def _heads_under(prefix: str) -> list[str]:
    if len(prefix) >= _HEAD:
        return [prefix]
    return [head for digit in "0123456789" for head in _heads_under(prefix + digit)]


def _zone_by_prefix_table(e164: str) -> str | None:
    zones, lengths_under = _prefix_table()
    for length in lengths_under.get(e164[:_HEAD], ()):
        zone = zones.get(e164[:length])
        if zone is not None:
            return zone
    return None


def _zone_by_phonenumbers(e164: str) -> str | None:
    try:
        number = phonenumbers.parse(e164)
    except phonenumbers.NumberParseException:
        return None
    zones = phonenumbers_timezone.time_zones_for_number(number)
    return _zone_of_one_clock(tuple(zones), datetime.now(UTC).year)


@cache
def _zone_of_one_clock(zones: tuple[str, ...], year: int) -> str | None:
    """One of `zones` when they all show the same time at every moment of `year` and the
    next, else None. Of several, the one phonenumbers names most often (London before
    Guernsey, Helsinki before Mariehamn). A zone zoneinfo does not know (phonenumbers'
    "Etc/Unknown", a zone newer than the host's tzdata) tells nothing."""
    if not zones or not all(is_valid_timezone(zone) for zone in zones):
        return None
    if len({_clock(zone, year) for zone in zones}) > 1:
        return None
    return min(zones, key=lambda zone: (-_phonenumbers_mentions()[zone], zone))


@cache
def _clock(zone: str, year: int) -> tuple[timedelta | None, ...]:
    """The zone's UTC offsets through `year` and the next, twice a day: a change of
    clocks shows (daylight saving time, a zone moving) unless it lasts under half a day."""
    tz = zoneinfo.ZoneInfo(zone)
    start = datetime(year, 1, 1, tzinfo=UTC)
    return tuple(
        (start + timedelta(hours=12 * n)).astimezone(tz).utcoffset() for n in range(2 * 366 * 2)
    )


@cache
def _phonenumbers_mentions() -> Counter[str]:
    return Counter(zone for zones in TIMEZONE_DATA.values() for zone in zones)
