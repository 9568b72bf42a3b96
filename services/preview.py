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
import logging
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any, cast

from channels import mime
from channels.dkim import DkimKey
from channels.email_compose import ComposedEmail, EmailComposer, EmailStep, Recipient, RenderError
from channels.results import SendStatus
from channels.sms import OutboxSmsTransport, SmsComposer, SmsTransport
from channels.smtp import EmailTransport, OutboxEmailTransport
from models import audit
from models.db import Database, installation_id, secret_key
from models.preview import PreviewCustomer, made_up_customer, sample_customers
from models.sms_parts import SampleCount, SmsCount, SmsFrame, costliest, sms_as_sent, sms_parts
from models.tables import Channel
from models.templates import template_problems
from models.tokens import TokenKind, make_token

__all__ = [
    "SMS_SAMPLE",
    "MessageSetup",
    "PreviewEmail",
    "PreviewSms",
    "RenderError",
    "StepMessage",
    "TestSendResult",
    "render_preview",
    "send_test",
    "sms_sample_count",
]

log = logging.getLogger(__name__)

TEST_DELIVERY_ID = 0
# Customers an SMS template is rendered for to count its parts, besides the made-up one.
SMS_SAMPLE = 200
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
    # The channels ("email", "sms") whose messages go to the outbox, no server being
    # configured (SPEC §4: the bot says so; where on the server, the log says).
    to_outbox: frozenset[str] = frozenset()
    # Test sends are signed as the engine's messages are (DKIM_PRIVATE_KEY_FILE).
    dkim: DkimKey | None = None
    # SMS_OPT_OUT_TEXT: appended to every SMS, counted in its parts.
    sms_opt_out_text: str = ""
    # SMS_OPT_OUT_TEXT_<LANGUAGE>: (language, line), instead of it for those customers.
    sms_opt_outs: tuple[tuple[str, str], ...] = ()
    # BOUNCE_DOMAIN: return addresses as the engine's messages have them.
    bounce_domain: str | None = None
    # DEFAULT_LANGUAGE: of customers with no language of their own nor a phone that says.
    default_language: str = "ru"

    @property
    def sms_frame(self) -> SmsFrame:
        return SmsFrame(self.sms_opt_out_text, self.public_base_url, self.sms_opt_outs)


@dataclass(frozen=True)
class StepMessage:
    # The chain's id and name: its `List-Id`.
    chain_id: int
    chain_name: str
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
    # work when the file is opened on a phone.
    html: str
    # The step has no HTML of its own: this one is made from its text.
    html_from_text: bool


@dataclass(frozen=True)
class PreviewSms:
    # As the gateway gets it: links shortened (`/s/…`), the opt-out line appended.
    text: str
    count: SmsCount
    # Where its short links lead, in order, UTM-tagged.
    links: list[str]


@dataclass(frozen=True)
class TestSendResult:
    sent: bool
    # Why not, in the channel's words, when not sent.
    detail: str
    # Written (or, not sent, meant to be written) to the outbox: no SMTP server / SMS
    # gateway is configured. Its file is in the log, not here: a server's paths are
    # the operator's, not the manager's.
    to_outbox: bool


@dataclass(frozen=True)
class _Keys:
    # SECRET_KEY and the installation id, as kept in the database.
    secret: str
    installation: str


async def _keys(db: Database, setup: MessageSetup) -> _Keys:
    return _Keys(await secret_key(db, setup.secret_key), await installation_id(db))


