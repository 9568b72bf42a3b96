"""SMS STOP (issue 13, item 4): what customers text back unsubscribes their phone.

The rule is pure (models/sms_stop.py), the service one transaction (models/tracking.py
`sms_stop`), the endpoint `POST /api/v1/sms/inbound`; and the engine re-reads the
status before each group goes to the gateway, so a STOP mid-wave stops the rest.
Both databases.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from bot.settings import SettingsError, load_settings
from channels.results import SendResult
from channels.sms import HttpSmsGateway
from channels.smtp import OutboxEmailTransport
from models import reasons
from models.db import Database
from models.sms_stop import DEFAULT_SMS_STOP_WORDS, is_stop_word, stop_word_key, stop_words
from models.tables import AuditEntry, Customer, Event
from models.tracking import sms_stop
from scheduler.engine import Engine
from services.lifecycle import activate_chain
from tests import servers
from tests.servers import SmsGatewayTestServer
from tests.test_engine import Harness, add_customers, import_seed
from tests.test_engine import harness as harness  # the fixture
from tests.test_queue import engine_config
from web.app import WebConfig, create_app

sms_gateway = servers.sms_gateway
sms_gateway_server = servers.sms_gateway_server

API_TOKEN = "sms-inbound-token"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
DEFAULT_WORDS = stop_words(DEFAULT_SMS_STOP_WORDS)


def config(**overrides: object) -> WebConfig:
    values: dict[str, object] = {
        "api_token": API_TOKEN,
        "secret_key": "secret",
        "public_base_url": "https://mail.shop.example",
        "default_timezone": "Europe/Moscow",
        "default_phone_region": "RU",
    }
    values.update(overrides)
    return WebConfig(**values)  # type: ignore[arg-type]


def client_for(db: Database, web_config: WebConfig | None = None) -> httpx.AsyncClient:
    app = create_app(db, web_config or config())
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.fixture
async def client(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(db) as http:
        yield http


async def inbound(http: httpx.AsyncClient, phone: object, text: object) -> httpx.Response:
    return await http.post("/api/v1/sms/inbound", json={"from": phone, "text": text}, headers=AUTH)


async def sms_statuses(db: Database) -> dict[str, str]:
    async with db.session() as session:
        rows = await session.execute(select(Customer.external_id, Customer.sms_status))
        return {external_id: status for external_id, status in rows}


# --- the rule ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["STOP", "stop", "Stop!", "  стоп. ", "«Отписка»", "UNSUBSCRIBE\n", "¡Stop!", "СТОП!!!"]
)
def test_a_stop_word_in_any_case_with_punctuation_around_it_asks_to_stop(text: str) -> None:
    assert is_stop_word(text, DEFAULT_WORDS)


@pytest.mark.parametrize(
    "text", ["stop it", "don't stop", "STOPS", "st op", "", "  ", "!!!", "нет", "стоп стоп"]
)
def test_a_text_that_says_more_or_something_else_does_not(text: str) -> None:
    assert not is_stop_word(text, DEFAULT_WORDS)


@given(
    word=st.sampled_from(DEFAULT_SMS_STOP_WORDS),
    around=st.tuples(
        st.text(st.sampled_from(" \t\n.,!?«»\"'()-…¡¿"), max_size=4),
        st.text(st.sampled_from(" \t\n.,!?«»\"'()-…¡¿"), max_size=4),
    ),
    lower=st.lists(st.booleans(), min_size=11, max_size=11),
)
def test_any_casing_and_surrounding_punctuation_of_a_stop_word_is_one(
    word: str, around: tuple[str, str], lower: list[bool]
) -> None:
    cased = "".join(c.lower() if low else c for c, low in zip(word, lower, strict=False))
    assert is_stop_word(around[0] + cased + around[1], DEFAULT_WORDS)
    assert not is_stop_word(around[0] + cased + "x" + around[1], DEFAULT_WORDS)


def test_configured_words_are_compared_as_the_texts_are() -> None:
    words = stop_words([" Хватит! ", "END"])
    assert words == {"хватит", "end"}
    assert is_stop_word("хватит", words)
    assert not is_stop_word("STOP", words)
    assert stop_word_key("  «Стоп»  ") == "стоп"
    with pytest.raises(ValueError, match="not a word"):
        stop_words(["STOP", "?!"])
    with pytest.raises(ValueError, match="at least one"):
        stop_words([])


# --- the endpoint and its service ----------------------------------------------------


async def add_phones(db: Database, **phones: str | None) -> None:
    async with db.writer() as session:
        session.add_all(
            Customer(
                external_id=external_id,
                phone=phone,
                timezone="Europe/Moscow",
                timezone_source="default",
            )
            for external_id, phone in phones.items()
        )


async def test_stop_unsubscribes_every_customer_with_that_phone_read_as_phones_are(
    db: Database, client: httpx.AsyncClient
) -> None:
    await add_phones(db, a="+79131234567", b="+79131234567", c="+79131234568", d=None)

    response = await inbound(client, "8 (913) 123-45-67", " Стоп! ")

    assert response.status_code == 200
    assert response.json() == {"unsubscribed": 2}
    assert await sms_statuses(db) == {
        "a": "unsubscribed",
        "b": "unsubscribed",
        "c": "subscribed",
        "d": "subscribed",
    }
    async with db.session() as session:
        audited = list(await session.scalars(select(AuditEntry).order_by(AuditEntry.id)))
        changed_at = await session.scalar(
            select(Customer.sms_status_at).where(Customer.external_id == "a")
        )
    assert [(e.actor, e.action, e.details["channel"]) for e in audited] == [
        ("sms", "customer.unsubscribe", "sms")
    ] * 2
    assert changed_at is not None
    # Asked again: nobody is left to unsubscribe, nothing more is audited.
    assert (await inbound(client, "+79131234567", "STOP")).json() == {"unsubscribed": 0}


async def test_another_text_or_an_unknown_phone_changes_nothing(
    db: Database, client: httpx.AsyncClient
) -> None:
    await add_phones(db, a="+79131234567")

    for phone, text in [("+79131234567", "stop please"), ("+79131234599", "STOP")]:
        response = await inbound(client, phone, text)
        assert response.status_code == 200
        assert response.json() == {"unsubscribed": 0}

    assert await sms_statuses(db) == {"a": "subscribed"}
    async with db.session() as session:
        assert list(await session.scalars(select(AuditEntry))) == []


async def test_the_stop_words_are_the_configured_ones(db: Database) -> None:
    await add_phones(db, a="+79131234567")
    async with client_for(db, config(sms_stop_words=stop_words(["ХВАТИТ"]))) as http:
        assert (await inbound(http, "+79131234567", "STOP")).json() == {"unsubscribed": 0}
        assert (await inbound(http, "+79131234567", "хватит.")).json() == {"unsubscribed": 1}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"from": "not a phone", "text": "STOP"}, "from: bad phone"),
        ({"from": "", "text": "STOP"}, "from: bad phone"),
        ({"from": "+7913", "text": "STOP"}, "from: bad phone"),
        ({"text": "STOP"}, "from: Field required"),
        ({"from": "+79131234567"}, "text: Field required"),
        ({"from": "+79131234567", "text": 5}, "text: Input should be a valid string"),
        (["STOP"], "body: Input should be a valid dictionary"),
    ],
)
async def test_a_bad_phone_or_body_is_a_400_with_the_reason(
    db: Database, client: httpx.AsyncClient, body: object, reason: str
) -> None:
    await add_phones(db, a="+79131234567")

    response = await client.post("/api/v1/sms/inbound", json=body, headers=AUTH)

    assert response.status_code == 400
    assert reason in response.json()["detail"]
    assert await sms_statuses(db) == {"a": "subscribed"}


async def test_without_the_token_nothing_changes(db: Database, client: httpx.AsyncClient) -> None:
    await add_phones(db, a="+79131234567")

    response = await client.post(
        "/api/v1/sms/inbound", json={"from": "+79131234567", "text": "STOP"}
    )

    assert response.status_code == 401
    assert await sms_statuses(db) == {"a": "subscribed"}


async def test_the_endpoint_is_in_the_openapi_document(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    schema = document["paths"]["/api/v1/sms/inbound"]["post"]["requestBody"]["content"]
    assert set(schema["application/json"]["schema"]["properties"]) == {"from", "text"}


# --- what it does to chains ------------------------------------------------------------

SMS_THEN_EMAIL = """
format: chainmail/1
name: Stop and go
steps:
  - name: Offer
    audience: {segments: [new-customers]}
    action: {channel: sms, text: "Скидка, {{ first_name }}"}
    schedule: {send: now}
  - name: By email, then
    audience: {who: terms, match: all, terms: [unsubscribed_sms]}
    action: {channel: email, subject: "Письмом", text: "Раз SMS не нужны"}
    schedule: {send: now, wait_days: 30}
