"""A customer's time zone: given explicitly, told from the phone number, or the default.

Russian numbers are told by their operator prefix: `phonenumbers` gives every +7 9XX
mobile all Russian zones, and for some area codes a zone that is not the region's own
(Kaliningrad → Europe/Bucharest, Saratov → Europe/Moscow: an hour off). The prefix
table of `ru-phone-parser` names the region of each operator range and area code; a
hand-written table below turns the region into its IANA zone. The prefix table is tried
first for every Russian number, landlines included, because its regions give the exact
zone where `phonenumbers` is wrong; `phonenumbers` answers only where the table has no
region for the number.
"""

from __future__ import annotations

import re
import zoneinfo
from enum import Enum, StrEnum
from functools import cache

import phonenumbers
import phoneparser
from phonenumbers import timezone as phonenumbers_timezone


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
    """The IANA zone of an E.164 number, or None when the number does not tell one zone."""
    if _is_russian(e164):
        zone = _zone_by_russian_prefix(e164)
        if zone is not _Sentinel.NO_REGION:
            return zone
        # phonenumbers gives every +7 9XX mobile all Russian zones: it cannot tell one.
        if e164.startswith("+79"):
            return None
    return _zone_by_phonenumbers(e164)


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


def _is_russian(e164: str) -> bool:
    # +7 6XX and +7 7XX belong to Kazakhstan, which shares the country code.
    return e164.startswith("+7") and e164[2:3] not in {"6", "7"}


# Regions as spelled in ru-phone-parser (after `_normalize_region`), grouped by zone.
# Every Russian federal subject is here, with the spellings the data uses for it.
_ZONE_REGIONS: dict[str, tuple[str, ...]] = {
    "Europe/Kaliningrad": ("калининградская область",),
    "Europe/Moscow": (
        "москва",
        "московская область",
        "москва и московская область",
        # Moscow's forest-park belt: Zhukovsky, Vidnoye, Lobnya.
        "лесопарковый защитный пояс москвы",
        "санкт-петербург",
        "ленинградская область",
        "санкт-петербург и ленинградская область",
        "ленинградская область, мурманская область",
        "белгородская область",
        "брянская область",
        "владимирская область",
        "воронежская область",
        "ивановская область",
        "калужская область",
        "костромская область",
        "курская область",
        "липецкая область",
        "орловская область",
        "рязанская область",
        "смоленская область",
        "тамбовская область",
        "тверская область",
        "тульская область",
        "ярославская область",
        "архангельская область",
        "ненецкий ао",
        "ненецкий автономный округ",
        "архангельская область и ненецкий автономный округ",
        "вологодская область",
        "мурманская область",
        "новгородская область",
        "великий новгородская область",
        "псковская область",
        "карелия",
        "республика карелия",
        "коми",
        "республика коми",
        "нижегородская область",
        "пензенская область",
        "марий эл",
        "республика марий эл",
        "марийская республика",
        "мордовия",
        "республика мордовия",
        "татарстан",
        "республика татарстан",
        "республика татарстан (татарстан)",
        "республика татария",
        # "Набережные Челны, Республика Татарстан" split across two columns.
        "челны республика татарстан",
        "чувашия",
        "чувашская республика",
        "краснодарский край",
        "ростовская область",
        "адыгея",
        "республика адыгея",
        "калмыкия",
        "республика калмыкия",
        "дагестан",
        "республика дагестан",
        "ингушетия",
        "республика ингушетия",
        "кабардино-балкария",
        "кабардино-балкарская республика",
        "карачаево-черкесия",
        "республика карачаево-черкесия",
        "карачаево-черкесская республика",
        "северная осетия",
        "республика северная осетия",
        "республика северная осетия-алания",
        "чечня",
        "чеченская республика",
        "ставропольский край",
        # "Минеральные Воды, Ставропольский край" split across two columns.
        "воды ставропольский край",
        # Every subject of these two districts keeps Moscow time.
        "центральный фо",
        "центральный фо (кроме москвы и московской области)",
        "центральный фо (только москва и московская область",
        "северо-кавказский фо",
    ),
    # Kirov and Volgograd keep Moscow time now, but their zones' histories differ.
    "Europe/Kirov": ("кировская область",),
    "Europe/Volgograd": ("волгоградская область",),
    "Europe/Simferopol": ("республика крым", "крым", "севастополь"),
    "Europe/Astrakhan": ("астраханская область",),
    "Europe/Saratov": ("саратовская область",),
    "Europe/Ulyanovsk": ("ульяновская область",),
    "Europe/Samara": (
        "самарская область",
        "удмуртия",
        "удмуртская республика",
        "удмуртская республика (удмуртия)",
        "республика удмуртия",
    ),
    "Asia/Yekaterinburg": (
        "свердловская область",
        "челябинская область",
        "тюменская область",
        "курганская область",
        "оренбургская область",
        "пермский край",
        "башкортостан",
        "республика башкортостан",
        "республика башкирия",
        "ханты-мансийский ао",
        "ханты-мансийский автономный округ",
        "ханты-мансийский автономный округ-югра",
        "ханты-мансийский-югра автономный округ",
        "ямало-ненецкий ао",
        "ямало-ненецкий автономный округ",
        # Every subject of the Ural district is on Yekaterinburg time.
        "уральский фо",
    ),
    "Asia/Omsk": ("омская область",),
    "Asia/Novosibirsk": ("новосибирская область",),
    "Asia/Tomsk": ("томская область",),
    "Asia/Barnaul": ("алтайский край", "республика алтай"),
    "Asia/Novokuznetsk": ("кемеровская область",),
    "Asia/Krasnoyarsk": (
        "красноярский край",
        "хакасия",
        "республика хакасия",
        "тыва",
        "республика тыва",
        "республика тува",
    ),
    "Asia/Irkutsk": ("иркутская область", "бурятия", "республика бурятия"),
    "Asia/Chita": ("забайкальский край", "читинская область"),
    "Asia/Yakutsk": ("амурская область",),
    "Asia/Vladivostok": (
        "приморский край",
        "хабаровский край",
        "еврейская ао",
        "еврейская автономная область",
    ),
    # The Kuril Islands kept their own zones' histories, but the whole region is on
    # UTC+11 now, so Sakhalin's zone tells every number of it the right time.
    "Asia/Sakhalin": ("сахалинская область",),
    "Asia/Magadan": ("магаданская область",),
    "Asia/Kamchatka": ("камчатский край",),
    "Asia/Anadyr": ("чукотский ао", "чукотский автономный округ"),
}

