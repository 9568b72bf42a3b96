"""Loopback test doubles of the outside systems: an SMTP server and an SMS gateway.

Each runs in a thread of its own with its own event loop, on a free port of
127.0.0.1, so the code under test talks to it over real sockets exactly as it
would to the real thing, from any event loop or from a subprocess. Both record
what they received and can be told to misbehave.

Fixtures (`smtp_server`, `sms_gateway`, `tls_files`) are defined at the end;
a test module or conftest can bring them in with `pytest_plugins` or by
assigning them to module names.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import socket
import ssl
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, cast

import pytest
import uvicorn
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

HOST = "127.0.0.1"

# aiosmtpd logs every session at INFO and, on every successful AUTH, warns about
# an attribute it sets itself; only its errors are worth a test's output.
logging.getLogger("mail.log").setLevel(logging.ERROR)

# ---------------------------------------------------------------- TLS material


@dataclass(frozen=True)
class TlsFiles:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key."""

    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts exactly this certificate (hostname checked)."""
        return ssl.create_default_context(cafile=str(self.cert))


def make_tls_files(directory: Path) -> TlsFiles:
    files = TlsFiles(directory / "cert.pem", directory / "key.pem")
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "2", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout", str(files.key), "-out", str(files.cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return files


# ------------------------------------------------------------------------ SMTP


class DropPhase(StrEnum):
    """Where the SMTP server cuts the connection."""

    # Instead of answering RCPT TO: the client knows nothing was sent.
    RCPT = "rcpt"
    # Instead of answering DATA with 354: still nothing sent.
    DATA = "data"
    # Right after the 354, before the message arrives. The client has usually
    # written the message by the time it notices, so it cannot tell this from
    # AFTER_DATA; the message is not recorded.
    BODY = "body"
    # After the whole message arrived (and was recorded) instead of the 250:
    # delivered, but the client never hears so.
    AFTER_DATA = "after_data"


@dataclass(frozen=True)
class SmtpFaults:
    """How the server misbehaves; recipients are matched by their RCPT TO address."""

    # Every n-th distinct recipient the server sees gets 451 (0: none) ...
    tempfail_every: int = 0
    # ... on that many of its first attempts ...
    tempfail_times: int = 1
    # ... in reply to RCPT TO, or to the end of the message (not recorded then).
    tempfail_at: Literal["rcpt", "data"] = "rcpt"
    # Refused with "550 5.1.1 user unknown" at RCPT TO, every time.
    reject: frozenset[str] = frozenset()
    # The connection is cut at that phase on the recipient's first attempt.
    drop: Mapping[str, DropPhase] = field(default_factory=dict)
    # Seconds to wait before answering the end of every message (recorded
    # first): a client with a shorter timeout never hears that it was taken.
    slow_reply: float = 0.0


@dataclass(frozen=True)
class ReceivedMessage:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    # The name the client gave in EHLO (or HELO).
    helo: str

    def parsed(self) -> EmailMessage:
        return cast(EmailMessage, email.message_from_bytes(self.data, policy=email.policy.default))

    @property
    def message_id(self) -> str | None:
        value = self.parsed()["Message-ID"]
        return None if value is None else str(value)


class SmtpTestServer:
    """aiosmtpd on a free loopback port, recording every accepted message.

    `security`: "none", "starttls" (required before MAIL) or "tls" (implicit);
    the TLS modes need `tls`. With `credentials`, AUTH PLAIN/LOGIN is required.
    `faults` can be changed between sends.
    """

    def __init__(
        self,
        *,
        security: Literal["none", "starttls", "tls"] = "none",
        tls: TlsFiles | None = None,
        credentials: tuple[str, str] | None = None,
        faults: SmtpFaults | None = None,
    ) -> None:
        if security != "none" and tls is None:
            raise ValueError("a TLS mode needs TlsFiles")
        if credentials and security == "none":
            raise ValueError("AUTH needs TLS here, as on any real server")
        self.host = HOST
        self.port = 0
        self.security = security
        self.faults = faults or SmtpFaults()
        self._tls = tls
        self._credentials = credentials
        self._lock = threading.Lock()
        self._messages: list[ReceivedMessage] = []
        self._rcpt_attempts: Counter[str] = Counter()
        self._tempfail_order: dict[str, int] = {}
        self._sessions: set[_FaultySmtp] = set()
        self._connections = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # What it saw (safe to call from any thread).

    @property
    def messages(self) -> list[ReceivedMessage]:
        with self._lock:
            return list(self._messages)

    def message_ids(self) -> list[str]:
        return [m.message_id or "" for m in self.messages]

    def attempts(self, recipient: str) -> int:
        """How many times a transaction reached RCPT TO for this recipient."""
        with self._lock:
            return self._rcpt_attempts[recipient]

    @property
    def connections(self) -> int:
        """How many connections clients have opened so far."""
        with self._lock:
            return self._connections

    def disconnect_all(self) -> None:
        """Hang up on every connected client, as a server restarting would."""
        loop = self._loop
        if loop is not None:
            future = asyncio.run_coroutine_threadsafe(self._disconnect_all(), loop)
            future.result(10)

    async def _disconnect_all(self) -> None:
        for session in list(self._sessions):
            if session.transport is not None:
                session.transport.close()

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()
            self._rcpt_attempts.clear()
            self._tempfail_order.clear()

    # Life cycle.

    def start(self) -> SmtpTestServer:
        # The loop is made and run in the thread: starting a loop here would
        # fail when the caller is itself running one (an async test).
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._loop = loop
        self._thread = threading.Thread(
            target=self._serve, args=(loop, ready), name="smtp-test-server", daemon=True
        )
        self._thread.start()
        if not ready.wait(10) or not self.port:
            raise RuntimeError("the SMTP test server did not start")
        return self

    def _serve(self, loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        ssl_context = self._tls.server_context() if self.security == "tls" and self._tls else None
        try:
            server = loop.run_until_complete(
                loop.create_server(lambda: self._protocol(loop), HOST, 0, ssl=ssl_context)
            )
            self.port = server.sockets[0].getsockname()[1]
        finally:
            ready.set()
        loop.run_forever()
        server.close()
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(server.wait_closed())
        loop.close()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = self._thread = None

    def __enter__(self) -> SmtpTestServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # Inside the server thread.

    def _protocol(self, loop: asyncio.AbstractEventLoop) -> _FaultySmtp:
        with self._lock:
            self._connections += 1
        session = _FaultySmtp(
            self,
            loop=loop,
            hostname="localhost",
            tls_context=self._tls.server_context() if self.security == "starttls" else None,
            require_starttls=self.security == "starttls",
            auth_required=self._credentials is not None,
            authenticator=self._authenticate,
            implicit_tls=self.security == "tls",
        )
        self._sessions.add(session)
        return session

    def _forget(self, session: _FaultySmtp) -> None:
        self._sessions.discard(session)

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert self._credentials is not None
        user, password = self._credentials
        ok = isinstance(data, LoginPassword) and data.login.decode() == user
        # handled=False: aiosmtpd then answers a failure with 535 itself.
        return AuthResult(success=ok and data.password.decode() == password, handled=False)

    def _plan(self, recipient: str) -> tuple[str | None, DropPhase | None, bool]:
        """(RCPT reply or None for 250, where to drop, 451 after the message)."""
        faults = self.faults
        with self._lock:
            self._rcpt_attempts[recipient] += 1
            attempt = self._rcpt_attempts[recipient]
            order = self._tempfail_order.setdefault(recipient, len(self._tempfail_order) + 1)
        if recipient in faults.reject:
            return f"550 5.1.1 <{recipient}>: user unknown", None, False
        drop = faults.drop.get(recipient) if attempt == 1 else None
        tempfail = (
            faults.tempfail_every > 0
            and order % faults.tempfail_every == 0
            and attempt <= faults.tempfail_times
        )
        if tempfail and faults.tempfail_at == "rcpt":
            return "451 4.3.0 try again later", drop, False
        return None, drop, tempfail

    def _record(self, envelope: Envelope, helo: str) -> None:
        message = ReceivedMessage(
            str(envelope.mail_from),
            tuple(envelope.rcpt_tos),
            bytes(envelope.original_content),
            helo,
        )
        with self._lock:
            self._messages.append(message)


class _Handler:
    def __init__(self, owner: SmtpTestServer) -> None:
        self._owner = owner

    async def handle_RCPT(
        self,
        server: _FaultySmtp,
        session: Session,
        envelope: Envelope,
        address: str,
        options: list[str],
    ) -> str:
        reply, server.drop_at, server.tempfail_data = self._owner._plan(address)
        if server.drop_at is DropPhase.RCPT:
            await server.drop()
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: _FaultySmtp, session: Session, envelope: Envelope) -> str:
        if server.tempfail_data:
            return "451 4.3.0 try again later"
        self._owner._record(envelope, session.host_name or "")
        if server.drop_at is DropPhase.AFTER_DATA:
            await server.drop()
        if self._owner.faults.slow_reply:
            await asyncio.sleep(self._owner.faults.slow_reply)
        return "250 2.0.0 OK queued"


class _FaultySmtp(SMTP):
    """aiosmtpd's SMTP with a way to hang up at a chosen moment of the transaction."""

    def __init__(self, owner: SmtpTestServer, *, implicit_tls: bool, **kwargs: Any) -> None:
        super().__init__(_Handler(owner), **kwargs)
        self._owner = owner
        if implicit_tls:
            # aiosmtpd only knows TLS it started itself (STARTTLS); over implicit
            # TLS it would refuse AUTH for want of encryption.
            self._auth_require_tls = False
        self.drop_at: DropPhase | None = None
        self.tempfail_data = False

    def connection_lost(self, error: Exception | None) -> None:
        self._owner._forget(self)
        super().connection_lost(error)

    async def drop(self) -> None:
        """Cut the connection without a word; this session's task ends here."""
        self.drop_at = None
        assert self.transport is not None
        self.transport.abort()
        # connection_lost() cancels the task running this command.
        await asyncio.sleep(30)

    async def smtp_DATA(self, arg: str) -> None:
        if self.drop_at is DropPhase.DATA:
            await self.drop()
        await super().smtp_DATA(arg)

    async def push(self, status: str | bytes) -> None:
        await super().push(status)
        reply = status if isinstance(status, bytes) else status.encode()
        if self.drop_at is DropPhase.BODY and reply.startswith(b"354"):
            await self.drop()


