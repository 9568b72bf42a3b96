"""SMS part counting: GSM-7 160/153, UCS-2 70/67, as phones and gateways split texts."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.sms_parts import GSM7_BASIC, GSM7_EXTENSION, SmsCount, sms_parts

BASIC = "".join(sorted(GSM7_BASIC))
EXTENSION = "".join(sorted(GSM7_EXTENSION))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", SmsCount("GSM-7", 0, 0)),
        ("a" * 160, SmsCount("GSM-7", 160, 1)),
        ("a" * 161, SmsCount("GSM-7", 161, 2)),
        ("a" * 306, SmsCount("GSM-7", 306, 2)),
        ("a" * 307, SmsCount("GSM-7", 307, 3)),
        ("€", SmsCount("GSM-7", 2, 1)),
        ("a" * 158 + "€", SmsCount("GSM-7", 160, 1)),
        ("a" * 159 + "€", SmsCount("GSM-7", 161, 2)),
        ("я" * 70, SmsCount("UCS-2", 70, 1)),
        ("я" * 71, SmsCount("UCS-2", 71, 2)),
        ("я" * 134, SmsCount("UCS-2", 134, 2)),
        ("я" * 135, SmsCount("UCS-2", 135, 3)),
        ("Hi 😀", SmsCount("UCS-2", 5, 1)),
        ("😀" * 35, SmsCount("UCS-2", 70, 1)),
        ("a" * 160 + "ç", SmsCount("UCS-2", 161, 3)),
    ],
)
def test_counts_characters_and_parts(text: str, expected: SmsCount) -> None:
    assert sms_parts(text) == expected


def test_the_whole_gsm_alphabet_stays_gsm7() -> None:
    assert sms_parts(BASIC + EXTENSION) == SmsCount("GSM-7", len(BASIC) + 2 * len(EXTENSION), 1)


def test_an_extension_character_is_never_split_across_parts() -> None:
    # 152 septets, then a two-septet € that cannot fit the first part's last septet.
    assert sms_parts("a" * 152 + "€" + "a" * 10).parts == 2
    assert sms_parts("a" * 152 + "€" + "a" * 152).parts == 3


def test_an_emoji_is_never_split_across_parts() -> None:
    assert sms_parts("я" * 68 + "😀").parts == 1
    # 134 code units would fill two parts exactly, but the pair cannot straddle them.
    assert sms_parts("я" * 66 + "😀" + "я" * 66).parts == 3


@given(st.text(alphabet=BASIC, max_size=1000))
def test_basic_gsm_text_counts_one_septet_a_character(text: str) -> None:
    count = sms_parts(text)
    assert count.encoding == "GSM-7"
    assert count.characters == len(text)
    expected = (1 if text else 0) if len(text) <= 160 else math.ceil(len(text) / 153)
    assert count.parts == expected


@given(st.text(alphabet="абвгдеёжзийклмнопрстуфхцчшщъыьэюя ,.!", max_size=800))
def test_cyrillic_text_is_ucs2_seventy_then_sixty_seven(tail: str) -> None:
    text = "я" + tail
    count = sms_parts(text)
    assert count.encoding == "UCS-2"
    assert count.parts == (1 if len(text) <= 70 else math.ceil(len(text) / 67))


@given(st.text(max_size=600))
def test_parts_always_hold_every_character(text: str) -> None:
    count = sms_parts(text)
    single, per_part = (160, 153) if count.encoding == "GSM-7" else (70, 67)
    if count.characters <= single:
        assert count.parts == (1 if text else 0)
    else:
        # Wide characters may leave one unit unused at the end of a part.
        assert math.ceil(count.characters / per_part) <= count.parts
        assert count.parts <= math.ceil(count.characters / (per_part - 1))


@given(st.text(max_size=300))
def test_ucs2_counts_utf16_code_units(text: str) -> None:
    count = sms_parts(text)
    if count.encoding == "UCS-2":
        assert count.characters == len(text.encode("utf-16-le")) // 2
