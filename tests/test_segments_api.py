"""`/api/v1/segments`: the shop's systems make, read, change and delete segments."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import select

from models.chains import import_chain
from models.db import Database
from models.tables import AuditEntry, Customer
from web.app import WebConfig, create_app

API_TOKEN = "segments-test-token"
CONFIG = WebConfig(
    api_token=API_TOKEN,
    secret_key="segments-test-secret",
    public_base_url="http://test",
    default_timezone="Europe/Moscow",
    default_phone_region="RU",
)
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
BIG_SPENDERS = {
    "name": "big-spenders",
    "tags": ["vip"],
    "attributes": [{"key": "spent", "operator": "greater", "value": 1000}],
    "behaviour": [{"behaviour": "never_ordered"}],
}


@pytest.fixture
async def client(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    async with db.writer() as session:
        for n, spent in enumerate([500, 1500, "2000"]):
            session.add(
                Customer(
                    external_id=f"c{n}",
                    timezone="Europe/Moscow",
                    timezone_source="default",
                    attributes={"spent": spent},
                )
            )
    transport = httpx.ASGITransport(app=create_app(db, CONFIG))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def test_a_segment_is_added_read_with_its_count_changed_and_deleted(
    client: httpx.AsyncClient, db: Database
) -> None:
    added = await client.post("/api/v1/segments", json=BIG_SPENDERS, headers=AUTH)
    assert added.status_code == 201
    assert added.json() == {
        "name": "big-spenders",
        "tags": ["vip"],
        "match": "any",
        "attributes": [{"key": "spent", "operator": "greater", "value": "1000"}],
        "behaviour": [{"behaviour": "never_ordered"}],
    }
    change = {"attributes": [{"key": "spent", "operator": "greater", "value": "1000"}]}
    changed = await client.put("/api/v1/segments/big-spenders", json=change, headers=AUTH)
    assert (changed.status_code, changed.json()["tags"]) == (200, [])
    read = await client.get("/api/v1/segments/big-spenders", headers=AUTH)
    assert read.json()["customers"] == 2
    listed = await client.get("/api/v1/segments", headers=AUTH)
    assert [segment["name"] for segment in listed.json()] == ["big-spenders"]
    deleted = await client.delete("/api/v1/segments/big-spenders", headers=AUTH)
    assert deleted.status_code == 204
    gone = await client.get("/api/v1/segments/big-spenders", headers=AUTH)
    assert gone.status_code == 404
    async with db.session() as session:
        actions = list(await session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))
        actors = set(await session.scalars(select(AuditEntry.actor)))
    assert (actions, actors) == (["segment.add", "segment.update", "segment.delete"], {"api"})


async def test_a_bad_definition_is_refused_with_every_problem(client: httpx.AsyncClient) -> None:
    body = {
        "name": "bad",
        "attributes": [{"key": "spent", "operator": "greater", "value": "lots"}],
        "behaviour": [{"behaviour": "ordered", "days": 9999}],
    }
    refused = await client.post("/api/v1/segments", json=body, headers=AUTH)
    assert refused.status_code == 422
    assert refused.json() == {
        "errors": [
            "'lots' is not a number: greater than compares numbers",
            "days must be a whole number from 1 to 3650, not 9999",
        ]
    }


async def test_a_taken_name_and_a_segment_in_use_are_conflicts(
    client: httpx.AsyncClient, db: Database
) -> None:
    assert (await client.post("/api/v1/segments", json=BIG_SPENDERS, headers=AUTH)).is_success
    again = await client.post("/api/v1/segments", json=BIG_SPENDERS, headers=AUTH)
    assert (again.status_code, again.json()["detail"]) == (
        409,
        "segment 'big-spenders' already exists",
    )
    chain = (
        "format: chainmail/1\nname: Offer\nsteps:\n  - name: Offer\n"
        "    audience: {segments: [big-spenders]}\n"
        "    action: {channel: sms, text: Hi}\n    schedule: {send: now}\n"
    )
    await import_chain(db, chain, actor="cli")
    in_use = await client.delete("/api/v1/segments/big-spenders", headers=AUTH)
    assert in_use.status_code == 409
    assert "is used by chain 'Offer'" in in_use.json()["detail"]


async def test_the_segments_api_needs_the_token(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/segments")).status_code == 401
    assert (await client.post("/api/v1/segments", json=BIG_SPENDERS)).status_code == 401


async def test_a_name_no_segment_could_have_is_simply_not_found(
    client: httpx.AsyncClient,
) -> None:
    missing = await client.get("/api/v1/segments/a%00b", headers=AUTH)
    assert missing.status_code == 404
