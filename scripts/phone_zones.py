"""Regenerate models/phone_zones.tsv: the time zone of Russian and Kazakh number prefixes.

    .venv/bin/python scripts/phone_zones.py DEF-9xx.csv --plan-date YYYY-MM-DD \\
        --plan-source "where the file came from"

Where the rows come from (docs/timezones.md tells how they are used):

  +7 9…        Russian mobiles: the number ranges of the numbering plan's DEF file
               ("Выписка из реестра Российской системы и плана нумерации", DEF-9xx.csv
               on opendata.digital.gov.ru, or an older copy of it in the same columns:
               code; from; to; capacity; operator; region; …), each range in the zone
               of the region the plan names for it.
  +7 3…, 4…, 8…  Russian area codes: the region phonenumbers' geocoder names for the code
               (in Russian), in that region's zone.
  +7 6…, 7…    Kazakhstan: one zone, UTC+5 everywhere since 2024-03-01 (tzdata 2024a).

A range or area code in a region spanning zones (Yakutia, "Российская Федерация") gets no
row, nor do the numbers the plan does not list: the lookup leaves those to phonenumbers.
A region name missing from the lists below stops the script with the names to list, so a
new spelling in a fresher plan never falls silently to the default zone.

The plan the committed table was made from, the freshest a package registry ships (no
maintained package on PyPI or npm carries the plan; see docs/timezones.md):

    npm pack numcap@0.0.14 && tar xzf numcap-0.0.14.tgz
    .venv/bin/python scripts/phone_zones.py package/download/Kody_DEF-9kh.csv \\
        --plan-date 2015-10-08 --plan-source "npm numcap 0.0.14, download/Kody_DEF-9kh.csv"
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import phonenumbers
from phonenumbers.geodata import GEOCODE_DATA

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "models" / "phone_zones.tsv"

# Kazakhstan's share of +7, in one zone since 2024-03-01.
KAZAKHSTAN_PREFIXES = ("76", "77")
KAZAKHSTAN_ZONE = "Asia/Almaty"
KAZAKHSTAN_OFFSET = timedelta(hours=5)

# Region names as the plan and phonenumbers' geocoder spell them (after `normalized`),
# grouped by zone. Towns and districts are here too where the plan names one instead of
# its region.
ZONE_REGIONS: dict[str, tuple[str, ...]] = {
    "Europe/Kaliningrad": ("калининградская область",),
    "Europe/Moscow": (
        "г. москва",
        "город москва",
        "московская область",
        "г. санкт-петербург",
        "город санкт-петербург",
        "ленинградская область",
        "белгородская область",
        "брянская область",
        "г. брянск",
        "владимирская область",
        "г. владимир",
        "воронежская область",
        "ивановская область",
        "калужская область",
        "костромская область",
        "г. кострома",
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
        "вологодская область",
        "мурманская область",
        "г. мурманск",
        "новгородская область",
        "псковская область",
        "г. псков",
        "республика карелия",
        "республика коми",
        "нижегородская область",
        "пензенская область",
        "республика марий эл",
        "республика мордовия",
        "г. саранск",
        "республика татарстан",
        "г. казань",
        "чувашская республика",
        "чувашская республика-чувашия",
        "краснодарский край",
        "г. сочи",
        "ростовская область",
        "республика адыгея",
        "республика калмыкия",
        "республика дагестан",
        "республика ингушетия",
        "г. назрань",
        "республика кабардино-балкарская",
        "кабардино-балкарская республика",
        "республика карачаево-черкесская",
        "карачаево-черкесская республика",
        "республика северная осетия-алания",
        "республика чеченская",
        "чеченская республика",
        "ставропольский край",
        "г. ставрополь",
        "г. минеральные воды",
        # Numbered in the Russian plan, on Moscow time since 2022.
        "донецкая народная республика",
        "луганская народная республика",
        "запорожская область",
        "херсонская область",
    ),
    # Kirov and Volgograd keep Moscow time now, but their zones' histories differ.
    "Europe/Kirov": ("кировская область",),
    "Europe/Volgograd": ("волгоградская область",),
    "Europe/Simferopol": ("республика крым", "г. севастополь", "город севастополь"),
    "Europe/Astrakhan": ("астраханская область",),
    "Europe/Saratov": ("саратовская область",),
    "Europe/Ulyanovsk": ("ульяновская область",),
    "Europe/Samara": (
        "самарская область",
        "республика удмуртская",
        "удмуртская республика",
        "р-н увинский",
    ),
    "Asia/Yekaterinburg": (
        "свердловская область",
        "челябинская область",
        "тюменская область",
        "г. тюмень",
        "курганская область",
        "г. курган",
        "оренбургская область",
        "г. оренбург",
        "пермский край",
        "республика башкортостан",
        "р-ны абзелиловский и белорецкий",
        "ханты-мансийский автономный округ-югра ао",
        "ханты-мансийский автономный округ-югра",
        "ханты-мансийский-югра ао",
        "сургутский район",
        "г. сургут",
        "ямало-ненецкий ао",
        "ямало-ненецкий автономный округ",
    ),
    "Asia/Omsk": ("омская область",),
    "Asia/Novosibirsk": ("новосибирская область",),
    "Asia/Tomsk": ("томская область",),
    "Asia/Barnaul": ("алтайский край", "республика алтай"),
    "Asia/Novokuznetsk": (
        "кемеровская область",
        "кемеровская область-кузбасс",
        "г. кемерово",
        "г. новокузнецк",
    ),
    "Asia/Krasnoyarsk": (
        "красноярский край",
        "г. красноярск",
        "г. норильск",
        "р-н таймырский долгано-ненецкий",
        "р-н эвенкийский",
        "республика хакасия",
        "республика тыва",
        "р-н тоджинский",
    ),
    "Asia/Irkutsk": ("иркутская область", "республика бурятия"),
    "Asia/Chita": ("забайкальский край", "р-н агинский"),
    # Yakutsk itself; the rest of Yakutia spans three zones.
    "Asia/Yakutsk": ("амурская область", "г. якутск"),
    "Asia/Vladivostok": (
        "приморский край",
        "г. владивосток",
        "хабаровский край",
        "еврейская автономная область",
    ),
    # The Kuril Islands kept their own zones' histories, but the whole region is on
    # UTC+11 now, so Sakhalin's zone tells every number of it the right time.
    "Asia/Sakhalin": ("сахалинская область",),
    "Asia/Magadan": ("магаданская область",),
    "Asia/Kamchatka": ("камчатский край", "корякский округ"),
    "Asia/Anadyr": ("чукотский ао", "чукотский автономный округ"),
}

# Regions in more than one zone: their numbers get no row.
REGIONS_SPANNING_ZONES = frozenset(
    {
        "российская федерация",
        "россия",
        # Yakutia runs from UTC+9 to UTC+11.
        "республика саха /якутия/",
        "республика саха (якутия)",
    }
)

# Names that are no Russian region: left to phonenumbers. Baikonur is a town in
# Kazakhstan leased to Russia and numbered in its plan.
NOT_RUSSIAN_REGIONS = frozenset({"байконыр", "байконур", "г. байконур"})

SPANS = "several zones"


def normalized(name: str) -> str:
    """Fold the spelling variants of region names: case, "ё", stress marks, spaces around
    hyphens and in general, "обл." for "область"."""
    folded = name.casefold().replace("ё", "е").replace("\u0301", "")
    folded = re.sub(r"\s*-\s*", "-", folded)
    folded = re.sub(r"\bобл\b\.?", "область", folded)
    return " ".join(folded.split())


_REGION_ZONES = {region: zone for zone, regions in ZONE_REGIONS.items() for region in regions}


def zones_of_region(region: str) -> set[str] | None:
    """The zones a region name stands for ({SPANS} for one spanning zones; an empty set
    for a name to leave to phonenumbers), or None for a name not listed here. Names the
    lists lack are read in parts: "town|district", "region and region", "region, region"."""
    name = normalized(region)
    if name in _REGION_ZONES:
        return {_REGION_ZONES[name]}
    if name in REGIONS_SPANNING_ZONES:
        return {SPANS}
    if name in NOT_RUSSIAN_REGIONS:
        return set()
    if "|" in name:
        # A town and its district or region: the first part this script knows.
        for part in reversed(name.split("|")):
            zones = zones_of_region(part)
            if zones is not None:
                return zones
        return None
    parts = re.split(r",\s*| и ", name)
    if len(parts) == 1:
        return None
    zones_of_parts = [zones_of_region(part) for part in parts]
    if any(zones is None for zones in zones_of_parts):
        return None
    return set().union(*zones_of_parts)  # type: ignore[arg-type]


class UnknownRegions(Exception):
    def __init__(self, names: Iterable[str]) -> None:
        self.names = sorted(set(names))
        super().__init__(
            "region names not listed in scripts/phone_zones.py: " + "; ".join(self.names)
        )


def _single_zone(zones: set[str]) -> str | None:
    return next(iter(zones)) if len(zones) == 1 and SPANS not in zones else None


def blocks(low: int, high: int, width: int) -> Iterator[str]:
    """The fewest decimal prefixes that cover the numbers from `low` to `high` (both
    included) of `width` digits: 4900000–5399999 is 49, 50, 51, 52, 53."""
    while low <= high:
        size = 0
        while size < width and low % 10 ** (size + 1) == 0 and low + 10 ** (size + 1) - 1 <= high:
            size += 1
        yield f"{low:0{width}d}"[: width - size]
        low += 10**size


def read_plan(path: Path) -> list[tuple[str, int, int, str]]:
    """The DEF rows of a numbering plan file: (code, from, to, region)."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1251")
    rows = []
    for fields in csv.reader(text.splitlines(), delimiter=";"):
        cells = [cell.strip() for cell in fields]
        if len(cells) < 6 or not re.fullmatch(r"9\d\d", cells[0]):
            continue  # the header, blank lines, area codes, an HTML tail in old copies
        code, low, high, region = cells[0], int(cells[1]), int(cells[2]), cells[5]
        rows.append((code, low, high, region))
    return rows


