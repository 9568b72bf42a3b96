"""Emails of one step: a MIME template prepared once, filled in per customer.

Everything that is the same for every customer of a step — From, the MIME
structure, part headers, compiled templates, UTM-tagged link targets — is
built in `EmailComposer.__init__`. `compose` only renders the templates,
rewrites links, base64-encodes the two parts and joins bytes: 50–65 µs
against about 1.2 ms for an `EmailMessage` (docs/benchmarks.md).

Every message has an HTML part, so that its opens and clicks are counted: a step
without HTML of its own gets one made from its rendered text (`channels/text_html.py`).
"""

from __future__ import annotations

import functools
import html
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any

from channels import mime, texts
from channels.dkim import DkimKey, StepSigner
from channels.links import add_query_params, is_web_link, rewrite_html_links, utm_params
from channels.rendering import CompiledTemplate, RenderError
from channels.text_html import text_to_html
from i18n import _, use_language
from models.templates import HTML_ENV, RENDERED_LIMITS, TEXT_ENV
from models.text_links import own_link_prefixes, rewrite_text_links
from models.tokens import ReturnKind, TokenKind, make_token, return_local_part

__all__ = ["ComposedEmail", "EmailComposer", "EmailStep", "Recipient", "RenderError"]

# Distinct targets remembered per step with their UTM tags; a template that
# builds hrefs from customer data could otherwise grow the memo without end.
_MAX_REMEMBERED_TARGETS = 10_000
# What a Feedback-ID field may hold (its parts are separated by colons).
_FEEDBACK_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
# The headers written for each customer, in the order `compose` writes them.
_PER_MESSAGE_HEADERS = ("To", "Subject", "Date", "Message-ID", "List-Unsubscribe")


@dataclass(frozen=True)
class EmailStep:
    # The chain's id and name: its `List-Id`.
    chain_id: int
    chain_name: str
    step_id: int
    # 1-based: `utm_content=step<position>`.
    position: int
    # The chain's campaign tag, the `utm_campaign` value.
    campaign: str
    # UTM tags on or off for the chain.
    utm: bool
    # Jinja2 templates.
    subject: str
    text: str
    html: str | None
    # "Shop <news@shop.example>"
    mail_from: str


@dataclass(frozen=True)
class Recipient:
    delivery_id: int
    customer_id: int
    email: str
    # Template variables (`models.templates.template_context`).
    context: Mapping[str, Any]


@dataclass(frozen=True)
class ComposedEmail:
    message_id: str
    data: bytes
    # The SMTP envelope sender (MAIL FROM), where bounces go.
    envelope_sender: str
    # The original targets (UTM-tagged) of the tracked HTML links; a click
    # token's link index points into this list.
    links: list[str]


