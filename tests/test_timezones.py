"""A customer's time zone from an explicit value, the phone number, or the default."""

import itertools
import re
import zoneinfo
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st
from phonenumbers import timezone as phonenumbers_timezone

from models.timezones import (
    PHONE_ZONES_TABLE,
    TimezoneSource,
    is_valid_timezone,
    normalize_phone,
    phone_zones_sources,
    resolve_timezone,
    timezone_for_phone,
)
from tests.cli import chainmail

DEFAULT = "Europe/Moscow"
TABLE = {
    "+" + prefix: zone
    for prefix, zone in (
        line.split() for line in PHONE_ZONES_TABLE.read_text("utf-8").splitlines()
        if not line.startswith("#")
    )
}  # fmt: skip


@cache
def clock(zone: str) -> tuple[timedelta | None, ...]:
    """The zone's UTC offsets every six hours through this year and the next."""
    tz = zoneinfo.ZoneInfo(zone)
    start = datetime(datetime.now(UTC).year, 1, 1, tzinfo=UTC)
    return tuple((start + timedelta(hours=6 * n)).astimezone(tz).utcoffset() for n in range(2930))


def phonenumbers_clocks(e164: str) -> set[tuple[timedelta | None, ...]]:
    """The clocks of the zones phonenumbers names for a number (none it cannot read)."""
    zones = phonenumbers_timezone.time_zones_for_number(phonenumbers.parse(e164))
    return {clock(zone) for zone in zones if is_valid_timezone(zone)}


def assert_never_worse_than_phonenumbers(e164: str) -> None:
    """The answer is the table's single zone, or phonenumbers' one clock, or the default:
    never a zone whose clock differs from both."""
    zone, source = resolve_timezone(None, e164, DEFAULT)
    if source is TimezoneSource.DEFAULT:
        assert zone == DEFAULT
        return
    table_zone = next((TABLE[e164[:n]] for n in range(len(e164), 2, -1) if e164[:n] in TABLE), None)
    if table_zone is not None:
        assert zone == table_zone
    else:
        assert phonenumbers_clocks(e164) == {clock(zone)}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("8 (913) 123-45-67", "+79131234567"),
        ("+7 (913) 123-45-67", "+79131234567"),
        ("+7 913 123 45 67", "+79131234567"),
        ("89131234567", "+79131234567"),
        ("9131234567", "+79131234567"),
        ("+49 30 1234567", "+49301234567"),
    ],
)
def test_normalize_phone_reads_domestic_and_international_formats(raw: str, expected: str) -> None:
    assert normalize_phone(raw, "RU") == expected


@pytest.mark.parametrize("raw", ["abc", "123", "+7 000 000 00 00", ""])
def test_normalize_phone_rejects_invalid_numbers_naming_the_input(raw: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"{raw!r} is not a valid phone number")):
        normalize_phone(raw, "RU")


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("Europe/Moscow", True),
        ("Asia/Novosibirsk", True),
        ("UTC", True),
        ("europe/moscow", False),
        ("Mars/Olympus", False),
        ("", False),
        ("localtime", False),
        ("Factory", False),
        ("../etc/passwd", False),
    ],
)
def test_is_valid_timezone_knows_iana_names_only(name: str, valid: bool) -> None:
    assert is_valid_timezone(name) is valid


