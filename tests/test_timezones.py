"""A customer's time zone from an explicit value, the phone number, or the default."""

import re
import zoneinfo

import phoneparser
import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.timezones import (
    _NOT_REGIONS,
    _REGION_ZONES,
    _REGIONS_SPANNING_ZONES,
    TimezoneSource,
    _normalize_region,
    is_valid_timezone,
    normalize_phone,
    resolve_timezone,
    timezone_for_phone,
)

IANA_ZONES = zoneinfo.available_timezones()


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


@pytest.mark.parametrize(
    ("e164", "zone"),
    [
        # Mobiles, by operator prefix.
        ("+79161234567", "Europe/Moscow"),
        ("+79130012345", "Asia/Novosibirsk"),
        ("+79147012345", "Asia/Vladivostok"),
        ("+79114512345", "Europe/Kaliningrad"),
        # Landlines, by the prefix table, which names zones phonenumbers gets wrong.
        ("+74012123456", "Europe/Kaliningrad"),
        ("+78452123456", "Europe/Saratov"),
        ("+73432123456", "Asia/Yekaterinburg"),
        # Landlines the prefix table has no region for: phonenumbers, corrected.
        ("+74951234567", "Europe/Moscow"),
        ("+74010012345", "Europe/Kaliningrad"),
        # Kazakhstan shares +7 but not the Russian table.
        ("+77272123456", "Asia/Almaty"),
        ("+493012345678", "Europe/Berlin"),
        ("+12024561111", "America/New_York"),
    ],
)
def test_timezone_for_phone_tells_the_zone(e164: str, zone: str) -> None:
    assert timezone_for_phone(e164) == zone


@pytest.mark.parametrize(
    "e164",
    [
        # Mobile ranges opened after the prefix table was made.
        "+79951234567",
        # Yakutia spans three zones.
        "+79142712345",
        # Only known as "Все" (any region) or as a federal district spanning zones.
        "+79021571234",
        "+79145301234",
        # "+7 901 6" says Krasnodar while its longer prefixes are all over Siberia.
        "+79016812345",
        # UK mobiles: four zones; international freephone: phonenumbers says Etc/Unknown.
        "+447400123456",
        "+80012345678",
        "+77012345678",
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
        (None, "+447400123456", ("Europe/Moscow", TimezoneSource.DEFAULT)),
        (None, None, ("Europe/Moscow", TimezoneSource.DEFAULT)),
    ],
)
def test_resolve_timezone_prefers_explicit_then_phone_then_default(
    explicit: str | None, phone: str | None, expected: tuple[str, TimezoneSource]
) -> None:
    assert resolve_timezone(explicit, phone, "Europe/Moscow") == expected


def test_every_region_of_the_prefix_table_is_deliberately_mapped_or_not() -> None:
    # A region spelled in a new way would otherwise fall silently to the default zone.
    regions = {
        _normalize_region(row["Регион"])
        for row in phoneparser.get_data()
        if row["Код"].startswith("+7")
    }
    listed = _REGION_ZONES.keys() | _REGIONS_SPANNING_ZONES | _NOT_REGIONS
    assert sorted(regions - listed) == []


def test_region_lists_are_disjoint_spelled_as_normalized_and_name_real_zones() -> None:
    lists = [set(_REGION_ZONES), set(_REGIONS_SPANNING_ZONES), set(_NOT_REGIONS)]
    names = [name for names in lists for name in names]
    assert len(names) == len(set(names))
    assert [name for name in names if _normalize_region(name) != name] == []
    assert [zone for zone in _REGION_ZONES.values() if not is_valid_timezone(zone)] == []


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("Санкт - Петербург и Ленинградская область", "санкт-петербург и ленинградская область"),
        ("Хабаровский Край", "хабаровский край"),
        ("г. Москва", "москва"),
        ("  Республика  Марий Эл ", "республика марий эл"),
    ],
)
def test_region_spelling_variants_fold_together(raw: str, normalized: str) -> None:
    assert _normalize_region(raw) == normalized


@given(st.from_regex(r"\+79[0-9]{9}", fullmatch=True))
def test_russian_mobiles_get_none_or_a_real_zone(e164: str) -> None:
    zone = timezone_for_phone(e164)
    assert zone is None or zone in IANA_ZONES
