"""Which inbound SMS texts are a request to stop (SPEC §5 `POST /api/v1/sms/inbound`).

Pure: the words come from the `SMS_STOP_WORDS` setting, the texts from the gateway.
A text is a stop word when, read case-insensitively and without the blank space
and punctuation around it, it is one of the words: "Stop!", " стоп. " and
"«Отписка»" all are; "stop it" and "don't stop" are not, a person wrote more.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

DEFAULT_SMS_STOP_WORDS = ("STOP", "СТОП", "ОТПИСКА", "UNSUBSCRIBE")


def _is_around(character: str) -> bool:
    # Punctuation (P*), blank space (Z*) and control characters (Cc: \n, \t) around a word.
    return unicodedata.category(character)[0] in "PZ" or unicodedata.category(character) == "Cc"


def stop_word_key(text: str) -> str:
    """`text` as it is compared with the stop words: trimmed, case folded."""
    start, end = 0, len(text)
    while start < end and _is_around(text[start]):
        start += 1
    while end > start and _is_around(text[end - 1]):
        end -= 1
    return text[start:end].casefold()


def stop_words(words: Iterable[str]) -> frozenset[str]:
    """The configured words as compared; ValueError if one reads as nothing."""
    keys = set()
    for word in words:
        key = stop_word_key(word)
        if not key:
            raise ValueError(f"{word!r} is not a word")
        keys.add(key)
    if not keys:
        raise ValueError("at least one stop word is needed")
    return frozenset(keys)


def is_stop_word(text: str, words: frozenset[str]) -> bool:
    """Whether `text` asks to stop; `words` as made by `stop_words`."""
    return stop_word_key(text) in words
