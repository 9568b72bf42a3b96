"""Customers: validation of one record, upserts on both databases, POST /api/v1/customers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from email_validator import EmailNotValidError, validate_email
from fastapi import FastAPI
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from models.customers import (
    NOT_JSON,
    NOT_STORABLE,
    CleanCustomer,
    UpsertResult,
    save_customers,
    upsert_customers,
    validate_customer,
)
from models.db import Database
from models.tables import AuditEntry, Customer, CustomerTag, EmailStatus, SmsStatus
from models.timezones import TimezoneSource, normalize_phone
from web import api_customers
from web.api_customers import MAX_CUSTOMERS_PER_REQUEST, router

DEFAULTS = {"default_timezone": "Europe/Moscow", "default_phone_region": "RU"}
TOKEN = "secret-token"


def check(record: object) -> CleanCustomer | str:
    return validate_customer(record, **DEFAULTS)


def clean(record: dict[str, Any]) -> CleanCustomer:
    checked = check(record)
    assert isinstance(checked, CleanCustomer), checked
    return checked


# --- one record, no database -----------------------------------------------------------


def test_a_valid_record_comes_out_clean_and_normalized() -> None:
    customer = clean(
        {
            "external_id": " 42 ",
            "email": " Ivan.Petrov@Mail.RU ",
            "phone": "8 (913) 123-45-67",
            "first_name": " Иван ",
            "last_name": "",
            "tags": " VIP ;new;;VIP; new ",
            "attributes": {"city": "Омск"},
        }
    )
    assert customer.external_id == "42"
    assert customer.email == "Ivan.Petrov@mail.ru"
    assert customer.phone == "+79131234567"
    assert customer.first_name == "Иван"
    assert customer.last_name is None
    assert customer.tags == ("VIP", "new")
    assert customer.attributes == {"city": "Омск"}


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("8 (913) 123-45-67", "+79131234567"),
        ("+7 913 123-45-67", "+79131234567"),
        ("89131234567", "+79131234567"),
        ("7 (913) 1234567", "+79131234567"),
        ("(913) 123 45 67", "+79131234567"),
        ("8 (383) 212-34-56", "+73832123456"),
        ("+49 30 123456", "+4930123456"),
    ],
)
def test_phones_in_domestic_and_international_forms_are_stored_as_e164(raw: str, e164: str) -> None:
    assert clean({"external_id": "1", "phone": raw}).phone == e164


def test_a_json_number_is_taken_as_external_id_and_phone() -> None:
    customer = clean({"external_id": 1001, "phone": 79131234567})
    assert (customer.external_id, customer.phone) == ("1001", "+79131234567")


def test_time_zone_comes_from_the_phone_when_none_is_given() -> None:
    customer = clean({"external_id": "1", "phone": "+7 924 123-45-67"})
    assert (customer.timezone, customer.timezone_source) == (
        "Asia/Vladivostok",
        TimezoneSource.PHONE,
    )


def test_an_explicit_time_zone_wins_over_the_phone() -> None:
    customer = clean({"external_id": "1", "phone": "+79241234567", "timezone": "Asia/Omsk"})
    assert (customer.timezone, customer.timezone_source) == ("Asia/Omsk", TimezoneSource.EXPLICIT)


@pytest.mark.parametrize("phone", [None, "", "+7 914 271-23-45"])
def test_the_default_time_zone_applies_without_a_phone_telling_one(phone: str | None) -> None:
    customer = clean({"external_id": "1", "phone": phone, "timezone": ""})
    assert (customer.timezone, customer.timezone_source) == (
        "Europe/Moscow",
        TimezoneSource.DEFAULT,
    )


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"email": "a@mail.ru"}, "missing external_id"),
        ({"external_id": "  "}, "missing external_id"),
        ({"external_id": "x" * 129}, "external_id is longer than 128 characters"),
        ({"external_id": "1", "email": "x@"}, "bad email 'x@'"),
        ({"external_id": "1", "email": "ivan@localhost"}, "bad email 'ivan@localhost'"),
        ({"external_id": "1", "phone": "12345"}, "bad phone '12345'"),
        ({"external_id": "1", "phone": "8 (913) 123-45"}, "bad phone '8 (913) 123-45'"),
        ({"external_id": "1", "timezone": "Mars/Base"}, "unknown time zone 'Mars/Base'"),
        ({"external_id": "1", "first_name": "И" * 201}, "first_name is longer than 200 characters"),
        ({"external_id": "1", "first_name": 7}, "first_name must be text"),
        ({"external_id": "1", "tags": "vip"}, None),
        ({"external_id": "1", "tags": [1, 2]}, "tags must be a list of text"),
        (
            {"external_id": "1", "tags": ["x" * 101]},
            f"tag '{'x' * 60}…' is longer than 100 characters",
        ),
        ({"external_id": "1", "attributes": [1]}, "attributes must be an object"),
        ({"external_id": "1", "emial": "a@mail.ru"}, "unknown field 'emial'"),
        ({"external_id": True}, "external_id must be text"),
    ],
)
def test_a_bad_record_is_refused_with_its_reason(
    record: dict[str, Any], reason: str | None
) -> None:
    checked = check(record)
    if reason is None:
        assert isinstance(checked, CleanCustomer)
    else:
        assert checked == reason


def test_something_other_than_an_object_is_refused() -> None:
    assert check(["1", "a@mail.ru"]) == "expected an object with an external_id"


def test_fields_left_out_are_not_given_and_empty_ones_are() -> None:
    customer = clean({"external_id": "1", "email": ""})
    assert "email" in customer.given
    assert "phone" not in customer.given
    assert customer.tags is None
    assert customer.attributes is None


_ATEXT = "abcXYZ019._%+-!#$&'*/=?^`{|}~@\"й "
_DOMAINS = [
    "mail.ru",
    "Mail.RU",
    "gmail.com",
    "ПОЧТА.рф",
    "xn--80a1acny.xn--p1ai",
    "localhost",
    "b.test",
    "a..b",
    "-x.com",
    "x.c",
    "123.45",
    "yandex.ru.",
    "[127.0.0.1]",
    "a" * 64 + ".com",
    ("b" * 60 + ".") * 4 + "ru",
]


@settings(max_examples=400, deadline=None)
@given(
    local=st.one_of(
        st.text(alphabet=_ATEXT, min_size=0, max_size=80),
        st.sampled_from(["Info", "POSTMASTER", "Ivan.Petrov", "x" * 64, "y" * 200]),
    ),
    domain=st.sampled_from(_DOMAINS),
)
def test_emails_are_judged_and_normalized_as_email_validator_does(local: str, domain: str) -> None:
    address = f"{local}@{domain}"
    # Surrounding spaces are trimmed before anything else.
    assume(address.strip() == address)
    try:
        expected: str | None = validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError:
        expected = None
    checked = check({"external_id": "1", "email": address})
    if expected is None:
        assert isinstance(checked, str)
        assert checked.startswith("bad email")
    else:
        assert isinstance(checked, CleanCustomer), checked
        assert checked.email == expected


_PHONE_PREFIXES = ["", "8", "+7", "7", "+8", "007", "(8)", "+7 (", "8-"]


@settings(max_examples=400, deadline=None)
@given(
    prefix=st.sampled_from(_PHONE_PREFIXES),
    digits=st.one_of(
        st.from_regex(r"9[0-9]{9}", fullmatch=True),
        st.from_regex(r"[0-9]{8,12}", fullmatch=True),
    ),
    separators=st.lists(st.sampled_from([" ", "-", "(", ")", ".", ""]), min_size=12, max_size=12),
)
def test_phones_are_read_as_phonenumbers_reads_them(
    prefix: str, digits: str, separators: list[str]
) -> None:
    raw = prefix + "".join(d + s for d, s in zip(digits, separators, strict=False))
    raw = raw.strip() or "0"
    try:
        expected: str | None = normalize_phone(raw, "RU")
    except ValueError:
        expected = None
    checked = check({"external_id": "1", "phone": raw})
    if expected is None:
        assert checked == f"bad phone {raw!r}"
    else:
        assert isinstance(checked, CleanCustomer), checked
        assert checked.phone == expected


# --- upserts, on SQLite and PostgreSQL -------------------------------------------------


async def upsert(db: Database, *records: dict[str, Any]) -> UpsertResult:
    return await upsert_customers(
        db, [clean(r) for r in records], default_timezone="Europe/Moscow", actor="test"
    )


async def stored(db: Database, external_id: str) -> Customer:
    async with db.session() as session:
        customer = await session.scalar(select(Customer).where(Customer.external_id == external_id))
    assert customer is not None
    return customer


async def tags_of(db: Database, external_id: str) -> set[str]:
    async with db.session() as session:
        rows = await session.scalars(
            select(CustomerTag.tag)
            .join(Customer, Customer.id == CustomerTag.customer_id)
            .where(Customer.external_id == external_id)
        )
        return set(rows)


async def test_upsert_creates_then_updates_by_external_id(db: Database) -> None:
    first = await upsert(db, {"external_id": "1", "email": "a@mail.ru"}, {"external_id": "2"})
    assert first == UpsertResult(created=2, updated=0)
    second = await upsert(db, {"external_id": "1", "email": "b@mail.ru"}, {"external_id": "3"})
    assert second == UpsertResult(created=1, updated=1)
    customer = await stored(db, "1")
    assert customer.email == "b@mail.ru"
    assert customer.updated_at > customer.created_at


async def test_upsert_keeps_an_unsubscribed_customer_unsubscribed(db: Database) -> None:
    await upsert(db, {"external_id": "1", "email": "a@mail.ru", "phone": "+79131234567"})
    async with db.writer() as session:
        await session.execute(
            update(Customer).values(
                email_status=EmailStatus.UNSUBSCRIBED, sms_status=SmsStatus.UNSUBSCRIBED
            )
        )
    await upsert(db, {"external_id": "1", "email": "new@mail.ru", "phone": "+79231234567"})
    customer = await stored(db, "1")
    assert customer.email == "new@mail.ru"
    assert (customer.email_status, customer.sms_status) == ("unsubscribed", "unsubscribed")


async def test_new_customers_start_subscribed_to_both_channels(db: Database) -> None:
    await upsert(db, {"external_id": "1"})
    customer = await stored(db, "1")
    assert (customer.email_status, customer.sms_status) == ("subscribed", "subscribed")


async def test_tags_given_replace_the_customers_tags(db: Database) -> None:
    await upsert(db, {"external_id": "1", "tags": ["vip", "new"]}, {"external_id": "2"})
    await upsert(db, {"external_id": "1", "tags": ["vip", "loyal"]}, {"external_id": "2"})
    assert await tags_of(db, "1") == {"vip", "loyal"}
    await upsert(db, {"external_id": "1"})
    assert await tags_of(db, "1") == {"vip", "loyal"}
    await upsert(db, {"external_id": "1", "tags": []})
    assert await tags_of(db, "1") == set()


async def test_fields_left_out_keep_their_values_and_empty_ones_clear_them(db: Database) -> None:
    await upsert(
        db,
        {"external_id": "1", "email": "a@mail.ru", "first_name": "Иван", "last_name": "Петров"},
    )
    await upsert(db, {"external_id": "1", "first_name": "Пётр", "last_name": ""})
    customer = await stored(db, "1")
    assert (customer.email, customer.first_name, customer.last_name) == (
        "a@mail.ru",
        "Пётр",
        None,
    )


async def test_attributes_are_merged_and_null_removes_one(db: Database) -> None:
    await upsert(db, {"external_id": "1", "attributes": {"city": "Омск", "level": 1}})
    await upsert(db, {"external_id": "1", "attributes": {"level": 2, "city": None, "k": "v"}})
    assert (await stored(db, "1")).attributes == {"level": 2, "k": "v"}


async def test_a_stored_explicit_time_zone_stays_until_timezone_is_given(db: Database) -> None:
    await upsert(db, {"external_id": "1", "phone": "+79241234567", "timezone": "Asia/Omsk"})
    await upsert(db, {"external_id": "1", "phone": "+79231234567"})
    customer = await stored(db, "1")
    assert (customer.timezone, customer.timezone_source) == ("Asia/Omsk", "explicit")
    # An empty zone clears the explicit one: the stored phone decides again.
    await upsert(db, {"external_id": "1", "timezone": ""})
    customer = await stored(db, "1")
    assert (customer.timezone, customer.timezone_source) == ("Asia/Novosibirsk", "phone")


async def test_a_new_phone_moves_a_customer_without_explicit_zone(db: Database) -> None:
    await upsert(db, {"external_id": "1", "phone": "+79241234567"})
    assert (await stored(db, "1")).timezone == "Asia/Vladivostok"
    await upsert(db, {"external_id": "1", "first_name": "Иван"})
    assert (await stored(db, "1")).timezone == "Asia/Vladivostok"
    await upsert(db, {"external_id": "1", "phone": ""})
    customer = await stored(db, "1")
    assert (customer.phone, customer.timezone, customer.timezone_source) == (
        None,
        "Europe/Moscow",
        "default",
    )


async def test_a_customer_listed_twice_is_stored_once_the_last_wins(db: Database) -> None:
    result = await upsert(
        db,
        {"external_id": "1", "email": "first@mail.ru", "tags": ["a"]},
        {"external_id": "1", "email": "last@mail.ru", "tags": ["b"]},
    )
    assert result == UpsertResult(created=1, updated=1)
    assert (await stored(db, "1")).email == "last@mail.ru"
    assert await tags_of(db, "1") == {"b"}


async def test_upsert_is_audited(db: Database) -> None:
    await upsert(db, {"external_id": "1"}, {"external_id": "2"})
    async with db.session() as session:
        entry = await session.scalar(select(AuditEntry))
    assert entry is not None
    assert (entry.actor, entry.action) == ("test", "customers.upsert")
    assert entry.details == {"created": 2, "updated": 0}


async def test_save_customers_stores_the_good_and_reports_the_bad_by_index(db: Database) -> None:
    report = await save_customers(
        db,
        [{"external_id": "1"}, {"external_id": "2", "email": "x@"}, "junk", {"external_id": "3"}],
        actor="test",
        **DEFAULTS,
    )
    assert (report.created, report.updated) == (2, 0)
    assert [(e.index, e.reason) for e in report.errors] == [
        (1, "bad email 'x@'"),
        (2, "expected an object with an external_id"),
    ]


# --- POST /api/v1/customers ------------------------------------------------------------


@pytest.fixture
async def api(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.include_router(router)
    app.state.db = db
    app.state.config = SimpleNamespace(api_token=TOKEN, **DEFAULTS)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://chainmail") as client:
        yield client


AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def test_api_refuses_requests_without_the_token(api: httpx.AsyncClient) -> None:
    response = await api.post("/api/v1/customers", json=[{"external_id": "1"}])
    assert response.status_code == 401
    wrong = await api.post("/api/v1/customers", json=[], headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401


async def test_api_upserts_and_reports_refused_items_by_index(
    api: httpx.AsyncClient, db: Database
) -> None:
    body = [
        {"external_id": "1", "email": "a@mail.ru", "tags": ["vip"], "attributes": {"k": 1}},
        {"external_id": "2", "timezone": "Mars/Base"},
        {"external_id": "3", "phone": "8 (924) 123-45-67"},
    ]
    response = await api.post("/api/v1/customers", json=body, headers=AUTH)
    assert response.status_code == 200
    assert response.json() == {
        "created": 2,
        "updated": 0,
        "errors": [{"index": 1, "error": "unknown time zone 'Mars/Base'"}],
    }
    again = await api.post("/api/v1/customers", json=body[:1], headers=AUTH)
    assert again.json() == {"created": 0, "updated": 1, "errors": []}
    assert (await stored(db, "3")).timezone == "Asia/Vladivostok"
    assert await tags_of(db, "1") == {"vip"}


async def test_api_takes_a_customers_language_and_refuses_one_without_a_catalogue(
    api: httpx.AsyncClient, db: Database
) -> None:
    body = [{"external_id": "1", "language": "en"}, {"external_id": "2", "language": "de"}]
    response = await api.post("/api/v1/customers", json=body, headers=AUTH)
    assert response.json()["errors"] == [
        {"index": 1, "error": "language 'de' is not one of en, ru"}
    ]
    assert (await stored(db, "1")).language == "en"


async def test_api_bounds_the_number_of_customers_per_request(api: httpx.AsyncClient) -> None:
    body = [{"external_id": str(i)} for i in range(MAX_CUSTOMERS_PER_REQUEST + 1)]
    response = await api.post("/api/v1/customers", json=body, headers=AUTH)
    assert response.status_code == 413
    assert "at most 10000 customers" in response.json()["detail"]


async def test_api_refuses_a_body_over_the_size_bound_before_reading_it_all(
    api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api_customers, "MAX_BODY_BYTES", 100)
    body = [{"external_id": str(i)} for i in range(20)]
    response = await api.post("/api/v1/customers", json=body, headers=AUTH)
    assert response.status_code == 413


async def test_api_refuses_values_no_database_stores_by_index(
    api: httpx.AsyncClient, db: Database
) -> None:
    content = (
        b'[{"external_id": "1", "first_name": "a\\u0000b"},'
        b' {"external_id": "2", "attributes": {"k": "\\ud800"}},'
        b' {"external_id": "3", "attributes": {"score": NaN}},'
        b' {"external_id": "4"}]'
    )
    response = await api.post(
        "/api/v1/customers", content=content, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status_code == 200
    assert response.json() == {
        "created": 1,
        "updated": 0,
        "errors": [
            {"index": 0, "error": NOT_STORABLE},
            {"index": 1, "error": NOT_STORABLE},
            {"index": 2, "error": NOT_JSON},
        ],
    }


@pytest.mark.parametrize(
    ("content", "status", "detail"),
    [
        (b"{not json", 400, "the body is not JSON"),
        (b'{"external_id": "1"}', 422, "the body must be a JSON list of customers"),
    ],
)
async def test_api_refuses_a_body_that_is_not_a_list(
    api: httpx.AsyncClient, content: bytes, status: int, detail: str
) -> None:
    response = await api.post(
        "/api/v1/customers",
        content=content,
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert response.status_code == status
    assert response.json()["detail"].startswith(detail)
