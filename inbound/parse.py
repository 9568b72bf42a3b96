"""What a message that came back to us says, and which delivery it is about.

Pure: bytes and the addresses it was sent to in, findings out; nothing is looked up.

- **Which delivery.** Only signed names count, so that a forged report changes nothing:
  the per-delivery address it was sent to (`b+…` / `u+…` at BOUNCE_DOMAIN, VERP), else
  one found in the returned original's headers — its `Return-Path`, or the
  List-Unsubscribe link or mailto. A Message-ID alone is never trusted: anyone who got
  one of our emails can guess another customer's.
- **What happened.** Mail to a `u+…` address is an unsubscribe, whatever it says. A
  delivery status notification (RFC 3464) says per recipient: `failed` with a 5.x.x
  status is a hard bounce, `delayed` (or `failed` with 4.x.x) only a delay. A feedback
  report (ARF, RFC 5965) of type `abuse` or `fraud` is a spam complaint. Anything else
  sent to a `b+…` address is given to `flufl.bounce`'s detectors, which read the
  bounces of mail servers that do not write RFC 3464; what they do not take for a bounce
  (an out-of-office reply, a person answering) is nothing.
"""

from __future__ import annotations

import email
import email.policy
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser

from flufl.bounce import all_failures

from models.inbound import Finding, Kind
from models.tokens import ReturnKind, TokenKind, read_return_local_part, read_token


@dataclass(frozen=True)
class ReturnPaths:
    """What it takes to read our own signed names back."""

    secret_key: str
    # BOUNCE_DOMAIN, lower case; None when it is not set (only List-Unsubscribe links
    # in returned headers can then name a delivery).
    bounce_domain: str | None
    # PUBLIC_BASE_URL: the unsubscribe links are `{base}/u/{token}`.
    public_base_url: str


log = logging.getLogger(__name__)
# The detectors log each one they run, and the traceback of one that trips (re-raised,
# and caught in `_detected_bounce`): one line of ours says it instead.
logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)
# Feedback types that are a person calling the mail spam (RFC 5965 §7.3; "fraud" is
# phishing reported as such). "not-spam", "virus", "auth-failure" and "other" are not.
_COMPLAINT_TYPES = frozenset({"abuse", "fraud"})
# Headers that carry the envelope recipient once a mailbox has stored the message.
_DELIVERED_TO = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")
_RETURN_ADDRESS = re.compile(r"([bu]\+[0-9a-z]{1,13}-[a-z2-7]{16})@([a-z0-9.-]+)", re.I)
_ENHANCED_STATUS = re.compile(r"\b([245])\.\d{1,3}\.\d{1,3}\b")
_DIAGNOSTIC_MAX = 300


def read_returned(
    data: bytes, recipients: Sequence[str] | None, paths: ReturnPaths
) -> list[Finding]:
    """The findings of one message; `recipients` are the SMTP envelope's, or None when
    they are lost (a mailbox read over IMAP: then the delivery headers say them)."""
    message = email.message_from_bytes(data, policy=email.policy.compat32)
    if recipients is None:
        recipients = [value for name in _DELIVERED_TO for value in message.get_all(name, [])]
    addressed = list(_return_addresses(" ".join(recipients), paths))
    unsubscribes = [
        Finding(Kind.UNSUBSCRIBE, delivery_id)
        for kind, delivery_id in dict.fromkeys(addressed)
        if kind is ReturnKind.UNSUBSCRIBE
    ]
    if unsubscribes:
        return unsubscribes
    bounce_to = next((d for kind, d in addressed if kind is ReturnKind.BOUNCE), None)
    report = _report_finding(message, bounce_to, paths)
    if report is not None:
        return [report]
    if bounce_to is not None and not _is_report(message):
        return _detected_bounce(message, bounce_to)
    return []


def _return_addresses(text: str, paths: ReturnPaths) -> Iterable[tuple[ReturnKind, int]]:
    if paths.bounce_domain is None:
        return
    for local, domain in _RETURN_ADDRESS.findall(text):
        if domain.lower() != paths.bounce_domain:
            continue
        read = read_return_local_part(paths.secret_key, local)
        if read is not None:
            yield read.kind, read.delivery_id


def _is_report(message: Message) -> bool:
    return message.get_content_type() == "multipart/report"


def _report_finding(message: Message, bounce_to: int | None, paths: ReturnPaths) -> Finding | None:
    if not _is_report(message):
        return None
    report_type = str(message.get_param("report-type", "")).lower()
    if report_type == "delivery-status":
        finding = _status_finding(message)
    elif report_type == "feedback-report":
        finding = _feedback_finding(message)
    else:
        return None
    if finding is None:
        return None
    delivery_id = bounce_to if bounce_to is not None else _original_delivery(message, paths)
    if delivery_id is None:
        return None
    kind, status, diagnostic, recipient = finding
    return Finding(kind, delivery_id, status, diagnostic, recipient)


