"""Orders from a CSV file (`chainmail orders import FILE`): bad lines reported by their
number, good ones stored, an order's later lines its updates, as through the API."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from models.db import Database
from models.errors import ChainmailError
from models.orders import OrdersImportReport, import_orders_csv
from models.tables import AuditEntry, Customer, Order, OrderChange
from tests.cli import chainmail

HEADER = "external_id,customer_external_id,amount,status,created_at,updated_at\n"


@pytest.fixture
async def shop(db: Database) -> Database:
    async with db.writer() as session:
        session.add_all(
            Customer(external_id=f"c{n}", timezone="Europe/Moscow", timezone_source="default")
            for n in (1, 2)
        )
    return db


async def run_import(db: Database, text: str, **options: object) -> OrdersImportReport:
    source = io.BytesIO(text.encode("utf-8"))
    return await import_orders_csv(db, source, actor="test", **options)  # type: ignore[arg-type]


async def orders(db: Database) -> dict[str, Order]:
    async with db.session() as session:
        return {row.external_id: row for row in await session.scalars(select(Order))}


async def history(db: Database, external_id: str) -> list[tuple[str, str, datetime]]:
    async with db.session() as session:
        rows = await session.execute(
            select(OrderChange.amount, OrderChange.status, OrderChange.changed_at)
            .join(Order, Order.id == OrderChange.order_id)
            .where(Order.external_id == external_id)
            .order_by(OrderChange.changed_at, OrderChange.id)
        )
        return [(f"{amount}", status, at) for amount, status, at in rows]


async def test_bad_lines_are_reported_by_number_and_good_ones_kept(shop: Database) -> None:
    report = await run_import(
        shop,
        HEADER
        + "o1,c1,100.00,,2026-03-01T10:00:00Z,\n"
        + "o2,nobody,50,,,\n"
        + "o3,c2,-5,,,\n"
        + 'o4,c2,"1 990,50",paid,2026-03-01 12:00,\n'
        + "too,few\n"
        + "o5,c2,10,new,yesterday,\n"
        + 'o6,c1,"1 234,5",,2026-03-02T09:00:00+03:00,\n',
    )

    assert (report.created, report.updated, report.duplicates) == (3, 0, 0)
    assert report.refused == 4
    reasons = {error.line: error.reason for error in report.errors}
    assert sorted(reasons) == [3, 4, 6, 7]
    assert reasons[3] == "unknown customer 'nobody'"
    assert reasons[4].startswith("amount:")
    assert reasons[6] == "expected 6 columns, found 2"
    assert reasons[7].startswith("created_at:")
    stored = await orders(shop)
    assert sorted(stored) == ["o1", "o4", "o6"]
    assert (stored["o4"].amount, stored["o4"].status) == (Decimal("1990.50"), "paid")
    assert stored["o6"].amount == Decimal("1234.50")
    assert stored["o6"].created_at == datetime(2026, 3, 2, 6, tzinfo=UTC)


async def test_an_orders_later_lines_are_its_updates_and_the_same_line_a_duplicate(
    shop: Database,
) -> None:
    first = await run_import(shop, HEADER + "o1,c1,100,new,2026-03-01T10:00:00Z,\n")
    report = await run_import(
        shop,
        HEADER
        + "o1,c1,100,new,2026-03-01T10:00:00Z,\n"
        + "o1,c1,150,new,,2026-03-02T10:00:00Z\n"
        + "o1,c1,150,cancelled,,2026-03-03T10:00:00Z\n"
        + "o1,c1,150,new,,2026-03-01T12:00:00Z\n"
        + "o1,c1,150,cancelled,,\n",
    )

    assert (first.created, first.refused) == (1, 0)
    assert (report.created, report.updated, report.duplicates, report.refused) == (0, 2, 2, 1)
    [stale] = report.errors
    assert stale.line == 5
    assert stale.reason == (
        "updated_at 2026-03-01T12:00:00Z is before the order's last change "
        "(2026-03-03T10:00:00Z): not applied"
    )
    assert await history(shop, "o1") == [
        ("100.00", "new", datetime(2026, 3, 1, 10, tzinfo=UTC)),
        ("150.00", "new", datetime(2026, 3, 2, 10, tzinfo=UTC)),
        ("150.00", "cancelled", datetime(2026, 3, 3, 10, tzinfo=UTC)),
    ]
    order = (await orders(shop))["o1"]
    assert (order.amount, order.status) == (Decimal("150.00"), "cancelled")
    assert order.updated_at == datetime(2026, 3, 3, 10, tzinfo=UTC)


async def test_batches_keep_their_line_numbers_and_the_import_is_audited(shop: Database) -> None:
    lines = [f"o{n},c{1 + n % 2},{n}.00,,,\n" for n in range(1, 26)]
    lines[9] = "o10,c1,ten,,,\n"
    lines[20] = "o21,c9,1,,,\n"

    report = await run_import(shop, HEADER + "".join(lines), batch_size=4)

    assert (report.created, report.refused) == (23, 2)
    assert [(error.line, error.reason.split(":")[0]) for error in report.errors] == [
        (11, "amount"),
        (22, "unknown customer 'c9'"),
    ]
    async with shop.session() as session:
        entry = await session.scalar(select(AuditEntry).where(AuditEntry.action == "orders.import"))
    assert entry is not None
    assert entry.details["created"] == 23
    assert entry.details["refused"] == 2


async def test_a_file_without_a_required_column_is_refused_whole(shop: Database) -> None:
    with pytest.raises(ChainmailError, match="has no amount column in its first line"):
        await run_import(shop, "external_id,customer_external_id,total\no1,c1,5\n")
    assert await orders(shop) == {}


async def test_a_semicolon_file_in_cp1251_with_other_columns_is_read(shop: Database) -> None:
    text = "external_id;customer_external_id;amount;status;комментарий\no1;c1;99,90;оплачен;да\n"
    report = await import_orders_csv(shop, io.BytesIO(text.encode("cp1251")), actor="test")
    assert (report.created, report.refused, report.ignored_columns) == (1, 0, ["комментарий"])
    order = (await orders(shop))["o1"]
    assert (order.amount, order.status) == (Decimal("99.90"), "оплачен")


def test_cli_reports_refused_lines_and_exits_1(db_url: str, shop: Database, tmp_path: Path) -> None:
    first, second = tmp_path / "monday.csv", tmp_path / "tuesday.csv"
    first.write_text(HEADER + "o1,c1,100,,,\no2,c1,abc,,,\n")
    second.write_text(HEADER + "o1,c1,120,paid,,\no3,c2,5,,,\n")

    refused = chainmail(db_url, "orders", "import", str(first), cwd=tmp_path)
    updated = chainmail(db_url, "orders", "import", str(second), cwd=tmp_path)
    again = chainmail(db_url, "orders", "import", str(second), cwd=tmp_path)

    assert refused.returncode == 1
    assert (
        refused.stdout.strip()
        == "imported 1 order (1 new, 0 updated), 0 duplicates; 1 line refused"
    )
    assert refused.stderr.startswith("line 3: amount:")
    assert (updated.returncode, again.returncode) == (0, 0)
    assert updated.stdout.strip() == "imported 2 orders (1 new, 1 updated), 0 duplicates"
    assert again.stdout.strip() == "imported 0 orders (0 new, 0 updated), 2 duplicates"


def test_cli_refuses_an_unreadable_file_in_one_line(db_url: str, tmp_path: Path) -> None:
    result = chainmail(db_url, "orders", "import", str(tmp_path / "nope.csv"), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("chainmail: cannot read")
    assert len(result.stderr.splitlines()) == 1
