"""Email transports: a pool of reused SMTP connections, or `.eml` files in an outbox.

SMTP cannot promise exactly-once delivery (RFC 1047): once the final dot of a
message is written, a lost connection leaves no way to know whether the server
accepted it. So the pool drives each transaction step by step (MAIL, RCPT,
DATA, the message, the reply) to know where a failure happened:

- any reply of 4xx, or a connection lost or timed out before the message was
  written, is retried on a connection known to be good, with exponential
  backoff, up to `attempts` times (then TRANSIENT);
- a 5xx reply is PERMANENT at once, never retried;
- a connection lost or timed out after the whole message was written and
  before the server's reply is UNCERTAIN, never retried: the message may have
  arrived, and sending it again could deliver it twice.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import socket
import ssl
import tempfile
from email.utils import parseaddr
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from aiosmtplib import (
    SMTP,
    SMTPException,
    SMTPReadTimeoutError,
    SMTPRecipientRefused,
    SMTPResponseException,
    SMTPSenderRefused,
    SMTPServerDisconnected,
)

from channels import mime, texts
from channels.results import SendResult, SendStatus

__all__ = [
    "EmailTransport",
    "OutboxEmailTransport",
    "SendResult",
    "SendStatus",
    "SmtpPool",
    "default_helo_name",
    "email_transport_from_settings",
]

SECURITY_MODES = ("none", "starttls", "tls")
_LINE_ENDS = re.compile(rb"\r\n|\r|\n")
_LEADING_DOT = re.compile(rb"^\.", re.MULTILINE)
_UNSAFE_FILE_CHARACTERS = re.compile(r"[^A-Za-z0-9._@+-]")


class EmailTransport(Protocol):
    # For people: where the mail goes ("SMTP smtp.example.com:587 (starttls)").
    description: str

    async def send(self, sender: str, recipient: str, message_id: str, data: bytes) -> SendResult:
        """Hand one message over; `sender` may be a bare address or "Name <address>"."""
        ...

    async def aclose(self) -> None: ...


def _wire_format(data: bytes) -> bytes:
    """The message as it travels after DATA: CRLF lines, dot-stuffed, ending with the dot."""
    # Composed messages need neither fix; the checks cost far less than the rewrites.
    crlf = data.count(b"\r\n")
    if data.count(b"\n") != crlf or data.count(b"\r") != crlf:
        data = _LINE_ENDS.sub(b"\r\n", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    if data.startswith(b".") or b"\n." in data:
        data = _LEADING_DOT.sub(b"..", data)
    return data + b".\r\n"


@lru_cache(maxsize=64)
def _envelope_sender(sender: str) -> str:
    # The engine passes the same "Name <address>" for every message.
    return mime.plain_address(parseaddr(sender)[1] or sender)


def default_helo_name(mail_from_domain: str) -> str:
    """The name to greet servers with when SMTP_HELO_NAME is empty: the machine's FQDN when
    it has a dot (and is not a `localhost…`), else the domain of MAIL_FROM.

    Receivers score a bare or `localhost` EHLO as spam (SpamAssassin HELO_LOCALHOST,
    FSL_HELO_NON_FQDN_1). May block on a DNS lookup: call it off the event loop.
    """
    fqdn = socket.getfqdn()
    if "." in fqdn and not fqdn.lower().startswith("localhost"):
        return fqdn
    return mail_from_domain


def _reply_result(code: int, text: str, *, recipient_phase: bool) -> SendResult:
    detail = texts.SMTP_REPLY.format(code=code, text=" ".join(text.split()))
    if 500 <= code < 600:
        # A refused recipient is a hard bounce; so is a 5.1.x (address) status at
        # any phase, which some servers only give after the message.
        bounce = recipient_phase or text.lstrip().startswith("5.1.")
        return SendResult(SendStatus.PERMANENT, detail, bounce=bounce)
    return SendResult(SendStatus.TRANSIENT, detail)


def _error_text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class SmtpPool(EmailTransport):
    """Up to `concurrency` messages in flight, over as many reused connections.

    Connections are opened when first needed and kept for the next message
    (a new transaction on the same connection); one that died is dropped and
    replaced on the next checkout. `backoff` is the first retry's delay in
    seconds, doubled for each further attempt. `local_hostname` is the EHLO name;
    None: `default_helo_name(helo_domain)`, looked up at the first connection.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        username: str = "",
        password: str = "",
        security: str = "none",
        concurrency: int = 8,
        attempts: int = 4,
        backoff: float = 0.5,
        timeout: float = 30.0,
        tls_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
        helo_domain: str = "localhost",
    ) -> None:
        if security not in SECURITY_MODES:
            raise ValueError(f"security must be one of {', '.join(SECURITY_MODES)}")
        if concurrency < 1 or attempts < 1:
            raise ValueError("concurrency and attempts must be at least 1")
        self.description = texts.SMTP_SERVER.format(host=host, port=port, security=security)
        self._host = host
        self._port = port
        self._username = username
        self._password = password
        self._security = security
        self._attempts = attempts
        self._backoff = backoff
        self._timeout = timeout
        self._tls_context = tls_context
        self._local_hostname = local_hostname
        self._helo_domain = helo_domain
        self._slots = asyncio.Semaphore(concurrency)
        self._idle: list[SMTP] = []
        self._closed = False

    async def send(self, sender: str, recipient: str, message_id: str, data: bytes) -> SendResult:
        try:
            envelope_sender = _envelope_sender(sender)
        except ValueError as exc:
            detail = texts.ADDRESS_UNUSABLE.format(address=sender, why=exc)
            return SendResult(SendStatus.PERMANENT, detail)
        try:
            envelope_recipient = mime.plain_address(recipient)
        except ValueError as exc:
            detail = texts.ADDRESS_UNUSABLE.format(address=recipient, why=exc)
            return SendResult(SendStatus.PERMANENT, detail, bounce=True)
        payload = _wire_format(data)
        result = SendResult(SendStatus.TRANSIENT)
        for attempt in range(self._attempts):
            if attempt:
                await asyncio.sleep(self._retry_delay(attempt))
            # The slot is held per attempt, not across the backoff sleep: a
            # message waiting to retry must not keep a connection idle.
            async with self._slots:
                result = await self._attempt(envelope_sender, envelope_recipient, payload)
            if result.status is not SendStatus.TRANSIENT:
                return result
        detail = texts.GAVE_UP.format(detail=result.detail, attempts=self._attempts)
        return SendResult(SendStatus.TRANSIENT, detail)

    def _retry_delay(self, attempt: int) -> float:
        # Jitter: messages that failed together (a server hiccup) should not
        # all come back in the same instant.
        return self._backoff * 2 ** (attempt - 1) * random.uniform(0.75, 1.25)

    async def _attempt(self, sender: str, recipient: str, payload: bytes) -> SendResult:
        try:
            client = await self._checkout()
        except (SMTPException, OSError) as exc:
            detail = texts.CONNECT_FAILED.format(
                server=f"{self._host}:{self._port}", error=_error_text(exc)
            )
            return SendResult(SendStatus.TRANSIENT, detail)
        reusable = False
        try:
            result = await self._transaction(client, sender, recipient, payload)
            reusable = result.status is not SendStatus.UNCERTAIN and client.is_connected
            return result
        finally:
            if reusable and not self._closed:
                self._idle.append(client)
            else:
                client.close()

    async def _transaction(
        self, client: SMTP, sender: str, recipient: str, payload: bytes
    ) -> SendResult:
        try:
            # Commands are sent as they are: both addresses were checked above,
            # and aiosmtplib's mail()/rcpt() would parse each one again.
            size = [f"SIZE={len(payload)}".encode()] if client.supports_extension("size") else []
            reply = await client.execute_command(b"MAIL", f"FROM:<{sender}>".encode(), *size)
            if reply.code != 250:
                raise SMTPSenderRefused(reply.code, reply.message, sender)
            reply = await client.execute_command(b"RCPT", f"TO:<{recipient}>".encode())
            if reply.code not in (250, 251):
                raise SMTPRecipientRefused(reply.code, reply.message, recipient)
            # Not `client.data()`: it raises the same error for a connection
            # lost before the message and after it, and only the first is safe
            # to retry. So DATA, the message and its reply are driven here.
            reply = await client.execute_command(b"DATA")
            if reply.code != 354:
                raise SMTPResponseException(reply.code, reply.message)
            protocol = client.protocol
            if protocol is None:
                raise SMTPServerDisconnected("connection closed after DATA")
            # Written in one piece: until this call the message is not handed
            # over, after it the outcome rests on a reply that may never come.
            protocol.write(payload)
        except SMTPResponseException as exc:
            await self._reset(client)
            recipient_phase = isinstance(exc, SMTPRecipientRefused)
            return _reply_result(exc.code, exc.message, recipient_phase=recipient_phase)
        except OSError as exc:
            detail = texts.CONNECTION_LOST.format(error=_error_text(exc))
            return SendResult(SendStatus.TRANSIENT, detail)
        try:
            reply = await protocol.read_response(timeout=self._timeout)
        except SMTPReadTimeoutError:
            return SendResult(SendStatus.UNCERTAIN, texts.TIMED_OUT_AFTER_SEND)
        except (SMTPException, OSError) as exc:
            detail = texts.OUTCOME_UNKNOWN.format(error=_error_text(exc))
            return SendResult(SendStatus.UNCERTAIN, detail)
        if reply.code == 250:
            return SendResult(SendStatus.SENT)
        return _reply_result(reply.code, reply.message, recipient_phase=False)

    async def _reset(self, client: SMTP) -> None:
        try:
            await client.rset()
        except (SMTPException, OSError):
            client.close()

    async def _checkout(self) -> SMTP:
        while self._idle:
            client = self._idle.pop()
            if client.is_connected:
                return client
            client.close()
        if self._local_hostname is None:
            self._local_hostname = await asyncio.to_thread(default_helo_name, self._helo_domain)
        client = SMTP(
            hostname=self._host,
            port=self._port,
            username=self._username or None,
            password=self._password or None,
            use_tls=self._security == "tls",
            start_tls=self._security == "starttls",
            tls_context=self._tls_context,
            timeout=self._timeout,
            local_hostname=self._local_hostname,
        )
        await client.connect()
        try:
            # EHLO now, so that SIZE support is known before the first MAIL.
            if client.is_ehlo_or_helo_needed:
                await client.ehlo()
        except BaseException:
            client.close()
            raise
        return client

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for client in idle:
            try:
                await client.quit(timeout=min(self._timeout, 5.0))
            except (SMTPException, OSError):
                client.close()


