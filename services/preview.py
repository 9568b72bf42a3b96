"""A step's message as the engine renders it, for a preview or a test send (SPEC §3).

The same composer, templates and context as a sending wave (scheduler/engine.py,
scheduler/sending.py), for one customer's data. A test send goes to the admin's own
address through the configured transport (SMTP or the outbox, the SMS gateway or
`sms.jsonl`) but is not a delivery: no row in `deliveries`, nothing in the stats, an
audit entry instead. Its tokens name delivery 0, which no delivery has, so its
unsubscribe link, pixel and tracked links change nothing (they answer "not found"),
and a gateway's delivery report about it is refused.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import html
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, cast

from channels.email_compose import ComposedEmail, EmailComposer, EmailStep, Recipient, RenderError
from channels.results import SendStatus
from channels.sms import OutboxSmsTransport, SmsTransport, render_sms
from channels.smtp import EmailTransport, OutboxEmailTransport
from models import audit
from models.db import Database, secret_key
from models.preview import PreviewCustomer
from models.sms_parts import SmsCount, sms_parts
from models.tables import Channel
from models.tokens import TokenKind, make_token

__all__ = [
    "MessageSetup",
    "PreviewEmail",
    "PreviewSms",
    "RenderError",
    "StepMessage",
    "TestSendResult",
    "render_preview",
    "send_test",
]

TEST_DELIVERY_ID = 0
TEST_SUBJECT_PREFIX = "[TEST] "
# Where an email goes when the customer has none: the preview still shows the message.
NO_ADDRESS = "customer@example.com"


@dataclass(frozen=True)
class MessageSetup:
    """What rendering and sending need from the settings."""

    mail_from: str
    public_base_url: str
    # SECRET_KEY as configured; empty: the one generated and kept in the database.
    secret_key: str
    # A transport per test send (SMTP or outbox, gateway or outbox file), closed after it.
    open_email: Callable[[], EmailTransport]
    open_sms: Callable[[], SmsTransport]
    # Where messages go when no server is configured (SPEC §4: the bot says so), and
    # the channels ("email", "sms") that go there.
    outbox_dir: str = ""
    to_outbox: frozenset[str] = frozenset()
    # SMS_OPT_OUT_TEXT: appended to every SMS, counted in its parts.
    sms_opt_out_text: str = ""


@dataclass(frozen=True)
class StepMessage:
    step_id: int
    position: int
    # The chain's campaign tag and UTM switch.
    campaign: str
    utm: bool
    # The action block in the chain file's form: {"channel": "email", "subject", "text",
    # "html"} or {"channel": "sms", "text"}; a draft's missing fields count as empty.
    action: Mapping[str, Any]

    @property
    def channel(self) -> str:
        return str(self.action.get("channel") or Channel.EMAIL.value)


@dataclass(frozen=True)
class PreviewEmail:
    subject: str
    # The text part as the customer reads it: links UTM-tagged, the unsubscribe footer.
    text: str
    # The HTML part, its tracked links pointing straight at their targets so that they
    # work when the file is opened on a phone; None without HTML.
    html: str | None


@dataclass(frozen=True)
class PreviewSms:
    text: str
    count: SmsCount


@dataclass(frozen=True)
class TestSendResult:
    sent: bool
    # Why not, in the channel's words, when not sent.
    detail: str
    # The file written when no SMTP server / SMS gateway is configured.
    outbox: str | None


def _composer(message: StepMessage, setup: MessageSetup, key: str, prefix: str) -> EmailComposer:
    action = message.action
    return EmailComposer(
        EmailStep(
            step_id=message.step_id,
            position=message.position,
            campaign=message.campaign,
            utm=message.utm,
            subject=prefix + str(action.get("subject") or ""),
            text=str(action.get("text") or ""),
            html=action.get("html"),
            mail_from=setup.mail_from,
        ),
        public_base_url=setup.public_base_url,
        secret_key=key,
    )


def _compose(
    message: StepMessage,
    customer: PreviewCustomer,
    setup: MessageSetup,
    key: str,
    *,
    to: str,
    prefix: str = "",
) -> ComposedEmail:
    """RenderError when a template fails, in the engine's words."""
    composer = _composer(message, setup, key, prefix)
    return composer.compose(Recipient(TEST_DELIVERY_ID, customer.id, to, customer.context))