def _composer(message: StepMessage, setup: MessageSetup, keys: _Keys, prefix: str) -> EmailComposer:
    action = message.action
    return EmailComposer(
        EmailStep(
            chain_id=message.chain_id,
            chain_name=message.chain_name,
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
        secret_key=keys.secret,
        installation_id=keys.installation,
        dkim=setup.dkim,
        bounce_domain=setup.bounce_domain,
    )


def _compose(
    composer: EmailComposer,
    customer: PreviewCustomer,
    *,
    to: str,
    message_id: str | None = None,
) -> ComposedEmail:
    """RenderError when a template fails, in the engine's words."""
    recipient = Recipient(TEST_DELIVERY_ID, customer.id, to, customer.context)
    return composer.compose(recipient, message_id)


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
        secret = await secret_key(db, setup.secret_key)
        return await asyncio.to_thread(_sms_preview, setup, message, customer, secret)
    keys = await _keys(db, setup)
    return await asyncio.to_thread(_email_preview, setup, message, customer, keys)


def _sms_preview(
    setup: MessageSetup, message: StepMessage, customer: PreviewCustomer, secret: str
) -> PreviewSms:
    composer = SmsComposer(
        str(message.action.get("text") or ""),
        setup.sms_frame,
        secret_key=secret,
        campaign=message.campaign,
        position=message.position,
        utm=message.utm,
    )
    composed = composer.compose(TEST_DELIVERY_ID, customer.context)
    return PreviewSms(composed.text, sms_parts(composed.text), composed.links)


def _email_preview(
    setup: MessageSetup, message: StepMessage, customer: PreviewCustomer, keys: _Keys
) -> PreviewEmail:
    composer = _composer(message, setup, keys, "")
    composed = _compose(composer, customer, to=customer.email or NO_ADDRESS)
    # Read back from the bytes the engine would hand to SMTP: what the customer's mail
    # program shows, not a second rendering that could differ.
    parsed = cast(
        EmailMessage, email.message_from_bytes(composed.data, policy=email.policy.default)
    )
    markup = _part(parsed, "html") or ""
    base = setup.public_base_url.rstrip("/")
    for index, target in enumerate(composed.links):
        token = make_token(keys.secret, TokenKind.CLICK, TEST_DELIVERY_ID, index)
        markup = markup.replace(f"{base}/t/c/{token}", html.escape(target))
    return PreviewEmail(
        str(parsed["Subject"] or ""), _part(parsed, "plain") or "", markup, composer.html_from_text
    )


def _test_message_id(setup: MessageSetup, step_id: int) -> str:
    """A Message-ID of its own: the engine's `<cm.….step.customer@…>` would make a mail
    program drop a second test as a duplicate, and the outbox overwrite the customer's
    real message file."""
    domain = mime.plain_address(parseaddr(setup.mail_from)[1]).rpartition("@")[2]
    return f"<cm.test.{step_id}.{secrets.token_hex(8)}@{domain}>"


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
        secret = await secret_key(db, setup.secret_key)
        rendered = await asyncio.to_thread(_sms_preview, setup, message, customer, secret)
        text = rendered.text
        sms = setup.open_sms()
        try:
            result = await sms.send(TEST_DELIVERY_ID, to, text)
        finally:
            await sms.aclose()
        if isinstance(sms, OutboxSmsTransport):
            outbox = str(sms.path)
    else:
        keys = await _keys(db, setup)

        def compose_test() -> ComposedEmail:
            composer = _composer(message, setup, keys, TEST_SUBJECT_PREFIX)
            message_id = _test_message_id(setup, message.step_id)
            return _compose(composer, customer, to=to, message_id=message_id)

        composed = await asyncio.to_thread(compose_test)
        message_id = composed.message_id
        transport = setup.open_email()
        try:
            result = await transport.send(composed.envelope_sender, to, message_id, composed.data)
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
    if outbox is not None:
        if sent:
            log.info(
                "test send of chain %d step %d written to %s", chain_id, message.position, outbox
            )
        else:
            log.warning("test send to the outbox %s failed: %s", outbox, result.detail)
    return TestSendResult(sent, result.detail or result.status.value, outbox is not None)


async def sms_sample_count(
    db: Database,
    setup: MessageSetup,
    text: str,
    *,
    segments: Sequence[str],
    default_timezone: str,
    now: datetime,
    limit: int = SMS_SAMPLE,
) -> SampleCount:
    """An SMS template's parts as customers get them: rendered by the engine's composer
    for up to `limit` customers with a phone (of `segments`, else any) and the made-up
    one, the costliest counted (models.sms_parts.costliest). A rendering that fails is
    left out: the preview and the engine report it."""
    customers = await sample_customers(
        db,
        segments=segments,
        channel=Channel.SMS.value,
        limit=limit,
        default_language=setup.default_language,
        now=now,
    )
    customers.append(made_up_customer(default_timezone, setup.default_language))
    secret = await secret_key(db, setup.secret_key)
    return await asyncio.to_thread(_sms_sample_count, setup, text, customers, secret)


def _sms_sample_count(
    setup: MessageSetup, text: str, customers: list[PreviewCustomer], secret: str
) -> SampleCount:
    composer = SmsComposer(
        text, setup.sms_frame, secret_key=secret, campaign="count", position=1, utm=False
    )

    def renderings() -> Iterator[tuple[str, str, Mapping[str, Any]]]:
        for customer in customers:
            try:
                composed = composer.compose(TEST_DELIVERY_ID, customer.context)
            except RenderError:
                continue
            yield customer.first_name or customer.external_id, composed.text, customer.context

    names = template_problems(text)[1]
    return costliest(sms_as_sent(text, setup.sms_frame), renderings(), names)