def mobile_blocks(rows: Iterable[tuple[str, int, int, str]]) -> dict[str, str]:
    """Prefixes (digits with the country code) of the plan's ranges, each to its zone."""
    zone_of_block: dict[str, str] = {}
    unknown = []
    for code, low, high, region in rows:
        zones = zones_of_region(region)
        if zones is None:
            unknown.append(region)
            continue
        zone = _single_zone(zones) or SPANS
        for block in blocks(low, high, 7):
            # A block listed twice in two zones is in neither.
            prefix = "7" + code + block
            zone_of_block[prefix] = zone if zone_of_block.get(prefix, zone) == zone else SPANS
    if unknown:
        raise UnknownRegions(unknown)
    return _without_overlaps(zone_of_block)


def _without_overlaps(zone_of_block: dict[str, str]) -> dict[str, str]:
    """Drop the blocks inside another block of the plan (ranges listed twice, nested),
    and both where their zones disagree; then the blocks in no single zone."""
    dropped = set()
    for prefix, zone in zone_of_block.items():
        for length in range(1, len(prefix)):
            outer = prefix[:length]
            if outer in zone_of_block:
                dropped.add(prefix)
                if zone_of_block[outer] != zone:
                    dropped.add(outer)
    return {
        prefix: zone
        for prefix, zone in zone_of_block.items()
        if prefix not in dropped and zone != SPANS
    }


