"""Links in SMS (issue 13, item 4): each becomes a short tracked link `/s/{token}`, its
target UTM-tagged with `utm_medium=sms` and stored on the delivery, so a click records
`clicked` and a `clicked` follow-up after an SMS step can come true. Counted and
previewed as sent, short links included."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from channels.sms import OutboxSmsTransport, SmsComposer
from channels.smtp import OutboxEmailTransport
from models.chainfile import load_yaml, validate_chain
from models.chains import import_chain
from models.db import Database
from models.preview import made_up_customer
from models.segments import add_segment
from models.sms_parts import GSM7_BASIC, SmsFrame, sms_as_sent, sms_parts
from models.tables import Delivery, Event
from models.tokens import (
    MAX_SHORT_DELIVERY_ID,
    MAX_SHORT_LINK_INDEX,
    SHORT_TOKEN_LENGTH,
    TokenData,
    TokenKind,
    make_short_token,
    make_token,
    read_short_token,
    read_token,
)
from services.lifecycle import activate_chain
from services.preview import MessageSetup, StepMessage, render_preview
from telegram_double import TelegramDouble
from tests.editor_driver import Phone
from tests.test_bot_support import ADMIN
from tests.test_busy_database import config as busy_config
from tests.test_busy_database import locked
from tests.test_e2e_engine import World, customers
from tests.test_e2e_engine import world as world  # the fixture
from tests.test_engine import Harness, add_customers, import_seed
from tests.test_engine import harness as harness  # the fixture
from tests.test_sms_opt_out import admin_bot, new_sms_chain, outbox_engine
from tests.test_tracking import CONFIG, SECRET, seed_delivery
from web.app import create_app
from web.spool import Spool

BASE = "https://shop.example"
FRAME = SmsFrame("STOP: 0000", BASE)
TARGET = "https://shop.example/sale?colour=red#top"


def tagged(position: int) -> str:
    return (
        "https://shop.example/sale?colour=red&utm_source=chainmail&utm_medium=sms"
        f"&utm_campaign=sale&utm_content=step{position}#top"
    )


TAGGED = tagged(2)


# Tokens


@settings(max_examples=300, deadline=None)
@given(
    secret=st.text(min_size=1, max_size=40),
    delivery_id=st.integers(0, MAX_SHORT_DELIVERY_ID),
    link_index=st.integers(0, MAX_SHORT_LINK_INDEX),
)
def test_a_short_token_reads_back_as_what_it_was_made_of(
    secret: str, delivery_id: int, link_index: int
) -> None:
    token = make_short_token(secret, delivery_id, link_index)

    assert len(token) == SHORT_TOKEN_LENGTH == 20
    # Every character is one GSM-7 septet: the link never makes an SMS UCS-2.
    assert set(token) <= GSM7_BASIC
    assert token.isalnum()
    assert read_short_token(secret, token) == TokenData(TokenKind.CLICK, delivery_id, link_index)
    assert read_short_token(secret + "x", token) is None


@settings(max_examples=300, deadline=None)
@given(
    delivery_id=st.integers(0, MAX_SHORT_DELIVERY_ID),
    link_index=st.integers(0, MAX_SHORT_LINK_INDEX),
    position=st.integers(0, SHORT_TOKEN_LENGTH - 1),
    replacement=st.sampled_from("0aZ9-_.~%"),
)
def test_an_altered_short_token_is_not_read(
    delivery_id: int, link_index: int, position: int, replacement: str
) -> None:
    token = make_short_token(SECRET, delivery_id, link_index)
    altered = token[:position] + replacement + token[position + 1 :]
    if altered != token:
        assert read_short_token(SECRET, altered) is None
    assert read_short_token(SECRET, token + "0") is None
    assert read_short_token(SECRET, token[:-1]) is None


def test_email_and_sms_tokens_are_not_taken_for_each_other() -> None:
    email_click = make_token(SECRET, TokenKind.CLICK, 7, 1)
    sms_click = make_short_token(SECRET, 7, 1)

    assert read_short_token(SECRET, email_click) is None
    assert read_token(SECRET, sms_click, TokenKind.CLICK) is None
    # The largest number twenty base62 characters spell is beyond any token.
    assert read_short_token(SECRET, "z" * SHORT_TOKEN_LENGTH) is None


def test_a_delivery_or_link_beyond_what_a_short_token_holds_is_refused() -> None:
    with pytest.raises(ValueError, match="delivery id"):
        make_short_token(SECRET, MAX_SHORT_DELIVERY_ID + 1, 0)
    with pytest.raises(ValueError, match="link index"):
        make_short_token(SECRET, 1, MAX_SHORT_LINK_INDEX + 1)


# The SMS as sent, counted


def test_links_are_counted_as_the_short_links_they_become() -> None:
    long_link = "https://shop.example/catalogue/" + "spring-sale-" * 15
    text = f"Sale today: {long_link}. Hurry!"

    as_sent = sms_as_sent(text, FRAME)

    assert FRAME.short_link_length == len("https://shop.example/s/") + 20 == 43
    assert as_sent == f"Sale today: {BASE}/s/{'0' * 20}. Hurry!\nSTOP: 0000"
    assert sms_parts(text).parts == 2
    assert sms_parts(as_sent).parts == 1
    assert sms_parts(as_sent).characters == len("Sale today: . Hurry!\nSTOP: 0000") + 43


def test_links_into_chainmail_itself_stay_as_written() -> None:
    own = f"{BASE}/u/abc {BASE}/s/{'1' * 20} {BASE}/t/c/x"

    assert sms_as_sent(own, SmsFrame("", BASE)) == own
    # Without a base URL nothing is shortened (a file checked with no settings).
    assert sms_as_sent(TARGET, SmsFrame()) == TARGET


def test_a_chain_file_sms_with_a_long_link_fits_as_sent() -> None:
    link = "https://shop.example/" + "a" * 1600
    doc = load_yaml(
        "format: chainmail/1\nname: Sale\nsteps:\n  - name: Offer\n"
        "    audience: {segments: [new-customers]}\n"
        f'    action: {{channel: sms, text: "Sale {link}"}}\n'
        "    schedule: {send: now}\n"
    )
    known = {"known_segments": ["new-customers"], "known_attributes": []}

    assert validate_chain(doc, **known, sms_frame=FRAME).value is not None
    # Counted as written (no base URL known), the link alone takes 11 parts.
    [problem] = validate_chain(doc, **known).problems
    assert "11 SMS parts" in str(problem)


def test_a_chain_file_sms_over_the_limit_says_links_were_counted_short() -> None:
    text = "a" * (10 * 153 - 30) + " https://shop.example/x"
    doc = load_yaml(
        "format: chainmail/1\nname: Sale\nsteps:\n  - name: Offer\n"
        "    audience: {segments: [new-customers]}\n"
        f'    action: {{channel: sms, text: "{text}"}}\n'
        "    schedule: {send: now}\n"
    )

    checked = validate_chain(
        doc, known_segments=["new-customers"], known_attributes=[], sms_frame=FRAME
    )

    [problem] = checked.problems
    assert str(problem) == (
        "steps[0].action.text: 11 SMS parts (1555 GSM-7 characters as written, each link as "
        "a 43-character short link, with the opt-out line 'STOP: 0000'): at most 10"
    )


def composer(utm: bool = True) -> SmsComposer:
    return SmsComposer(
        "Hi {{ first_name }}: {{ link }} or https://shop.example/new!",
        FRAME,
        secret_key=SECRET,
        campaign="sale",
        position=2,
        utm=utm,
    )


def test_each_link_becomes_a_short_link_to_its_tagged_target() -> None:
    composed = composer().compose(41, {"first_name": "Anna", "link": TARGET})

    tokens = [make_short_token(SECRET, 41, index) for index in (0, 1)]
    assert composed.text == (f"Hi Anna: {BASE}/s/{tokens[0]} or {BASE}/s/{tokens[1]}!\nSTOP: 0000")
    assert composed.links == [
        TAGGED,
        "https://shop.example/new?utm_source=chainmail&utm_medium=sms&utm_campaign=sale"
        "&utm_content=step2",
    ]
    # What the composer counted for the template is what is sent.
    assert sms_parts(composed.text) == sms_parts(
        sms_as_sent(f"Hi Anna: {TARGET} or https://shop.example/new!", FRAME)
    )


def test_with_utm_off_links_are_short_and_their_targets_as_written() -> None:
    composed = composer(utm=False).compose(41, {"first_name": "Anna", "link": TARGET})

    assert composed.links == [TARGET, "https://shop.example/new"]
    assert "/s/" in composed.text


# Through the web app


async def sms_delivery(db: Database, links: list[str]) -> int:
    delivery = await seed_delivery(db, channel="sms")
    async with db.writer() as session:
        await session.execute(
            update(Delivery).where(Delivery.id == delivery.id).values(links=links)
        )
    return delivery.id


async def event_rows(db: Database) -> list[tuple[str, dict[str, object]]]:
    async with db.session() as session:
        rows = await session.execute(select(Event.type, Event.data).order_by(Event.id))
    return [(type_, data) for type_, data in rows]


@pytest.fixture
async def client(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(db, CONFIG))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def test_a_short_link_redirects_to_its_stored_target_and_records_one_click(
    db: Database, client: httpx.AsyncClient
) -> None:
    delivery_id = await sms_delivery(db, [TARGET, TAGGED])
    url = f"/s/{make_short_token(SECRET, delivery_id, 1)}"

    for _ in range(3):
        response = await client.get(url)
        assert response.status_code == 302
        assert response.headers["location"] == TAGGED
        assert response.headers["cache-control"] == "no-store"

    # An SMS click is a click; nothing says the SMS was "opened".
    assert await event_rows(db) == [("clicked", {"link": 1})]


async def test_a_forged_or_foreign_short_link_is_not_found_and_changes_nothing(
    db: Database, client: httpx.AsyncClient
) -> None:
    delivery_id = await sms_delivery(db, [TARGET])
    genuine = make_short_token(SECRET, delivery_id, 0)
    forged = genuine[:-1] + ("1" if genuine[-1] != "1" else "2")

    answers = [
        await client.get(f"/s/{forged}"),
        await client.get(f"/s/{make_short_token('another secret', delivery_id, 0)}"),
        await client.get(f"/s/{make_short_token(SECRET, delivery_id, 1)}"),  # no such link
        await client.get(f"/s/{make_short_token(SECRET, delivery_id + 1, 0)}"),  # no delivery
        await client.get(f"/s/{make_token(SECRET, TokenKind.CLICK, delivery_id, 0)}"),
        await client.get(f"/t/c/{genuine}"),
    ]

    assert [answer.status_code for answer in answers] == [404] * 6
    assert await event_rows(db) == []


# The engine, the preview


SMS_THEN_CLICKED = """
format: chainmail/1
name: Sale
steps:
  - name: Offer
    audience: {segments: [new-customers]}
    action: {channel: sms, text: "{{ first_name }}, sale: https://shop.example/sale?colour=red#top"}
    schedule: {send: now}
  - name: Thanks for looking
    audience: {who: terms, match: all, terms: [clicked]}
    action: {channel: email, subject: "You looked", text: "Here is more"}
    schedule: {send: now, wait_days: 3}
