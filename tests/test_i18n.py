"""The catalogues are whole: every message in the code has its Russian, with the same
placeholders, and the shipped .mo files say what the .po files say."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

import i18n
from i18n import _, customer_language, language_of, money, ngettext, number, use_language

ROOT = Path(__file__).resolve().parents[1]
KEYWORDS = {**DEFAULT_KEYWORDS, "N_": None, "ngettext": (1, 2)}
PLACEHOLDER = re.compile(r"\{[^{}]*\}")


def code_messages() -> set[str | tuple[str, str]]:
    mapping = [
        (line.strip("[]").split(": ", 1)[1], "python")
        for line in (ROOT / "babel.cfg").read_text().splitlines()
        if line.startswith("[python:")
    ]
    found: set[str | tuple[str, str]] = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        ROOT, mapping, keywords=KEYWORDS
    ):
        found.add(message if isinstance(message, str) else (message[0], message[1]))
    return found


def catalogue(language: str):  # type: ignore[no-untyped-def]
    path = i18n.LOCALE_DIR / language / "LC_MESSAGES" / f"{i18n.DOMAIN}.po"
    with path.open("rb") as file:
        return read_po(file, locale=language)


@pytest.mark.parametrize("language", [lang for lang in i18n.LANGUAGES if lang != "en"])
def test_every_message_in_the_code_is_translated_with_its_placeholders(language: str) -> None:
    po = catalogue(language)
    missing, broken = [], []
    for message in sorted(code_messages(), key=str):
        msgid = message if isinstance(message, str) else message[0]
        entry = po.get(msgid)
        if entry is None or entry.fuzzy or not entry.string or not all(entry.string):
            missing.append(msgid)
            continue
        strings = [entry.string] if isinstance(entry.string, str) else list(entry.string)
        expected = set(PLACEHOLDER.findall(msgid))
        if isinstance(message, tuple):
            expected |= set(PLACEHOLDER.findall(message[1]))
        if any(not set(PLACEHOLDER.findall(s)) <= expected for s in strings):
            broken.append(msgid)
    assert missing == [], f"{len(missing)} messages untranslated (scripts/i18n, then translate)"
    assert broken == [], "translations with placeholders the message does not have"


@pytest.mark.parametrize("language", [lang for lang in i18n.LANGUAGES if lang != "en"])
def test_the_shipped_mo_file_is_compiled_from_the_po_file(language: str) -> None:
    mo_path = i18n.LOCALE_DIR / language / "LC_MESSAGES" / f"{i18n.DOMAIN}.mo"
    with mo_path.open("rb") as file:
        mo = {plain(m.id): plain(m.string) for m in read_mo(file) if m.id}
    po = {
        plain(m.id): plain(m.string)
        for m in catalogue(language)
        if m.id and not m.fuzzy and m.string
    }
    assert mo == po, "run scripts/i18n"


def plain(value: str | list[str] | tuple[str, ...]) -> str | tuple[str, ...]:
    """A message's id or string, a plural one's forms as a tuple (read_mo gives lists)."""
    return value if isinstance(value, str) else tuple(value)


def test_a_telegram_language_code_picks_a_catalogue_or_english() -> None:
    assert [language_of(c) for c in ("ru", "ru-RU", "en-GB", "de", None, "")] == [
        "ru",
        "ru",
        "en",
        "en",
        "en",
        "en",
    ]


def test_a_customer_reads_their_own_language_else_their_phones_else_the_default() -> None:
    assert customer_language("en", "+79131234567", "ru") == "en"
    assert customer_language(None, "+79131234567", "en") == "ru"
    assert customer_language(None, "+375291234567", "en") == "ru"  # Belarus
    assert customer_language(None, "+77011234567", "en") == "ru"  # Kazakhstan
    assert customer_language(None, "+995555123456", "en") == "en"  # Georgia: the default
    assert customer_language("fr", None, "ru") == "ru"  # no catalogue for it


def test_numbers_and_money_are_written_as_each_language_writes_them() -> None:
    from decimal import Decimal

    with use_language("ru"):
        assert (number(1234.5), money(Decimal("1234.50"), "RUB")) == (
            "1\xa0234,5",
            "1\xa0234,50\xa0₽",
        )
    with use_language("en"):
        assert (number(1234.5), money(Decimal("1234.50"), "RUB")) == ("1,234.5", "RUB1,234.50")
        assert ngettext("{count} chain", "{count} chains", 1) == "{count} chain"
        assert _("Chains") == "Chains"