class OutboxEmailTransport(EmailTransport):
    """Each message as `<message id>.eml` under `outbox_dir`: the embedded default.

    A file appears whole or not at all (written aside, then renamed), so a
    reader never sees half a message; sending the same Message-ID again
    replaces the file rather than adding a second one.
    """

    def __init__(self, outbox_dir: Path | str) -> None:
        self._dir = Path(outbox_dir)
        self.description = texts.OUTBOX_EMAIL.format(path=self._dir)

    def path_for(self, message_id: str) -> Path:
        name = _UNSAFE_FILE_CHARACTERS.sub("_", message_id.strip().strip("<>")) or "message"
        return self._dir / f"{name}.eml"

    async def send(self, sender: str, recipient: str, message_id: str, data: bytes) -> SendResult:
        try:
            await asyncio.to_thread(_write_whole, self.path_for(message_id), data)
        except OSError as exc:
            return SendResult(SendStatus.TRANSIENT, _error_text(exc))
        return SendResult(SendStatus.SENT)

    async def aclose(self) -> None:
        return None


def _write_whole(path: Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def email_transport_from_settings(
    *,
    host: str,
    port: int,
    username: str,
    password: str,
    security: str,
    concurrency: int,
    outbox_dir: Path | str,
    helo_name: str,
    mail_from: str,
) -> EmailTransport:
    """SMTP when a host is set (SPEC §6), else the outbox directory.

    `helo_name` is SMTP_HELO_NAME; empty: `default_helo_name` with MAIL_FROM's domain.
    """
    if not host:
        return OutboxEmailTransport(outbox_dir)
    return SmtpPool(
        host,
        port,
        username=username,
        password=password,
        security=security,
        concurrency=concurrency,
        local_hostname=helo_name or None,
        helo_domain=_envelope_sender(mail_from).rpartition("@")[2],
    )
