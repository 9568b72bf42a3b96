"""The SMS gateway client against a gateway double on loopback, the outbox, rendering."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from channels.results import SendResult, SendStatus
from channels.sms import (
    HttpSmsGateway,
    OutboxSmsTransport,
    Pacer,
    RenderError,
    SmsComposer,
    sms_transport_from_settings,
)
from models.sms_parts import BARE_SMS, SmsFrame
from tests import servers
from tests.servers import GatewayReply, SmsGatewayTestServer

sms_gateway = servers.sms_gateway
sms_gateway_server = servers.sms_gateway_server


def client_for(gateway: SmsGatewayTestServer, **options: object) -> HttpSmsGateway:
    settings: dict[str, object] = {"rate_per_second": 1000.0, "backoff": 0.01, "timeout": 5.0}
    settings.update(options)
    return HttpSmsGateway(gateway.url, gateway.token, "Shop", **settings)  # type: ignore[arg-type]


async def send_one(client: HttpSmsGateway, delivery_id: int = 1) -> SendResult:
    try:
        return await client.send(delivery_id, "+79990000001", "Привет!")
    finally:
        await client.aclose()


async def test_accepted_sms_is_sent_with_the_spec_body(sms_gateway: SmsGatewayTestServer) -> None:
    result = await send_one(client_for(sms_gateway), 42)

    assert result == SendResult(SendStatus.SENT)
    [request] = sms_gateway.requests
    assert request.authorization == f"Bearer {sms_gateway.token}"
    assert request.body == {"id": "42", "to": "+79990000001", "text": "Привет!", "sender": "Shop"}


async def test_any_2xx_is_accepted(sms_gateway: SmsGatewayTestServer) -> None:
    sms_gateway.default = GatewayReply(202)

    assert (await send_one(client_for(sms_gateway))).status is SendStatus.SENT


async def test_429_is_retried_after_the_time_the_gateway_asks(
    sms_gateway: SmsGatewayTestServer,
) -> None:
    sms_gateway.plan(1, GatewayReply(429, retry_after="0.3"))

    result = await send_one(client_for(sms_gateway))

    assert result.status is SendStatus.SENT
    first, second = sms_gateway.requests
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 0.25
    assert len(sms_gateway.accepted()) == 1


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_retried(sms_gateway: SmsGatewayTestServer, status: int) -> None:
    sms_gateway.plan(1, GatewayReply(status), GatewayReply(status))

    result = await send_one(client_for(sms_gateway))

    assert result.status is SendStatus.SENT
    assert [r.status for r in sms_gateway.requests] == [status, status, 200]


async def test_errors_that_persist_end_transient(sms_gateway: SmsGatewayTestServer) -> None:
    sms_gateway.default = GatewayReply(503)

    result = await send_one(client_for(sms_gateway, attempts=3))

    assert result.status is SendStatus.TRANSIENT
    assert result.detail.startswith("HTTP 503")
    assert result.detail.endswith("(after 3 attempts)")
    assert len(sms_gateway.requests) == 3


async def test_retry_after_beyond_the_limit_gives_up_at_once(
    sms_gateway: SmsGatewayTestServer,
) -> None:
    sms_gateway.default = GatewayReply(429, retry_after="3600")

    result = await send_one(client_for(sms_gateway, max_retry_after=1.0))

    assert result == SendResult(SendStatus.TRANSIENT, "HTTP 429: the gateway asks to wait 3600 s")
    assert len(sms_gateway.requests) == 1


@pytest.mark.parametrize("status", [400, 404, 422])
async def test_client_errors_are_permanent_without_retry(
    sms_gateway: SmsGatewayTestServer, status: int
) -> None:
    sms_gateway.default = GatewayReply(status)

    result = await send_one(client_for(sms_gateway))

    assert result.status is SendStatus.PERMANENT
    assert result.detail.startswith(f"HTTP {status}: ")
    assert len(sms_gateway.requests) == 1


async def test_wrong_token_is_permanent(sms_gateway: SmsGatewayTestServer) -> None:
    client = HttpSmsGateway(sms_gateway.url, "wrong", "Shop", backoff=0.01)

    result = await send_one(client)

    assert result.status is SendStatus.PERMANENT
    assert result.detail.startswith("HTTP 401")


async def test_no_answer_after_the_request_is_uncertain_and_not_retried(
    sms_gateway: SmsGatewayTestServer,
) -> None:
    sms_gateway.plan(1, GatewayReply(200, delay=1.0))

    result = await send_one(client_for(sms_gateway, timeout=0.2))

    assert result.status is SendStatus.UNCERTAIN
    assert len(sms_gateway.requests) == 1


async def test_gateway_that_cannot_be_reached_is_transient() -> None:
    with SmsGatewayTestServer() as gateway:
        url = gateway.url
    client = HttpSmsGateway(url, "t", "Shop", attempts=2, backoff=0.01)

    result = await send_one(client)

    assert result.status is SendStatus.TRANSIENT
    assert result.detail.startswith("connection failed before the message was sent")


async def test_rate_limit_is_shared_by_concurrent_senders(
    sms_gateway: SmsGatewayTestServer,
) -> None:
    count, rate = 8, 20.0
    client = client_for(sms_gateway, rate_per_second=rate)
    started = time.monotonic()

    results = await asyncio.gather(*(client.send(n, "+79990000001", "x") for n in range(count)))
    elapsed = time.monotonic() - started
    await client.aclose()

    assert {r.status for r in results} == {SendStatus.SENT}
    assert elapsed >= (count - 1) / rate * 0.9
    arrivals = sorted(r.at for r in sms_gateway.requests)
    assert arrivals[-1] - arrivals[0] >= (count - 1) / rate * 0.8


async def test_429_slows_every_sender_down(sms_gateway: SmsGatewayTestServer) -> None:
    sms_gateway.plan(0, GatewayReply(429, retry_after="0.6"))
    client = client_for(sms_gateway)

    first = asyncio.create_task(client.send(0, "+79990000001", "x"))
    await asyncio.to_thread(sms_gateway.wait_for_requests, 1)
    await asyncio.sleep(0.15)  # time for the 429 to reach the client
    await client.send(1, "+79990000001", "x")
    await first
    await client.aclose()

    # The other sender's request waited for the end of the hold the 429 asked for.
    by_id = {r.body["id"]: r.at for r in sms_gateway.requests if r.status == 200}
    assert by_id["1"] - sms_gateway.requests[0].at >= 0.55


async def test_pacer_spaces_callers_evenly() -> None:
    pacer = Pacer(50.0)
    loop = asyncio.get_running_loop()
    moments: list[float] = []

    async def take() -> None:
        await pacer.wait()
        moments.append(loop.time())

    await asyncio.gather(*(take() for _ in range(6)))

    gaps = [b - a for a, b in itertools.pairwise(moments)]
    assert all(gap >= 0.018 for gap in gaps)


async def test_pacer_hold_delays_the_next_caller() -> None:
    pacer = Pacer(1000.0)
    loop = asyncio.get_running_loop()
    await pacer.wait()

    pacer.hold(0.2)
    started = loop.time()
    await pacer.wait()

    assert loop.time() - started >= 0.19


async def test_outbox_appends_one_json_line_per_sms(tmp_path: Path) -> None:
    outbox = OutboxSmsTransport(tmp_path / "outbox", "Shop")

    results = await asyncio.gather(
        *(outbox.send(n, f"+7999000000{n}", f"Привет, {n}!\nВторая строка") for n in range(10))
    )

    assert {r.status for r in results} == {SendStatus.SENT}
    lines = (tmp_path / "outbox" / "sms.jsonl").read_text("utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert sorted(r["id"] for r in records) == sorted(str(n) for n in range(10))
    first = next(r for r in records if r["id"] == "3")
    assert first["to"] == "+79990000003"
    assert first["text"] == "Привет, 3!\nВторая строка"
    assert first["sender"] == "Shop"
    assert first["at"].endswith("+00:00")


_APPENDER = """
import asyncio, sys
from channels.sms import OutboxSmsTransport

