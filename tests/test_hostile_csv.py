"""Hostile and broken customer input (issue 11, items 4 and 5): every bad line or item is
refused with its line or index and a reason, and the good data beside it is kept, on
both databases and through both readers (this process, and the child of `workers=1`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from models.csv_files import MAX_LINE_CHARS, MAX_ROW_LINES, NOT_STORABLE
from models.customers import (
    ATTRIBUTES_MAX_DEPTH,
    ImportReport,
    import_customers_csv,
    save_customers,
)
from models.db import Database
from models.errors import ChainmailError
from models.tables import Customer

GOOD = "".join(f"u{n},u{n}@example.com,Name{n}\n" for n in range(3, 11))
HEADER = "external_id,email,first_name\n"
DEFAULTS: dict[str, Any] = {"default_timezone": "Europe/Moscow", "default_phone_region": "RU"}


@pytest.fixture(params=[0, 1], ids=["in-process", "child-reader"])
def workers(request: pytest.FixtureRequest) -> int:
    return int(request.param)


async def run_import(db: Database, path: Path, workers: int) -> ImportReport:
    return await import_customers_csv(db, path, actor="test", workers=workers, **DEFAULTS)


def write(tmp_path: Path, data: str | bytes) -> Path:
    path = tmp_path / "hostile.csv"
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


async def stored(db: Database) -> dict[str, Customer]:
    async with db.session() as session:
        return {c.external_id: c for c in await session.scalars(select(Customer))}


def lines_refused(report: ImportReport) -> list[int]:
    return [error.line for error in report.errors]


async def test_unclosed_quote_to_the_end_of_the_file_is_reported_and_the_rest_imported(
    db: Database, tmp_path: Path, workers: int
) -> None:
    # The red-team case: this imported 2 customers and dropped u3–u10 without a word.
    path = write(
        tmp_path, HEADER + "u1,u1@example.com,One\n" + 'u2,u2@example.com,"Unclosed\n' + GOOD
    )
    report = await run_import(db, path, workers)
    assert lines_refused(report) == [3]
    assert "quote opened on this line is never closed" in report.errors[0].reason
    assert report.refused == 1
    customers = await stored(db)
    assert sorted(customers) == sorted(["u1", *(f"u{n}" for n in range(3, 11))])
    assert customers["u3"].first_name == "Name3"


async def test_unclosed_quote_closed_by_a_later_quote_far_below_is_cut_at_the_row_limit(
    db: Database, tmp_path: Path, workers: int
) -> None:
    good = "".join(f"g{n},g{n}@example.com,Name{n}\n" for n in range(60))
    data = HEADER + 'u2,u2@example.com,"Unclosed\n' + good + 'g60,g60@example.com,"Late"\n'
    report = await run_import(db, write(tmp_path, data), workers)
    assert lines_refused(report) == [2]
    assert f"more than {MAX_ROW_LINES} lines" in report.errors[0].reason
    assert sorted(await stored(db)) == sorted(f"g{n}" for n in range(61))


async def test_unclosed_quote_that_pairs_with_a_nearby_quote_is_refused_not_merged(
    db: Database, tmp_path: Path, workers: int
) -> None:
    # The stray quote closes at the next row's quoted name: the columns no longer add up.
    data = (
        HEADER
        + 'u2,u2@example.com,"Unclosed\n'
        + "u3,u3@example.com,Three\n"
        + 'u4,u4@example.com,"Four, the fourth"\n'
        + "u5,u5@example.com,Five\n"
    )
    report = await run_import(db, write(tmp_path, data), workers)
    assert lines_refused(report) == [2]
    customers = await stored(db)
    assert sorted(customers) == ["u3", "u4", "u5"]
    assert customers["u4"].first_name == "Four, the fourth"


async def test_a_quoted_value_over_a_few_lines_is_still_one_value(
    db: Database, tmp_path: Path, workers: int
) -> None:
    data = "external_id,email,address\n" + 'u1,u1@example.com,"1 Main St\nFlat 2\nTown"\n' + GOOD
    report = await run_import(db, write(tmp_path, data), workers)
    assert report.refused == 0
    customers = await stored(db)
    assert customers["u1"].attributes == {"address": "1 Main St\nFlat 2\nTown"}
    assert len(customers) == 9


async def test_field_over_the_csv_limit_is_a_line_numbered_refusal(
    db: Database, tmp_path: Path, workers: int
) -> None:
    data = HEADER + "u1,u1@example.com,One\n" + 'u2,u2@example.com,"' + "x" * 200_000 + '"\n' + GOOD
    report = await run_import(db, write(tmp_path, data), workers)
    assert lines_refused(report) == [3]
    assert "field larger than field limit" in report.errors[0].reason
    assert len(await stored(db)) == 9


async def test_overlong_line_is_refused_and_the_lines_after_it_imported(
    db: Database, tmp_path: Path, workers: int
) -> None:
    data = HEADER + "u1,u1@example.com," + "x" * (MAX_LINE_CHARS + 10) + "\n" + GOOD
    report = await run_import(db, write(tmp_path, data), workers)
    assert [(e.line, e.reason) for e in report.errors] == [
        (2, f"this line is longer than {MAX_LINE_CHARS} characters")
    ]
    assert len(await stored(db)) == 8


@pytest.mark.parametrize(
    ("data", "message"),
    [
        # The red-team file: a 200 MB header line (here just over the line limit).
        (b"external_id," + b"x" * (MAX_LINE_CHARS + 1) + b"\nu1\n", "line 1 is longer than"),
        (b'external_id,"email\nu1,a@b.c\n', "line 1 opens a quote that it does not close"),
        (b'external_id,"' + b"x" * 200_000 + b'"\nu1,a\n', "cannot read line 1: field larger"),
    ],
    ids=["huge-header", "header-quote-open", "header-field-too-large"],
)
async def test_unreadable_header_refuses_the_file_naming_line_1(
    db: Database, tmp_path: Path, workers: int, data: bytes, message: str
) -> None:
    with pytest.raises(ChainmailError, match=message) as refused:
        await run_import(db, write(tmp_path, data), workers)
    assert "\n" not in str(refused.value)
    assert await stored(db) == {}


def deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": "x"}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize("levels", [ATTRIBUTES_MAX_DEPTH + 1, 956, 100_000])
async def test_attributes_nested_too_deep_are_refused_per_item(db: Database, levels: int) -> None:
    items = [
        {"external_id": "ok1", "attributes": deep(ATTRIBUTES_MAX_DEPTH)},
        {"external_id": "deep", "attributes": deep(levels)},
        {"external_id": "ok2"},
    ]
    report = await save_customers(db, items, actor="test", **DEFAULTS)
    assert [(e.index, e.reason) for e in report.errors] == [
        (1, f"attributes are nested more than {ATTRIBUTES_MAX_DEPTH} levels deep")
    ]
    assert sorted(await stored(db)) == ["ok1", "ok2"]
    # Later batches naming these customers still work.
    again = await save_customers(
        db, [{"external_id": "ok1", "attributes": {"b": 1}}], actor="test", **DEFAULTS
    )
    assert (again.updated, again.errors) == (1, [])


async def test_attributes_too_big_are_refused_per_item(db: Database) -> None:
    items = [
        {"external_id": "big", "attributes": {"notes": ["x" * 1000] * 100}},
        {"external_id": "ok"},
    ]
    report = await save_customers(db, items, actor="test", **DEFAULTS)
    assert [e.index for e in report.errors] == [0]
    assert "attributes hold more than" in report.errors[0].reason
    assert sorted(await stored(db)) == ["ok"]


@pytest.mark.parametrize(
    "bad",
    [
        {"external_id": "nul\x00id"},
        {"external_id": "x", "first_name": "Ann\x00"},
        {"external_id": "x", "email": "\ud800@example.com"},
        {"external_id": "x", "attributes": {"k\x00": "v"}},
        {"external_id": "x", "attributes": {"k": {"deeper": ["\udfff"]}}},
        {"external_id": "x", "tags": ["vip\x00"]},
    ],
    ids=["nul-id", "nul-name", "surrogate-email", "nul-key", "surrogate-nested", "nul-tag"],
)
async def test_nul_or_lone_surrogate_anywhere_is_refused_per_item(
    db: Database, bad: dict[str, Any]
) -> None:
    items = [{"external_id": "before"}, bad, {"external_id": "after"}]
    report = await save_customers(db, items, actor="test", **DEFAULTS)
    assert [e.index for e in report.errors] == [1]
    assert report.errors[0].reason in (NOT_STORABLE, "bad email '\\ud800@example.com'")
    assert sorted(await stored(db)) == ["after", "before"]
