"""Hostile HTTP (issue 11, items 3 and 4): bodies no one may make the server hold or choke on.

Who is asking is checked before a byte of a body is read; every body is bounded in
size while it is read and in depth and number size while it is parsed, each
refusal a 413 or 400 with its reason; in a batch, an item no database stores is
refused by its index and the good items beside it are stored (both databases).
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text

from models.db import Database
from models.tables import Customer, Order
from web import api_customers, api_orders, telegram_webhook, texts
from web.app import WebConfig, create_app
from web.body import MAX_INTEGER_DIGITS, MAX_JSON_DEPTH

CORPUS = Path(__file__).parent / "corpus" / "http"
API_TOKEN = "hostile-test-token"
WEBHOOK_SECRET = "hostile-webhook-secret"
CONFIG = WebConfig(
    api_token=API_TOKEN,
    secret_key="hostile-test-secret",
    public_base_url="http://test",
    default_timezone="Europe/Moscow",
    default_phone_region="RU",
)
AUTH = {"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"}
WEBHOOK_AUTH = {
    telegram_webhook.SECRET_HEADER: WEBHOOK_SECRET,
    "Content-Type": "application/json",
}


@dataclass
class RecordingInbox:
    secret: str = WEBHOOK_SECRET
    updates: list[dict[str, object]] = field(default_factory=list)

    async def deliver(self, data: dict[str, object]) -> bool:
        self.updates.append(data)
        return True


@dataclass(frozen=True)
class Endpoint:
    path: str
    credentials: dict[str, str]
    refused_without: int
    max_bytes: int


ENDPOINTS = {
    "customers": Endpoint("/api/v1/customers", AUTH, 401, api_customers.MAX_BODY_BYTES),
    "orders": Endpoint("/api/v1/orders", AUTH, 401, api_orders.MAX_BODY_BYTES),
    "sms-status": Endpoint("/api/v1/sms/status", AUTH, 401, api_orders.MAX_SMS_STATUS_BYTES),
    "sms-inbound": Endpoint("/api/v1/sms/inbound", AUTH, 401, api_orders.MAX_SMS_INBOUND_BYTES),
    "telegram-webhook": Endpoint(
        telegram_webhook.PATH, WEBHOOK_AUTH, 403, telegram_webhook.MAX_BODY
    ),
}
endpoints = pytest.mark.parametrize("endpoint", list(ENDPOINTS.values()), ids=list(ENDPOINTS))


@pytest.fixture
def inbox() -> RecordingInbox:
    return RecordingInbox()


@pytest.fixture
async def client(db: Database, inbox: RecordingInbox) -> AsyncIterator[httpx.AsyncClient]:
    async with db.writer() as session:
        session.add_all(
            Customer(external_id=external_id, timezone="Europe/Moscow", timezone_source="default")
            for external_id in ("c1", "c2")
        )
    transport = httpx.ASGITransport(app=create_app(db, CONFIG, telegram=inbox))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


class CountingBody:
    """A body streamed in chunks (no Content-Length), counting how many the server took."""

    def __init__(self, total_bytes: int, chunk_bytes: int = 64 * 1024) -> None:
        self.chunks = total_bytes // chunk_bytes
        self.chunk = b"[" + b" " * (chunk_bytes - 1)
        self.taken = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            self.taken += 1
            yield self.chunk


async def counts(db: Database) -> tuple[int, int]:
    async with db.session() as session:
        orders = await session.scalar(select(func.count()).select_from(Order))
        customers = await session.scalar(select(func.count()).select_from(Customer))
    return orders or 0, customers or 0


def corpus(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


# --- Item 3: nobody unauthenticated makes the server hold a body ----------------------


@endpoints
async def test_a_400_mb_body_without_credentials_is_refused_before_it_is_read(
    client: httpx.AsyncClient, endpoint: Endpoint
) -> None:
    body = CountingBody(400 * 1024 * 1024)

    response = await client.post(
        endpoint.path, content=body, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == endpoint.refused_without
    # The transport hands the app its first chunk with the request; it reads no more.
    assert body.taken <= 1


@endpoints
async def test_a_body_over_the_bound_is_a_413_with_the_bound_read_no_further(
    client: httpx.AsyncClient, endpoint: Endpoint
) -> None:
    body = CountingBody(endpoint.max_bytes * 4, chunk_bytes=1024)

    response = await client.post(endpoint.path, content=body, headers=endpoint.credentials)

    assert response.status_code == 413
    assert response.json()["detail"].startswith("the body is larger than ")
    assert body.taken <= endpoint.max_bytes // 1024 + 1


@endpoints
async def test_a_declared_length_over_the_bound_is_a_413_before_reading(
    client: httpx.AsyncClient, endpoint: Endpoint
) -> None:
    body = CountingBody(endpoint.max_bytes + 1024, chunk_bytes=1024)
    headers = {**endpoint.credentials, "Content-Length": str(endpoint.max_bytes + 1024)}

    response = await client.post(endpoint.path, content=body, headers=headers)

    assert response.status_code == 413
    assert body.taken <= 1


# --- Item 4: JSON no parser should take is a 400 with the reason ----------------------


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def long_integer(digits: int) -> bytes:
    return b'{"update_id": 1, "external_id": ' + b"7" * digits + b"}"


UNREADABLE_BODIES = {
    "nested-100000-deep": (nested(100_000), texts.JSON_TOO_DEEP.format(limit=MAX_JSON_DEPTH)),
    "nested-900-deep": (nested(900), texts.JSON_TOO_DEEP.format(limit=MAX_JSON_DEPTH)),
    "nested-one-too-deep": (
        nested(MAX_JSON_DEPTH + 1),
        texts.JSON_TOO_DEEP.format(limit=MAX_JSON_DEPTH),
    ),
    "integer-of-4300-digits": (
        long_integer(4300),
        texts.JSON_INTEGER_TOO_LONG.format(limit=MAX_INTEGER_DIGITS),
    ),
    "integer-of-5000-digits": (
        long_integer(5000),
        texts.JSON_INTEGER_TOO_LONG.format(limit=MAX_INTEGER_DIGITS),
    ),
    "negative-integer-too-long": (
        b"[-" + b"1" * (MAX_INTEGER_DIGITS + 1) + b"]",
        texts.JSON_INTEGER_TOO_LONG.format(limit=MAX_INTEGER_DIGITS),
    ),
}


@endpoints
@pytest.mark.parametrize(
    ("body", "reason"), list(UNREADABLE_BODIES.values()), ids=list(UNREADABLE_BODIES)
)
async def test_json_too_deep_or_with_too_long_an_integer_is_a_400_with_the_reason(
    client: httpx.AsyncClient,
    db: Database,
    inbox: RecordingInbox,
    endpoint: Endpoint,
    body: bytes,
    reason: str,
) -> None:
    if len(body) > endpoint.max_bytes:  # an SMS report is bounded to a few KB: size first
        reason = texts.BODY_TOO_LARGE.format(limit=f"{endpoint.max_bytes // 1024} KB")

    response = await client.post(endpoint.path, content=body, headers=endpoint.credentials)

    assert response.status_code == (413 if len(body) > endpoint.max_bytes else 400)
    assert response.json() == {"detail": reason}
    assert await counts(db) == (0, 2)
    assert inbox.updates == []


async def test_json_at_the_depth_bound_and_integers_at_the_digit_bound_are_read(
    client: httpx.AsyncClient, db: Database
) -> None:
    attributes: Any = "bottom"
    # The list and the customer are two levels; the attributes nest the rest.
    for _ in range(MAX_JSON_DEPTH - 2):
        attributes = {"x": attributes}
    body = [{"external_id": int("9" * MAX_INTEGER_DIGITS), "attributes": {}}, {"external_id": 1}]
    body[1]["attributes"] = attributes

    response = await client.post("/api/v1/customers", content=json.dumps(body), headers=AUTH)

    # Read, not refused as a body: the attributes rule (10 levels) then refuses that
    # one customer, and the one beside it is stored.
    assert response.status_code == 200
    assert response.json() == {
        "created": 1,
        "updated": 0,
        "errors": [{"index": 1, "error": "attributes are nested more than 10 levels deep"}],
    }


async def test_a_customer_with_attributes_956_deep_is_refused_and_names_no_later_batch(
    client: httpx.AsyncClient, db: Database
) -> None:
    # Written out: json.dumps itself gives up near Python's recursion limit.
    attributes = '{"a": ' * 956 + "{}" + "}" * 956
    deep = f'[{{"external_id": "deep", "attributes": {attributes}}}, {{"external_id": "ok"}}]'

    refused = await client.post("/api/v1/customers", content=deep, headers=AUTH)
    later = await client.post(
        "/api/v1/customers",
        content=json.dumps([{"external_id": "deep"}, {"external_id": "ok"}]),
        headers=AUTH,
    )

    assert refused.status_code == 400
    assert refused.json() == {"detail": texts.JSON_TOO_DEEP.format(limit=MAX_JSON_DEPTH)}
    assert later.status_code == 200
    assert later.json() == {"created": 2, "updated": 0, "errors": []}


# --- Item 4: one bad item never loses the batch ---------------------------------------


async def test_orders_no_database_stores_are_refused_one_by_one_and_the_good_ones_stored(
    client: httpx.AsyncClient, db: Database
) -> None:
    outside = "created_at: must lie in the years 2000 to 2100 (UTC)"
    nul = "must not contain a NUL character"

    response = await client.post(
        "/api/v1/orders", content=corpus("orders_hostile_items.json"), headers=AUTH
    )

    assert response.status_code == 200
    answer = response.json()
    assert answer["created"] == 5
    assert answer["duplicates"] == 0
    errors = {error["index"]: error["error"] for error in answer["errors"]}
    assert errors.keys() == {1, 3, 5, 6, 8, 9, 10}
    assert errors[1] == errors[3] == errors[10] == outside
    assert errors[5] == f"external_id: {nul}"
    assert errors[6] == f"customer_external_id: {nul}"
    assert errors[8].startswith("external_id: Input should be a valid string")
    assert errors[9].startswith("created_at: Input should be a valid datetime")
    async with db.session() as session:
        rows = {row.external_id: row for row in await session.scalars(select(Order))}
    assert sorted(rows) == ["good-1", "good-2", "good-3", "good-4", "good-5"]
    # The bounds themselves are stored as they are, on both databases.
    assert rows["good-2"].created_at == datetime(2000, 1, 1, tzinfo=UTC)
    assert rows["good-3"].created_at == datetime(2100, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert rows["good-5"].created_at == datetime(2026, 3, 1, 11, tzinfo=UTC)


async def test_postgresql_never_stores_an_order_at_infinity(
    client: httpx.AsyncClient, db: Database
) -> None:
    if db.is_sqlite:
        pytest.skip("infinity is a PostgreSQL timestamp")
    body = [
        {"external_id": f"o{n}", "customer_external_id": "c1", "amount": 1, "created_at": moment}
        for n, moment in enumerate(
            ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z", "2026-01-01T00:00:00Z"]
        )
    ]

    response = await client.post("/api/v1/orders", json=body, headers=AUTH)

    assert response.json()["created"] == 1
    async with db.session() as session:
        infinite = await session.scalar(
            text("SELECT count(*) FROM orders WHERE NOT isfinite(created_at)")
        )
    assert infinite == 0


async def test_customers_no_database_stores_are_refused_one_by_one_and_the_good_ones_stored(
    client: httpx.AsyncClient, db: Database
) -> None:
    response = await client.post(
        "/api/v1/customers", content=corpus("customers_hostile_items.json"), headers=AUTH
    )

    assert response.status_code == 200
    answer = response.json()
    assert answer["created"] == 3
    assert [error["index"] for error in answer["errors"]] == [1, 3, 4, 5]
    assert {error["error"] for error in answer["errors"]} == {
        "contains a NUL character or a lone surrogate, which no database stores"
    }
    async with db.session() as session:
        stored = set(await session.scalars(select(Customer.external_id)))
    assert stored == {"c1", "c2", "good-1", "good-2", "good-3"}


async def test_an_sms_report_with_a_nul_or_an_outsized_id_is_a_404_not_a_500(
    client: httpx.AsyncClient,
) -> None:
    for report_id in ["1\u0000", "1" * 23, 10**30, "\ud800"]:
        response = await client.post(
            "/api/v1/sms/status",
            content=json.dumps({"id": report_id, "status": "delivered"}),
            headers=AUTH,
        )
        assert response.status_code in (404, 422), (report_id, response.text)


async def test_orders_and_customer_upserts_of_the_same_customers_at_once_never_deadlock(
    client: httpx.AsyncClient, db: Database
) -> None:
    # Found by bench/soak.py on PostgreSQL: an upsert locked its customers FOR UPDATE by
    # external_id while the orders' foreign keys share-locked them in the order sent.
    names = [f"k{n}" for n in range(60)]
    async with db.writer() as session:
        session.add_all(
            Customer(external_id=name, timezone="Europe/Moscow", timezone_source="default")
            for name in names
        )
    rng = random.Random(11)
    numbers = iter(range(10**6))

    async def post(path: str, body: list[dict[str, object]]) -> int:
        response = await client.post(path, content=json.dumps(body), headers=AUTH)
        return response.status_code

    def orders() -> list[dict[str, object]]:
        return [
            {"external_id": f"o{next(numbers)}", "customer_external_id": name, "amount": 1}
            for name in rng.sample(names, 30)
        ]

    def customers() -> list[dict[str, object]]:
        return [{"external_id": name, "first_name": "K"} for name in rng.sample(names, 30)]

    statuses: list[int] = []
    for _ in range(6):
        statuses += await asyncio.gather(
            *(post("/api/v1/orders", orders()) for _ in range(4)),
            *(post("/api/v1/customers", customers()) for _ in range(4)),
        )

    assert set(statuses) == {200}
    assert (await counts(db))[0] == 6 * 4 * 30


def test_the_corpus_files_are_json_with_the_hostile_values_escaped() -> None:
    # Kept escaped (\\u0000, \\ud800) so the files stay text any editor or diff shows.
    for name in ("orders_hostile_items.json", "customers_hostile_items.json"):
        raw = corpus(name)
        assert b"\\u0000" in raw
        assert b"\x00" not in raw
        assert isinstance(json.loads(raw), list)


@pytest.fixture(autouse=True)
def _no_overflow_leaks(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No endpoint logs a traceback for any of these bodies: each is answered in words."""
    yield
    assert not [record for record in caplog.records if record.exc_info], caplog.text
