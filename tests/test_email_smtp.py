"""The SMTP pool and the outbox against a real SMTP server on loopback."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
from pathlib import Path

import pytest

from channels.email_compose import EmailComposer, EmailStep, Recipient
from channels.smtp import (
    EmailTransport,
    OutboxEmailTransport,
    SendResult,
    SendStatus,
    SmtpPool,
    email_transport_from_settings,
)
from tests import servers
from tests.servers import DropPhase, SmtpFaults, SmtpTestServer, TlsFiles

smtp_server = servers.smtp_server
tls_files = servers.tls_files

SENDER = "Магазин <news@shop.example>"


def message(number: int) -> tuple[str, str, bytes]:
    """(recipient, Message-ID, data) of a small test message."""
    message_id = f"<test.{number}@shop.example>"
    data = (
        f"From: news@shop.example\r\nTo: r{number}@example.com\r\n"
        f"Message-ID: {message_id}\r\nSubject: test\r\n\r\n"
        f".a line starting with a dot\r\nmessage {number}\r\n"
    ).encode()
    return f"r{number}@example.com", message_id, data


def pool_for(server: SmtpTestServer, **options: object) -> SmtpPool:
    settings: dict[str, object] = {"backoff": 0.01, "timeout": 5.0, "local_hostname": "test"}
    settings.update(options)
    return SmtpPool(server.host, server.port, **settings)  # type: ignore[arg-type]


async def send_all(pool: SmtpPool, numbers: range) -> list[SendResult]:
    async def one(number: int) -> SendResult:
        recipient, message_id, data = message(number)
        return await pool.send(SENDER, recipient, message_id, data)

    try:
        return await asyncio.gather(*(one(n) for n in numbers))
    finally:
        await pool.aclose()


async def test_messages_arrive_once_each_byte_for_byte(smtp_server: SmtpTestServer) -> None:
    results = await send_all(pool_for(smtp_server, concurrency=4), range(40))

    assert {r.status for r in results} == {SendStatus.SENT}
    received = smtp_server.messages
    assert sorted(m.message_id or "" for m in received) == sorted(message(n)[1] for n in range(40))
    first = next(m for m in received if m.message_id == message(0)[1])
    assert first.data == message(0)[2]
    assert first.mail_from == "news@shop.example"
    assert first.rcpt_tos == ("r0@example.com",)


async def test_connections_are_reused_and_never_exceed_concurrency(
    smtp_server: SmtpTestServer,
) -> None:
    await send_all(pool_for(smtp_server, concurrency=3), range(60))

    assert len(smtp_server.messages) == 60
    assert 1 <= smtp_server.connections <= 3


async def test_dead_idle_connections_are_replaced(smtp_server: SmtpTestServer) -> None:
    pool = pool_for(smtp_server, concurrency=2)
    await asyncio.gather(*(pool.send(SENDER, *message(n)) for n in range(4)))
    smtp_server.disconnect_all()
    await asyncio.sleep(0.05)

    results = await send_all(pool, range(4, 8))

    assert {r.status for r in results} == {SendStatus.SENT}
    assert len(smtp_server.messages) == 8
    assert smtp_server.connections > 1


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_tls_and_auth(security: str, tls_files: TlsFiles) -> None:
    with SmtpTestServer(
        security=security,  # type: ignore[arg-type]
        tls=tls_files,
        credentials=("mailer", "s3cret"),
    ) as server:
        pool = pool_for(
            server,
            security=security,
            username="mailer",
            password="s3cret",
            tls_context=tls_files.client_context(),
        )
        results = await send_all(pool, range(5))

    assert {r.status for r in results} == {SendStatus.SENT}
    assert len(server.messages) == 5


async def test_wrong_password_is_transient_and_nothing_is_sent(tls_files: TlsFiles) -> None:
    with SmtpTestServer(security="tls", tls=tls_files, credentials=("mailer", "s3cret")) as server:
        pool = pool_for(
            server,
            security="tls",
            username="mailer",
            password="wrong",
            attempts=2,
            tls_context=tls_files.client_context(),
        )
        [result] = await send_all(pool, range(1))

    assert result.status is SendStatus.TRANSIENT
    assert "535" in result.detail
    assert "after 2 attempts" in result.detail
    assert server.messages == []


async def test_untrusted_certificate_is_refused(tls_files: TlsFiles) -> None:
    with SmtpTestServer(security="tls", tls=tls_files) as server:
        [result] = await send_all(pool_for(server, security="tls", attempts=1), range(1))

    assert result.status is SendStatus.TRANSIENT
    assert "certificate" in result.detail.lower()
    assert server.messages == []


async def test_tempfails_and_dropped_connections_end_with_every_message_exactly_once(
    smtp_server: SmtpTestServer,
) -> None:
    numbers = range(60)
    smtp_server.faults = SmtpFaults(
        tempfail_every=5,
        drop={
            **{message(n)[0]: DropPhase.RCPT for n in numbers[1::7]},
            **{message(n)[0]: DropPhase.DATA for n in numbers[3::7]},
        },
    )

    results = await send_all(pool_for(smtp_server, concurrency=8), numbers)

    assert [r.status for r in results] == [SendStatus.SENT] * len(numbers)
    ids = smtp_server.message_ids()
    assert sorted(ids) == sorted(message(n)[1] for n in numbers)
    retried = [n for n in numbers if smtp_server.attempts(message(n)[0]) > 1]
    assert len(retried) >= len(numbers) // 5


async def test_tempfail_after_the_message_is_retried(smtp_server: SmtpTestServer) -> None:
    smtp_server.faults = SmtpFaults(tempfail_every=1, tempfail_at="data")

    [result] = await send_all(pool_for(smtp_server), range(1))

    assert result.status is SendStatus.SENT
    assert smtp_server.attempts(message(0)[0]) == 2
    assert len(smtp_server.messages) == 1


async def test_tempfail_that_persists_ends_transient(smtp_server: SmtpTestServer) -> None:
    smtp_server.faults = SmtpFaults(tempfail_every=1, tempfail_times=99)

    [result] = await send_all(pool_for(smtp_server, attempts=3), range(1))

    assert result == SendResult(
        SendStatus.TRANSIENT, "451 4.3.0 try again later (after 3 attempts)"
    )
    assert smtp_server.attempts(message(0)[0]) == 3
    assert smtp_server.messages == []


async def test_refused_recipient_is_permanent_bounce_without_retry(
    smtp_server: SmtpTestServer,
) -> None:
    smtp_server.faults = SmtpFaults(reject=frozenset({"r0@example.com"}))

    results = await send_all(pool_for(smtp_server, concurrency=1), range(2))

    assert results[0] == SendResult(
        SendStatus.PERMANENT, "550 5.1.1 <r0@example.com>: user unknown", bounce=True
    )
    assert smtp_server.attempts("r0@example.com") == 1
    # The same connection carries on after RSET.
    assert results[1].status is SendStatus.SENT
    assert smtp_server.connections == 1


async def test_connection_lost_after_the_message_is_uncertain_and_not_retried(
    smtp_server: SmtpTestServer,
) -> None:
    smtp_server.faults = SmtpFaults(drop={"r0@example.com": DropPhase.AFTER_DATA})

    [result] = await send_all(pool_for(smtp_server), range(1))

    assert result.status is SendStatus.UNCERTAIN
    assert "may have been delivered" in result.detail
    assert smtp_server.attempts("r0@example.com") == 1
    assert len(smtp_server.messages) == 1


async def test_no_reply_after_the_message_within_the_timeout_is_uncertain(
    smtp_server: SmtpTestServer,
) -> None:
    smtp_server.faults = SmtpFaults(slow_reply=1.0)

    [result] = await send_all(pool_for(smtp_server, timeout=0.2), range(1))

    assert result.status is SendStatus.UNCERTAIN
    assert smtp_server.attempts("r0@example.com") == 1


async def test_connection_lost_right_after_354_never_delivers_twice(
    smtp_server: SmtpTestServer,
) -> None:
    # The client has usually written the message before it sees the hang-up,
    # so it cannot know; whatever it answers, the message never arrives twice.
    smtp_server.faults = SmtpFaults(drop={"r0@example.com": DropPhase.BODY})

    [result] = await send_all(pool_for(smtp_server), range(1))

    assert result.status in {SendStatus.UNCERTAIN, SendStatus.SENT}
    assert len(smtp_server.messages) == (result.status is SendStatus.SENT)


async def test_server_that_cannot_be_reached_is_transient() -> None:
    with SmtpTestServer() as server:
        port = server.port
    pool = SmtpPool("127.0.0.1", port, attempts=2, backoff=0.01, local_hostname="test")

    result = await pool.send(SENDER, *message(0))

    assert result.status is SendStatus.TRANSIENT
    assert result.detail.startswith(f"cannot connect to 127.0.0.1:{port}")


async def test_unusable_recipient_is_permanent_without_contacting_the_server(
    smtp_server: SmtpTestServer,
) -> None:
    pool = pool_for(smtp_server)

    result = await pool.send(SENDER, "not an address", "<x@y>", b"Subject: x\r\n\r\nx\r\n")

    assert result.status is SendStatus.PERMANENT
    assert result.bounce
    assert smtp_server.connections == 0


async def test_composed_emails_travel_intact(smtp_server: SmtpTestServer) -> None:
    step = EmailStep(
        chain_id=1,
        chain_name="Цепочка",
        step_id=1,
        position=1,
        campaign="c",
        utm=True,
        subject="Привет, {{ first_name }}",
        text="Текст\n.строка с точкой",
        html="<p><a href='https://shop.example/'>Магазин</a></p>",
        mail_from=SENDER,
    )
    composer = EmailComposer(
        step, public_base_url="https://t.example", secret_key="k", installation_id="i1"
    )
    composed = composer.compose(Recipient(5, 6, "ivan@example.com", {"first_name": "Иван"}))
    pool = pool_for(smtp_server)

    result = await pool.send(SENDER, "ivan@example.com", composed.message_id, composed.data)
    await pool.aclose()

    assert result.status is SendStatus.SENT
    [received] = smtp_server.messages
    assert received.data == composed.data
    assert received.parsed()["Subject"] == "Привет, Иван"


async def test_outbox_writes_one_parsable_eml_per_message_id(tmp_path: Path) -> None:
    outbox = OutboxEmailTransport(tmp_path / "outbox")
    recipient, message_id, data = message(1)

    first = await outbox.send(SENDER, recipient, message_id, data)
    again = await outbox.send(SENDER, recipient, message_id, data)

    assert first.status is again.status is SendStatus.SENT
    files = list((tmp_path / "outbox").iterdir())
    assert [f.name for f in files] == ["test.1@shop.example.eml"]
    parsed = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert parsed["Message-ID"] == message_id


async def test_outbox_names_are_safe_file_names(tmp_path: Path) -> None:
    outbox = OutboxEmailTransport(tmp_path)

    assert outbox.path_for("<../../etc/passwd>") == tmp_path / ".._.._etc_passwd.eml"
    assert outbox.path_for("<a/b@c>").parent == tmp_path


async def test_outbox_that_cannot_be_written_is_transient(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")

    result = await OutboxEmailTransport(blocker).send(SENDER, *message(1))

    assert result.status is SendStatus.TRANSIENT


def test_settings_choose_smtp_only_when_a_host_is_set(tmp_path: Path) -> None:
    def transport(host: str) -> object:
        return email_transport_from_settings(
            host=host,
            port=587,
            username="",
            password="",
            security="starttls",
            concurrency=4,
            outbox_dir=tmp_path,
            helo_name="",
            mail_from="Shop <news@shop.example>",
        )

    outbox, smtp = transport(""), transport("mx.example")

    assert isinstance(outbox, OutboxEmailTransport)
    assert outbox.description == f"outbox files in {tmp_path}"
    assert isinstance(smtp, SmtpPool)
    assert smtp.description == "SMTP mx.example:587 (starttls)"


def test_unknown_security_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="security"):
        SmtpPool("mx.example", 25, security="ssl")


def configured_transport(server: SmtpTestServer, outbox: Path, helo_name: str) -> EmailTransport:
    """The transport the settings make for this server, with SMTP_HELO_NAME `helo_name`."""
    return email_transport_from_settings(
        host=server.host,
        port=server.port,
        username="",
        password="",
        security="none",
        concurrency=1,
        outbox_dir=outbox,
        helo_name=helo_name,
        mail_from="Shop <news@shop.example>",
    )


async def helo_seen(server: SmtpTestServer, outbox: Path, helo_name: str) -> list[str]:
    """The EHLO names the server saw for one message sent as the settings say."""
    pool = configured_transport(server, outbox, helo_name)
    try:
        result = await pool.send(SENDER, *message(1))
    finally:
        await pool.aclose()
    assert result.status is SendStatus.SENT
    return [m.helo for m in server.messages]


async def test_the_server_sees_the_configured_helo_name(
    smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    assert await helo_seen(smtp_server, tmp_path, "mailer.shop.example") == ["mailer.shop.example"]


@pytest.mark.parametrize(
    ("fqdn", "expected"),
    [
        ("worker-3.dc.shop.example", "worker-3.dc.shop.example"),
        ("worker-3", "shop.example"),
        ("localhost.localdomain", "shop.example"),
    ],
)
async def test_without_a_helo_name_the_fqdn_with_a_dot_else_the_mail_from_domain(
    smtp_server: SmtpTestServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fqdn: str,
    expected: str,
) -> None:
    monkeypatch.setattr(socket, "getfqdn", lambda: fqdn)

    assert await helo_seen(smtp_server, tmp_path, "") == [expected]