# Real-looking numbers: a mobile of a range the numbering plan gives the zone's region and
# a landline of the region's capital, for every Russian zone a phone number can tell.
RUSSIA = {
    "Europe/Kaliningrad": ("+79114512345", "+74012123456"),
    "Europe/Moscow": ("+79161234567", "+74951234567"),
    "Europe/Simferopol": ("+79789123456", "+73652123456"),
    "Europe/Kirov": ("+79229123456", "+78332123456"),
    "Europe/Volgograd": ("+79020912345", "+78442123456"),
    "Europe/Astrakhan": ("+79170812345", "+78512123456"),
    "Europe/Saratov": ("+79085412345", "+78452123456"),
    "Europe/Ulyanovsk": ("+79084712345", "+78422123456"),
    "Europe/Samara": ("+79277123456", "+78461234567"),
    "Asia/Yekaterinburg": ("+79122123456", "+73431234567"),
    "Asia/Omsk": ("+79081012345", "+73812123456"),
    "Asia/Novosibirsk": ("+79137123456", "+73831234567"),
    "Asia/Barnaul": ("+79130212345", "+73852123456"),
    "Asia/Tomsk": ("+79138112345", "+73822123456"),
    "Asia/Novokuznetsk": ("+79000512345", "+73842123456"),
    "Asia/Krasnoyarsk": ("+79135123456", "+73911234567"),
    "Asia/Irkutsk": ("+79020212345", "+73952123456"),
    "Asia/Chita": ("+79141212345", "+73022123456"),
    # Amur region's mobiles; Yakutsk's landlines (Yakutia spans zones: phonenumbers').
    "Asia/Yakutsk": ("+79140412345", "+74112123456"),
    "Asia/Vladivostok": ("+79020512345", "+74231234567"),
    "Asia/Sakhalin": ("+79147412345", "+74242123456"),
    "Asia/Magadan": ("+79140312345", "+74132123456"),
    "Asia/Kamchatka": ("+79140212345", "+74152123456"),
    "Asia/Anadyr": ("+79140801234", "+74272212345"),
}


@pytest.mark.parametrize(
    ("e164", "zone"),
    [
        *((number, zone) for zone, numbers in RUSSIA.items() for number in numbers),
        # Kazakhstan: one zone (UTC+5) since 2024-03-01, landlines and mobiles alike.
        ("+77272501234", "Asia/Almaty"),
        ("+77172123456", "Asia/Almaty"),
        ("+77132123456", "Asia/Almaty"),
        ("+77011234567", "Asia/Almaty"),
        ("+77771234567", "Asia/Almaty"),
        # phonenumbers' zone for Belarus is Moscow's: the same clock as Minsk.
        ("+375291234567", "Europe/Moscow"),
        ("+375171234567", "Europe/Moscow"),
        ("+998901234567", "Asia/Tashkent"),
        ("+998662123456", "Asia/Tashkent"),
        ("+995555123456", "Asia/Tbilisi"),
        ("+995322123456", "Asia/Tbilisi"),
        ("+380441234567", "Europe/Kyiv"),
        ("+493012345678", "Europe/Berlin"),
        ("+12024561111", "America/New_York"),
        ("+81312345678", "Asia/Tokyo"),
        # Several zones on one clock: UK mobiles (four), Finnish mobiles (two).
        ("+447400123456", "Europe/London"),
        ("+358401234567", "Europe/Helsinki"),
    ],
)
def test_timezone_for_phone_tells_the_zone(e164: str, zone: str) -> None:
    assert timezone_for_phone(e164) == zone


@pytest.mark.parametrize(
    "e164",
    [
        # Yakutia spans three zones; so does a range the plan gives all of Russia.
        "+79142712345",
        "+79022012345",
        # Ranges the plan of the table did not list yet.
        "+79771234567",
        "+79951234567",
        # Freephone: Russia's, and international (phonenumbers says "Etc/Unknown").
        "+78001234567",
        "+80012345678",
        # Australian mobiles: eight zones on five clocks.
        "+61412345678",
        "not a number",
    ],
)
def test_timezone_for_phone_is_none_when_the_number_does_not_tell_one_zone(e164: str) -> None:
    assert timezone_for_phone(e164) is None


@pytest.mark.parametrize(
    ("explicit", "phone", "expected"),
    [
        ("Asia/Tokyo", "+79130012345", ("Asia/Tokyo", TimezoneSource.EXPLICIT)),
        (None, "+79130012345", ("Asia/Novosibirsk", TimezoneSource.PHONE)),
        ("", "+79130012345", ("Asia/Novosibirsk", TimezoneSource.PHONE)),
        (None, "+74112123456", ("Asia/Yakutsk", TimezoneSource.PHONE)),
        (None, "+79142712345", ("Europe/Moscow", TimezoneSource.DEFAULT)),
        (None, None, ("Europe/Moscow", TimezoneSource.DEFAULT)),
    ],
)
def test_resolve_timezone_prefers_explicit_then_phone_then_default(
    explicit: str | None, phone: str | None, expected: tuple[str, TimezoneSource]
) -> None:
    assert resolve_timezone(explicit, phone, "Europe/Moscow") == expected