# ----------------------------------------------------------------- SMS gateway


@dataclass(frozen=True)
class GatewayReply:
    status: int = 200
    # Sent as the Retry-After header when set.
    retry_after: str | None = None
    # Seconds to wait before answering: longer than the client's timeout makes
    # a request the gateway took but the client never heard about.
    delay: float = 0.0


@dataclass(frozen=True)
class GatewayRequest:
    # time.monotonic() when it arrived.
    at: float
    authorization: str
    body: dict[str, Any]
    status: int


class SmsGatewayTestServer:
    """The generic JSON gateway of SPEC §6 (POST /sms) on a free loopback port.

    Requests need `Authorization: Bearer <token>` (401 otherwise). Replies come
    from `plan(id, ...)` in order, then `default`.
    """

    def __init__(self, token: str = "gateway-token") -> None:
        self.token = token
        self.default = GatewayReply()
        self._lock = threading.Condition()
        self._requests: list[GatewayRequest] = []
        self._plans: dict[str, list[GatewayReply]] = {}
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def plan(self, delivery_id: int | str, *replies: GatewayReply) -> None:
        """The next replies to requests with this `id`, in order."""
        with self._lock:
            self._plans.setdefault(str(delivery_id), []).extend(replies)

    @property
    def requests(self) -> list[GatewayRequest]:
        with self._lock:
            return list(self._requests)

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[GatewayRequest]:
        """Block until `count` requests have arrived (from async code: `asyncio.to_thread`)."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self._requests) >= count, timeout):
                raise TimeoutError(f"{len(self._requests)} of {count} requests arrived")
            return list(self._requests)

    def reset(self) -> None:
        """Forget requests and plans; answer 200 again."""
        with self._lock:
            self._requests.clear()
            self._plans.clear()
            self.default = GatewayReply()

    def accepted(self) -> list[dict[str, Any]]:
        """Bodies of the requests answered with 2xx, in arrival order."""
        return [r.body for r in self.requests if 200 <= r.status < 300]

    async def _receive(self, request: Request) -> JSONResponse:
        authorization = request.headers.get("authorization", "")
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            reply = GatewayReply(400)
        elif authorization != f"Bearer {self.token}":
            reply = GatewayReply(401)
        else:
            with self._lock:
                queue = self._plans.get(str(body.get("id")), [])
                reply = queue.pop(0) if queue else self.default
        with self._lock:
            self._requests.append(
                GatewayRequest(time.monotonic(), authorization, body or {}, reply.status)
            )
            self._lock.notify_all()
        if reply.delay:
            await asyncio.sleep(reply.delay)
        headers = {"Retry-After": reply.retry_after} if reply.retry_after else None
        content = {"status": "accepted" if reply.status < 300 else "error"}
        return JSONResponse(content, status_code=reply.status, headers=headers)

    def start(self) -> SmsGatewayTestServer:
        app = Starlette(routes=[Route("/sms", self._receive, methods=["POST"])])
        config = uvicorn.Config(
            app, loop="asyncio", lifespan="off", log_level="warning", access_log=False
        )
        self._server = uvicorn.Server(config)
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, 0))
        self.url = f"http://{HOST}:{listener.getsockname()[1]}/sms"
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [listener]},
            name="sms-gateway-test-server",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the SMS gateway test server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
            self._server = self._thread = None

    def __enter__(self) -> SmsGatewayTestServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# -------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def smtp_server() -> Iterator[SmtpTestServer]:
    """A plain SMTP server (no TLS, no AUTH) that accepts everything until told otherwise."""
    with SmtpTestServer() as server:
        yield server


@pytest.fixture(scope="session")
def sms_gateway_server() -> Iterator[SmsGatewayTestServer]:
    # One server for the session: uvicorn takes a fifth of a second to stop.
    with SmsGatewayTestServer() as gateway:
        yield gateway


@pytest.fixture
def sms_gateway(sms_gateway_server: SmsGatewayTestServer) -> SmsGatewayTestServer:
    """The SMS gateway double, with no requests recorded and 200 for everything."""
    sms_gateway_server.reset()
    return sms_gateway_server
