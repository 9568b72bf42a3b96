"""Orders from the shop: checked item by item, stored once per external_id."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from models.db import Database
from models.orders import parse_order, record_orders
from models.tables import Customer, Order
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
