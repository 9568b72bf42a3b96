"""Signed tokens in tracking and unsubscribe links, URL-safe.

Email links: `<payload>.<signature>`. The payload names what the link is for and
which delivery it belongs to; the HMAC-SHA256 signature (truncated to 128 bits) with
SECRET_KEY makes a forged or altered token unreadable, so it changes nothing.

SMS links (`/s/{token}`), where every character costs money: a short token of
exactly `SHORT_TOKEN_LENGTH` (20) base62 characters holding one 119-bit number —
the delivery id (47 bits), the link's index in the message (8 bits) and an
HMAC-SHA256 of the two truncated to 64 bits, under a label of its own so that no
email token's signature is ever one of a short token, and the other way round.
Base62 (`0-9A-Za-z`) because every one of its characters is in the GSM-7 default
alphabet and no phone leaves one out of a link it underlines.
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


# 62**20 > 2**119: twenty characters hold every short token, and each has one spelling.
SHORT_TOKEN_LENGTH = 20
MAX_SHORT_DELIVERY_ID = 2**47 - 1
MAX_SHORT_LINK_INDEX = 2**8 - 1
_SHORT_MAC_BITS = 64
_SHORT_LABEL = b"chainmail sms link:"
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BASE62_VALUE = {character: value for value, character in enumerate(BASE62)}


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


def _short_signature(secret: str, delivery_id: int, link_index: int) -> int:
    message = _SHORT_LABEL + delivery_id.to_bytes(6, "big") + link_index.to_bytes(1, "big")
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return int.from_bytes(digest[: _SHORT_MAC_BITS // 8], "big")


def make_short_token(secret: str, delivery_id: int, link_index: int) -> str:
    """The token of a link in an SMS; ValueError outside 0..MAX_SHORT_DELIVERY_ID and
    0..MAX_SHORT_LINK_INDEX."""
    if not 0 <= delivery_id <= MAX_SHORT_DELIVERY_ID:
        raise ValueError(f"delivery id {delivery_id} does not fit a short token")
    if not 0 <= link_index <= MAX_SHORT_LINK_INDEX:
        raise ValueError(f"link index {link_index} does not fit a short token")
    value = (delivery_id << 8 | link_index) << _SHORT_MAC_BITS
    value |= _short_signature(secret, delivery_id, link_index)
    characters = []
    for _ in range(SHORT_TOKEN_LENGTH):
        value, digit = divmod(value, 62)
        characters.append(BASE62[digit])
    return "".join(reversed(characters))


def read_short_token(secret: str, token: str) -> TokenData | None:
    """A genuine SMS link token's data (kind CLICK); None for anything else."""
    if len(token) != SHORT_TOKEN_LENGTH:
        return None
    value = 0
    for character in token:
        digit = _BASE62_VALUE.get(character)
        if digit is None:
            return None
        value = value * 62 + digit
    signature = value & (2**_SHORT_MAC_BITS - 1)
    value >>= _SHORT_MAC_BITS
    link_index = value & MAX_SHORT_LINK_INDEX
    delivery_id = value >> 8
    if delivery_id > MAX_SHORT_DELIVERY_ID:
        return None
    expected = _short_signature(secret, delivery_id, link_index)
    if not hmac.compare_digest(signature.to_bytes(8, "big"), expected.to_bytes(8, "big")):
        return None
    return TokenData(TokenKind.CLICK, delivery_id, link_index)


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