def _part(parsed: EmailMessage, subtype: str) -> str | None:
    part = parsed.get_body((subtype,))
    if part is None:
        return None
    return cast(str, part.get_content()).replace("\r\n", "\n")


async def render_preview(
    db: Database, setup: MessageSetup, message: StepMessage, customer: PreviewCustomer
) -> PreviewEmail | PreviewSms:
    """The message for `customer` as the engine would send it; RenderError if it cannot be.

    Rendered in a worker thread: a slow template (stopped by the sandbox's deadline)
    never holds up the bot's other conversations.
    """
    if message.channel == Channel.SMS:
        return await asyncio.to_thread(_sms_preview, message, customer, setup.sms_opt_out_text)
    key = await secret_key(db, setup.secret_key)
    return await asyncio.to_thread(_email_preview, setup, message, customer, key)


def _sms_preview(message: StepMessage, customer: PreviewCustomer, opt_out: str) -> PreviewSms:
    text = render_sms(str(message.action.get("text") or ""), customer.context, opt_out=opt_out)
    return PreviewSms(text, sms_parts(text))


def _email_preview(
    setup: MessageSetup, message: StepMessage, customer: PreviewCustomer, key: str
) -> PreviewEmail:
    composed = _compose(message, customer, setup, key, to=customer.email or NO_ADDRESS)
    # Read back from the bytes the engine would hand to SMTP: what the customer's mail
    # program shows, not a second rendering that could differ.
    parsed = cast(
        EmailMessage, email.message_from_bytes(composed.data, policy=email.policy.default)
    )
    markup = _part(parsed, "html")
    if markup is not None:
        base = setup.public_base_url.rstrip("/")
        for index, target in enumerate(composed.links):
            token = make_token(key, TokenKind.CLICK, TEST_DELIVERY_ID, index)
            markup = markup.replace(f"{base}/t/c/{token}", html.escape(target))
    return PreviewEmail(str(parsed["Subject"] or ""), _part(parsed, "plain") or "", markup)


def _test_message_id(composed: ComposedEmail, step_id: int) -> tuple[str, bytes]:
    """The message with a Message-ID of its own: the engine's `<cm.step.customer@…>` would
    make a mail program drop a second test as a duplicate, and the outbox overwrite the
    customer's real message file."""
    domain = composed.message_id.rpartition("@")[2].rstrip(">")
    message_id = f"<cm.test.{step_id}.{secrets.token_hex(8)}@{domain}>"
    header = b"\r\nMessage-ID: %s\r\n"
    data = composed.data.replace(
        header % composed.message_id.encode(), header % message_id.encode(), 1
    )
    return message_id, data


async def send_test(
    db: Database,
    setup: MessageSetup,
    message: StepMessage,
    customer: PreviewCustomer,
    *,
    to: str,
    actor: str,
    chain_id: int,
) -> TestSendResult:
    """Send the message rendered for `customer` to `to`, subject prefixed "[TEST] ".

    RenderError if it cannot be rendered (nothing is sent then).
    """
    outbox: str | None = None
    if message.channel == Channel.SMS:
        rendered = await asyncio.to_thread(_sms_preview, message, customer, setup.sms_opt_out_text)
        text = rendered.text
        sms = setup.open_sms()
        try:
            result = await sms.send(TEST_DELIVERY_ID, to, text)
        finally:
            await sms.aclose()
        if isinstance(sms, OutboxSmsTransport):
            outbox = str(sms.path)
    else:
        key = await secret_key(db, setup.secret_key)
        composed = await asyncio.to_thread(
            _compose, message, customer, setup, key, to=to, prefix=TEST_SUBJECT_PREFIX
        )
        message_id, data = _test_message_id(composed, message.step_id)
        transport = setup.open_email()
        try:
            result = await transport.send(setup.mail_from, to, message_id, data)
        finally:
            await transport.aclose()
        if isinstance(transport, OutboxEmailTransport):
            outbox = str(transport.path_for(message_id))
    sent = result.status is SendStatus.SENT
    async with db.writer() as session:
        audit.record(
            session,
            actor,
            "step.test_send",
            chain_id=chain_id,
            position=message.position,
            channel=message.channel,
            to=to,
            customer=customer.external_id,
            status=result.status.value,
            detail=result.detail[:200],
        )
    return TestSendResult(sent, result.detail or result.status.value, outbox if sent else None)
