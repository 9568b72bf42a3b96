"""Schemathesis against the app's own /openapi.json on loopback: no request makes a 5xx.

The app serves on uvicorn in the test's event loop (it owns the database there);
schemathesis is synchronous, so it runs in a worker thread and sends real HTTP.
Every operation gets a bounded number of examples that fit its schema and as many
that do not (schemathesis' negative mode), with the right bearer token and
without; both databases.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from models.db import Database
from models.tables import Customer
from web.app import WebConfig, create_app

API_TOKEN = "schemathesis-token"
EXAMPLES_PER_OPERATION_AND_MODE = 40


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
async def base_url(db: Database) -> AsyncIterator[str]:
    async with db.writer() as session:
        session.add(Customer(external_id="1", timezone="Europe/Moscow", timezone_source="default"))
    port = _free_port()
    config = WebConfig(
        api_token=API_TOKEN,
        secret_key="schemathesis-secret",
        public_base_url=f"http://127.0.0.1:{port}",
        default_timezone="Europe/Moscow",
        default_phone_region="RU",
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(db, config),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
        )
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await serving


def _server_errors(base_url: str, document: dict[str, Any]) -> list[str]:
    """Each request that got a 5xx, as a curl command to reproduce it."""
    schema = schemathesis.openapi.from_dict(document)
    found: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=EXAMPLES_PER_OPERATION_AND_MODE,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def send(case: schemathesis.Case) -> None:
                with_token = {"Authorization": f"Bearer {API_TOKEN}"}
                for headers in (with_token, {}):
                    response = case.call(base_url=base_url, headers=headers, timeout=30)
                    if response.status_code >= 500:
                        found.append(f"{response.status_code}: {case.as_curl_command(headers)}")

            try:
                send()
            except Unsatisfiable:
                # An operation without parameters or body (GET /api/v1/segments) has
                # no wrong inputs to make.
                if mode is GenerationMode.POSITIVE:
                    raise
    return found


async def test_schemathesis_gets_no_server_error_from_any_operation(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as http:
        document = (await http.get("/openapi.json")).json()

    assert set(document["paths"]) >= {
        "/api/v1/customers",
        "/api/v1/orders",
        "/api/v1/sms/status",
        "/api/v1/sms/inbound",
        "/api/v1/segments",
        "/api/v1/segments/{name}",
    }
    assert await asyncio.to_thread(_server_errors, base_url, document) == []
