"""End to end through real servers on loopback: the web app on uvicorn, an aiosmtpd SMTP
server, an HTTP SMS gateway. Customers and orders arrive through the HTTP API, opens
through the pixel in each message's own HTML, unsubscribes through the one-click POST
of each message's own List-Unsubscribe header; the engine ticks as the worker would.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import select

from channels.sms import HttpSmsGateway
from channels.smtp import SmtpPool
from models.chains import import_chain
from models.db import Database
from models.holdout import is_held_out
from models.segments import add_segment
from models.stats import chain_stats, stats_document
from models.tables import Customer
from scheduler.engine import Engine, EngineConfig
from services.lifecycle import activate_chain
from tests.servers import (
    DropPhase,
    ReceivedMessage,
    SmsGatewayTestServer,
    SmtpFaults,
    SmtpTestServer,
)
from tests.test_email_dkim import KEY as DKIM_KEY
from tests.test_email_dkim import verifies as dkim_verifies
from web.app import WebConfig, create_app

API_TOKEN = "shop-token"
SECRET = "e2e-secret"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class World:
    db: Database
    engine: Engine
    smtp: SmtpTestServer
    gateway: SmsGatewayTestServer
    http: httpx.AsyncClient
    base_url: str

    async def api(self, path: str, payload: Any) -> dict[str, Any]:
        response = await self.http.post(
            path, json=payload, headers={"Authorization": f"Bearer {API_TOKEN}"}
        )
        assert response.status_code == 200, response.text
        return response.json()

    def messages_with_subject(self, subject: str) -> list[ReceivedMessage]:
        return [m for m in self.smtp.messages if m.parsed()["Subject"] == subject]

    async def open_pixel(self, message: ReceivedMessage) -> None:
        html = message.parsed().get_body(("html",)).get_content()
        (pixel,) = re.findall(r'<img src="([^"]+/t/o/[^"]+)"', html)
        response = await self.http.get(pixel)
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/gif"

    async def one_click_unsubscribe(self, message: ReceivedMessage) -> None:
        header = str(message.parsed()["List-Unsubscribe"])
        assert message.parsed()["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        url = re.search(r"<(http[^>]+)>", header).group(1)  # type: ignore[union-attr]
        response = await self.http.post(
            url,
            content="List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 200  # RFC 8058: no redirect

    async def stats(self, chain_id: int) -> list[dict[str, Any]]:
        return stats_document(await chain_stats(self.db, chain_id))["steps"]


@pytest.fixture
async def world(db: Database) -> AsyncIterator[World]:
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    app = create_app(
        db,
        WebConfig(
            api_token=API_TOKEN,
            secret_key=SECRET,
            public_base_url=base_url,
            default_timezone="Europe/Moscow",
            default_phone_region="RU",
        ),
    )
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
        await asyncio.sleep(0.01)
    with SmtpTestServer() as smtp, SmsGatewayTestServer(token="gw") as gateway:
        email = SmtpPool("127.0.0.1", smtp.port, concurrency=4)
        sms = HttpSmsGateway(gateway.url, "gw", "Shop", rate_per_second=1000)
        engine = Engine(
            db,
            EngineConfig(
                mail_from="Магазин <news@shop.example>",
                public_base_url=base_url,
                secret_key=SECRET,
                quiet_hours_sms=None,
                batch_size=50,
                dkim=DKIM_KEY,
            ),
            email=email,
            sms=sms,
        )
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
            yield World(db, engine, smtp, gateway, http, base_url)
        await email.aclose()
        await sms.aclose()
    server.should_exit = True
    await serving


def customers(count: int, *, without_email: range = range(0)) -> list[dict[str, Any]]:
    return [
        {
            "external_id": f"c{n}",
            "email": None if n in without_email else f"c{n}@example.com",
            "phone": f"+7913{n:07d}",
            "first_name": f"Клиент{n}",
            "tags": ["new"],
        }
        for n in range(count)
    ]


def external_id_of(message: ReceivedMessage) -> str:
    return message.rcpt_tos[0].split("@")[0]


SEED = """
format: chainmail/1
name: Добро пожаловать
steps:
  - name: Welcome
    audience: {segments: [new-customers]}
    action:
      channel: email
      subject: "Привет, {{ first_name }}"
      text: "Рады видеть"
      html: "<p>Рады видеть, <a href='https://shop.example/catalog'>каталог</a></p>"
    schedule: {send: now}
  - name: Sorry to see you go
    audience: {who: terms, match: all, terms: [unsubscribed_email]}
    action: {channel: sms, text: "Жаль, что вы уходите, {{ first_name }}"}
    schedule: {send: now, wait_days: 30}