"""


async def test_a_stop_wakes_a_follow_up_waiting_on_unsubscribed_sms_and_counts_for_the_sms(
    harness: Harness,
) -> None:
    await add_customers(harness.db, {}, {}, {})
    chain_id = await import_seed(harness.db, SMS_THEN_EMAIL)
    await activate_chain(harness.db, chain_id, actor="test", now=harness.clock())
    await harness.engine.tick()
    assert await harness.statuses(1, chain_id) == {"sent": 3}
    offer = await harness.deliveries(chain_id, 1)

    # On the harness's clock, not the web app's: the follow-up is due at the STOP.
    harness.clock.advance(seconds=5)
    assert await sms_stop(harness.db, "+79130000001", "STOP", DEFAULT_WORDS, harness.clock()) == 1
    await harness.engine.tick()

    assert [m["To"] for m in harness.emails()] == ["Имя1 <c1@example.com>"]
    assert await harness.statuses(2, chain_id) == {"sent": 1, "planned": 2}
    async with harness.db.session() as session:
        events = (await session.execute(select(Event.delivery_id, Event.type, Event.data))).all()
    assert [tuple(e) for e in events] == [(offer[1].id, "unsubscribed", {"channel": "sms"})]


class StoppingGateway(HttpSmsGateway):
    """The HTTP gateway client whose first SMS sets off STOP replies (posted to the web
    app) from the given phones: customers of the groups not yet on the wire."""

    def __init__(self, gateway: SmsGatewayTestServer, http: httpx.AsyncClient, phones: list[str]):
        super().__init__(gateway.url, gateway.token, "Shop", rate_per_second=10_000.0)
        self._http = http
        self._pending = phones

    async def send(self, delivery_id: int, to: str, text: str) -> SendResult:
        pending, self._pending = self._pending, []
        for phone in pending:
            response = await inbound(self._http, phone, "STOP")
            assert response.json() == {"unsubscribed": 1}
        return await super().send(delivery_id, to, text)


async def test_a_stop_arriving_mid_wave_reaches_every_sms_not_on_the_wire(
    harness: Harness, sms_gateway: SmsGatewayTestServer
) -> None:
    await add_customers(harness.db, *({} for _ in range(100)))
    chain_id = await import_seed(harness.db, SMS_THEN_EMAIL)
    await activate_chain(harness.db, chain_id, actor="test", now=harness.clock())
    offer = await harness.deliveries(chain_id, 1)
    # Groups of 16 in due order: while the first is on the wire the second is already
    # marked `sending`. Its customers and some beyond text STOP meanwhile.
    leaving = offer[16:40]
    leaving_phones = [f"+7913000{n:04d}" for n in range(16, 40)]
    async with client_for(harness.db) as http:
        transport = StoppingGateway(sms_gateway, http, leaving_phones)
        engine = Engine(
            harness.db,
            engine_config(email_concurrency=1, batch_size=100),
            email=OutboxEmailTransport(harness.outbox),
            sms=transport,
            clock=harness.clock,
        )
        try:
            report = await engine.tick()
        finally:
            await transport.aclose()

    texted = [body["to"] for body in sms_gateway.accepted()]
    assert set(texted).isdisjoint(leaving_phones)
    assert len(texted) == len(set(texted)) == 76
    after = {d.id: d for d in await harness.deliveries(chain_id, 1)}
    assert {(after[d.id].status, after[d.id].reason) for d in leaving} == {
        ("skipped", reasons.SMS_UNSUBSCRIBED)
    }
    assert report.waves[offer[0].step_id].skipped == {reasons.SMS_UNSUBSCRIBED: 24}
    # Those who got the SMS wait for the email step's terms; the others left at step 1.
    assert await harness.statuses(2, chain_id) == {"planned": 76}


def test_the_setting_is_a_comma_separated_list_and_an_empty_one_stops_start_up() -> None:
    assert load_settings(sms_stop_words="stop, Хватит!").sms_stop_words == {"stop", "хватит"}
    assert load_settings().sms_stop_words == DEFAULT_WORDS
    with pytest.raises(SettingsError, match="setting SMS_STOP_WORDS: at least one stop word"):
        load_settings(sms_stop_words=" , ")
