"""What a transport answers about one message, the same for every channel."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class SendStatus(StrEnum):
    # The channel accepted the message.
    SENT = "sent"
    # Not accepted, but it may work later (4xx, connection trouble, 429/5xx); not sent.
    TRANSIENT = "transient"
    # Refused for good (SMTP 5xx, HTTP 4xx); retrying would not help.
    PERMANENT = "permanent"
    # The message was handed over but the answer was lost: it may have arrived,
    # so it must not be sent again.
    UNCERTAIN = "uncertain"


@dataclass(frozen=True)
class SendResult:
    status: SendStatus
    detail: str = ""
    # True only when the receiving server refused this recipient's address
    # (SMTP 5xx to RCPT TO, or an enhanced status 5.1.x): a hard bounce that
    # says something about the customer, unlike a refused sender or message.
    bounce: bool = False
