"""DKIM signatures (RFC 6376): rsa-sha256, relaxed/relaxed, prepared once per step.

A step's messages share most of their signed headers (From, MIME-Version,
Content-Type, List-Id, List-Unsubscribe-Post): `StepSigner` canonicalises and hashes
them once. Per message it canonicalises the few headers written for that customer,
hashes the body and makes one RSA signature with `cryptography` (OpenSSL, about
0.4 ms for 2048 bits), where dkimpy's pure-Python RSA takes about 5 ms (NOTES.md).

The private key is a secret: nothing here puts it, or any part of the file, in an
error message or a log line.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from channels import texts

__all__ = ["MIN_KEY_BITS", "SIGNED_HEADERS", "DkimKey", "StepSigner", "read_private_key"]

MIN_KEY_BITS = 2048
# What a signature covers, when the message has it (RFC 8058 §4 wants both
# List-Unsubscribe headers covered). Lower case, as DKIM compares names.
SIGNED_HEADERS = frozenset(
    {
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "list-id",
        "list-unsubscribe",
        "list-unsubscribe-post",
    }
)
# A folded signature stays within 78 characters a line.
_SIGNATURE_CHUNK = 72
_UNFOLD = re.compile(rb"\r\n(?=[ \t])")
_WHITESPACE = re.compile(rb"[ \t]+")


def read_private_key(path: Path) -> rsa.RSAPrivateKey:
    """The RSA key in the PEM file at `path`; ValueError in one line saying what is wrong
    with it (never quoting the file)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(
            texts.DKIM_UNREADABLE.format(path=path, error=exc.strerror or type(exc).__name__)
        ) from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ValueError(texts.DKIM_NOT_PEM.format(path=path)) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(texts.DKIM_NOT_RSA.format(path=path))
    if key.key_size < MIN_KEY_BITS:
        raise ValueError(
            texts.DKIM_TOO_SHORT.format(path=path, bits=key.key_size, minimum=MIN_KEY_BITS)
        )
    return key


@dataclass(frozen=True)
class DkimKey:
    """What signs: `d=` `domain`, `s=` `selector` (the public key is published at
    `{selector}._domainkey.{domain}`)."""

    domain: str
    selector: str
    private_key: rsa.RSAPrivateKey = field(repr=False)


def relaxed_header(line: bytes) -> bytes:
    """One header field (`Name: value\\r\\n`, maybe folded) in RFC 6376 §3.4.2 form:
    the name in lower case, unfolded, runs of blanks as one space, none at the ends."""
    name, _, value = line.partition(b":")
    value = _WHITESPACE.sub(b" ", _UNFOLD.sub(b"", value)).strip(b" \t\r\n")
    return b"%s:%s\r\n" % (name.strip(b" \t").lower(), value)


def _header_name(line: bytes) -> str:
    return line.partition(b":")[0].strip().decode("ascii").lower()


class StepSigner:
    """Signs the messages of one step.

    `fixed` are the step's header lines that are the same in every message;
    `per_message` the names of those written for each customer, in the order
    `signature` will be given them. Only SIGNED_HEADERS are signed.
    """

    def __init__(self, key: DkimKey, fixed: Sequence[bytes], per_message: Sequence[str]) -> None:
        self._key = key
        signed_fixed = [line for line in fixed if _header_name(line) in SIGNED_HEADERS]
        self._signed_positions = [
            index for index, name in enumerate(per_message) if name.lower() in SIGNED_HEADERS
        ]
        names = [_header_name(line) for line in signed_fixed] + [
            per_message[index].lower() for index in self._signed_positions
        ]
        # h= lists the headers in the order they are hashed: the fixed ones first, so
        # that their hash is computed here and only copied per message.
        self._fixed_hash = hashlib.sha256(b"".join(map(relaxed_header, signed_fixed)))
        self._tags = (
            f"v=1; a=rsa-sha256; c=relaxed/relaxed; d={key.domain}; s={key.selector};"
            f"\r\n h={':'.join(names)};\r\n bh="
        ).encode("ascii")
        # The same tags as relaxed canonicalisation reads them (folds undone).
        self._canonical_tags = b"dkim-signature:" + self._tags.replace(b"\r\n", b"")

    def signature(self, per_message: Sequence[bytes], body: bytes) -> bytes:
        """The `DKIM-Signature:` header line for a message with these per-message header
        lines and this body (everything after the blank line)."""
        # The composer's bodies are already in relaxed form: base64 lines and part
        # headers with single spaces, no trailing blanks, no empty lines at the end.
        body_hash = base64.b64encode(hashlib.sha256(body).digest())
        tags = b"%s%s;\r\n b=" % (self._tags, body_hash)
        digest = self._fixed_hash.copy()
        for index in self._signed_positions:
            digest.update(relaxed_header(per_message[index]))
        # The signature header itself, its b= empty, without the final CRLF (§3.7).
        digest.update(b"%s%s; b=" % (self._canonical_tags, body_hash))
        signature = self._key.private_key.sign(
            digest.digest(), padding.PKCS1v15(), utils.Prehashed(hashes.SHA256())
        )
        encoded = base64.b64encode(signature)
        chunks = [
            encoded[start : start + _SIGNATURE_CHUNK]
            for start in range(0, len(encoded), _SIGNATURE_CHUNK)
        ]
        return b"DKIM-Signature: %s%s\r\n" % (tags, b"\r\n ".join(chunks))