"""


async def test_seed_chain_sms_follows_one_click_unsubscribe_on_next_tick(world: World) -> None:
    answer = await world.api("/api/v1/customers", customers(200, without_email=range(190, 200)))
    assert answer == {"created": 200, "updated": 0, "errors": []}
    await add_segment(world.db, "new-customers", ["new"], "any", actor="test")
    chain_id = (await import_chain(world.db, SEED, actor="test")).chain_id
    assert (await activate_chain(world.db, chain_id, actor="test")).enrolled == 200

    await world.engine.tick()
    received = world.smtp.messages
    assert len(received) == 190
    assert len({m.message_id for m in received}) == 190
    # Signed by the engine, intact after the SMTP server.
    assert all(dkim_verifies(m.data) for m in received)
    assert world.gateway.requests == []

    leaving = received[:25]
    for message in leaving:
        await world.one_click_unsubscribe(message)
    await world.engine.tick()

    sms = world.gateway.accepted()
    assert sorted(s["to"] for s in sms) == sorted(
        f"+7913{int(external_id_of(m)[1:]):07d}" for m in leaving
    )
    assert {s["text"] for s in sms} == {
        f"Жаль, что вы уходите, Клиент{int(external_id_of(m)[1:])}" for m in leaving
    }
    welcome, sorry = await world.stats(chain_id)
    assert (welcome["coverage"], welcome["sent"], welcome["skipped"]) == (190, 190, 10)
    assert welcome["unsubscribed"] == 25
    assert (sorry["sent"], sorry["planned"]) == (25, 165)


TEXT_ONLY = """
format: chainmail/1
name: Text only
steps:
  - name: Hello
    audience: {segments: [new-customers]}
    action:
      channel: email
      subject: Hello
      text: "Hello {{ first_name }}!\\n\\nOur sale: https://shop.example/sale?from=mail."
    schedule: {send: now}
"""


async def test_a_text_only_step_counts_opens_and_clicks_through_the_html_made_from_it(
    world: World,
) -> None:
    await world.api("/api/v1/customers", customers(20))
    await add_segment(world.db, "new-customers", ["new"], "any", actor="test")
    chain_id = (await import_chain(world.db, TEXT_ONLY, actor="test")).chain_id
    await activate_chain(world.db, chain_id, actor="test")
    await world.engine.tick()

    received = world.smtp.messages
    assert len(received) == 20
    assert all(dkim_verifies(m.data) for m in received)
    for message in received[:8]:
        await world.open_pixel(message)
    target = (
        "https://shop.example/sale?from=mail&utm_source=chainmail&utm_medium=email"
        "&utm_campaign=text_only&utm_content=step1"
    )
    for message in received[:5]:
        html = message.parsed().get_body(("html",)).get_content()
        (link,) = re.findall(r'<a href="([^"]+/t/c/[^"]+)">https://shop\.example/sale', html)
        response = await world.http.get(link)
        assert response.status_code == 302
        assert response.headers["location"] == target

    [hello] = await world.stats(chain_id)
    assert (hello["sent"], hello["opened"], hello["clicked"]) == (20, 8, 5)


THREE_STEPS = """
format: chainmail/1
name: Three steps
steps:
  - name: Welcome
    audience: {segments: [new-customers]}
    action:
      channel: email
      subject: Welcome
      text: "Hello {{ first_name }}"
      html: "<p>Hello <a href='https://shop.example/sale'>sale</a></p>"
    schedule: {send: now}
    conversion: {goal: order, window_days: 7}
  - name: Reminder
    audience: {who: terms, match: all, terms: [not_opened]}
    action:
      channel: email
      subject: Reminder
      text: "Still there?"
      html: "<p>Still there?</p>"
    schedule: {send: after, after: 2s}
    conversion: {goal: order, window_days: 7}
  - name: SMS to leavers
    audience: {who: terms, match: all, terms: [unsubscribed_email]}
    action: {channel: sms, text: "Bye {{ first_name }}"}
    schedule: {send: now, wait_days: 30}
    conversion: {goal: order, window_days: 7}