def area_code_blocks() -> dict[str, str]:
    """Russian landline prefixes, by the region phonenumbers' geocoder names for them.
    The geocoder answers by longest prefix; the blocks returned overlap nowhere."""
    zone_of_prefix: dict[str, str | None] = {}
    unknown = []
    for prefix, names in GEOCODE_DATA.items():
        if not prefix.startswith("7") or prefix.startswith(("79", *KAZAKHSTAN_PREFIXES)):
            continue
        if "ru" not in names:
            continue
        zones = zones_of_region(names["ru"])
        if zones is None:
            unknown.append(names["ru"])
        else:
            zone_of_prefix[prefix] = _single_zone(zones)
    if unknown:
        raise UnknownRegions(unknown)
    flat: dict[str, str] = {}
    for prefix, zone in zone_of_prefix.items():
        if not any(prefix.startswith(other) for other in zone_of_prefix if other != prefix):
            _flatten(prefix, zone, zone_of_prefix, flat)
    return flat


def _flatten(
    prefix: str, zone: str | None, zone_of_prefix: dict[str, str | None], into: dict[str, str]
) -> None:
    longer = [other for other in zone_of_prefix if other != prefix and other.startswith(prefix)]
    if not longer:
        if zone is not None:
            into[prefix] = zone
        return
    for digit in "0123456789":
        child = prefix + digit
        _flatten(child, zone_of_prefix.get(child, zone), zone_of_prefix, into)


