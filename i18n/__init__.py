"""Languages: the bot's words, customers' pages and footers, numbers and money, in
Russian or English.

Messages are written in English where they are used — `_("…")`, `ngettext(…)`, and
`N_("…")` for a constant translated where it is shown — and translated by gettext
catalogues, `i18n/locale/<language>/LC_MESSAGES/chainmail.po`, compiled to `.mo` by
`scripts/i18n` and shipped in the wheel (docs/i18n.md). Babel supplies the plural rules
("1 рассылка, 2 рассылки, 5 рассылок"), numbers, dates and money of each language.

Which language is the `current_language()` of the task: set for each Telegram update
from the user's choice or their `language_code` (handlers), for each customer's footer
and pages, for each chat's summary — with `use_language`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path

import phonenumbers
from babel import Locale
from babel.dates import format_date, format_datetime, get_day_names, get_month_names
from babel.numbers import format_currency, format_decimal, format_percent
from babel.support import NullTranslations, Translations

# The code's own language first: its messages need no catalogue.
SOURCE_LANGUAGE = "en"
LANGUAGES = ("en", "ru")
DOMAIN = "chainmail"
LOCALE_DIR = Path(__file__).parent / "locale"
# Where customers with a phone from there read Russian (unless they say otherwise).
RUSSIAN_READING_REGIONS = frozenset({"RU", "BY", "KZ"})

_current: ContextVar[str] = ContextVar("language", default=SOURCE_LANGUAGE)


def language_of(code: str | None) -> str:
    """A Telegram `language_code` ("ru", "ru-RU", "en-GB", "de") as one of LANGUAGES:
    its own when there is a catalogue for it, else English."""
    primary = (code or "").split("-")[0].split("_")[0].lower()
    return primary if primary in LANGUAGES else SOURCE_LANGUAGE


def customer_language(given: str | None, phone: str | None, default: str) -> str:
    """A customer's language: their own `language`, else what their phone's country
    reads (RU, BY, KZ: Russian), else `default` (DEFAULT_LANGUAGE)."""
    if given and given in LANGUAGES:
        return given
    if phone:
        try:
            region = phonenumbers.region_code_for_number(phonenumbers.parse(phone, None))
        except phonenumbers.NumberParseException:
            region = None
        if region in RUSSIAN_READING_REGIONS:
            return "ru"
    return default


def current_language() -> str:
    return _current.get()


def set_language(language: str) -> Token[str]:
    """For the rest of this task (and the tasks it starts): `language`."""
    return _current.set(language if language in LANGUAGES else SOURCE_LANGUAGE)


@contextmanager
def use_language(language: str) -> Iterator[None]:
    token = set_language(language)
    try:
        yield
    finally:
        _current.reset(token)


@cache
def translations(language: str) -> NullTranslations:
    if language == SOURCE_LANGUAGE:
        return NullTranslations()
    return Translations.load(str(LOCALE_DIR), [language], DOMAIN)


def _(message: str) -> str:
    return translations(_current.get()).gettext(message)


def ngettext(singular: str, plural: str, count: int) -> str:
    """The form for `count` in the current language (Russian has three); the text may
    hold `{count}`, formatted by the caller."""
    return translations(_current.get()).ngettext(singular, plural, count)


def N_(message: str) -> str:
    """Marks a constant for the catalogue; `_()` translates it where it is shown."""
    return message


class Phrase(str):
    """A sentence said later, in the language of whoever reads it: a catalogue message
    (`N_`) with `{name}` fields and its values. As a string it is the English (logs, the
    CLI, the API); `translated()` gives the current language's, values that are phrases
    translated too."""

    template: str
    values: dict[str, object]

    def __new__(cls, template: str, /, **values: object) -> Phrase:
        phrase = super().__new__(cls, template.format(**values) if values else template)
        phrase.template = template
        phrase.values = values
        return phrase

    def translated(self) -> str:
        template = _(self.template) if self.template else ""
        if not self.values:
            return template
        values = {
            name: value.translated() if isinstance(value, Phrase | Phrases | Number) else value
            for name, value in self.values.items()
        }
        return template.format(**values)


class Number:
    """A count or size in a phrase: 20,000 in English, 20 000 in Russian."""

    __slots__ = ("value",)

    def __init__(self, value: int | Decimal) -> None:
        self.value = value

    def __str__(self) -> str:
        return f"{self.value:,}"

    def translated(self) -> str:
        return number(self.value)


class Phrases:
    """Phrases said one after the other, as one value of a phrase."""

    __slots__ = ("items", "separator")

    def __init__(self, items: Iterable[Phrase], separator: str = "; ") -> None:
        self.items = tuple(items)
        self.separator = separator

    def __str__(self) -> str:
        return self.separator.join(str(item) for item in self.items)

    def translated(self) -> str:
        return self.separator.join(item.translated() for item in self.items)


@cache
def _locale(language: str) -> Locale:
    return Locale.parse(language)


def number(
    value: int | float | Decimal, decimals: int | None = None, *, grouping: bool = True
) -> str:
    """`1 234,5` in Russian, `1,234.5` in English; `decimals`: exactly that many
    (`1 234,50`); without `grouping`: `1234,50`, for lines that must stay short."""
    pattern = None if decimals is None else "#,##0" + ("." + "0" * decimals if decimals else "")
    return format_decimal(value, pattern, locale=_locale(_current.get()), group_separator=grouping)


def percent(fraction: float, digits: int = 1) -> str:
    pattern = "#,##0" + ("." + "0" * digits if digits else "") + " %"
    if _current.get() == SOURCE_LANGUAGE:
        pattern = pattern.replace(" %", "%")
    return format_percent(fraction, pattern, locale=_locale(_current.get()))


def money(amount: Decimal | int | float, currency: str) -> str:
    """`1 234,50 ₽` in Russian, `RUB 1,234.50` in English."""
    return format_currency(amount, currency, locale=_locale(_current.get()))


def day(value: date) -> str:
    """`4 дек. 2026 г.`, `Dec 4, 2026`."""
    return format_date(value, "medium", locale=_locale(_current.get()))


def moment(value: datetime) -> str:
    return format_datetime(value, "short", tzinfo=value.tzinfo, locale=_locale(_current.get()))


def short_day(value: date) -> str:
    """`Fri 04 Dec`, `пт 04 дек.`: a day of the last week or two, year left out."""
    return format_date(value, "EEE dd MMM", locale=_locale(_current.get()))


def month_name(month: int) -> str:
    """`December`, `Декабрь`: the month on its own, as a calendar's title."""
    name = get_month_names("wide", "stand-alone", locale=_locale(_current.get()))[month]
    return name[:1].upper() + name[1:]


def weekday_names() -> tuple[str, ...]:
    """Monday first, two letters: `Mo … Su`, `пн … вс`."""
    names = get_day_names("short", "format", locale=_locale(_current.get()))
    return tuple(names[day] for day in range(7))