"""


def order(external_id: str, customer: str, amount: str, at: datetime | None = None) -> dict:
    body: dict[str, Any] = {
        "external_id": external_id,
        "customer_external_id": customer,
        "amount": amount,
    }
    if at is not None:
        body["created_at"] = at.isoformat()
    return body


async def test_three_step_chain_numbers_agree_with_servers_and_hand_count(
    world: World,
) -> None:
    await world.api("/api/v1/customers", customers(300))
    await add_segment(world.db, "new-customers", ["new"], "any", actor="test")
    chain_id = (await import_chain(world.db, THREE_STEPS, actor="test")).chain_id
    # Before the chain: never attributed.
    before = await world.api(
        "/api/v1/orders", [order("pre-1", "c0", "100"), order("pre-2", "c1", "50")]
    )
    assert before == {"created": 2, "updated": 0, "duplicates": 0, "errors": []}
    await asyncio.sleep(0.01)
    await activate_chain(world.db, chain_id, actor="test")

    await world.engine.tick()
    welcome = world.messages_with_subject("Welcome")
    assert len(welcome) == 300
    by_customer = {external_id_of(m): m for m in welcome}
    openers = [f"c{n}" for n in range(60)]
    for customer in openers:
        await world.open_pixel(by_customer[customer])
    # During step 1: 10 openers order (step 1), 5 non-openers order (not engaged: none).
    # One opener orders 8 days later: outside the window.
    late = datetime.now(UTC) + timedelta(days=8)
    orders_step1 = [order(f"s1-{n}", f"c{n}", "1000") for n in range(10)]
    orders_step1 += [order(f"s1-x{n}", f"c{n}", "999") for n in range(100, 105)]
    orders_step1 += [order("s1-late", "c11", "500", at=late)]
    assert (await world.api("/api/v1/orders", orders_step1))["created"] == 16
    # Re-sent orders count once.
    assert (await world.api("/api/v1/orders", orders_step1[:3]))["duplicates"] == 3

    await asyncio.sleep(2.1)
    await world.engine.tick()
    reminders = world.messages_with_subject("Reminder")
    assert sorted(external_id_of(m) for m in reminders) == sorted(f"c{n}" for n in range(60, 300))
    reminded = {external_id_of(m): m for m in reminders}
    for n in range(100, 130):
        await world.open_pixel(reminded[f"c{n}"])
    # During step 2: 8 reminder openers order (step 2; c100..c104 ordered before too,
    # those earlier orders stay unattributed), and opener c20 of step 1 (step 1).
    orders_step2 = [order(f"s2-{n}", f"c{n}", "200") for n in range(100, 108)]
    orders_step2 += [order("s2-c20", "c20", "300")]
    assert (await world.api("/api/v1/orders", orders_step2))["created"] == 9

    leavers = [f"c{n}" for n in range(200, 220)]
    for customer in leavers:
        await world.one_click_unsubscribe(reminded[customer])
    await world.engine.tick()
    sms = world.gateway.accepted()
    assert sorted(s["to"] for s in sms) == sorted(f"+7913{int(c[1:]):07d}" for c in leavers)
    # After step 3: a leaver orders (step 3: an SMS sent with no failure qualifies).
    assert (await world.api("/api/v1/orders", [order("s3-c200", "c200", "70")]))["created"] == 1

    assert len(world.smtp.messages) == 540
    assert len(set(world.smtp.message_ids())) == 540
    step1, step2, step3 = await world.stats(chain_id)
    assert step1 | {"revenue": Decimal(step1["revenue"])} == step1 | {
        "coverage": 300,
        "sent": 300,
        "skipped": 0,
        "failed": 0,
        "uncertain": 0,
        "planned": 0,
        "opened": 60,
        "unsubscribed": 0,
        "orders": 11,
        "revenue": Decimal("10300.00"),
        "conversion_rate": round(11 / 300, 4),
    }
    assert step2 | {"revenue": Decimal(step2["revenue"])} == step2 | {
        "sent": 240,
        "skipped": 60,
        "opened": 30,
        "unsubscribed": 20,
        "orders": 8,
        "revenue": Decimal("1600.00"),
        "conversion_rate": round(8 / 240, 4),
    }
    assert step3 | {"revenue": Decimal(step3["revenue"])} == step3 | {
        "channel": "sms",
        "sent": 20,
        "planned": 220,
        "orders": 1,
        "revenue": Decimal("70.00"),
        "conversion_rate": round(1 / 20, 4),
    }


async def test_flaky_smtp_server_still_gets_every_message_exactly_once(world: World) -> None:
    await world.api("/api/v1/customers", customers(100))
    world.smtp.faults = SmtpFaults(
        tempfail_every=5,
        drop={f"c{n}@example.com": DropPhase.RCPT for n in range(0, 100, 7)},
        reject=frozenset({"c3@example.com"}),
    )
    await add_segment(world.db, "new-customers", ["new"], "any", actor="test")
    chain_id = (await import_chain(world.db, SEED, actor="test")).chain_id
    await activate_chain(world.db, chain_id, actor="test")
    await world.engine.tick()

    ids = world.smtp.message_ids()
    assert len(ids) == 99
    assert len(set(ids)) == 99
    assert world.smtp.attempts("c3@example.com") == 1
    welcome, _ = await world.stats(chain_id)
    assert (welcome["sent"], welcome["failed"]) == (99, 1)
    async with world.db.session() as session:
        status = await session.scalar(
            select(Customer.email_status).where(Customer.external_id == "c3")
        )
    assert status == "bounced"


HOLDOUT = """
format: chainmail/1
name: Holdout
holdout_percent: 10
steps:
  - name: Offer
    audience: {segments: [new-customers]}
    action:
      channel: email
      subject: Offer
      text: "-20% for you, {{ first_name }}"
      html: "<p>-20% for you</p>"
    schedule: {send: now}
    conversion: {goal: order, window_days: 7}
  - name: Everyone again
    audience: {who: all}
    action: {channel: email, subject: "Again", text: "Still -20%"}
    schedule: {send: now}