_REGION_ZONES: dict[str, str] = {
    region: zone for zone, regions in _ZONE_REGIONS.items() for region in regions
}

# Regions that do not fall in one zone: the number is known to be anywhere among them.
_REGIONS_SPANNING_ZONES = frozenset(
    {
        "все",
        "все, южная осетия",
        "россия",
        "российская федерация",
        # Yakutia runs from UTC+9 to UTC+11.
        "якутия",
        "республика якутия",
        "республика саха (якутия)",
        "северо-западный фо",
        "приволжский фо",
        "приволжский фо (кроме нижегородской области)",
        "приволжский фо, центральный фо (только москва и мо",
        "южный фо, северо-кавказский фо",
        "сибирский фо",
        "дальневосточный фо",
        "центральный фо, уральский фо, южный фо, северо-кав",
        "кроме дальневосточного фо",
        "кроме северо-западного фо",
        "кроме уральского фо и дальневосточного фо",
        # Lists cut off at 50 characters: the regions after the cut are unknown.
        "курская область, калужская область, санкт-петербур",
        "москва, тюменская область, красноярский край, рост",
        "санкт-петербург, приморский край, кемеровская обла",
        "москва, южная осетия",
        # An operator's own macro-regions, on 800 numbers only, without published borders.
        "северо-западный регион",
        "сибирский регион",
        "уральский регион",
        "центральный регион",
    }
)

# Values in the region column that name no Russian region. Such a row says nothing of
# the zone, so the lookup goes on to a shorter prefix or to `phonenumbers`. District
# names are among them: the same names recur in regions of different zones (there are
# Volodarsky districts near Nizhny Novgorod and in Astrakhan), and several of these rows
# have their columns shifted, naming a district, a town and an area code that disagree.
_NOT_REGIONS = frozenset(
    {
        "",
        "абхазия",
        "байконур",
        "андреапольский",
        "ачхой-мартановский район",
        "бавлинский",
        "балашихинский",
        "белохолуницкий",
        "верхотурский",
        "весьегонский",
        "володарский",
        "восточный",
        "горнозаводский",
        "даниловский",
        "дмитровский",
        "домодедовский",
        "дорогобужский",
        "забайкальский",
        "завьяловский",
        "западнодвинский",
        "зубцовский",
        "истринский",
        "калязинский",
        "каргопольский",
        "киреевский",
        "кораблинский",
        "краснохолмский",
        "лихославльский",
        "люберецкий",
        "надтеречньий район",
        "нижнеудинский",
        "нижняя тура",
        "ногинский",
        "нурлатский",
        "октябрьский",
        "осинский",
        "пижанский",
        "пушкинский",
        "рыбновский",
        "советский",
        "солнечногорский",
        "старицкий",
        "сургутский",
        "таштагольский",
        "тоджинский",
        "торопецкий",
        "увинский",
        "уржумский",
        "фировский",
        "химкинский",
        "черемхово",
        "чеховский",
        "шали",
        "шацкий",
        "шелковской район",
        "шенкурский",
        "ютазинский",
        "ягоднинский",
        "ярский",
    }
)