def test_no_answer_of_the_table_is_worse_than_phonenumbers_for_any_of_its_prefixes() -> None:
    for prefix in TABLE:
        number = _valid_number_under(prefix)
        if number is not None:
            assert_never_worse_than_phonenumbers(number)


@given(st.sampled_from(sorted(TABLE)), st.text("0123456789", min_size=12, max_size=12))
def test_no_answer_is_worse_than_phonenumbers_under_the_tables_prefixes(
    prefix: str, digits: str
) -> None:
    number = (prefix + digits)[:12]
    if phonenumbers.is_valid_number(phonenumbers.parse(number)):
        assert_never_worse_than_phonenumbers(number)


@given(
    st.from_regex(
        r"\+(7[3489][0-9]{9}|375[0-9]{9}|998[0-9]{9}|995[0-9]{9}|44[0-9]{10}|49[0-9]{10})",
        fullmatch=True,
    )
)
def test_no_answer_is_worse_than_phonenumbers_for_any_number(e164: str) -> None:
    if phonenumbers.is_valid_number(phonenumbers.parse(e164)):
        assert_never_worse_than_phonenumbers(e164)


@given(st.from_regex(r"\+79[0-9]{9}", fullmatch=True))
def test_phonenumbers_never_places_a_russian_mobile_in_one_clock(e164: str) -> None:
    # Why timezone_for_phone does not ask phonenumbers about +7 9XX numbers: a valid one
    # gets every Russian zone, an invalid one "Etc/Unknown".
    assert len(phonenumbers_clocks(e164)) != 1


def test_the_table_contradicts_phonenumbers_only_where_phonenumbers_is_known_wrong() -> None:
    # Where both name one clock and the clocks differ. Kaliningrad (+7 40…) is not on
    # Bucharest's summer time; Saratov (+7 845…) left Moscow time in 2016.
    contradicted = set()
    for prefix, zone in TABLE.items():
        number = _valid_number_under(prefix)
        if number is not None:
            clocks = phonenumbers_clocks(number)
            if len(clocks) == 1 and clocks != {clock(zone)}:
                contradicted.add(prefix)
    assert {prefix for prefix in contradicted if not prefix.startswith(("+740", "+7845"))} == set()


def test_the_table_is_prefix_free_and_names_real_zones() -> None:
    prefixes = sorted(TABLE)
    assert all(not b.startswith(a) for a, b in itertools.pairwise(prefixes))
    assert {zone for zone in TABLE.values() if not is_valid_timezone(zone)} == set()


def test_the_table_says_how_old_its_numbering_plan_is() -> None:
    sources = phone_zones_sources()
    plan_date = sources["numbering-plan"].split()[0]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", plan_date)
    assert sources["area-codes"].startswith("phonenumbers ")


def test_chainmail_version_tells_the_age_of_the_numbering_plan(tmp_path: Path) -> None:
    result = chainmail(f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}", "--version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    plan_date = phone_zones_sources()["numbering-plan"].split()[0]
    assert f"Russian numbering plan of {plan_date}" in result.stdout
    assert f"phonenumbers {phonenumbers.__version__}" in result.stdout


def test_zoneinfo_has_kazakhstan_on_one_zone() -> None:
    # tzdata 2024a moved Almaty from UTC+6 to UTC+5; an older tzdata is an hour off.
    assert set(clock("Asia/Almaty")) == {timedelta(hours=5)}


def _valid_number_under(prefix: str) -> str | None:
    """A valid phone number starting with `prefix`, if one of a few tries is."""
    for filler in ("1234567890", "2345678901", "5012345678", "0000000000"):
        number = (prefix + filler)[:12]
        if phonenumbers.is_valid_number(phonenumbers.parse(number)):
            return number
    return None