"""


async def test_the_outbox_file_holds_the_sms_with_its_short_link(harness: Harness) -> None:
    await add_customers(harness.db, {})
    chain_id = await import_seed(harness.db, SMS_THEN_CLICKED)
    await activate_chain(harness.db, chain_id, actor="test", now=harness.clock())
    engine = outbox_engine(harness, public_base_url=BASE)

    await engine.tick()

    [sms] = harness.sms()
    async with harness.db.session() as session:
        sent = select(Delivery).where(Delivery.status == "sent")
        delivery = (await session.scalars(sent)).one()
    token = make_short_token(engine.config.secret_key, delivery.id, 0)
    assert sms["text"] == f"Имя0, sale: {BASE}/s/{token}"
    assert delivery.links == [tagged(1)]


async def test_the_preview_shows_the_sms_as_sent_and_where_its_links_lead(
    db: Database, tmp_path: Path
) -> None:
    setup = MessageSetup(
        mail_from="news@shop.example",
        public_base_url=BASE,
        secret_key=SECRET,
        open_email=lambda: OutboxEmailTransport(tmp_path),
        open_sms=lambda: OutboxSmsTransport(tmp_path, "Shop"),
        sms_opt_out_text="STOP: 0000",
    )
    long_link = "https://shop.example/" + "x" * 200
    message = StepMessage(1, "Sale", 1, 2, "sale", True, {"channel": "sms", "text": long_link})

    preview = await render_preview(db, setup, message, made_up_customer("Europe/Moscow", "ru"))

    # Delivery 0, as a test send: its link answers "not found".
    assert preview.text == f"{BASE}/s/{make_short_token(SECRET, 0, 0)}\nSTOP: 0000"
    assert preview.count.parts == 1
    [target] = preview.links
    assert target.startswith(long_link + "?utm_source=chainmail&utm_medium=sms")


async def test_a_click_on_an_sms_link_sends_the_clicked_follow_up(world: World) -> None:
    """Real servers: the SMS gateway double gets the SMS, the link is fetched from the web
    app on uvicorn, the follow-up email reaches the SMTP server."""
    await world.api("/api/v1/customers", customers(3))
    await add_segment(world.db, "new-customers", ["new"], "any", actor="test")
    text = SMS_THEN_CLICKED.replace("https://shop.example/sale", f"{world.base_url}/shop/sale")
    # The shop's own site on the same host as Chainmail is still tracked: only /u/, /t/
    # and /s/ are Chainmail's.
    chain_id = (await import_chain(world.db, text, actor="test")).chain_id
    await activate_chain(world.db, chain_id, actor="test")

    await world.engine.tick()

    sent = world.gateway.accepted()
    assert len(sent) == 3
    by_phone = {sms["to"]: sms["text"] for sms in sent}
    clicker = by_phone["+79130000001"]
    [link] = [word for word in clicker.split() if "/s/" in word]
    assert link.startswith(f"{world.base_url}/s/")
    assert len(link) == len(world.base_url) + 3 + SHORT_TOKEN_LENGTH
    assert world.smtp.messages == []

    response = await world.http.get(link)
    assert response.status_code == 302
    target = urlsplit(response.headers["location"])
    assert (target.path, target.fragment) == ("/shop/sale", "top")
    assert dict(parse_qsl(target.query)) == {
        "colour": "red",
        "utm_source": "chainmail",
        "utm_medium": "sms",
        "utm_campaign": "sale",
        "utm_content": "step1",
    }

    await world.engine.tick()

    [follow_up] = world.smtp.messages
    assert list(follow_up.rcpt_tos) == ["c1@example.com"]
    assert follow_up.parsed()["Subject"] == "You looked"
    offer, thanks = await world.stats(chain_id)
    assert (offer["sent"], offer["delivered"], offer["clicked"]) == (3, 3, 1)
    assert (thanks["sent"], thanks["planned"]) == (1, 2)


async def test_a_short_link_meeting_a_busy_database_still_redirects_and_is_kept(
    db: Database, tmp_path: Path
) -> None:
    delivery_id = await sms_delivery(db, [TARGET, TAGGED])
    spool_dir = tmp_path / "spool"
    transport = httpx.ASGITransport(app=create_app(db, busy_config(spool_dir)))

    http = httpx.AsyncClient(transport=transport, base_url="http://test")
    async with http, locked(db):
        response = await http.get(f"/s/{make_short_token(SECRET, delivery_id, 1)}")
        assert await event_rows(db) == []

    assert response.status_code == 302
    assert response.headers["location"] == TAGGED
    assert await Spool(spool_dir).replay(db) == 1
    assert await event_rows(db) == [("clicked", {"link": 1})]


async def test_the_bot_counts_and_previews_the_sms_with_its_short_link(
    db: Database, double: TelegramDouble
) -> None:
    long_link = "https://shop.example/" + "x" * 200
    async with admin_bot(db, double, public_base_url=BASE) as bot:
        phone = Phone(bot, ADMIN)
        await new_sms_chain(phone, f"Sale {long_link}")
        # "Sale " and a 43-character short link, not the 221 characters as written.
        assert "48 characters · 1 SMS part (GSM-7)" in phone.text

        await phone.tap("👁 Preview")

        assert f"Sale {BASE}/s/" in phone.text
        assert "48 characters · 1 SMS part (GSM-7)" in phone.text
        assert "Its short links lead to" in phone.text
        assert f"1. {long_link[:100]}" in phone.text
