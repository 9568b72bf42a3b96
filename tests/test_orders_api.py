"""Orders from the shop: checked item by item, stored once per external_id."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from sqlalchemy import event, select
from sqlalchemy.dialects import sqlite

from models import batch_sql
from models.db import Database
from models.orders import parse_order, record_orders
from models.tables import Customer, Order, OrderChange
from web.api_orders import MAX_ORDERS_PER_REQUEST
from web.app import WebConfig, create_app

API_TOKEN = "orders-test-token"
CONFIG = WebConfig(
    api_token=API_TOKEN,
    secret_key="orders-test-secret",
    public_base_url="http://test",
    default_timezone="Europe/Moscow",
    default_phone_region="RU",
)
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def order(
    external_id: str, customer: str = "c1", amount: Any = "100.00", **more: Any
) -> dict[str, Any]:
    return {"external_id": external_id, "customer_external_id": customer, "amount": amount, **more}


def customer(external_id: str) -> Customer:
    return Customer(external_id=external_id, timezone="Europe/Moscow", timezone_source="default")


@pytest.fixture
async def client(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    async with db.writer() as session:
        for external_id in ("c1", "c2"):
            session.add(
                Customer(
                    external_id=external_id, timezone="Europe/Moscow", timezone_source="default"
                )
            )
    transport = httpx.ASGITransport(app=create_app(db, CONFIG))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def post(client: httpx.AsyncClient, body: Any) -> httpx.Response:
    return await client.post("/api/v1/orders", json=body, headers=AUTH)


async def stored(db: Database) -> dict[str, Order]:
    async with db.session() as session:
        return {row.external_id: row for row in await session.scalars(select(Order))}


# Through the API


async def test_the_same_orders_posted_twice_are_stored_once(
    db: Database, client: httpx.AsyncClient
) -> None:
    orders = [order("o1"), order("o2", customer="c2", amount=1990.5)]

    first = await post(client, orders)
    second = await post(client, orders)

    assert first.status_code == second.status_code == 200
    assert first.json() == {"created": 2, "updated": 0, "duplicates": 0, "errors": []}
    assert second.json() == {"created": 0, "updated": 0, "duplicates": 2, "errors": []}
    rows = await stored(db)
    assert sorted(rows) == ["o1", "o2"]
    assert rows["o2"].amount == Decimal("1990.50")


async def test_an_order_repeated_within_one_request_is_a_duplicate_or_an_update_in_turn(
    db: Database, client: httpx.AsyncClient
) -> None:
    response = await post(
        client,
        [order("o1", amount="10"), order("o1", amount="10.00"), order("o1", amount="99")],
    )

    assert response.json() == {"created": 1, "updated": 1, "duplicates": 1, "errors": []}
    assert (await stored(db))["o1"].amount == Decimal("99.00")


async def test_one_order_may_be_sent_as_a_single_object(
    db: Database, client: httpx.AsyncClient
) -> None:
    response = await post(client, order(" o1 ", currency="usd"))

    assert response.json() == {"created": 1, "updated": 0, "duplicates": 0, "errors": []}
    row = (await stored(db))["o1"]
    assert row.currency == "USD"


async def test_bad_orders_are_reported_by_index_while_good_ones_are_stored(
    db: Database, client: httpx.AsyncClient
) -> None:
    body = [
        order("bad-amount", amount="-1"),
        order("good-1"),
        order("too-precise", amount="1.234"),
        order("no-customer", customer="nobody"),
        "not an order",
        {"external_id": "missing"},
        order("bad-currency", currency="RUBLE"),
        order("unix-time", created_at=1_700_000_000),
        order("good-2", customer="c2", amount=5),
    ]

    response = await post(client, body)

    answer = response.json()
    assert (answer["created"], answer["duplicates"]) == (2, 0)
    errors = {error["index"]: error["error"] for error in answer["errors"]}
    assert sorted(errors) == [0, 2, 3, 4, 5, 6, 7]
    assert errors[0].startswith("amount:")
    assert errors[2] == "amount: Decimal input should have no more than 2 decimal places"
    assert errors[3] == "unknown customer 'nobody'"
    assert "customer_external_id: Field required" in errors[5]
    assert "amount: Field required" in errors[5]
    assert errors[6].startswith("currency:")
    assert errors[7] == "created_at: must be an ISO 8601 date and time, as a string"
    assert sorted(await stored(db)) == ["good-1", "good-2"]


async def test_created_at_without_offset_is_utc_and_defaults_to_now(
    db: Database, client: httpx.AsyncClient
) -> None:
    before = datetime.now(UTC)
    await post(
        client,
        [
            order("naive", created_at="2026-03-01T14:00:00"),
            order("moscow", created_at="2026-03-01T14:00:00+03:00"),
            order("zulu", created_at="2026-03-01T14:00:00Z"),
            order("now"),
        ],
    )

    rows = await stored(db)
    assert rows["naive"].created_at == datetime(2026, 3, 1, 14, tzinfo=UTC)
    assert rows["moscow"].created_at == datetime(2026, 3, 1, 11, tzinfo=UTC)
    assert rows["zulu"].created_at == datetime(2026, 3, 1, 14, tzinfo=UTC)
    assert before <= rows["now"].created_at <= datetime.now(UTC)
    assert rows["now"].created_at == rows["now"].received_at


async def test_too_many_orders_in_one_request_are_refused_whole(
    db: Database, client: httpx.AsyncClient
) -> None:
    body = [order(f"o{i}") for i in range(MAX_ORDERS_PER_REQUEST + 1)]

    response = await post(client, body)

    assert response.status_code == 413
    assert str(MAX_ORDERS_PER_REQUEST) in response.json()["detail"]
    assert await stored(db) == {}


async def test_a_full_batch_is_stored_in_one_request(
    db: Database, client: httpx.AsyncClient
) -> None:
    body = [order(f"o{i}", customer=f"c{1 + i % 2}") for i in range(MAX_ORDERS_PER_REQUEST)]

    response = await post(client, body)

    assert response.json()["created"] == MAX_ORDERS_PER_REQUEST
    assert len(await stored(db)) == MAX_ORDERS_PER_REQUEST


@pytest.mark.parametrize(
    ("content", "status"), [("{not json", 400), ('"a string"', 422), ("42", 422)]
)
async def test_a_body_that_is_neither_an_order_nor_a_list_is_refused(
    client: httpx.AsyncClient, content: str, status: int
) -> None:
    response = await client.post(
        "/api/v1/orders",
        content=content,
        headers={**AUTH, "content-type": "application/json"},
    )

    assert response.status_code == status
    assert response.json()["detail"]


# The rules themselves


@given(amount=st.decimals(min_value=0, max_value=Decimal("999999999999.99"), places=2))
def test_any_amount_with_two_decimals_is_accepted_as_text_or_number(amount: Decimal) -> None:
    as_text = parse_order(order("o", amount=str(amount)))
    as_number = parse_order(order("o", amount=float(amount)))
    assert as_text.amount == amount
    assert as_number.amount == amount


@pytest.mark.parametrize("amount", ["-0.01", "1.001", "NaN", "Infinity", True, None, "ten"])
def test_bad_amounts_are_refused(amount: object) -> None:
    with pytest.raises(ValueError, match=r"^amount: "):
        parse_order(order("o", amount=amount))


@given(st.datetimes(timezones=st.timezones()))
def test_moments_are_written_for_sqlite_as_sqlalchemy_writes_them(moment: datetime) -> None:
    """The batch writes (models/batch_sql.py) and the ORM must store the same text, which
    SQLite compares as text."""
    dialect = sqlite.dialect()
    column = Order.__table__.c.created_at
    assume(datetime.min.replace(tzinfo=UTC) + timedelta(days=1) < moment)
    assume(moment < datetime.max.replace(tzinfo=UTC) - timedelta(days=1))
    expected = column.type.dialect_impl(dialect).bind_processor(dialect)(moment)
    assert batch_sql.for_driver(column, moment, dialect) == expected


def test_numeric_ids_are_read_as_text() -> None:
    parsed = parse_order({"external_id": 123, "customer_external_id": 45, "amount": 1})
    assert (parsed.external_id, parsed.customer_external_id) == ("123", "45")


async def test_record_orders_counts_orders_stored_by_an_earlier_request(db: Database) -> None:
    async with db.writer() as session:
        session.add(customer("c1"))
    now = datetime(2026, 3, 1, tzinfo=UTC)

    first = await record_orders(db, [order("o1"), order("o2")], now)
    second = await record_orders(db, [order("o2"), order("o3"), order("o3")], now + timedelta(1))

    assert (first.created, first.updated, first.duplicates, first.errors) == (2, 0, 0, [])
    assert (second.created, second.updated, second.duplicates, second.errors) == (1, 0, 2, [])


# Orders posted again


async def test_an_order_posted_again_changed_is_an_update_kept_with_its_history(
    db: Database, client: httpx.AsyncClient
) -> None:
    placed = "2026-03-01T10:00:00Z"
    await post(client, order("o1", amount="100.00", created_at=placed))

    same = await post(client, order("o1", amount=100, created_at="2026-03-05T00:00:00Z"))
    grown = await post(client, order("o1", amount="150", updated_at="2026-03-02T10:00:00Z"))
    cancelled = await post(client, order("o1", amount="150", status="cancelled"))

    assert same.json() == {"created": 0, "updated": 0, "duplicates": 1, "errors": []}
    assert grown.json() == {"created": 0, "updated": 1, "duplicates": 0, "errors": []}
    assert cancelled.json() == {"created": 0, "updated": 1, "duplicates": 0, "errors": []}
    row = (await stored(db))["o1"]
    # The placement stays as first stored; the row holds the latest state.
    assert row.created_at == datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert (row.amount, row.status) == (Decimal("150.00"), "cancelled")
    async with db.session() as session:
        changes = list(
            await session.execute(
                select(OrderChange.amount, OrderChange.status, OrderChange.changed_at)
                .where(OrderChange.order_id == row.id)
                .order_by(OrderChange.id)
            )
        )
    assert [(f"{amount}", status) for amount, status, _ in changes] == [
        ("100.00", "new"),
        ("150.00", "new"),
        ("150.00", "cancelled"),
    ]
    assert changes[1].changed_at == datetime(2026, 3, 2, 10, tzinfo=UTC)
    # No updated_at: from when it was received.
    assert changes[2].changed_at == row.updated_at > datetime(2026, 3, 2, 10, tzinfo=UTC)


async def test_a_status_left_out_keeps_the_stored_one(
    db: Database, client: httpx.AsyncClient
) -> None:
    await post(client, order("o1", status="paid"))
    again = await post(client, order("o1"))
    grown = await post(client, order("o1", amount="120"))

    assert again.json()["duplicates"] == 1
    assert grown.json()["updated"] == 1
    assert (await stored(db))["o1"].status == "paid"


async def test_an_update_dated_before_the_orders_last_change_is_refused(
    db: Database, client: httpx.AsyncClient
) -> None:
    await post(client, order("o1", created_at="2026-03-01T10:00:00Z"))
    await post(client, order("o1", amount="200", updated_at="2026-03-03T00:00:00+03:00"))

    response = await post(
        client,
        [order("o1", amount="300", updated_at="2026-03-02T12:00:00Z"), order("o2")],
    )

    assert response.json() == {
        "created": 1,
        "updated": 0,
        "duplicates": 0,
        "errors": [
            {
                "index": 0,
                "error": "updated_at 2026-03-02T12:00:00Z is before the order's last change "
                "(2026-03-02T21:00:00Z): not applied",
            }
        ],
    }
    assert (await stored(db))["o1"].amount == Decimal("200.00")


async def test_a_full_batch_of_new_orders_and_updates_takes_a_few_statements(
    db: Database,
) -> None:
    """One statement per kind of write, not per order: 1000 items, a dozen round trips."""
    async with db.writer() as session:
        session.add_all(customer(f"c{n}") for n in range(100))
    now = datetime(2026, 3, 1, tzinfo=UTC)
    await record_orders(db, [order(f"o{n}", customer=f"c{n % 100}") for n in range(500)], now)
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    batch = [order(f"o{n}", customer=f"c{n % 100}", amount="150") for n in range(1000)]
    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    try:
        result = await record_orders(db, batch, now + timedelta(days=1))
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", count)

    assert (result.created, result.updated, result.duplicates) == (500, 500, 0)
    assert len(statements) <= 15, statements