def _status_finding(message: Message) -> tuple[Kind, str, str, str] | None:
    """The worst of the recipients' outcomes in a DSN: a hard bounce before a delay."""
    found: list[tuple[Kind, str, str, str]] = []
    for block in _report_blocks(message, "message/delivery-status")[1:]:
        action = str(block.get("Action", "")).strip().lower()
        status_match = _ENHANCED_STATUS.search(str(block.get("Status", "")))
        status = status_match.group(0) if status_match else ""
        if action == "failed":
            kind = Kind.DELAY if status.startswith("4") else Kind.BOUNCE
        elif action == "delayed":
            kind = Kind.DELAY
        else:
            continue  # delivered, relayed, expanded
        recipient = _address_field(block.get("Final-Recipient") or block.get("Original-Recipient"))
        diagnostic = _one_line(str(block.get("Diagnostic-Code", "")))[:_DIAGNOSTIC_MAX]
        found.append((kind, status, diagnostic, recipient))
    found.sort(key=lambda f: f[0] is not Kind.BOUNCE)
    return found[0] if found else None


def _feedback_finding(message: Message) -> tuple[Kind, str, str, str] | None:
    blocks = _report_blocks(message, "message/feedback-report")
    if not blocks:
        return None
    fields = blocks[0]
    feedback_type = str(fields.get("Feedback-Type", "")).strip().lower()
    if feedback_type not in _COMPLAINT_TYPES:
        return None
    recipient = _address_field(fields.get("Original-Rcpt-To") or fields.get("Removal-Recipient"))
    return Kind.COMPLAINT, "", feedback_type, recipient


def _report_blocks(message: Message, content_type: str) -> list[Message]:
    """The field blocks of a report part: Python parses message/delivery-status (and any
    other message/* part) into one Message per blank-line-separated block."""
    for part in message.walk():
        if part.get_content_type() != content_type:
            continue
        payload = part.get_payload()
        if isinstance(payload, list):
            return [block for block in payload if isinstance(block, Message)]
        if isinstance(payload, str):
            parser = HeaderParser()
            return [parser.parsestr(block) for block in re.split(r"\r?\n\r?\n", payload)]
    return []


def _original_delivery(message: Message, paths: ReturnPaths) -> int | None:
    """The delivery named by the returned original's headers (a message/rfc822 part,
    or text/rfc822-headers), by its signed return path or unsubscribe link."""
    for part in message.walk():
        content_type = part.get_content_type()
        if content_type in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            headers = payload[0] if isinstance(payload, list) and payload else None
            if not isinstance(headers, Message):
                continue
            text = "\n".join(f"{k}: {v}" for k, v in headers.items())
        elif content_type in ("text/rfc822-headers", "text/global-headers"):
            raw = part.get_payload(decode=True)
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else ""
        else:
            continue
        for kind, delivery_id in _return_addresses(text, paths):
            if kind is ReturnKind.BOUNCE:
                return delivery_id
        delivery_id = _unsubscribe_link_delivery(text, paths)
        if delivery_id is not None:
            return delivery_id
    return None


def _unsubscribe_link_delivery(headers_text: str, paths: ReturnPaths) -> int | None:
    unfolded = re.sub(r"\r?\n[ \t]+", " ", headers_text)
    link = re.compile(re.escape(paths.public_base_url.rstrip("/")) + r"/u/([A-Za-z0-9_.-]+)")
    for token in link.findall(unfolded):
        read = read_token(paths.secret_key, token, TokenKind.UNSUBSCRIBE)
        if read is not None:
            return read.delivery_id
    for kind, delivery_id in _return_addresses(unfolded, paths):
        if kind is ReturnKind.UNSUBSCRIBE:
            return delivery_id
    return None


def _detected_bounce(message: Message, delivery_id: int) -> list[Finding]:
    try:
        temporary, permanent = all_failures(message)
    except Exception:  # a detector tripping over a malformed message: nothing read
        log.warning("a message to delivery %d's return address could not be read", delivery_id)
        return []
    if permanent:
        recipient = min(permanent).decode("utf-8", "replace")
        return [Finding(Kind.BOUNCE, delivery_id, _status_in(message), "", recipient)]
    if temporary:
        recipient = min(temporary).decode("utf-8", "replace")
        return [Finding(Kind.DELAY, delivery_id, "", "", recipient)]
    return []


def _status_in(message: Message) -> str:
    """A 5.x.x status quoted anywhere in a non-standard bounce's text, if one is."""
    for part in message.walk():
        if part.get_content_maintype() != "text":
            continue
        raw = part.get_payload(decode=True)
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else ""
        match = _ENHANCED_STATUS.search(text)
        if match is not None and match.group(1) == "5":
            return match.group(0)
    return ""


def _address_field(value: object) -> str:
    """`rfc822; ivan@example.com` → `ivan@example.com`."""
    text = _one_line(str(value or ""))
    return text.partition(";")[2].strip() if ";" in text else text


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()
