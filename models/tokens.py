"""Signed tokens in tracking and unsubscribe links: `<payload>.<signature>`, URL-safe.

The payload names what the link is for and which delivery it belongs to; the
HMAC-SHA256 signature (truncated to 128 bits) with SECRET_KEY makes a forged or
altered token unreadable, so it changes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from enum import StrEnum


class TokenKind(StrEnum):
    OPEN = "o"
    CLICK = "c"
    UNSUBSCRIBE = "u"


@dataclass(frozen=True)
class TokenData:
    kind: TokenKind
    delivery_id: int
    link_index: int = 0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: str, payload: str) -> str:
    digest = hmac.new(secret.encode(), payload.encode("ascii"), hashlib.sha256).digest()
    return _b64(digest[:16])


def make_token(secret: str, kind: TokenKind, delivery_id: int, link_index: int = 0) -> str:
    payload = _b64(f"{kind.value}:{delivery_id}:{link_index}".encode("ascii"))
    return f"{payload}.{_signature(secret, payload)}"


def read_token(secret: str, token: str, kind: TokenKind) -> TokenData | None:
    """The token's data if it is genuine and of that kind; None for anything else."""
    payload, dot, signature = token.partition(".")
    if not dot or len(token) > 200 or not token.isascii():
        return None
    if not hmac.compare_digest(signature, _signature(secret, payload)):
        return None
    try:
        kind_value, delivery, index = _unb64(payload).decode("ascii").split(":")
        data = TokenData(TokenKind(kind_value), int(delivery), int(index))
    except ValueError:
        return None
    return data if data.kind is kind else None