class EmailComposer:
    """Composes the emails of one step.

    RenderError if a template does not compile; ValueError if `mail_from` is
    not a usable address. `installation_id` (models.db.installation_id) makes the
    Message-IDs of this installation differ from every other's. With `dkim`, every
    message is signed. With `bounce_domain` (BOUNCE_DOMAIN), each message's envelope
    sender and List-Unsubscribe mailto are addresses of its own there (VERP,
    models/tokens.py `return_local_part`), so that what comes back names the delivery.
    `html_from_text`: the step has no HTML of its own (none, or blank), so its HTML
    part is made from its text.
    """

    def __init__(
        self,
        step: EmailStep,
        *,
        public_base_url: str,
        secret_key: str,
        installation_id: str,
        dkim: DkimKey | None = None,
        bounce_domain: str | None = None,
    ) -> None:
        display_name, address = parseaddr(step.mail_from)
        try:
            self.envelope_sender = mime.plain_address(address)
        except ValueError as exc:
            raise ValueError(
                texts.ADDRESS_UNUSABLE.format(address=step.mail_from, why=exc)
            ) from None
        domain = self.envelope_sender.rpartition("@")[2]
        self._base = public_base_url.rstrip("/")
        self._secret = secret_key
        limits = RENDERED_LIMITS
        self._subject = CompiledTemplate(
            TEXT_ENV, step.subject, texts.PART_SUBJECT, limits["subject"]
        )
        self._text = CompiledTemplate(TEXT_ENV, step.text, texts.PART_TEXT, limits["text"])
        self._html: CompiledTemplate | None = None
        if step.html and step.html.strip():
            self._html = CompiledTemplate(HTML_ENV, step.html, texts.PART_HTML, limits["html"])
        self.html_from_text = self._html is None
        self._utm = utm_params(step.campaign, step.position, "email") if step.utm else ()
        self._tagged: dict[str, str] = {}
        # Links into Chainmail itself are never tracked or tagged.
        self._own_links = own_link_prefixes(self._base)
        self._message_id_start = f"<cm.{installation_id}.{step.step_id}."
        self._message_id_end = f"@{domain}>"
        self._bounce_domain = bounce_domain
        self._date = mime.DateHeader()
        self._from = mime.address_header("From", display_name, self.envelope_sender)
        self._fixed_headers = self._step_headers(step, installation_id, domain)
        self._prepare_body_frame()
        self._signer: StepSigner | None = None
        if dkim is not None:
            self._signer = StepSigner(
                dkim, [self._from, *self._fixed_headers], _PER_MESSAGE_HEADERS
            )

    def _step_headers(self, step: EmailStep, installation_id: str, domain: str) -> list[bytes]:
        """The headers the same for every message of the step, encoded once, in order."""
        # RFC 2919: a phrase (the chain's name, RFC 2047-encoded when not ASCII) and an id
        # in a namespace this installation owns.
        list_id = mime.address_header(
            "List-Id", step.chain_name, f"chain-{step.chain_id}.{installation_id}.{domain}"
        )
        # Gmail's feedback loop reports complaint rates per field: step, chain, campaign.
        campaign = _FEEDBACK_UNSAFE.sub("_", step.campaign) or "none"
        feedback_id = f"Feedback-ID: {step.step_id}:{step.chain_id}:{campaign}:chainmail\r\n"
        return [
            list_id,
            feedback_id.encode(),
            b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
            b"MIME-Version: 1.0\r\n",
        ]

    def _prepare_body_frame(self) -> None:
        # Base64 never contains "=_", so the boundary cannot occur in a part.
        boundary = f"=_cm{secrets.token_hex(12)}"
        text_type = b'Content-Type: text/plain; charset="utf-8"\r\n'
        html_type = b'Content-Type: text/html; charset="utf-8"\r\n'
        encoding = b"Content-Transfer-Encoding: base64\r\n"
        self._fixed_headers.append(
            f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n'.encode()
        )
        self._before_text = f"--{boundary}\r\n".encode() + text_type + encoding + b"\r\n"
        self._before_html = f"--{boundary}\r\n".encode() + html_type + encoding + b"\r\n"
        self._after_body = f"--{boundary}--\r\n".encode()
        # The blank line that ends the header section.
        self._fixed_block = b"".join(self._fixed_headers) + b"\r\n"

    @property
    def message_id_parts(self) -> tuple[str, str]:
        """A message's Message-ID is these two around its customer's id (`<cm.{installation}.7.`
        `1234` `@shop.example>`): deterministic, so a duplicate would show, and so the engine
        can record a group's ids in one statement."""
        return self._message_id_start, self._message_id_end

    def compose(self, recipient: Recipient, message_id: str | None = None) -> ComposedEmail:
        """The message for one customer; RenderError if it cannot be built for them.

        `message_id` replaces the deterministic one (a test send must not look like the
        customer's real message)."""
        try:
            address = mime.plain_address(recipient.email)
        except ValueError as exc:
            raise RenderError(
                texts.ADDRESS_UNUSABLE.format(address=recipient.email, why=exc)
            ) from None
        context = recipient.context
        subject = self._subject.render(context)
        text = self._text.render(context)
        # Made from the text as the customer reads it, before the text part's UTM tags:
        # `_finish_html` tags the targets of the links it tracks.
        markup = text_to_html(text) if self._html is None else self._html.render(context)

        delivery_id = recipient.delivery_id
        unsubscribe_token = make_token(self._secret, TokenKind.UNSUBSCRIBE, delivery_id)
        unsubscribe_url = f"{self._base}/u/{unsubscribe_token}"
        envelope_sender, mailto = self._return_addresses(delivery_id, unsubscribe_token)
        if self._utm:
            text = rewrite_text_links(text, self._tagged_target)
        footer, link_words = _unsubscribe_words(str(context.get("language") or ""))
        text = f"{text.rstrip()}\n\n-- \n{footer.format(url=unsubscribe_url)}\n"
        links: list[str] = []
        markup = self._finish_html(markup, delivery_id, unsubscribe_url, link_words, links)

        if message_id is None:
            message_id = f"{self._message_id_start}{recipient.customer_id}{self._message_id_end}"
        headers = [
            mime.address_header("To", _display_name(context), address),
            mime.unstructured_header("Subject", subject),
            self._date.now(),
            f"Message-ID: {message_id}\r\n".encode(),
            f"List-Unsubscribe: <{unsubscribe_url}>,\r\n <{mailto}>\r\n".encode(),
        ]
        body_bytes = b"".join(
            [
                self._before_text,
                mime.base64_body(text),
                self._before_html,
                mime.base64_body(markup),
                self._after_body,
            ]
        )
        signature = b"" if self._signer is None else self._signer.signature(headers, body_bytes)
        data = b"".join([signature, self._from, *headers, self._fixed_block, body_bytes])
        return ComposedEmail(message_id, data, envelope_sender, links)

    def _return_addresses(self, delivery_id: int, unsubscribe_token: str) -> tuple[str, str]:
        """The envelope sender and the List-Unsubscribe mailto of one message."""
        if self._bounce_domain is None:
            mailto = f"mailto:{self.envelope_sender}?subject=unsubscribe%20{unsubscribe_token}"
            return self.envelope_sender, mailto
        bounce = return_local_part(self._secret, ReturnKind.BOUNCE, delivery_id)
        unsubscribe = return_local_part(self._secret, ReturnKind.UNSUBSCRIBE, delivery_id)
        return (
            f"{bounce}@{self._bounce_domain}",
            f"mailto:{unsubscribe}@{self._bounce_domain}?subject=unsubscribe",
        )

    def _finish_html(
        self,
        markup: str,
        delivery_id: int,
        unsubscribe_url: str,
        link_words: str,
        links: list[str],
    ) -> str:
        def track(target: str) -> str | None:
            if not is_web_link(target) or target.startswith(self._own_links):
                return None
            links.append(self._tagged_target(target))
            token = make_token(self._secret, TokenKind.CLICK, delivery_id, len(links) - 1)
            return f"{self._base}/t/c/{token}"

        markup = rewrite_html_links(markup, track)
        open_token = make_token(self._secret, TokenKind.OPEN, delivery_id)
        ending = (
            f'<p style="font-size:12px;color:#888888">'
            f'<a href="{html.escape(unsubscribe_url)}">'
            f"{html.escape(link_words)}</a></p>"
            f'<img src="{self._base}/t/o/{open_token}" width="1" height="1" alt="">'
        )
        body_end = markup.lower().rfind("</body")
        if body_end < 0:
            return f"{markup}{ending}"
        return f"{markup[:body_end]}{ending}{markup[body_end:]}"

    def _tagged_target(self, url: str) -> str:
        tagged = self._tagged.get(url)
        if tagged is None:
            if len(self._tagged) >= _MAX_REMEMBERED_TARGETS:
                self._tagged.clear()
            tagged = self._tagged[url] = add_query_params(url, self._utm)
        return tagged


@functools.cache
def _unsubscribe_words(language: str) -> tuple[str, str]:
    """The footer line (with `{url}`) and the HTML link's words, in the customer's
    language (`language` of the template context; English when it is not one)."""
    with use_language(language):
        return _(texts.UNSUBSCRIBE_TEXT_FOOTER), _(texts.UNSUBSCRIBE_HTML_LINK)


def _display_name(context: Mapping[str, Any]) -> str:
    names = (context.get("first_name"), context.get("last_name"))
    return " ".join(str(name) for name in names if name)