def merged(zone_of_block: dict[str, str]) -> dict[str, str]:
    """The same numbers in fewer rows: ten sibling blocks of one zone become their parent
    (never shorter than two digits: the country code alone is Russia and Kazakhstan)."""
    table = dict(zone_of_block)
    for length in range(max(map(len, table)), 2, -1):
        siblings: dict[str, dict[str, str]] = defaultdict(dict)
        for prefix, zone in table.items():
            if len(prefix) == length:
                siblings[prefix[:-1]][prefix[-1]] = zone
        for parent, children in siblings.items():
            if len(children) == 10 and len(set(children.values())) == 1:
                for digit in children:
                    del table[parent + digit]
                table[parent] = next(iter(children.values()))
    return table


def check_kazakhstan_is_one_zone(today: date) -> None:
    """Refuse to write a table that would put Kazakhstan an hour off: tzdata before 2024a
    still has Almaty on UTC+6."""
    zone = zoneinfo.ZoneInfo(KAZAKHSTAN_ZONE)
    start = datetime(today.year, 1, 1, tzinfo=UTC)
    offsets = {(start + timedelta(hours=12 * n)).astimezone(zone).utcoffset() for n in range(1462)}
    if offsets != {KAZAKHSTAN_OFFSET}:
        raise SystemExit(
            f"zoneinfo's {KAZAKHSTAN_ZONE} is not UTC+5 all through {today.year} and "
            f"{today.year + 1} (tzdata older than 2024a?): update the system's tzdata, or "
            "run with PYTHONTZPATH= to read the tzdata package's"
        )


def table_text(table: dict[str, str], plan_date: str, plan_source: str, today: date) -> str:
    header = [
        "# Time zones of phone number prefixes (digits with the country code).",
        "# Generated by scripts/phone_zones.py: edit that script, not this file.",
        f"# numbering-plan: {plan_date} ({plan_source})",
        f"# area-codes: phonenumbers {phonenumbers.__version__}",
        f"# kazakhstan: {' '.join(KAZAKHSTAN_PREFIXES)} -> {KAZAKHSTAN_ZONE}",
        f"# generated: {today.isoformat()}",
    ]
    rows = [f"{prefix}\t{table[prefix]}" for prefix in sorted(table)]
    return "\n".join([*header, *rows]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("plan", type=Path, nargs="+", help="the plan's DEF-9xx CSV file(s)")
    parser.add_argument("--plan-date", required=True, type=date.fromisoformat)
    parser.add_argument("--plan-source", required=True, help="where the plan file came from")
    parser.add_argument("--output", type=Path, default=TABLE)
    args = parser.parse_args(argv)

    today = date.today()
    check_kazakhstan_is_one_zone(today)
    rows = [row for path in args.plan for row in read_plan(path)]
    try:
        mobiles = mobile_blocks(rows)
        landlines = area_code_blocks()
    except UnknownRegions as exc:
        print(f"phone_zones: {exc}", file=sys.stderr)
        return 1
    kazakhstan = dict.fromkeys(KAZAKHSTAN_PREFIXES, KAZAKHSTAN_ZONE)
    table = merged({**landlines, **mobiles, **kazakhstan})
    args.output.write_text(
        table_text(table, args.plan_date.isoformat(), args.plan_source, today), encoding="utf-8"
    )
    print(
        f"{args.output}: {len(table)} prefixes from {len(rows)} ranges of the plan, "
        f"{len(landlines)} area code blocks and Kazakhstan"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