def _normalize_region(name: str) -> str:
    """Fold the spelling variants of the data: case, "ё", spaces around hyphens, "г."."""
    folded = name.casefold().replace("ё", "е")
    folded = re.sub(r"\s*-\s*", "-", folded)
    folded = re.sub(r"^г\.\s*", "", folded.strip())
    return " ".join(folded.split())


class _Sentinel(Enum):
    # The prefix table has no region for a number: `phonenumbers` is asked instead.
    NO_REGION = "no region"


def _zone_of_region(region: str) -> str | _Sentinel | None:
    name = _normalize_region(region)
    if name in _REGION_ZONES:
        return _REGION_ZONES[name]
    if name in _REGIONS_SPANNING_ZONES:
        return None
    # A region missing from the tables above (new data) is left to `phonenumbers`
    # rather than guessed; a test makes sure no region of the shipped data is missing.
    return _Sentinel.NO_REGION


@cache
def _russian_prefix_zones() -> tuple[dict[str, str | None], int]:
    """Map each Russian prefix of ru-phone-parser (digits with the country code, '7913')
    to the zone of the numbers under it, or to None when they are in several zones;
    with the length of the longest prefix."""
    zones_by_prefix: dict[str, set[str | None]] = {}
    for row in phoneparser.get_data():
        code = row["Код"]
        # The data also holds its header row and a few foreign codes marked "Россия".
        if not code.startswith("+7"):
            continue
        zone = _zone_of_region(row["Регион"])
        if zone is _Sentinel.NO_REGION:
            continue
        prefix = code[1:].replace(" ", "")
        zones_by_prefix.setdefault(prefix, set()).add(zone)
    # Rows of one prefix may disagree (ranges handed from one region to another).
    prefix_zones = {
        prefix: next(iter(zones)) if len(zones) == 1 else None
        for prefix, zones in zones_by_prefix.items()
    }
    # A shorter prefix answers for the numbers its longer prefixes leave out, so it can
    # only be believed where those agree with it. Often they do not: "+7 909 2" says
    # Sverdlovsk while all 83 longer prefixes under it are in European Russia, "+7 921 7"
    # says Kaliningrad over St Petersburg and Karelia. The left-out numbers are unknown.
    contradicted = {
        prefix[:length]
        for prefix, zone in prefix_zones.items()
        for length in range(1, len(prefix))
        if prefix_zones.get(prefix[:length], zone) != zone
    }
    for prefix in contradicted:
        prefix_zones[prefix] = None
    return prefix_zones, max(map(len, prefix_zones))


def _zone_by_russian_prefix(e164: str) -> str | _Sentinel | None:
    prefix_zones, longest = _russian_prefix_zones()
    digits = e164[1:]
    for length in range(min(len(digits), longest), 1, -1):
        zone = prefix_zones.get(digits[:length], _Sentinel.NO_REGION)
        if zone is not _Sentinel.NO_REGION:
            return zone
    return _Sentinel.NO_REGION


# Russian area codes where `phonenumbers` names a zone with other clocks than the
# region's own: Kaliningrad is not on Bucharest's summer time, Saratov left Moscow time
# in 2016.
_RUSSIAN_AREA_CODE_ZONES = {"401": "Europe/Kaliningrad", "845": "Europe/Saratov"}


def _zone_by_phonenumbers(e164: str) -> str | None:
    try:
        number = phonenumbers.parse(e164)
    except phonenumbers.NumberParseException:
        return None
    zones = phonenumbers_timezone.time_zones_for_number(number)
    if len(zones) != 1 or zones[0] == phonenumbers_timezone.UNKNOWN_TIMEZONE:
        return None
    if _is_russian(e164) and e164[2:5] in _RUSSIAN_AREA_CODE_ZONES:
        return _RUSSIAN_AREA_CODE_ZONES[e164[2:5]]
    return zones[0]
