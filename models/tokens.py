"""Signed tokens in tracking and unsubscribe links: `<payload>.<signature>`, URL-safe.

The payload names what the link is for and which delivery it belongs to; the
HMAC-SHA256 signature (truncated to 128 bits) with SECRET_KEY makes a forged or
altered token unreadable, so it changes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
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


class ReturnKind(StrEnum):
    """What mail to a per-delivery address at BOUNCE_DOMAIN is: the envelope sender
    (`b+…`, where bounces go) or the List-Unsubscribe mailto (`u+…`)."""

    BOUNCE = "b"
    UNSUBSCRIBE = "u"


@dataclass(frozen=True)
class ReturnAddress:
    kind: ReturnKind
    delivery_id: int


# Mail systems may change the case of a local part: the id in base 36 and the signature
# in base 32, both read in any case. 80 bits of signature: 16 characters.
_RETURN_SIGNATURE_CHARS = 16
_RETURN_LOCAL = re.compile(r"^([bu])\+([0-9a-z]{1,13})-([a-z2-7]{16})$")


def _return_signature(secret: str, kind: ReturnKind, delivery_id: int) -> str:
    payload = f"return:{kind.value}:{delivery_id}".encode("ascii")
    digest = hmac.new(secret.encode(), payload, hashlib.sha256).digest()
    return base64.b32encode(digest[:10]).decode("ascii").lower()[:_RETURN_SIGNATURE_CHARS]


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while True:
        number, rest = divmod(number, 36)
        text = digits[rest] + text
        if not number:
            return text


def return_local_part(secret: str, kind: ReturnKind, delivery_id: int) -> str:
    """`b+2n9c-k3j4h5k6j7h8k9l0`: the local part of a per-delivery return address."""
    return f"{kind.value}+{_base36(delivery_id)}-{_return_signature(secret, kind, delivery_id)}"


def read_return_local_part(secret: str, local_part: str) -> ReturnAddress | None:
    """The delivery a return address's local part names, if genuine; None otherwise."""
    match = _RETURN_LOCAL.match(local_part.lower())
    if match is None:
        return None
    kind, delivery_id = ReturnKind(match.group(1)), int(match.group(2), 36)
    if not hmac.compare_digest(match.group(3), _return_signature(secret, kind, delivery_id)):
        return None
    return ReturnAddress(kind, delivery_id)
