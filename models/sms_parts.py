"""How many SMS parts a text takes (GSM 03.38 / 3GPP TS 23.038), for the composer and limits.

A text made only of the GSM-7 default alphabet is sent 7 bits a character: 160
in one SMS, 153 per part once split (the rest of each part holds the
concatenation header). Characters of the extension table (`€`, `{`, `[`, …)
take two septets: an escape and the character. Anything else forces UCS-2 for
the whole text: 70 UTF-16 code units in one SMS, 67 per part; characters
outside the Basic Multilingual Plane (most emoji) take two code units.

Phones never split a two-septet character or a surrogate pair across parts, so
parts are packed character by character, as the gateways do: a text of 152
septets followed by `€` takes two parts, not one part and a half.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# The default alphabet, in table order (0x1B, the escape to the extension table,
# is not a character of its own).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM7_SINGLE = 160
GSM7_PER_PART = 153
UCS2_SINGLE = 70
UCS2_PER_PART = 67

Encoding = Literal["GSM-7", "UCS-2"]


@dataclass(frozen=True)
class SmsCount:
    encoding: Encoding
    # Septets for GSM-7 (extension characters count 2), UTF-16 code units for UCS-2.
    characters: int
    # 0 for an empty text: there is nothing to send.
    parts: int


def sms_parts(text: str) -> SmsCount:
    if all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text):
        widths = [2 if ch in GSM7_EXTENSION else 1 for ch in text]
        return _count("GSM-7", widths, GSM7_SINGLE, GSM7_PER_PART)
    widths = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
    return _count("UCS-2", widths, UCS2_SINGLE, UCS2_PER_PART)


def _count(encoding: Encoding, widths: list[int], single: int, per_part: int) -> SmsCount:
    total = sum(widths)
    if total <= single:
        return SmsCount(encoding, total, 1 if total else 0)
    parts, used = 1, 0
    for width in widths:
        if used + width > per_part:
            parts, used = parts + 1, 0
        used += width
    return SmsCount(encoding, total, parts)


def sms_as_sent(text: str, opt_out: str) -> str:
    """The SMS as it goes to the gateway: the text, then the opt-out line
    (`SMS_OPT_OUT_TEXT`, e.g. "STOP: 0000") when one is set. What is counted in parts
    wherever parts are counted, and what the engine sends."""
    return f"{text}\n{opt_out}" if opt_out else text
