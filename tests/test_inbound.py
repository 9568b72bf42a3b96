"""Mail coming back, through real servers on loopback: the engine sends through aiosmtpd
with VERP return paths; DSNs, feedback-loop reports and mailto unsubscribes are sent
over SMTP to `chainmail inbound`'s receiver, and change exactly the rows they name."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import aiosmtplib
import pytest
from sqlalchemy import select

from channels.sms import OutboxSmsTransport
from channels.smtp import SmtpPool
from inbound.parse import ReturnPaths
from inbound.receiver import MAX_MESSAGE_BYTES, start_receiver
from models.db import Database
from models.protection import HoldPolicy
from models.tables import Chain, Customer, Delivery, Event
from models.tokens import ReturnKind, read_return_local_part
from scheduler.engine import Engine, EngineConfig
from services.lifecycle import activate_chain
from tests.returned_mail import (
    arf_report,
    exim_bounce,
    out_of_office,
    postfix_dsn,
    unsubscribe_request,
)
from tests.servers import ReceivedMessage, SmtpTestServer
from tests.test_engine import Clock, add_customers, import_seed

SECRET = "inbound-e2e"
DOMAIN = "bounce.shop.example"
BASE = "https://mail.shop.example"
POLICY = HoldPolicy()


@dataclass
class Returns:
    db: Database
    engine: Engine
    clock: Clock
    smtp: SmtpTestServer
    port: int

    async def send_back(self, data: bytes, recipient: str, sender: str = "") -> None:
        """As a mail server sends a report: from the null sender `<>` unless told."""
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=self.port)
        await client.connect()
        try:
            await client.ehlo()
            await client.mail(sender)
            await client.rcpt(recipient)
            await client.data(data)
            await client.quit()
        finally:
            client.close()

    def sent_to(self, customer: int) -> ReceivedMessage:
        [message] = [m for m in self.smtp.messages if m.rcpt_tos == (f"c{customer}@example.com",)]
        return message

    async def delivery(self, customer_id: int) -> Delivery:
        async with self.db.session() as session:
            return await session.scalar(select(Delivery).where(Delivery.customer_id == customer_id))

    async def email_status(self, customer_id: int) -> str:
        async with self.db.session() as session:
            return await session.scalar(
                select(Customer.email_status).where(Customer.id == customer_id)
            )

    async def events(self, customer_id: int) -> list[str]:
        async with self.db.session() as session:
            rows = await session.scalars(
                select(Event.type).where(Event.customer_id == customer_id).order_by(Event.id)
            )
            return list(rows)


@pytest.fixture
async def returns(db: Database, tmp_path: Path) -> AsyncIterator[Returns]:
    clock = Clock(datetime.now(UTC))
    paths = ReturnPaths(SECRET, DOMAIN, BASE)
    server = await start_receiver(
        db, paths, POLICY, host="127.0.0.1", port=0, hostname="mx.bounce.shop.example", clock=clock
    )
    port = server.sockets[0].getsockname()[1]
    with SmtpTestServer() as smtp:
        email = SmtpPool("127.0.0.1", smtp.port, concurrency=4)
        engine = Engine(
            db,
            EngineConfig(
                mail_from="Магазин <news@shop.example>",
                public_base_url=BASE,
                secret_key=SECRET,
                quiet_hours_sms=None,
                bounce_domain=DOMAIN,
            ),
            email=email,
            sms=OutboxSmsTransport(tmp_path, "Shop"),
            clock=clock,
        )
        yield Returns(db, engine, clock, smtp, port)
        await engine.close()
        await email.aclose()
    server.close()
    await server.wait_closed()


EMAIL_ONLY = """
format: chainmail/1
name: Welcome
steps:
  - name: Welcome
    audience: {segments: [new-customers]}
    action: {channel: email, subject: "Hello {{ first_name }}", text: "Hello", html: "<p>Hi</p>"}
    schedule: {send: now}
"""


WITH_A_REMINDER = (
    EMAIL_ONLY
    + """  - name: Reminder
    audience: {who: all}
    action: {channel: email, subject: "Still there?", text: "Hello", html: "<p>Hi</p>"}
    schedule: {send: after, after: 1d}
