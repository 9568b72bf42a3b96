"""SMS transports: the HTTP gateway of SPEC §6, or a JSON-lines outbox file.

The gateway's answer decides: 2xx accepted (SENT); 429 and 5xx, or a request
that never reached it, retried with backoff (Retry-After honoured), TRANSIENT
at the end; other 4xx refused (PERMANENT). A request that was sent but never
answered (read timeout, connection dropped while waiting) is UNCERTAIN and not
retried: the gateway may have taken it, and a customer must not get it twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import httpx

from channels import texts
from channels.links import add_query_params, utm_params
from channels.rendering import CompiledTemplate, RenderError
from channels.results import SendResult, SendStatus
from models.sms_parts import SmsFrame, sms_as_sent
from models.templates import RENDERED_LIMITS, TEXT_ENV
from models.tokens import make_short_token

__all__ = [
    "ComposedSms",
    "HttpSmsGateway",
    "OutboxSmsTransport",
    "Pacer",
    "RenderError",
    "SmsComposer",
    "SmsTransport",
    "sms_transport_from_settings",
]


class SmsTransport(Protocol):
    # For people: where the messages go ("SMS gateway https://…").
    description: str

    async def send(self, delivery_id: int, to: str, text: str) -> SendResult: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class ComposedSms:
    # As handed to the gateway: links shortened, the opt-out line appended.
    text: str
    # The targets (UTM-tagged) of the short links; a short token's link index points
    # into this list, stored on the delivery.
    links: list[str]


class SmsComposer:
    """The SMS of one step. Its links become `/s/{token}` links (models/tokens.py),
    their targets UTM-tagged (`utm_medium=sms`) when `utm` is on; `campaign` is the
    chain's campaign tag, `position` the step's, 1-based."""

    def __init__(
        self,
        template: str,
        frame: SmsFrame,
        *,
        secret_key: str,
        campaign: str,
        position: int,
        utm: bool,
    ) -> None:
        self.template = template
        self.frame = frame
        self._secret = secret_key
        self._utm = utm_params(campaign, position, "sms") if utm else ()

    def compose(self, delivery_id: int, context: Mapping[str, Any]) -> ComposedSms:
        """The SMS for one customer, its text without surrounding blank space (parts cost
        money); RenderError if the template fails for them."""
        links: list[str] = []

        def token(url: str, index: int) -> str:
            links.append(add_query_params(url, self._utm) if self._utm else url)
            return make_short_token(self._secret, delivery_id, index)

        rendered = _sms_template(self.template).render(context).strip()
        frame = self.frame.for_language(context.get("language"))
        return ComposedSms(sms_as_sent(rendered, frame, token), links)


@lru_cache(maxsize=64)
def _sms_template(source: str) -> CompiledTemplate:
    return CompiledTemplate(TEXT_ENV, source, texts.PART_SMS, RENDERED_LIMITS["sms"])


class Pacer:
    """Spaces requests at least 1/rate seconds apart, across every caller sharing it.

    Pacing rather than a bucket with a burst: N messages take (N - 1) / rate
    seconds, and a gateway that counts per second never sees a burst.
    """

    def __init__(self, rate_per_second: float) -> None:
        if rate_per_second <= 0:
            raise ValueError("rate_per_second must be positive")
        self._interval = 1.0 / rate_per_second
        self._next = 0.0
        # Callers are released one at a time, in order, each a full interval after
        # the previous one was actually released: a busy event loop that wakes two
        # sleepers late never lets them out together.
        self._turn = asyncio.Lock()

    async def wait(self) -> None:
        loop = asyncio.get_running_loop()
        async with self._turn:
            # Looked at again after each sleep: a hold() asked for meanwhile counts.
            while (delay := self._next - loop.time()) > 0:  # noqa: ASYNC110 - a deadline, not an event
                await asyncio.sleep(delay)
            self._next = loop.time() + self._interval

    def hold(self, seconds: float) -> None:
        """No request before `seconds` from now (the gateway asked us to slow down)."""
        self._next = max(self._next, asyncio.get_running_loop().time() + seconds)


# Retry-After is a number of seconds or an HTTP date (RFC 9110 §10.2.3).
_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def _retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if _SECONDS.fullmatch(value):
        return max(float(value), 0.0)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max((moment - datetime.now(UTC)).total_seconds(), 0.0)


def _reply_detail(response: httpx.Response) -> str:
    text = " ".join(response.text.split())[:200] or response.reason_phrase
    return texts.HTTP_REPLY.format(code=response.status_code, text=text)


class HttpSmsGateway(SmsTransport):
    """The generic JSON gateway: one POST per SMS, one shared pace for all callers."""

    def __init__(
        self,
        url: str,
        token: str,
        sender: str,
        *,
        rate_per_second: float = 10.0,
        attempts: int = 4,
        backoff: float = 0.5,
        timeout: float = 10.0,
        max_retry_after: float = 60.0,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.description = texts.SMS_GATEWAY.format(url=url)
        self._url = url
        self._sender = sender
        self._attempts = attempts
        self._backoff = backoff
        self._max_retry_after = max_retry_after
        self._pacer = Pacer(rate_per_second)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.AsyncClient(headers=headers, timeout=timeout)

    async def send(self, delivery_id: int, to: str, text: str) -> SendResult:
        body = {"id": str(delivery_id), "to": to, "text": text, "sender": self._sender}
        result = SendResult(SendStatus.TRANSIENT)
        wait = 0.0
        for attempt in range(self._attempts):
            if attempt:
                backoff = self._backoff * 2 ** (attempt - 1) * random.uniform(0.75, 1.25)
                await asyncio.sleep(max(backoff, wait))
            await self._pacer.wait()
            result, wait = await self._attempt(body)
            if result.status is not SendStatus.TRANSIENT:
                return result
            if wait > self._max_retry_after:
                return result
        detail = texts.GAVE_UP.format(detail=result.detail, attempts=self._attempts)
        return SendResult(SendStatus.TRANSIENT, detail)

    async def _attempt(self, body: dict[str, str]) -> tuple[SendResult, float]:
        """The outcome of one request, and how long the gateway asked us to wait."""
        try:
            response = await self._client.post(self._url, json=body)
        except (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError) as exc:
            # The request went out whole; only the answer is missing.
            detail = texts.OUTCOME_UNKNOWN.format(error=str(exc) or type(exc).__name__)
            return SendResult(SendStatus.UNCERTAIN, detail), 0.0
        except httpx.TransportError as exc:
            detail = texts.CONNECTION_LOST.format(error=str(exc) or type(exc).__name__)
            return SendResult(SendStatus.TRANSIENT, detail), 0.0
        code = response.status_code
        if 200 <= code < 300:
            return SendResult(SendStatus.SENT), 0.0
        if code == 429 or code >= 500:
            wait = _retry_after_seconds(response) or 0.0
            if code == 429:
                # The limit is the gateway's, shared by every caller: all slow down.
                self._pacer.hold(min(wait, self._max_retry_after))
            if wait > self._max_retry_after:
                detail = texts.RETRY_AFTER_TOO_LONG.format(seconds=wait)
                return SendResult(SendStatus.TRANSIENT, detail), wait
            return SendResult(SendStatus.TRANSIENT, _reply_detail(response)), wait
        return SendResult(SendStatus.PERMANENT, _reply_detail(response)), 0.0

    async def aclose(self) -> None:
        await self._client.aclose()


class OutboxSmsTransport(SmsTransport):
    """One JSON line per SMS in `outbox_dir/sms.jsonl`: the embedded default.

    Each line is one `write()` on a file opened for appending, which the OS
    keeps whole and in one piece even with other processes appending too; the
    lock keeps this process's lines in the order they were sent.
    """

    def __init__(self, outbox_dir: Path | str, sender: str) -> None:
        self.path = Path(outbox_dir) / "sms.jsonl"
        self.description = texts.OUTBOX_SMS.format(path=self.path)
        self._sender = sender
        self._lock = asyncio.Lock()

    async def send(self, delivery_id: int, to: str, text: str) -> SendResult:
        record = {
            "id": str(delivery_id),
            "to": to,
            "text": text,
            "sender": self._sender,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode()
        try:
            async with self._lock:
                await asyncio.to_thread(_append_line, self.path, line)
        except OSError as exc:
            return SendResult(SendStatus.TRANSIENT, str(exc) or type(exc).__name__)
        return SendResult(SendStatus.SENT)

    async def aclose(self) -> None:
        return None


def _append_line(path: Path, line: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    handle = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        written = os.write(handle, line)
    finally:
        os.close(handle)
    if written != len(line):
        raise OSError(f"only {written} of {len(line)} bytes written to {path}")


def sms_transport_from_settings(
    *,
    url: str,
    token: str,
    sender: str,
    rate_per_second: float,
    outbox_dir: Path | str,
) -> SmsTransport:
    """The gateway when a URL is set (SPEC §6), else the outbox file."""
    if not url:
        return OutboxSmsTransport(outbox_dir, sender)
    return HttpSmsGateway(url, token, sender, rate_per_second=rate_per_second)
