"""Opens, clicks, unsubscribes and SMS reports, through the services and the HTTP links."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import func, select

from models import tracking
from models.db import Database
from models.tables import AuditEntry, Chain, Channel, Customer, Delivery, Event, Step
from models.tokens import TokenKind, make_token
from web.app import WebConfig, create_app
from web.tracking import PIXEL_GIF

SECRET = "tracking-test-secret"
API_TOKEN = "api-test-token"
CONFIG = WebConfig(
    api_token=API_TOKEN,
    secret_key=SECRET,
    public_base_url="http://test",
    default_timezone="Europe/Moscow",
    default_phone_region="RU",
)
LINKS = ["https://shop.example/sale?utm_source=chainmail", "https://shop.example/new"]
SENT_AT = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


async def seed_delivery(
    db: Database,
    *,
    channel: str = "email",
    email_status: str = "subscribed",
    language: str | None = "en",
) -> Delivery:
    """A delivery to Anna, who reads English unless `language` says otherwise (None: her
    Russian phone says Russian)."""
    async with db.writer() as session:
        customer = Customer(
            external_id="c1",
            email="anna@example.com",
            phone="+79131234567",
            timezone="Europe/Moscow",
            timezone_source="default",
            email_status=email_status,
            language=language,
        )
        chain = Chain(name="Welcome", campaign_tag="x")
        session.add_all([customer, chain])
        await session.flush()
        step = Step(chain_id=chain.id, position=1, name="Hello", action={"channel": channel})
        session.add(step)
        await session.flush()
        delivery = Delivery(
            chain_id=chain.id,
            step_id=step.id,
            customer_id=customer.id,
            channel=channel,
            status="sent",
            eligible_at=SENT_AT,
            due_at=SENT_AT,
            sent_at=SENT_AT,
            triggered_at=SENT_AT,
            links=LINKS if channel == "email" else None,
        )
        session.add(delivery)
    return delivery


async def events(db: Database) -> list[tuple[str, dict[str, object]]]:
    async with db.session() as session:
        rows = await session.execute(select(Event.type, Event.data).order_by(Event.id))
    return [(type_, data) for type_, data in rows]


async def customer(db: Database) -> Customer:
    async with db.session() as session:
        return (await session.scalars(select(Customer))).one()


async def audit_count(db: Database) -> int:
    async with db.session() as session:
        return await session.scalar(select(func.count()).select_from(AuditEntry)) or 0


@pytest.fixture
async def client(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(db, CONFIG))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


def token(kind: TokenKind, delivery_id: int, link_index: int = 0) -> str:
    return make_token(SECRET, kind, delivery_id, link_index)


# Open pixel


async def test_pixel_answers_a_gif_and_records_one_open(
    db: Database, client: httpx.AsyncClient
) -> None:
    delivery = await seed_delivery(db)
    url = f"/t/o/{token(TokenKind.OPEN, delivery.id)}"

    for _ in range(3):
        response = await client.get(url)
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/gif"
        assert response.headers["cache-control"] == "no-store"
        assert response.content == PIXEL_GIF

    assert len(PIXEL_GIF) == 43
    assert PIXEL_GIF.startswith(b"GIF89a")
    assert await events(db) == [("opened", {})]


async def test_concurrent_opens_of_one_email_record_one_event(db: Database) -> None:
    delivery = await seed_delivery(db)
    at = datetime.now(UTC)

    results = await asyncio.gather(*(tracking.record_open(db, delivery.id, at) for _ in range(8)))

    assert all(results)
    assert await events(db) == [("opened", {})]


async def test_open_of_an_unknown_delivery_records_nothing(db: Database) -> None:
    await seed_delivery(db)
    assert await tracking.record_open(db, 999_999, datetime.now(UTC)) is False
    assert await events(db) == []


def _forged_tokens(delivery_id: int) -> dict[str, str]:
    genuine = token(TokenKind.OPEN, delivery_id)
    payload, _, signature = genuine.partition(".")
    other_payload = base64.urlsafe_b64encode(f"o:{delivery_id + 1}:0".encode()).decode()
    return {
        "other key": make_token("not-the-secret", TokenKind.OPEN, delivery_id),
        "altered signature": f"{payload}.{signature[:-1]}{'A' if signature[-1] != 'A' else 'B'}",
        "payload swapped": f"{other_payload.rstrip('=')}.{signature}",
        "no signature": payload,
        "garbage": "not-a-token",
    }


@pytest.mark.parametrize(
    "case", ["other key", "altered signature", "payload swapped", "no signature", "garbage"]
)
async def test_forged_open_token_answers_404_and_records_nothing(
    db: Database, client: httpx.AsyncClient, case: str
) -> None:
    delivery = await seed_delivery(db)

    response = await client.get(f"/t/o/{_forged_tokens(delivery.id)[case]}")

    assert response.status_code == 404
    assert await events(db) == []


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        ("GET", "/t/o/", TokenKind.CLICK),
        ("GET", "/t/o/", TokenKind.UNSUBSCRIBE),
        ("GET", "/t/c/", TokenKind.OPEN),
        ("GET", "/t/c/", TokenKind.UNSUBSCRIBE),
        ("GET", "/u/", TokenKind.OPEN),
        ("POST", "/u/", TokenKind.OPEN),
        ("POST", "/u/", TokenKind.CLICK),
    ],
)
async def test_token_of_another_kind_answers_404_and_changes_nothing(
    db: Database, client: httpx.AsyncClient, method: str, path: str, kind: TokenKind
) -> None:
    delivery = await seed_delivery(db)

    response = await client.request(method, path + token(kind, delivery.id))

    assert response.status_code == 404
    assert await events(db) == []
    assert (await customer(db)).email_status == "subscribed"


# Click redirect


async def test_click_redirects_to_the_stored_target_and_counts_as_an_open(
    db: Database, client: httpx.AsyncClient
) -> None:
    delivery = await seed_delivery(db)
    url = f"/t/c/{token(TokenKind.CLICK, delivery.id, 1)}"

    first = await client.get(url)
    again = await client.get(url)

    for response in (first, again):
        assert response.status_code == 302
        assert response.headers["location"] == LINKS[1]
        assert response.headers["cache-control"] == "no-store"
    assert await events(db) == [("clicked", {"link": 1}), ("opened", {})]


async def test_each_link_counts_its_own_click_after_the_pixel_counted_the_open(
    db: Database, client: httpx.AsyncClient
) -> None:
    delivery = await seed_delivery(db)

    await client.get(f"/t/o/{token(TokenKind.OPEN, delivery.id)}")
    for index in (0, 1, 0):
        response = await client.get(f"/t/c/{token(TokenKind.CLICK, delivery.id, index)}")
        assert response.headers["location"] == LINKS[index]

    assert await events(db) == [("opened", {}), ("clicked", {"link": 0}), ("clicked", {"link": 1})]


async def test_concurrent_clicks_on_one_link_record_one_click_and_one_open(db: Database) -> None:
    delivery = await seed_delivery(db)
    at = datetime.now(UTC)

    targets = await asyncio.gather(
        *(tracking.record_click(db, delivery.id, 0, at) for _ in range(8))
    )

    assert targets == [LINKS[0]] * 8
    assert sorted(await events(db), key=lambda event: event[0]) == [
        ("clicked", {"link": 0}),
        ("opened", {}),
    ]


async def test_click_on_a_link_index_the_message_does_not_have_answers_404(
    db: Database, client: httpx.AsyncClient
) -> None:
    delivery = await seed_delivery(db)

    response = await client.get(f"/t/c/{token(TokenKind.CLICK, delivery.id, len(LINKS))}")

    assert response.status_code == 404
    assert "text/html" in response.headers["content-type"]
    assert await events(db) == []


async def test_click_target_cannot_come_from_the_url(
    db: Database, client: httpx.AsyncClient
) -> None:
    delivery = await seed_delivery(db)
    evil = "https://evil.example/phish"
    # A token whose payload is a URL, signed by someone without the secret.
    url_payload = base64.urlsafe_b64encode(evil.encode()).decode().rstrip("=")
    forged = f"{url_payload}.{token(TokenKind.CLICK, delivery.id).partition('.')[2]}"
    genuine = token(TokenKind.CLICK, delivery.id, 0)

    refused = await client.get(f"/t/c/{forged}")
    with_query = await client.get(f"/t/c/{genuine}", params={"url": evil, "target": evil})

    assert refused.status_code == 404
    assert with_query.status_code == 302
    assert with_query.headers["location"] == LINKS[0]


async def test_click_of_an_unknown_delivery_records_nothing(db: Database) -> None:
    await seed_delivery(db)
    assert await tracking.record_click(db, 999_999, 0, datetime.now(UTC)) is None
    assert await events(db) == []


# Unsubscribe


async def test_unsubscribe_page_asks_with_a_form_and_changes_nothing(
    db: Database, client: httpx.AsyncClient
) -> None:
    delivery = await seed_delivery(db)

    response = await client.get(f"/u/{token(TokenKind.UNSUBSCRIBE, delivery.id)}")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert '<form method="post">' in page
    assert '<button type="submit">' in page
    assert 'name="viewport"' in page
    assert "emails" in page
    assert await events(db) == []
    assert (await customer(db)).email_status == "subscribed"


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        ("List-Unsubscribe=One-Click", {"content-type": "application/x-www-form-urlencoded"}),
        ("", {}),
        ('{"anything": true}', {"content-type": "application/json"}),
    ],
    ids=["rfc8058", "empty", "other"],
)
async def test_one_click_post_unsubscribes_with_a_page_not_a_redirect(
    db: Database, client: httpx.AsyncClient, content: str, headers: dict[str, str]
) -> None:
    delivery = await seed_delivery(db)
    before = datetime.now(UTC)

    response = await client.post(
        f"/u/{token(TokenKind.UNSUBSCRIBE, delivery.id)}", content=content, headers=headers
    )

    assert response.status_code == 200
    assert "location" not in response.headers
    assert "unsubscribed" in response.text
    unsubscribed = await customer(db)
    assert unsubscribed.email_status == "unsubscribed"
    assert unsubscribed.email_status_at is not None
    assert unsubscribed.email_status_at >= before
    assert unsubscribed.sms_status == "subscribed"
    assert await events(db) == [("unsubscribed", {"channel": "email"})]
    async with db.session() as session:
        entry = (await session.scalars(select(AuditEntry))).one()
    assert (entry.actor, entry.action) == ("web", "customer.unsubscribe")
    assert entry.details["delivery_id"] == delivery.id


async def test_unsubscribing_again_changes_nothing_and_still_answers_ok(
    db: Database, client: httpx.AsyncClient
) -> None:
    delivery = await seed_delivery(db)
    url = f"/u/{token(TokenKind.UNSUBSCRIBE, delivery.id)}"
    await client.post(url, data={"List-Unsubscribe": "One-Click"})
    first_at = (await customer(db)).email_status_at

    again = await client.post(url, data={"List-Unsubscribe": "One-Click"})

    assert again.status_code == 200
    assert (await customer(db)).email_status_at == first_at
    assert await events(db) == [("unsubscribed", {"channel": "email"})]
    assert await audit_count(db) == 1


async def test_sms_unsubscribe_changes_the_sms_status_only(
    db: Database, client: httpx.AsyncClient
) -> None:
    delivery = await seed_delivery(db, channel="sms")

    page = await client.get(f"/u/{token(TokenKind.UNSUBSCRIBE, delivery.id)}")
    response = await client.post(f"/u/{token(TokenKind.UNSUBSCRIBE, delivery.id)}")

    assert "text messages" in page.text
    assert response.status_code == 200
    unsubscribed = await customer(db)
    assert (unsubscribed.sms_status, unsubscribed.email_status) == ("unsubscribed", "subscribed")
    assert unsubscribed.sms_status_at is not None
    assert unsubscribed.email_status_at is None
    assert await events(db) == [("unsubscribed", {"channel": "sms"})]


async def test_a_bounced_address_stays_bounced_when_unsubscribing(db: Database) -> None:
    delivery = await seed_delivery(db, email_status="bounced")

    result = await tracking.unsubscribe(db, delivery.id, datetime.now(UTC))

    assert result == tracking.UnsubscribeResult(Channel.EMAIL, changed=False)
    assert (await customer(db)).email_status == "bounced"
    assert await events(db) == [("unsubscribed", {"channel": "email"})]
    assert await audit_count(db) == 0


async def test_forged_unsubscribe_changes_nothing(db: Database, client: httpx.AsyncClient) -> None:
    delivery = await seed_delivery(db)
    forged = make_token("not-the-secret", TokenKind.UNSUBSCRIBE, delivery.id)

    page = await client.get(f"/u/{forged}")
    response = await client.post(f"/u/{forged}", data={"List-Unsubscribe": "One-Click"})
    unknown = await client.post(f"/u/{token(TokenKind.UNSUBSCRIBE, 999_999)}")

    assert [page.status_code, response.status_code, unknown.status_code] == [404, 404, 404]
    assert "text/html" in response.headers["content-type"]
    assert (await customer(db)).email_status == "subscribed"
    assert await events(db) == []
    assert await audit_count(db) == 0


# SMS delivery reports


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.mark.parametrize(("status", "event"), [("delivered", "delivered"), ("failed", "bounced")])
async def test_sms_report_records_its_event_once(
    db: Database, client: httpx.AsyncClient, status: str, event: str
) -> None:
    delivery = await seed_delivery(db, channel="sms")

    for _ in range(2):
        response = await client.post(
            "/api/v1/sms/status", json={"id": str(delivery.id), "status": status}, headers=_auth()
        )
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}

    assert await events(db) == [(event, {})]


@pytest.mark.parametrize("unknown_id", ["999999", "abc", "1" * 40, "-1", ""])
async def test_sms_report_for_an_unknown_id_is_a_404(
    db: Database, client: httpx.AsyncClient, unknown_id: str
) -> None:
    await seed_delivery(db, channel="sms")

    response = await client.post(
        "/api/v1/sms/status", json={"id": unknown_id, "status": "delivered"}, headers=_auth()
    )

    assert response.status_code == 404
    assert "no SMS with id" in response.json()["detail"]
    assert await events(db) == []


async def test_sms_report_about_an_email_is_a_404(db: Database, client: httpx.AsyncClient) -> None:
    delivery = await seed_delivery(db, channel="email")

    response = await client.post(
        "/api/v1/sms/status", json={"id": delivery.id, "status": "failed"}, headers=_auth()
    )

    assert response.status_code == 404
    assert await events(db) == []


async def test_sms_report_with_an_unknown_status_is_a_422(
    db: Database, client: httpx.AsyncClient
) -> None:
    delivery = await seed_delivery(db, channel="sms")

    response = await client.post(
        "/api/v1/sms/status", json={"id": str(delivery.id), "status": "read"}, headers=_auth()
    )

    assert response.status_code == 422
    assert await events(db) == []


async def test_a_customer_reads_the_pages_in_their_language(
    db: Database, client: httpx.AsyncClient
) -> None:
    """No language of her own: her Russian phone says Russian; the page says so too."""
    delivery = await seed_delivery(db, language=None)
    url = f"/u/{token(TokenKind.UNSUBSCRIBE, delivery.id)}"

    asked = await client.get(url)
    done = await client.post(url, content="List-Unsubscribe=One-Click")

    assert '<html lang="ru">' in asked.text
    assert "Вы хотите больше не получать наши письма?" in asked.text
    assert ">Отписаться</button>" in asked.text
    assert "Вы больше не будете получать наши рассылки по электронной почте." in done.text


@pytest.mark.parametrize(
    ("accept_language", "title"),
    [
        ("ru-RU,ru;q=0.9,en;q=0.8", "Ссылка не найдена"),
        ("de-DE,en;q=0.5", "Link not found"),
        ("de-DE", "Ссылка не найдена"),  # none of ours: DEFAULT_LANGUAGE
        ("en;q=0.2, ru;q=0.1", "Link not found"),
    ],
)
async def test_a_bad_link_answers_in_the_browsers_language_else_the_default(
    client: httpx.AsyncClient, accept_language: str, title: str
) -> None:
    response = await client.get("/u/forged.token", headers={"Accept-Language": accept_language})

    assert response.status_code == 404
    assert f"<h1>{title}</h1>" in response.text
