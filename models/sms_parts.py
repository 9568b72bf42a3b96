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

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from models.text_links import own_link_prefixes, rewrite_text_links
from models.tokens import BASE62, MAX_SHORT_LINK_INDEX, SHORT_TOKEN_LENGTH

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
    if is_gsm7(text):
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


@dataclass(frozen=True)
class SmsFrame:
    """What every SMS gets on its way to the gateway, from the settings."""

    # SMS_OPT_OUT_TEXT: a line of its own after the text; empty: none.
    opt_out: str = ""
    # PUBLIC_BASE_URL: each link in the text becomes `{base}/s/{token}`; empty: links
    # stay as written.
    public_base_url: str = ""
    # SMS_OPT_OUT_TEXT_RU, _EN: the line for customers reading that language, instead of
    # `opt_out` (language, line).
    opt_outs: tuple[tuple[str, str], ...] = ()

    def for_language(self, language: str | None) -> SmsFrame:
        """The frame of one customer's SMS: their language's opt-out line."""
        if not self.opt_outs:
            return self
        line = dict(self.opt_outs).get(language or "", self.opt_out)
        return SmsFrame(line, self.public_base_url)

    @property
    def opt_out_lines(self) -> tuple[str, ...]:
        """Every line a customer may get: where the customer is not known (a template's
        parts, a chain file's check), the SMS is counted with the costliest."""
        return tuple(dict.fromkeys([self.opt_out, *(line for _, line in self.opt_outs)]))

    @property
    def shown_opt_out(self) -> str:
        """The lines, for people: `СТОП: 0000 / STOP: 0000`; empty when there are none."""
        return " / ".join(line for line in self.opt_out_lines if line)

    def short_link(self, token: str) -> str:
        return f"{self.public_base_url.rstrip('/')}/s/{token}"

    @property
    def short_link_length(self) -> int:
        return len(self.short_link("")) + SHORT_TOKEN_LENGTH


# No opt-out line, links as written.
BARE_SMS = SmsFrame()

# Where a link's real token is not known (the composer counts a template, not a
# delivery), one of the same length and alphabet counts the same.
_STAND_IN_TOKEN = BASE62[0] * SHORT_TOKEN_LENGTH


def _stand_in(url: str, index: int) -> str:
    return _STAND_IN_TOKEN


def sms_as_sent(text: str, frame: SmsFrame, token: Callable[[str, int], str] = _stand_in) -> str:
    """The SMS as it goes to the gateway: the text, each link in it shortened, then the
    opt-out line. What is counted in parts wherever parts are counted, and what the
    engine sends.

    `token(url, index)` makes the short token of the text's link number `index`
    (`url` as written); links into Chainmail itself, and any past the last index a
    short token holds, stay as written.
    """
    if frame.public_base_url:
        own = own_link_prefixes(frame.public_base_url)
        shortened = 0

        def shorten(url: str) -> str:
            nonlocal shortened
            if url.startswith(own) or shortened > MAX_SHORT_LINK_INDEX:
                return url
            shortened += 1
            return frame.short_link(token(url, shortened - 1))

        text = rewrite_text_links(text, shorten)
    sent = [f"{text}\n{line}" if line else text for line in frame.opt_out_lines]
    return max(sent, key=lambda candidate: (sms_parts(candidate).parts, len(candidate)))


def is_gsm7(text: str) -> bool:
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


@dataclass(frozen=True)
class SampleCount:
    """An SMS template counted as customers get it: the costliest of its renderings."""

    # The template as written, as sent (placeholders left as typed).
    template: SmsCount
    # The costliest rendering (most parts, then most characters); the template's own
    # count when there was nothing to render.
    longest: SmsCount
    # Whose rendering that is (as the door names a customer), or None.
    whose: str | None
    # How many renderings were counted.
    sampled: int
    # The template alone would go as GSM-7, and some rendering goes as UCS-2.
    switched: bool = False
    # The placeholders whose values are not GSM-7 in the first such rendering.
    switching: tuple[str, ...] = ()


def costliest(
    template_as_sent: str,
    renderings: Iterable[tuple[str, str, Mapping[str, object]]],
    placeholders: Iterable[str] = (),
) -> SampleCount:
    """The count of the costliest rendering: `renderings` are (whose, the SMS as sent,
    the values it was rendered with); `placeholders`, the names the template reads, are
    looked up in those values to say which switch the encoding."""
    template = sms_parts(template_as_sent)
    names = sorted(set(placeholders))
    longest, whose, sampled = template, None, 0
    switched = False
    switching: tuple[str, ...] = ()
    for who, text, values in renderings:
        sampled += 1
        count = sms_parts(text)
        if sampled == 1 or (count.parts, count.characters) > (longest.parts, longest.characters):
            longest, whose = count, who
        if not switched and template.encoding == "GSM-7" and count.encoding == "UCS-2":
            switched = True
            switching = tuple(name for name in names if not is_gsm7(str(values.get(name) or "")))
    return SampleCount(template, longest, whose, sampled, switched, switching)
