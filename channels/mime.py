"""MIME pieces made by hand: headers encoded and folded, base64 bodies.

Building a message with `email.message.EmailMessage` costs about a millisecond
(NOTES.md), more than sending it; these pieces cost microseconds. They follow
RFC 5322 (folding at 78 characters), RFC 2047 (UTF-8 base64 encoded words of at
most 75 characters, never splitting a character) and RFC 2045 (base64 lines of
76); the tests parse every result back with Python's own parser.
"""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from email.utils import format_datetime

from channels import texts

MAX_LINE = 78
_WORD_START = "=?utf-8?b?"
_WORD_END = "?="
_WORD_OVERHEAD = len(_WORD_START) + len(_WORD_END)
# RFC 2047's limit for one encoded word.
_MAX_WORD = 75
# A raw token longer than this would break the 998-character hard line limit
# once folded; such values are encoded (and so split) instead.
_MAX_RAW_TOKEN = 900

_WHITESPACE_AND_CONTROLS = re.compile(r"[\s\x00-\x1f\x7f]+")
_ATOM_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]+")
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")
_ADDRESS_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f<>()\[\]\\,;:\"]")


def one_line(value: str) -> str:
    """`value` with line breaks, tabs and control characters as single spaces.

    A header value comes from templates and customer data: a line break in it
    would start a new header (header injection).
    """
    return _WHITESPACE_AND_CONTROLS.sub(" ", value).strip()


def _bytes_room(chars: int) -> int:
    # UTF-8 bytes an encoded word of at most `chars` characters can carry.
    return (chars - _WORD_OVERHEAD) // 4 * 3


def encoded_words(value: str, first_room: int) -> list[str]:
    """`value` as RFC 2047 encoded words; the first fits in `first_room` characters."""
    data = value.encode("utf-8", "replace")
    words: list[str] = []
    # At least 9 bytes a word, so that any character (4 bytes at most) fits.
    room = _bytes_room(max(min(first_room, _MAX_WORD), 24))
    start = 0
    while len(data) - start > room:
        end = start + room
        # Never cut inside a character: back up over UTF-8 continuation bytes.
        while data[end] & 0xC0 == 0x80:
            end -= 1
        words.append(_word(data[start:end]))
        start = end
        room = _bytes_room(_MAX_WORD)
    words.append(_word(data[start:]))
    return words


def _word(chunk: bytes) -> str:
    return f"{_WORD_START}{base64.b64encode(chunk).decode('ascii')}{_WORD_END}"


def _plain(value: str) -> bool:
    # "=?" in a raw header would be taken for the start of an encoded word.
    return _PRINTABLE_ASCII.fullmatch(value) is not None and "=?" not in value


def fold(name: str, tokens: list[str]) -> bytes:
    """`Name: tokens…` with CRLF + space inserted between tokens to keep lines short."""
    lines: list[str] = []
    line = f"{name}: {tokens[0]}"
    for token in tokens[1:]:
        if len(line) + 1 + len(token) > MAX_LINE:
            lines.append(line)
            line = f" {token}"
        else:
            line = f"{line} {token}"
    lines.append(line)
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def unstructured_header(name: str, value: str) -> bytes:
    """A free-text header such as Subject, encoded only when it must be."""
    value = one_line(value)
    tokens = value.split(" ")
    if not _plain(value) or max(map(len, tokens)) > _MAX_RAW_TOKEN:
        tokens = encoded_words(value, MAX_LINE - len(name) - 2)
    return fold(name, tokens)


def address_header(name: str, display_name: str, address: str) -> bytes:
    """`Name: display name <address>`; `address` must already be plain ASCII."""
    display_name = one_line(display_name)
    if not display_name:
        return fold(name, [address])
    if _ATOM_PHRASE.fullmatch(display_name) and "=?" not in display_name:
        tokens = display_name.split(" ")
    elif _plain(display_name) and len(display_name) <= _MAX_RAW_TOKEN:
        escaped = display_name.replace("\\", "\\\\").replace('"', '\\"')
        tokens = [f'"{escaped}"']
    else:
        tokens = encoded_words(display_name, MAX_LINE - len(name) - 2)
    return fold(name, [*tokens, f"<{address}>"])


def plain_address(address: str) -> str:
    """`address` ready for headers and the SMTP envelope, or ValueError saying why.

    An internationalised domain is written in its ASCII (IDNA) form; a non-ASCII
    local part would need SMTPUTF8, which this sender does not use.
    """
    address = address.strip()
    if _ADDRESS_FORBIDDEN.search(address):
        raise ValueError(texts.ADDRESS_CONTROL)
    local, at, domain = address.rpartition("@")
    if not local or not at or not domain or "@" in local:
        raise ValueError(texts.ADDRESS_SHAPE)
    if not local.isascii():
        raise ValueError(texts.ADDRESS_SMTPUTF8)
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError(texts.ADDRESS_DOMAIN) from None
    return f"{local}@{domain}"


def base64_body(text: str) -> bytes:
    """`text` in canonical form (CRLF line ends), UTF-8, base64 in 76-character lines."""
    canonical = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")
    return base64.encodebytes(canonical.encode("utf-8", "replace")).replace(b"\n", b"\r\n")


class DateHeader:
    """The `Date:` header line, formatted at most once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._line = b""

    def now(self) -> bytes:
        moment = datetime.now(UTC)
        second = int(moment.timestamp())
        if second != self._second:
            self._second = second
            self._line = f"Date: {format_datetime(moment.replace(microsecond=0))}\r\n".encode()
        return self._line
