"""The app as a whole: health, the OpenAPI document, the API's bearer token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from models.db import Database
from web.app import WebConfig, create_app

API_TOKEN = "web-test-token"


def config(api_token: str = API_TOKEN) -> WebConfig:
    return WebConfig(
        api_token=api_token,
        secret_key="web-test-secret",
        public_base_url="http://test",
        default_timezone="Europe/Moscow",
        default_phone_region="RU",
    )


def client_for(db: Database, api_token: str = API_TOKEN) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(db, config(api_token)))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


@pytest.fixture
async def unused_db(tmp_path: Path) -> AsyncIterator[Database]:
    """A database that is never reached: these requests must not get that far."""
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'never.db'}")
    yield database
    await database.dispose()


async def test_healthz_answers_ok_when_the_database_answers(db: Database) -> None:
    async with client_for(db) as client:
        response = await client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_healthz_answers_503_when_the_database_does_not(tmp_path: Path) -> None:
    unreachable = Database(f"sqlite+aiosqlite:///{tmp_path / 'missing-dir' / 'x.db'}")
    async with client_for(unreachable) as client:
        response = await client.get("/healthz")
    await unreachable.dispose()

    assert response.status_code == 503


async def test_openapi_documents_the_shop_api_and_hides_the_links(unused_db: Database) -> None:
    async with client_for(unused_db) as client:
        response = await client.get("/openapi.json")

    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {"/api/v1/customers", "/api/v1/orders", "/api/v1/sms/status"} <= set(paths)
    orders = paths["/api/v1/orders"]["post"]
    schema = orders["requestBody"]["content"]["application/json"]["schema"]
    assert {"external_id", "customer_external_id", "amount"} <= set(
        schema["anyOf"][0]["properties"]
    )
    assert set(orders["responses"]["200"]["content"]["application/json"]["schema"]) == {"$ref"}
    assert not [path for path in paths if path.startswith(("/t/", "/u/"))]


API_CALLS = [("/api/v1/orders", []), ("/api/v1/sms/status", {"id": "1", "status": "delivered"})]


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", f"Basic {API_TOKEN}", API_TOKEN, "Bearer"],
    ids=["none", "wrong", "basic", "no-scheme", "empty"],
)
@pytest.mark.parametrize(("path", "body"), API_CALLS, ids=["orders", "sms-status"])
async def test_api_without_the_right_bearer_token_is_a_401(
    unused_db: Database, path: str, body: object, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    async with client_for(unused_db) as client:
        response = await client.post(path, json=body, headers=headers)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(("path", "body"), API_CALLS, ids=["orders", "sms-status"])
async def test_api_is_closed_while_api_token_is_empty(
    unused_db: Database, path: str, body: object
) -> None:
    async with client_for(unused_db, api_token="") as client:
        response = await client.post(path, json=body, headers={"Authorization": "Bearer "})

    assert response.status_code == 401
    assert "API_TOKEN" in response.json()["detail"]
