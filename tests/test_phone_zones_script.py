"""scripts/phone_zones.py, which writes models/phone_zones.tsv from a numbering plan file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The plan's columns as the 2015 copy has them: tab-padded, quotes left inside.
OLD_PLAN = """\
АВС/ DEF;От;До;Емкость;Оператор;Регион
999\t;\t0000000\t;\t0999999\t;\t1000000\t;\tООО "Первый"\t;\tг. Москва и Московская область
999\t;\t1000000\t;\t1034999\t;\t35000\t;\tООО "Первый"\t;\tНовосибирская обл.
999\t;\t2000000\t;\t2099999\t;\t100000\t;\tООО "Второй"\t;\tРоссийская Федерация
999\t;\t3000000\t;\t3099999\t;\t100000\t;\tООО "Второй"\t;\tРеспублика Саха /Якутия/
</table>
</html>
"""

# As the registry publishes it now: more columns, quoted names, "town|region".
NEW_PLAN = (
    "АВС/ DEF;От;До;Емкость;Оператор;Регион;Территория ГАР;ИНН\n"
    '999;4000000;4099999;100000;"ООО ""Третий""";г. Норильск|Красноярский край;;7700000000\n'
    "999;5000000;5999999;1000000;ПАО Четвёртый;Город Москва, Московская область;;7700000001\n"
    + "".join(
        f"999;6{n}00000;6{n}99999;100000;ПАО Пятый;Омская обл.;;7700000002\n" for n in range(10)
    )
)


def generate(tmp_path: Path, *plans: tuple[str, str]) -> subprocess.CompletedProcess[str]:
    paths = []
    for number, (text, encoding) in enumerate(plans):
        path = tmp_path / f"DEF-9xx-{number}.csv"
        path.write_bytes(text.encode(encoding))
        paths.append(str(path))
    command = [sys.executable, str(ROOT / "scripts" / "phone_zones.py"), *paths,
               "--plan-date", "2015-10-08", "--plan-source", "a test plan",
               "--output", str(tmp_path / "phone_zones.tsv")]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def table(tmp_path: Path) -> dict[str, str]:
    lines = (tmp_path / "phone_zones.tsv").read_text("utf-8").splitlines()
    return dict(line.split("\t") for line in lines if not line.startswith("#"))


@pytest.mark.parametrize("encoding", ["utf-8", "cp1251"])
def test_each_range_of_the_plan_becomes_the_fewest_prefixes_of_its_regions_zone(
    tmp_path: Path, encoding: str
) -> None:
    run = generate(tmp_path, (OLD_PLAN, encoding), (NEW_PLAN, "utf-8"))
    assert run.returncode == 0, run.stderr
    mobiles = {prefix: zone for prefix, zone in table(tmp_path).items() if prefix[:4] == "7999"}
    assert mobiles == {
        "79990": "Europe/Moscow",
        # 1000000–1034999: three blocks of 10,000 and five of 1,000.
        **dict.fromkeys(["7999100", "7999101", "7999102"], "Asia/Novosibirsk"),
        **{f"7999103{n}": "Asia/Novosibirsk" for n in range(5)},
        # All of Russia (799920…) and Yakutia (799930…) get no row; nor does 79997…, not
        # in the plan.
        "799940": "Asia/Krasnoyarsk",
        "79995": "Europe/Moscow",
        # Ten ranges of one zone side by side: one row.
        "79996": "Asia/Omsk",
    }


def test_area_codes_and_kazakhstan_are_in_the_table_and_its_sources_in_the_header(
    tmp_path: Path,
) -> None:
    assert generate(tmp_path, (OLD_PLAN, "utf-8")).returncode == 0
    rows = table(tmp_path)

    def zone(number: str) -> str | None:
        return next((rows[number[:n]] for n in range(len(number)) if number[:n] in rows), None)

    assert zone("74012123456") == "Europe/Kaliningrad"
    assert zone("78452123456") == "Europe/Saratov"
    assert zone("77011234567") == zone("76000000000") == "Asia/Almaty"
    # Yakutia's area code spans zones: no row, phonenumbers answers for it.
    assert zone("74112123456") is None
    header = (tmp_path / "phone_zones.tsv").read_text("utf-8").splitlines()[:6]
    assert "# numbering-plan: 2015-10-08 (a test plan)" in header


def test_a_region_name_the_script_does_not_know_stops_it_naming_the_region(
    tmp_path: Path,
) -> None:
    plan = OLD_PLAN + "999\t;\t7000000\t;\t7099999\t;\t100000\t;\tООО\t;\tМарсианская обл.\n"
    run = generate(tmp_path, (plan, "utf-8"))
    assert run.returncode == 1
    assert "Марсианская обл." in run.stderr
    assert not (tmp_path / "phone_zones.tsv").exists()
