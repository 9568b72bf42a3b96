"""The bounce mailbox poller (INBOUND_IMAP_URL) against Debian's Dovecot on loopback:
reports stored in the mailbox change the rows they name, and are marked seen once
applied — not before."""

from __future__ import annotations

import imaplib
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from inbound.imap import MailboxPoller, imap_mailbox
from inbound.parse import ReturnPaths
from models.tables import Delivery
from tests.dovecot import PASSWORD, USER, DovecotTestServer
from tests.returned_mail import arf_report, out_of_office, postfix_dsn
from tests.test_inbound import BASE, DOMAIN, POLICY, SECRET, Returns, returns, sent_chain

__all__ = ["returns"]  # the fixture, shared with tests/test_inbound.py


@pytest.fixture
def dovecot() -> Iterator[DovecotTestServer]:
    with DovecotTestServer() as server:
        yield server


def mailbox(server: DovecotTestServer) -> imaplib.IMAP4_SSL:
    connection = imaplib.IMAP4_SSL(
        "127.0.0.1", server.port, ssl_context=server.tls.client_context()
    )
    connection.login(USER, PASSWORD)
    connection.select("INBOX")
    return connection


def store(server: DovecotTestServer, *messages: bytes) -> None:
    connection = mailbox(server)
    try:
        for message in messages:
            status, _ = connection.append("INBOX", None, None, message)
            assert status == "OK"
    finally:
        connection.logout()


def unseen(server: DovecotTestServer) -> int:
    connection = mailbox(server)
    try:
        _, found = connection.search(None, "UNSEEN")
        return len(found[0].split())
    finally:
        connection.logout()


def poller(returns: Returns, server: DovecotTestServer, password: str = PASSWORD) -> MailboxPoller:
    return MailboxPoller(
        returns.db,
        ReturnPaths(SECRET, DOMAIN, BASE),
        imap_mailbox(server.url("INBOX").replace(PASSWORD, password)),
        POLICY,
        returns.clock,
        tls=server.tls.client_context(),
    )


async def test_reports_in_the_mailbox_are_applied_and_marked_seen(
    returns: Returns, dovecot: DovecotTestServer
) -> None:
    ids = await sent_chain(returns, 4)
    return_path = {n: returns.sent_to(n).mail_from for n in range(4)}
    # As the mailbox's MTA stores mail: the envelope recipient in Delivered-To.
    delivered_to = f"Delivered-To: {return_path[0]}\r\n".encode()
    store(
        dovecot,
        delivered_to
        + postfix_dsn(returns.sent_to(0).data, to=return_path[0], recipient="c0@example.com"),
        arf_report(returns.sent_to(1).data, to=f"fbl@{DOMAIN}"),
        out_of_office(to=return_path[2]),
        b"not a message at all \xff\xfe",
    )

    assert await poller(returns, dovecot).poll_once() == 4
    assert unseen(dovecot) == 0
    assert [await returns.email_status(ids[n]) for n in range(4)] == [
        "bounced",
        "unsubscribed",
        "subscribed",
        "subscribed",
    ]
    assert await returns.events(ids[1]) == ["complained", "unsubscribed"]
    assert await poller(returns, dovecot).poll_once() == 0  # nothing new to read


async def test_a_report_the_database_could_not_take_stays_unseen_for_the_next_look(
    returns: Returns, dovecot: DovecotTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await sent_chain(returns, 1)
    return_path = returns.sent_to(0).mail_from
    store(
        dovecot,
        f"Delivered-To: {return_path}\r\n".encode()
        + postfix_dsn(returns.sent_to(0).data, to=return_path, recipient="c0@example.com"),
    )
    monkeypatch.setattr("inbound.imap.WRITE_WAIT_SECONDS", 0.2)
    delivery_id = (await returns.delivery(ids[0])).id

    async with returns.db.writer() as session:  # another writer holds the row meanwhile
        await session.execute(select(Delivery).where(Delivery.id == delivery_id).with_for_update())
        assert await poller(returns, dovecot).poll_once() == 0
    assert unseen(dovecot) == 1

    assert await poller(returns, dovecot).poll_once() == 1
    assert unseen(dovecot) == 0
    assert await returns.email_status(ids[0]) == "bounced"


async def test_a_wrong_password_fails_the_look_with_the_servers_words(
    returns: Returns, dovecot: DovecotTestServer
) -> None:
    with pytest.raises(imaplib.IMAP4.error, match=r"(?i)auth"):
        await poller(returns, dovecot, password="wrong").poll_once()