"""
)


async def sent_chain(returns: Returns, customers: int, chain: str = EMAIL_ONLY) -> list[int]:
    ids = await add_customers(returns.db, *({} for _ in range(customers)))
    chain_id = await import_seed(returns.db, chain)
    await activate_chain(returns.db, chain_id, actor="test", now=returns.clock())
    await returns.engine.tick()
    assert len(returns.smtp.messages) == customers
    return ids


async def test_every_email_goes_out_with_its_own_return_path(returns: Returns) -> None:
    ids = await sent_chain(returns, 5)

    for number, customer_id in enumerate(ids):
        message = returns.sent_to(number)
        local, _, domain = message.mail_from.rpartition("@")
        read = read_return_local_part(SECRET, local)
        delivery = await returns.delivery(customer_id)
        assert domain == DOMAIN
        assert read is not None
        assert (read.kind, read.delivery_id) == (ReturnKind.BOUNCE, delivery.id)
        unsubscribe = str(message.parsed()["List-Unsubscribe"])
        assert f"@{DOMAIN}?subject=unsubscribe>" in unsubscribe
        assert "mailto:u+" in unsubscribe


async def test_reports_sent_over_smtp_change_exactly_the_rows_they_name(
    returns: Returns,
) -> None:
    ids = await sent_chain(returns, 7)
    return_path = {n: returns.sent_to(n).mail_from for n in range(7)}
    mailto = str(returns.sent_to(3).parsed()["List-Unsubscribe"]).split("mailto:")[1]
    unsubscribe_address = mailto.split("?")[0]

    hard = postfix_dsn(returns.sent_to(0).data, to=return_path[0], recipient="c0@example.com")
    await returns.send_back(hard, return_path[0])
    await returns.send_back(hard, return_path[0])  # the same report twice
    delayed = postfix_dsn(
        returns.sent_to(1).data,
        to=return_path[1],
        recipient="c1@example.com",
        action="delayed",
        status="4.4.1",
    )
    await returns.send_back(delayed, return_path[1])
    await returns.send_back(
        arf_report(returns.sent_to(2).data, to=f"fbl@{DOMAIN}"), f"fbl@{DOMAIN}"
    )
    await returns.send_back(
        unsubscribe_request(to=unsubscribe_address), unsubscribe_address, "c3@example.com"
    )
    await returns.send_back(
        exim_bounce(to=return_path[4], recipient="c4@example.com"), return_path[4]
    )
    await returns.send_back(out_of_office(to=return_path[5]), return_path[5], "c5@example.com")

    rows = {n: await returns.delivery(ids[n]) for n in range(7)}
    statuses = {n: await returns.email_status(ids[n]) for n in range(7)}
    events = {n: await returns.events(ids[n]) for n in range(7)}
    assert {n: (rows[n].status, rows[n].reason) for n in range(7)} == {
        0: ("failed", "bounced"),
        1: ("sent", None),
        2: ("sent", None),
        3: ("sent", None),
        4: ("failed", "bounced"),
        5: ("sent", None),
        6: ("sent", None),
    }
    assert statuses == {
        0: "bounced",
        1: "subscribed",
        2: "unsubscribed",
        3: "unsubscribed",
        4: "bounced",
        5: "subscribed",
        6: "subscribed",
    }
    assert events == {
        0: ["bounced"],
        1: ["delayed"],
        2: ["complained", "unsubscribed"],
        3: ["unsubscribed"],
        4: ["bounced"],
        5: [],
        6: [],
    }


async def test_the_receiver_takes_mail_only_for_its_own_signed_addresses(
    returns: Returns,
) -> None:
    await sent_chain(returns, 1)
    genuine = returns.sent_to(0).mail_from
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=returns.port)
    await client.connect()
    try:
        await client.ehlo()
        await client.mail("")
        refusals = {}
        for recipient in (
            "someone@gmail.com",  # relaying
            f"b+1-{'a' * 16}@{DOMAIN}",  # a forged signature
            f"news@{DOMAIN}",  # no such mailbox
        ):
            with pytest.raises(aiosmtplib.SMTPRecipientRefused) as refused:
                await client.rcpt(recipient)
            refusals[recipient] = refused.value.code
        accepted = [
            (await client.rcpt(recipient)).code
            for recipient in (genuine, genuine.upper(), f"postmaster@{DOMAIN}", f"FBL@{DOMAIN}")
        ]
        lines = MAX_MESSAGE_BYTES // 78 + 1
        with pytest.raises(aiosmtplib.SMTPDataError) as too_big:
            await client.data(b"Subject: big\r\n\r\n" + (b"x" * 76 + b"\r\n") * lines)
    finally:
        client.close()

    assert set(refusals.values()) == {550}
    assert accepted == [250, 250, 250, 250]
    assert too_big.value.code == 552
    assert await returns.events(1) == []


async def test_a_busy_database_makes_the_sender_try_again_later(
    returns: Returns, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await sent_chain(returns, 1)
    return_path = returns.sent_to(0).mail_from
    dsn = postfix_dsn(returns.sent_to(0).data, to=return_path, recipient="c0@example.com")
    monkeypatch.setattr("inbound.receiver.WRITE_WAIT_SECONDS", 0.2)

    delivery_id = (await returns.delivery(ids[0])).id
    async with returns.db.writer() as session:  # another writer holds the row meanwhile
        await session.execute(select(Delivery).where(Delivery.id == delivery_id).with_for_update())
        with pytest.raises(aiosmtplib.SMTPDataError) as later:
            await asyncio.wait_for(returns.send_back(dsn, return_path), 30)
    assert later.value.code == 451
    assert await returns.email_status(ids[0]) == "subscribed"

    await returns.send_back(dsn, return_path)
    assert await returns.email_status(ids[0]) == "bounced"


async def test_complaints_coming_back_hold_the_chain_with_the_reason(returns: Returns) -> None:
    ids = await sent_chain(returns, 10, WITH_A_REMINDER)
    strict = HoldPolicy(complaint_rate=Decimal("0.15"), bounce_rate=Decimal("0.5"), min_sent=10)
    server = await start_receiver(
        returns.db,
        ReturnPaths(SECRET, DOMAIN, BASE),
        strict,
        host="127.0.0.1",
        port=0,
        hostname="mx.bounce.shop.example",
        clock=returns.clock,
    )
    returns.port = server.sockets[0].getsockname()[1]
    try:
        await returns.send_back(
            arf_report(returns.sent_to(0).data, to=f"fbl@{DOMAIN}"), f"fbl@{DOMAIN}"
        )
        async with returns.db.session() as session:
            chain = await session.scalar(select(Chain))
        assert (chain.status, chain.hold_reason) == ("active", None)  # 1 of 10: below 15 %

        await returns.send_back(
            arf_report(returns.sent_to(1).data, to=f"fbl@{DOMAIN}"), f"fbl@{DOMAIN}"
        )
    finally:
        server.close()
        await server.wait_closed()

    async with returns.db.session() as session:
        chain = await session.scalar(select(Chain))
    assert chain.status == "paused"
    assert "spam complaints 20" in chain.hold_reason
    assert [await returns.email_status(ids[n]) for n in range(3)] == [
        "unsubscribed",
        "unsubscribed",
        "subscribed",
    ]