"""


async def test_nobody_held_out_gets_an_email_and_their_orders_make_the_lift(
    world: World,
) -> None:
    await world.api("/api/v1/customers", customers(500))
    await add_segment(world.db, "new-customers", ["new"], "any", actor="test")
    chain_id = (await import_chain(world.db, HOLDOUT, actor="test")).chain_id
    async with world.db.session() as session:
        ids = dict((await session.execute(select(Customer.external_id, Customer.id))).all())
    held = {external for external, id_ in ids.items() if is_held_out(chain_id, id_, 10)}
    assert abs(len(held) - 50) <= 3 * (500 * 0.1 * 0.9) ** 0.5
    await activate_chain(world.db, chain_id, actor="test")
    await world.engine.run_until_idle()

    received = world.smtp.messages
    recipients = [external_id_of(m) for m in received]
    assert not held & set(recipients)
    # Each customer not held out got the offer and the step after it, once each.
    assert sorted(recipients) == sorted(2 * [external for external in ids if external not in held])
    offer, again = await world.stats(chain_id)
    assert (offer["sent"], offer["coverage"], again["sent"], again["planned"]) == (
        500 - len(held),
        500 - len(held),
        500 - len(held),
        0,
    )
    buyers = sorted(held)[:3] + sorted(set(ids) - held)[:30]
    placed = await world.api(
        "/api/v1/orders", [order(f"o-{buyer}", buyer, "100") for buyer in buyers]
    )
    assert placed["created"] == 33
    document = stats_document(await chain_stats(world.db, chain_id))["chain"]
    assert document["holdout"] == {
        "customers": len(held),
        "orders": 3,
        "revenue": "300.00",
        "conversion_rate": round(3 / len(held), 4),
    }
    assert document["treated"]["customers"] == 500 - len(held)
    assert document["treated"]["orders"] == 30
    assert document["lift"]["conversion_rate_delta"] == round(
        30 / (500 - len(held)) - 3 / len(held), 4
    )
    assert document["lift"]["enough_data"] is False  # fewer than 100 held out