async def main():
    outbox = OutboxSmsTransport(sys.argv[1], "Shop")
    for n in range(int(sys.argv[3])):
        await outbox.send(n, sys.argv[2], "x" * 3000)

asyncio.run(main())
"""


def test_outbox_lines_stay_whole_with_several_processes_appending(tmp_path: Path) -> None:
    writers = [
        subprocess.Popen([sys.executable, "-c", _APPENDER, str(tmp_path), f"+7{n}", "200"])
        for n in range(3)
    ]
    assert [writer.wait(60) for writer in writers] == [0, 0, 0]

    lines = (tmp_path / "sms.jsonl").read_text("utf-8").splitlines()
    assert len(lines) == 600
    assert all(json.loads(line)["text"] == "x" * 3000 for line in lines)


def test_outbox_file_that_cannot_be_written_is_transient(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")

    result = asyncio.run(OutboxSmsTransport(blocker, "Shop").send(1, "+7", "x"))

    assert result.status is SendStatus.TRANSIENT


def test_settings_choose_the_gateway_only_when_a_url_is_set(tmp_path: Path) -> None:
    def transport(url: str) -> object:
        return sms_transport_from_settings(
            url=url, token="t", sender="Shop", rate_per_second=5.0, outbox_dir=tmp_path
        )

    outbox, gateway = transport(""), transport("https://sms.example/send")

    assert isinstance(outbox, OutboxSmsTransport)
    assert outbox.description == f"outbox file {tmp_path / 'sms.jsonl'}"
    assert isinstance(gateway, HttpSmsGateway)
    assert gateway.description == "SMS gateway https://sms.example/send"


def render_sms(template: str, context: dict[str, object], frame: SmsFrame = BARE_SMS) -> str:
    """The SMS text for delivery 1 of a step with UTM tags off."""
    composer = SmsComposer(template, frame, secret_key="k", campaign="sale", position=1, utm=False)
    return composer.compose(1, context).text


def test_sms_text_is_rendered_and_trimmed() -> None:
    text = render_sms("  Привет, {{ first_name }}! Код {{ code }}\n", {"first_name": "Иван"})

    assert text == "Привет, Иван! Код"


def test_sms_template_that_does_not_compile_raises_render_error() -> None:
    with pytest.raises(RenderError, match=r"^SMS text: line 1: "):
        render_sms("Hi {{ name ", {})


def test_sms_template_failing_for_a_customer_raises_render_error() -> None:
    with pytest.raises(RenderError, match=r"^SMS text: "):
        render_sms("{{ 1 / zero }}", {"zero": 0})
