"""Customer CSV import (SPEC §7) on both databases, and `chainmail customers import`."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from models.csv_files import MAX_KEPT_ERRORS, NOT_STORABLE, ImportProgress, LineError
from models.customers import ImportReport, import_customers_csv
from models.db import Database
from models.errors import ChainmailError
from models.tables import AuditEntry, Customer, CustomerTag, EmailStatus

ROOT = Path(__file__).resolve().parents[1]
HEADER = "external_id,email,phone,first_name,last_name,timezone,tags"


async def run_import(db: Database, source: Any, **options: Any) -> ImportReport:
    return await import_customers_csv(
        db,
        source,
        default_timezone="Europe/Moscow",
        default_phone_region="RU",
        actor="test",
        **options,
    )


def write(tmp_path: Path, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / "customers.csv"
    path.write_bytes(text.encode(encoding))
    return path


async def customers(db: Database) -> dict[str, Customer]:
    async with db.session() as session:
        return {c.external_id: c for c in await session.scalars(select(Customer))}


async def tags(db: Database) -> dict[str, set[str]]:
    async with db.session() as session:
        rows = await session.execute(
            select(Customer.external_id, CustomerTag.tag).join(
                CustomerTag, CustomerTag.customer_id == Customer.id
            )
        )
        found: dict[str, set[str]] = {}
        for external_id, tag in rows:
            found.setdefault(external_id, set()).add(tag)
        return found


def errors(report: ImportReport) -> list[tuple[int, str]]:
    return [(error.line, error.reason) for error in report.errors]


CYRILLIC_ROWS = (
    "external_id;email;phone;first_name;last_name;timezone;tags\n"
    "1;ivan@mail.ru;8 (913) 123-45-67;Иван;Петров;;vip\n"
    '2;anna@yandex.ru;+7 924 123 45 67;Анна;Щукина;;"vip; новые"\n'
)


@pytest.mark.parametrize(
    ("encoding", "prefix"),
    [("utf-8", ""), ("utf-8", "\ufeff"), ("cp1251", "")],
    ids=["utf-8", "utf-8 with BOM", "cp1251"],
)
async def test_a_file_in_each_encoding_imports_cyrillic_names(
    db: Database, tmp_path: Path, encoding: str, prefix: str
) -> None:
    report = await run_import(db, write(tmp_path, prefix + CYRILLIC_ROWS, encoding))
    assert (report.created, report.updated, report.refused) == (2, 0, 0)
    stored = await customers(db)
    assert (stored["1"].first_name, stored["1"].last_name) == ("Иван", "Петров")
    assert stored["2"].last_name == "Щукина"
    assert await tags(db) == {"1": {"vip"}, "2": {"vip", "новые"}}


async def test_a_cp1251_file_with_latin_first_lines_is_still_read_as_cp1251(
    db: Database, tmp_path: Path
) -> None:
    latin = "".join(f"{i},user{i}@mail.ru,,John,Smith,,\n" for i in range(3, 5000))
    path = write(tmp_path, HEADER + "\n" + latin + "1,,,Иван,Петров,,\n", "cp1251")
    assert path.stat().st_size > 100_000
    report = await run_import(db, path)
    assert report.refused == 0
    assert (await customers(db))["1"].first_name == "Иван"


async def test_a_line_not_in_the_files_encoding_is_refused_alone(
    db: Database, tmp_path: Path
) -> None:
    path = tmp_path / "mixed.csv"
    path.write_bytes(
        (HEADER + "\n1,,,Иван,,,\n").encode()
        + "2,,,Пётр,,,\n".encode("cp1251")
        + "3,,,Анна,,,\n".encode()
    )
    report = await run_import(db, path)
    assert errors(report) == [
        (3, "not UTF-8 text: save the whole file in one encoding, UTF-8 preferably")
    ]
    assert sorted(await customers(db)) == ["1", "3"]


async def test_a_line_with_a_nul_character_is_refused_alone(db: Database, tmp_path: Path) -> None:
    path = write(tmp_path, "external_id,first_name\n1,Ив\x00ан\n2,Анна\n")
    report = await run_import(db, path)
    assert errors(report) == [(2, NOT_STORABLE)]
    assert sorted(await customers(db)) == ["2"]


@pytest.mark.parametrize("delimiter", [",", ";"])
async def test_either_delimiter_is_recognised_from_the_header(
    db: Database, tmp_path: Path, delimiter: str
) -> None:
    rows = [HEADER.split(","), ["1", "a@mail.ru", "+79131234567", "Иван", "", "", "vip"]]
    text = "\n".join(delimiter.join(row) for row in rows) + "\n"
    report = await run_import(db, write(tmp_path, text))
    assert report.created == 1
    assert (await customers(db))["1"].email == "a@mail.ru"


async def test_russian_domestic_phones_are_stored_in_e164_with_their_zone(
    db: Database, tmp_path: Path
) -> None:
    text = (
        "external_id,phone\n"
        "1,8 (913) 123-45-67\n"
        "2,+7 924 123-45-67\n"
        "3,89231234567\n"
        "4,8 (383) 212-34-56\n"
        "5,8 (914) 271-23-45\n"
    )
    await run_import(db, write(tmp_path, text))
    stored = await customers(db)
    assert {k: (c.phone, c.timezone, c.timezone_source) for k, c in stored.items()} == {
        "1": ("+79131234567", "Asia/Novokuznetsk", "phone"),
        "2": ("+79241234567", "Asia/Vladivostok", "phone"),
        "3": ("+79231234567", "Asia/Novosibirsk", "phone"),
        "4": ("+73832123456", "Asia/Novosibirsk", "phone"),
        # A range in a region spanning zones (Yakutia) tells nothing: the default applies.
        "5": ("+79142712345", "Europe/Moscow", "default"),
    }


async def test_an_explicit_time_zone_column_wins_over_the_phone(
    db: Database, tmp_path: Path
) -> None:
    text = "external_id,phone,timezone\n1,+79241234567,Asia/Omsk\n2,+79241234567,\n3,,\n"
    await run_import(db, write(tmp_path, text))
    stored = await customers(db)
    assert {k: (c.timezone, c.timezone_source) for k, c in stored.items()} == {
        "1": ("Asia/Omsk", "explicit"),
        "2": ("Asia/Vladivostok", "phone"),
        "3": ("Europe/Moscow", "default"),
    }


async def test_a_language_column_is_kept_and_a_wrong_one_refused_by_line(
    db: Database, tmp_path: Path
) -> None:
    text = "external_id,language\n1,EN\n2,ru\n3,fr\n4,\n"
    report = await run_import(db, write(tmp_path, text))
    assert [str(e) for e in report.errors] == ["line 4: language 'fr' is not one of en, ru"]
    await run_import(db, write(tmp_path, "external_id,first_name\n1,Ann\n"))
    stored = await customers(db)
    assert {k: c.language for k, c in stored.items()} == {"1": "en", "2": "ru", "4": None}


async def test_extra_columns_become_attributes_and_headers_ignore_case(
    db: Database, tmp_path: Path
) -> None:
    text = " External_ID , EMAIL ,City,Loyalty Level,\n1,a@mail.ru,Омск,gold,\n2,,,silver,\n"
    report = await run_import(db, write(tmp_path, text))
    assert report.refused == 0
    stored = await customers(db)
    assert stored["1"].email == "a@mail.ru"
    assert stored["1"].attributes == {"City": "Омск", "Loyalty Level": "gold"}
    # An empty cell is no value: the key is left out.
    assert stored["2"].attributes == {"Loyalty Level": "silver"}


async def test_bad_lines_are_reported_by_line_in_the_file_and_good_ones_land(
    db: Database, tmp_path: Path
) -> None:
    text = (
        HEADER + ",city\n"  # line 1
        "1,ok@mail.ru,8 (913) 123-45-67,Иван,Петров,,vip,Омск\n"  # 2
        "2,x@,,,,,,\n"  # 3
        '3,anna@mail.ru,,"Анна\nМария",,,,\n'  # 4-5: one row
        "4,b@mail.ru,12345,,,,,\n"  # 6
        "5,,,,,Mars/Base,,\n"  # 7
        ",c@mail.ru,,,,,,\n"  # 8
        "6,d@mail.ru,,\n"  # 9
        "\n"  # 10: blank, skipped
        '7,"e@\nmail.ru",,,,,,\n'  # 11-12: a bad row reported at its first line
        "8,f@mail.ru,,,,,,\n"  # 13
    )
    report = await run_import(db, write(tmp_path, text))
    assert errors(report) == [
        (3, "bad email 'x@'"),
        (6, "bad phone '12345'"),
        (7, "unknown time zone 'Mars/Base'"),
        (8, "missing external_id"),
        (9, "expected 8 columns, found 4"),
        (11, "bad email 'e@\\nmail.ru'"),
    ]
    assert (report.created, report.updated, report.refused) == (3, 0, 6)
    stored = await customers(db)
    assert sorted(stored) == ["1", "3", "8"]
    assert stored["3"].first_name == "Анна\nМария"
    assert str(report.errors[0]) == "line 3: bad email 'x@'"


async def test_reimport_updates_given_columns_keeps_statuses_and_replaces_tags(
    db: Database, tmp_path: Path
) -> None:
    first = HEADER + "\n1,a@mail.ru,+79241234567,Иван,,,vip;new\n2,b@mail.ru,,Анна,,,vip\n"
    await run_import(db, write(tmp_path, first))
    async with db.writer() as session:
        await session.execute(
            update(Customer)
            .where(Customer.external_id == "1")
            .values(email_status=EmailStatus.UNSUBSCRIBED)
        )
    # No phone column this time: phones and the zones they gave stay.
    second = "external_id,first_name,tags\n1,Иван Иванович,loyal\n3,Пётр,\n"
    report = await run_import(db, write(tmp_path, second))
    assert (report.created, report.updated) == (1, 1)
    stored = await customers(db)
    one = stored["1"]
    assert (one.first_name, one.email, one.phone) == ("Иван Иванович", "a@mail.ru", "+79241234567")
    assert (one.timezone, one.email_status) == ("Asia/Vladivostok", "unsubscribed")
    assert await tags(db) == {"1": {"loyal"}, "2": {"vip"}}


async def test_batches_and_duplicates_are_counted_as_rows_of_the_file(
    db: Database, tmp_path: Path
) -> None:
    text = HEADER + "\n" + "".join(f"{i % 3},u{i}@mail.ru,,,,,\n" for i in range(7))
    seen: list[ImportProgress] = []
    report = await run_import(db, write(tmp_path, text), batch_size=2, progress=seen.append)
    assert (report.created, report.updated, report.imported) == (3, 4, 7)
    assert (await customers(db))["0"].email == "u6@mail.ru"
    assert len(seen) == 4
    assert seen[-1].bytes_read == seen[-1].total_bytes == len(text)
    assert seen[-1].lines == 8


async def test_only_the_first_reasons_are_kept_but_every_refusal_counts(
    db: Database, tmp_path: Path
) -> None:
    bad = MAX_KEPT_ERRORS + 500
    text = "external_id,email\n" + "".join(f"{i},bad\n" for i in range(bad)) + "ok,\n"
    report = await run_import(db, write(tmp_path, text))
    assert (report.refused, len(report.errors), report.created) == (bad, MAX_KEPT_ERRORS, 1)
    assert report.errors[-1] == LineError(MAX_KEPT_ERRORS + 1, "bad email 'bad'")


async def test_an_open_stream_is_read_and_left_open(db: Database) -> None:
    stream = io.BytesIO(CYRILLIC_ROWS.encode())
    report = await run_import(db, stream)
    assert report.created == 2
    assert not stream.closed


async def test_the_import_is_audited_with_its_counts(db: Database, tmp_path: Path) -> None:
    await run_import(db, write(tmp_path, "external_id,email\n1,a@mail.ru\n2,x@\n"))
    async with db.session() as session:
        entry = await session.scalar(select(AuditEntry))
    assert entry is not None
    assert (entry.actor, entry.action) == ("test", "customers.import")
    assert entry.details == {
        "file": str(tmp_path / "customers.csv"),
        "created": 1,
        "updated": 0,
        "refused": 1,
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        (
            "id,email\n1,a@mail.ru\n",
            "has no external_id column in its first line (found: id, email)",
        ),
        ("external_id,Email,email\n", "has the column 'email' twice"),
    ],
)
async def test_a_file_without_a_usable_header_is_refused_whole(
    db: Database, tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ChainmailError, match=message.replace("(", r"\(").replace(")", r"\)")):
        await run_import(db, write(tmp_path, text))


async def test_a_missing_file_is_refused_with_its_name(db: Database, tmp_path: Path) -> None:
    with pytest.raises(ChainmailError, match=r"cannot read .*nope\.csv: No such file"):
        await run_import(db, tmp_path / "nope.csv")


# --- reading in a child process (workers=1) --------------------------------------------

# Every kind of refusal, rows across lines, blank lines, a customer listed twice, an
# updated customer, more refusals than are kept, in batches that split all of these.
MIXED_FILE = (
    HEADER + ",city\n"
    "1,ok@mail.ru,8 (913) 123-45-67,Иван,Петров,,vip;new,Омск\n"
    "2,x@,,,,,,\n"
    '3,anna@mail.ru,,"Анна\nМария",,,,\n'
    "4,b@mail.ru,12345,,,,,\n"
    "5,,,,,Mars/Base,,\n"
    ",c@mail.ru,,,,,,\n"
    "6,d@mail.ru,,\n"
    "\n"
    '7,"e@\nmail.ru",,,,,,\n'
    "8,Ив\x00ан@mail.ru,,,,,,\n"
).encode() + (
    "10,,,Пётр,,,,\n".encode("cp1251")
    + b"1,again@mail.ru,+7 924 123 45 67,,,Asia/Omsk,loyal,\n"
    + "".join(f"b{i},bad{i},,,,,,\n" for i in range(MAX_KEPT_ERRORS + 20)).encode()
    + "".join(f"g{i},g{i}@mail.ru,8913{i:07},,,,t{i % 3},Казань\n" for i in range(300)).encode()
)


async def snapshot(db: Database) -> tuple[list[tuple[Any, ...]], set[tuple[str, str]]]:
    async with db.session() as session:
        rows = await session.execute(
            select(
                Customer.external_id,
                Customer.email,
                Customer.phone,
                Customer.first_name,
                Customer.last_name,
                Customer.timezone,
                Customer.timezone_source,
                Customer.email_status,
                Customer.attributes,
            ).order_by(Customer.external_id)
        )
        customers = [tuple(row) for row in rows]
        tag_rows = await session.execute(
            select(Customer.external_id, CustomerTag.tag).join(
                CustomerTag, CustomerTag.customer_id == Customer.id
            )
        )
        return customers, {(external_id, tag) for external_id, tag in tag_rows}


async def forget_customers(db: Database) -> None:
    async with db.writer() as session:
        await session.execute(delete(CustomerTag))
        await session.execute(delete(Customer))


async def test_a_child_process_imports_and_refuses_exactly_as_this_process_does(
    db: Database, tmp_path: Path
) -> None:
    path = tmp_path / "mixed.csv"
    path.write_bytes(MIXED_FILE)
    existing = HEADER + "\n3,old@mail.ru,,Анна,,,old\ng5,,,,,,\n"
    reports: dict[int, ImportReport] = {}
    seen: dict[int, list[ImportProgress]] = {}
    stored = {}
    for workers in (0, 1):
        await forget_customers(db)
        await run_import(db, write(tmp_path, existing))
        seen[workers] = []
        reports[workers] = await run_import(
            db, path, batch_size=7, progress=seen[workers].append, workers=workers
        )
        stored[workers] = await snapshot(db)
    alone, child = reports[0], reports[1]
    assert errors(child) == errors(alone)
    assert (child.created, child.updated, child.refused) == (
        alone.created,
        alone.updated,
        alone.refused,
    )
    assert stored[1] == stored[0]
    assert seen[1] == seen[0]
    # The file is what it is meant to be: every kind of refusal, and more than are kept.
    assert errors(alone)[:8] == [
        (3, "bad email 'x@'"),
        (6, "bad phone '12345'"),
        (7, "unknown time zone 'Mars/Base'"),
        (8, "missing external_id"),
        (9, "expected 8 columns, found 4"),
        (11, "bad email 'e@\\nmail.ru'"),
        (13, NOT_STORABLE),
        (14, "not UTF-8 text: save the whole file in one encoding, UTF-8 preferably"),
    ]
    assert len(alone.errors) == MAX_KEPT_ERRORS
    assert alone.refused == 8 + MAX_KEPT_ERRORS + 20
    # New: 1 and g0…g299 but g5; updated: 3, g5, and 1 listed again in a later batch.
    assert (alone.created, alone.updated) == (1 + 299, 3)
    assert ("1", "loyal") in stored[0][1]
    assert seen[0][-1].bytes_read == seen[0][-1].total_bytes == len(MIXED_FILE)


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "is empty"), ("id,email\n1,a@mail.ru\n", "has no external_id column")],
)
async def test_a_child_process_refuses_an_unusable_file_as_this_process_does(
    db: Database, tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ChainmailError, match=message):
        await run_import(db, write(tmp_path, text), workers=1)
    with pytest.raises(ChainmailError, match=r"cannot read .*nope\.csv: No such file"):
        await run_import(db, tmp_path / "nope.csv", workers=1)
    assert await customers(db) == {}


async def test_a_stream_is_read_in_this_process_whatever_the_workers(db: Database) -> None:
    report = await run_import(db, io.BytesIO(CYRILLIC_ROWS.encode()), workers=1)
    assert report.created == 2


# --- chainmail customers import --------------------------------------------------------


def chainmail(db_url: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": db_url, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        env=env,
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
    )


def test_cli_imports_a_clean_file_and_exits_0(db_url: str, tmp_path: Path) -> None:
    path = write(tmp_path, CYRILLIC_ROWS, "cp1251")
    result = chainmail(db_url, "customers", "import", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "imported 2 customers (2 new, 0 updated)"
    assert result.stderr == ""


def test_cli_lists_refused_lines_on_stderr_and_exits_1(db_url: str, tmp_path: Path) -> None:
    path = write(tmp_path, "external_id,email\n1,a@mail.ru\n2,x@\n3,b@mail.ru,extra\n")
    result = chainmail(db_url, "customers", "import", str(path), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.strip() == "imported 1 customer (1 new, 0 updated); 2 lines refused"
    assert result.stderr.splitlines() == [
        "line 3: bad email 'x@'",
        "line 4: expected 2 columns, found 3",
    ]


def test_cli_refuses_an_unreadable_file_in_one_line(db_url: str, tmp_path: Path) -> None:
    result = chainmail(db_url, "customers", "import", str(tmp_path / "nope.csv"), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"chainmail: cannot read {tmp_path / 'nope.csv'}: No such file or directory"
    ]
