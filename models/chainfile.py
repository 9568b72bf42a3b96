"""Chain documents (SPEC §7): the `chainmail/1` format, its validation and canonical form.

A chain document is the chain of §2 as plain data. The same block validators
check a whole file on import and a single block saved from the bot, so a block
an import would refuse can never be saved either. Validation never stops at the
first problem: it collects every one with its path
(`steps[1].schedule.after: '2x' is not a duration`), and a file with any
problem is refused as a whole. Warnings (a template name no customer has, a
setting that has no effect) are reported apart and refuse nothing.

Positions are step numbers as people and the database count them: 1 is the
main step. File paths count from 0 like the YAML list (`steps[0]` is step 1).

Everything here is pure: no database, no clock. Segment names and attribute
keys that exist are passed in.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Generic, TypeVar

import yaml

from i18n import N_, Number, Phrase
from models.errors import ChainmailError, InvalidValue
from models.sms_parts import BARE_SMS, SmsFrame, sms_as_sent, sms_parts
from models.tables import Channel, Enrollment
from models.templates import (
    CUSTOMER_FIELDS,
    SOURCE_LIMITS,
    template_problems,
)

# --- Messages -----------------------------------------------------------------
# Every problem and warning text a person reads, in one place. Problem.__str__
# puts the path in front ("steps[0].action.subject: missing").

NOT_YAML = N_("not YAML: {error}")
KEY_GIVEN_TWICE = N_("key {key} given twice")
NOT_A_CHAIN_DOCUMENT = N_("a chain file is a YAML mapping with format, name and steps")
WRONG_FORMAT = N_("{value} is not a chain file format this version reads: write format: {format}")
UNKNOWN_KEY = N_("unknown key")
MISSING = N_("missing")
NOT_A_MAPPING = N_("must be a mapping")
NOT_A_LIST = N_("must be a list")
NOT_TEXT = N_("must be text")
EMPTY = N_("must not be empty")
NOT_ONE_LINE = N_("must be one line")
TOO_LONG = N_("must be at most {limit} characters")
NOT_TRUE_OR_FALSE = N_("must be true or false")
NOT_ONE_OF = N_("{value} is not one of: {choices}")
NOT_A_NUMBER_OF_DAYS = N_("{value} is not a whole number of days from 1 to {max}")
NOT_AN_AMOUNT = N_("{value} is not an amount of 0 or more")
NOT_A_HOLDOUT_PERCENT = N_("{value} is not a whole number of percent from 0 to {max}")
BAD_CAMPAIGN = N_("{value} must be Latin letters, digits and _ only")
NO_STEPS = N_("must list at least one step")
LISTED_TWICE = N_("{value} is listed twice")
MAIN_STEP_GOES_TO_SEGMENTS = N_(
    "the main step goes to segments ({segments: [name, …]}); who: is for later steps"
)
NO_SEGMENTS = N_("must list at least one segment")
UNKNOWN_SEGMENT = N_("{value} is not a known segment")
ONLY_MAIN_STEP_HAS_SEGMENTS = N_(
    "only the main step goes to segments; later steps use who: all or who: terms"
)
ONLY_WITH_TERMS = N_("only goes with who: terms")
NO_TERMS = N_("must list at least one term")
NO_MECHANICS = N_("must list at least one mechanic")
UNKNOWN_MECHANIC = N_("{value} is not a mechanic; mechanics are: {mechanics}")
UNKNOWN_TERM = N_("{value} is not a term; terms are: {terms}")
ONLY_FOR_EMAIL = N_("only an email has this; an sms has only text")
TEMPLATE_ERROR = N_("not a valid template: {error}")
TOO_MANY_SMS_PARTS = N_(
    "{parts} SMS parts ({characters} {encoding} characters as written{links}{opt_out}): "
    "at most {limit}"
)
WITH_SHORT_LINKS = N_(", each link as a {length}-character short link")
WITH_OPT_OUT = N_(", with the opt-out line {line!r}")
ONLY_WITH_SEND = N_("only goes with send: {send}")
OPENED_AFTER_SMS = N_(
    "{terms}: step {previous} sends an SMS, and whether an SMS was opened is never known; "
    "use delivered or clicked (and their not_ forms)"
)
SMS_BEFORE_OPENED = N_(
    "step {next} goes by whether this message was opened ({terms}), which an SMS never "
    "tells: change step {next}'s terms first"
)
NOT_A_DURATION = N_("{value} is not a duration")
DURATION_TOO_LONG = N_("{value} is longer than {max} days")
NOT_A_MOMENT = N_("{value} is not a date and time like 2026-12-01 10:00")
MOMENT_OUT_OF_RANGE = N_("{value} is not between the years {first} and {last}")
HAS_NUL = N_("contains a NUL character (\\0), which cannot be stored")
HAS_SURROGATE = N_("contains a lone surrogate ({character}), which is not text")
FILE_TOO_LONG = N_("the file has {length} characters: at most {limit}")
NESTED_TOO_DEEPLY = N_("line {line}: nested more than {limit} levels deep")
ALIASES_EXPAND = N_("line {line}: aliases expand the file to more than {limit} values")
ALIAS_IN_ITSELF = N_("line {line}: alias *{anchor} is used inside the value it names")
NOT_UNICODE_TEXT = N_("character {position}: a lone surrogate ({code}), which is not text")
SEND_NOW_WITH_LATER_TERMS = N_(
    "send: now cannot wait for {terms}: known only later; use send: after or send: at"
)
# Warnings.
UNKNOWN_VARIABLE = N_(
    "{{{{ {name} }}}} is neither a customer field nor an attribute any customer has: "
    "it will be empty"
)
WAIT_DAYS_UNUSED = N_("has no effect: wait_days is only used with who: terms")


# How much of a value a message quotes: cut before it is formatted, so that a
# huge value (or one aliases make huge) costs nothing to mention.
SHOWN_LIMIT = 40


class LongNumber:
    """A whole number in a file too long to read as one (`int()` refuses 4,300 digits):
    kept as its text, so that the validator can say where it is."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return f"a number of {len(self.text):,} characters"

    __repr__ = __str__


def _shown(value: Any) -> str:
    """A value in a message as the file has it: text quoted, YAML's words for the rest,
    at most SHOWN_LIMIT characters of it."""
    if isinstance(value, str):
        if len(value) > SHOWN_LIMIT:
            return f"{value[:SHOWN_LIMIT]!r}… ({len(value):,} characters)"
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        if value.bit_length() > 128:
            return f"a number of about {int(value.bit_length() * math.log10(2)) + 1:,} digits"
        return repr(value)
    if isinstance(value, float | date | LongNumber):
        return str(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _key_shown(key: Any) -> str:
    """A key as it goes into a path: as written when it is a plain short one."""
    if isinstance(key, str) and len(key) <= SHOWN_LIMIT and key.isprintable():
        return key
    return _shown(key)


# --- Vocabulary ---------------------------------------------------------------

FORMAT = "chainmail/1"
MAX_SMS_PARTS = 10
DEFAULT_WAIT_DAYS = 30
DEFAULT_WINDOW_DAYS = 7
NAME_LIMIT = 200
# Ten years: beyond any sensible wait, and far from where datetime arithmetic overflows.
MAX_DAYS = 3650
# `at` moments: in every time zone, and after any wait, far from datetime's edges.
FIRST_YEAR = 2000
LAST_YEAR = 2100
# Templates as written, by action key (the channel's renderer caps them once rendered).
TEXT_LIMITS = {
    "subject": SOURCE_LIMITS["subject"],
    "text": SOURCE_LIMITS["text"],
    "html": SOURCE_LIMITS["html"],
}
SMS_TEXT_LIMIT = SOURCE_LIMITS["sms"]
# A whole file, its nesting and its values once aliases are expanded.
FILE_LIMIT = 20_000_000
DEPTH_LIMIT = 32
VALUES_LIMIT = 1_000_000
CAMPAIGN_LIMIT = 100
# The largest share of a main step's audience a chain may hold out (models/holdout.py).
MAX_HOLDOUT = 50
GOAL_ORDER = "order"


class Who(StrEnum):
    ALL = "all"
    TERMS = "terms"


class Match(StrEnum):
    ANY = "any"
    ALL = "all"


class Term(StrEnum):
    OPENED = "opened"
    NOT_OPENED = "not_opened"
    CLICKED = "clicked"
    NOT_CLICKED = "not_clicked"
    DELIVERED = "delivered"
    NOT_DELIVERED = "not_delivered"
    UNSUBSCRIBED_EMAIL = "unsubscribed_email"
    UNSUBSCRIBED_SMS = "unsubscribed_sms"
    ORDERED = "ordered"
    NOT_ORDERED = "not_ordered"


# True only once the wait is over: `send: now` has no moment to check them at.
LATER_ONLY_TERMS = frozenset(
    {Term.NOT_OPENED, Term.NOT_CLICKED, Term.NOT_DELIVERED, Term.NOT_ORDERED}
)
# Known of an email only: an SMS is delivered and its links clicked, but nothing
# tells whether it was read.
EMAIL_ONLY_TERMS = frozenset({Term.OPENED, Term.NOT_OPENED})
# Terms that are about the other channel than the previous step's message: after an SMS,
# an email unsubscribe has nothing to do with that message.
_OFF_CHANNEL_TERMS = {Channel.SMS: frozenset({Term.UNSUBSCRIBED_EMAIL})}
# `Problem.code`s a door words itself.
SEND_NOW_LATER_CODE = "send-now-later-terms"
OPENED_AFTER_SMS_CODE = "opened-after-sms"
SMS_BEFORE_OPENED_CODE = "sms-before-opened"


def terms_for_channel(channel: str | None) -> tuple[Term, ...]:
    """The terms worth offering after a message of this channel (None: not chosen yet,
    every term): after an SMS neither whether it was opened, which an SMS never tells,
    nor an email unsubscribe, which is not about it."""
    if channel != Channel.SMS:
        return tuple(Term)
    refused = EMAIL_ONLY_TERMS | _OFF_CHANNEL_TERMS[Channel.SMS]
    return tuple(term for term in Term if term not in refused)


def later_only_terms(audience: Audience | None) -> tuple[Term, ...]:
    """The audience's terms that can only be known once a wait is over (`not_opened`…):
    such a step cannot go out `now`."""
    if not isinstance(audience, TermsAudience):
        return ()
    return tuple(term for term in audience.terms if term in LATER_ONLY_TERMS)


class Mechanic(StrEnum):
    """What counts as a conversion of a step's message (docs/attribution.md)."""

    # An order placed within the window.
    NEW_ORDER = "new_order"
    # An order placed before the message whose amount grew within the window.
    ORDER_INCREASE = "order_increase"
    # An order cancelled when the message was sent and restored within the window.
    ORDER_RESTORED = "order_restored"


DEFAULT_MECHANICS = (Mechanic.NEW_ORDER,)


def mechanics_of(block: Mapping[str, Any] | None) -> list[Mechanic]:
    """The mechanics a conversion block lists, in Mechanic's order (none: the default)."""
    listed = (block or {}).get("mechanics") or DEFAULT_MECHANICS
    return [mechanic for mechanic in Mechanic if mechanic.value in listed]


class Send(StrEnum):
    NOW = "now"
    AFTER = "after"
    AT = "at"


class BlockKind(StrEnum):
    AUDIENCE = "audience"
    ACTION = "action"
    SCHEDULE = "schedule"
    CONVERSION = "conversion"


# --- Problems -----------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    path: str  # "" for the document or block as a whole
    message: str
    # What kind of problem, for a door that says it in its own words (the bot never
    # shows chain-file syntax): one of the `*_CODE`s below, or "" (the message is it).
    code: str = field(default="", compare=False)
    # What the code is about, e.g. the terms (`Term` values).
    about: tuple[str, ...] = field(default=(), compare=False)
    # The message as a catalogue message with its values, for a door in another language.
    phrase: Phrase | None = field(default=None, compare=False)

    @classmethod
    def of(
        cls,
        path: str,
        message: str | Phrase,
        code: str = "",
        about: tuple[str, ...] = (),
        **values: Any,
    ) -> Problem:
        phrase = message if isinstance(message, Phrase) else Phrase(message, **values)
        return cls(path, str(phrase), code, about, phrase)

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message

    def translated(self) -> str:
        """The message (without the path) in the current language."""
        return self.phrase.translated() if self.phrase is not None else self.message


T = TypeVar("T")


@dataclass(frozen=True)
class Checked(Generic[T]):
    """A validation's outcome: the typed value when there are no problems."""

    value: T | None
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


class ProblemsFound(ChainmailError):
    """A refusal listing every problem, one per line."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


class InvalidChainFile(ProblemsFound):
    pass


class InvalidBlock(ProblemsFound):
    pass


# --- The model ------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentsAudience:
    """The main step's audience: customers in any of these segments."""

    segments: tuple[str, ...]

    def to_block(self) -> dict[str, Any]:
        return {"segments": list(self.segments)}


@dataclass(frozen=True)
class PreviousStepAudience:
    """`who: all`: every customer the previous step triggered for."""

    def to_block(self) -> dict[str, Any]:
        return {"who": Who.ALL.value}


@dataclass(frozen=True)
class TermsAudience:
    match: Match
    terms: tuple[Term, ...]

    def to_block(self) -> dict[str, Any]:
        return {
            "who": Who.TERMS.value,
            "match": self.match.value,
            "terms": [term.value for term in self.terms],
        }


Audience = SegmentsAudience | PreviousStepAudience | TermsAudience


@dataclass(frozen=True)
class EmailAction:
    subject: str
    text: str
    html: str | None = None

    channel = Channel.EMAIL

    def to_block(self) -> dict[str, Any]:
        block = {"channel": self.channel.value, "subject": self.subject, "text": self.text}
        return block if self.html is None else {**block, "html": self.html}


@dataclass(frozen=True)
class SmsAction:
    text: str

    channel = Channel.SMS

    def to_block(self) -> dict[str, Any]:
        return {"channel": self.channel.value, "text": self.text}


Action = EmailAction | SmsAction


@dataclass(frozen=True)
class Schedule:
    send: Send
    after: timedelta | None = None
    # A naive wall-clock moment, read in each customer's own time zone.
    at: datetime | None = None
    wait_days: int = DEFAULT_WAIT_DAYS

    def to_block(self) -> dict[str, Any]:
        # wait_days is kept whatever the audience, so that changing the audience
        # in the bot never loses it; documents show it only where it applies.
        block: dict[str, Any] = {"send": self.send.value}
        if self.after is not None:
            block["after"] = format_duration(self.after)
        if self.at is not None:
            block["at"] = format_moment(self.at)
        block["wait_days"] = self.wait_days
        return block


@dataclass(frozen=True)
class Conversion:
    window_days: int = DEFAULT_WINDOW_DAYS
    min_amount: Decimal = Decimal(0)
    goal: str = GOAL_ORDER
    # In Mechanic's order, whatever order they were written in.
    mechanics: tuple[Mechanic, ...] = DEFAULT_MECHANICS

    def to_block(self) -> dict[str, Any]:
        """The block as stored and exported; `mechanics` only when not the default, so
        that blocks saved before mechanics existed read the same as new ones."""
        amount = self.min_amount
        block: dict[str, Any] = {
            "goal": self.goal,
            "window_days": self.window_days,
            "min_amount": int(amount) if amount == amount.to_integral_value() else float(amount),
        }
        if self.mechanics != DEFAULT_MECHANICS:
            block["mechanics"] = [mechanic.value for mechanic in self.mechanics]
        return block


Block = Audience | Action | Schedule | Conversion


@dataclass(frozen=True)
class StepSpec:
    name: str
    audience: Audience
    action: Action
    schedule: Schedule
    conversion: Conversion
    stopped: bool = False

    def to_document(self) -> dict[str, Any]:
        schedule = self.schedule.to_block()
        if not isinstance(self.audience, TermsAudience):
            del schedule["wait_days"]
        document = {
            "name": self.name,
            "audience": self.audience.to_block(),
            "action": self.action.to_block(),
            "schedule": schedule,
            "conversion": self.conversion.to_block(),
        }
        if self.stopped:
            document["stopped"] = True
        return document


@dataclass(frozen=True)
class ChainSpec:
    name: str
    enrollment: Enrollment
    campaign: str
    utm: bool
    steps: tuple[StepSpec, ...]
    # The share of the main step's audience held out (models/holdout.py).
    holdout_percent: int = 0

    def to_document(self) -> dict[str, Any]:
        """The canonical document: every default explicit, keys in a fixed order."""
        return {
            "format": FORMAT,
            "name": self.name,
            "enrollment": self.enrollment.value,
            "campaign": self.campaign,
            "utm": self.utm,
            "holdout_percent": self.holdout_percent,
            "steps": [step.to_document() for step in self.steps],
        }


# --- Durations, moments, campaign tags -----------------------------------------

_DURATION = re.compile(r"([0-9]+)([smhd])")
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_MOMENT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}")
_MOMENT_FORMAT = "%Y-%m-%d %H:%M"


def parse_duration(text: str) -> timedelta:
    """`90s`, `45m`, `3h`, `2d`: a whole number above 0 and a unit, at most MAX_DAYS."""
    found = _DURATION.fullmatch(text)
    if not found or int(found.group(1)) == 0:
        raise InvalidValue(NOT_A_DURATION, value=_shown(text))
    seconds = int(found.group(1)) * _UNIT_SECONDS[found.group(2)]
    if seconds > MAX_DAYS * _UNIT_SECONDS["d"]:
        raise InvalidValue(DURATION_TOO_LONG, value=_shown(text), max=MAX_DAYS)
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """The inverse of parse_duration, in the largest unit that is exact (48h → 2d)."""
    second = timedelta(seconds=1)
    if delta <= timedelta(0) or delta % second:
        raise ValueError(f"{delta} is not a positive whole number of seconds")
    seconds = delta // second
    unit, size = next((u, size) for u, size in _UNIT_SECONDS.items() if seconds % size == 0)
    return f"{seconds // size}{unit}"


def parse_moment(text: str, *, bounded: bool = True) -> datetime:
    """`2026-12-01 10:00` as a naive datetime (no zone: each customer's own applies),
    in the years FIRST_YEAR to LAST_YEAR unless not `bounded`."""
    if not _MOMENT.fullmatch(text):
        raise InvalidValue(NOT_A_MOMENT, value=_shown(text))
    try:
        moment = datetime.strptime(text, _MOMENT_FORMAT)
    except ValueError:
        raise InvalidValue(NOT_A_MOMENT, value=_shown(text)) from None
    if bounded and not FIRST_YEAR <= moment.year <= LAST_YEAR:
        raise InvalidValue(
            MOMENT_OUT_OF_RANGE, value=_shown(text), first=FIRST_YEAR, last=LAST_YEAR
        )
    return moment


def _unbounded_moment(text: str) -> datetime:
    return parse_moment(text, bounded=False)


def format_moment(at: datetime) -> str:
    return at.isoformat(sep=" ", timespec="minutes")


_TO_LATIN = {
    "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "e", "ж": "zh",
    "з": "z", "и": "i", "й": "y", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o",
    "п": "p", "р": "r", "с": "s", "т": "t", "у": "u", "ф": "f", "х": "kh", "ц": "ts",
    "ч": "ch", "ш": "sh", "щ": "shch", "ъ": "", "ы": "y", "ь": "", "э": "e", "ю": "yu",
    "я": "ya", "і": "i", "ї": "yi", "є": "ye", "ґ": "g", "ў": "u",
}  # fmt: skip
_CAMPAIGN = re.compile(r"[A-Za-z0-9_]+")


def default_campaign(name: str) -> str:
    """A UTM campaign tag from a chain's name: «Весенняя распродажа» → vesennyaya_rasprodazha."""
    latin = "".join(_TO_LATIN.get(ch, ch) for ch in name.lower())
    # Accented Latin letters lose their accents (café → cafe); transliterating
    # first keeps й from decomposing into и and a breve.
    ascii_only = unicodedata.normalize("NFKD", latin).encode("ascii", "ignore").decode()
    tag = re.sub(r"[^a-z0-9]+", "_", ascii_only)[:CAMPAIGN_LIMIT].strip("_")
    return tag or "chain"


def email_only_terms(audience: Audience | None, previous: Action | None) -> tuple[str, ...]:
    """The audience's terms an SMS as the previous message never tells (`opened`…)."""
    if not isinstance(audience, TermsAudience) or not isinstance(previous, SmsAction):
        return ()
    return tuple(term.value for term in audience.terms if term in EMAIL_ONLY_TERMS)


def terms_after_sms_refusal(
    audience: Audience | None, previous: Action | None, position: int
) -> Phrase | None:
    """Why the terms of the step at `position` cannot follow its previous step's
    action, if they cannot: `opened` / `not_opened` after an SMS."""
    terms = ", ".join(email_only_terms(audience, previous))
    return Phrase(OPENED_AFTER_SMS, terms=terms, previous=position - 1) if terms else None


def sms_before_terms_refusal(
    action: Action | None, next_audience: Audience | None, position: int
) -> Phrase | None:
    """Why the step at `position` cannot send this action, if it cannot: the next
    step's terms ask whether it was opened, and it is an SMS."""
    terms = ", ".join(email_only_terms(next_audience, action))
    return Phrase(SMS_BEFORE_OPENED, terms=terms, next=position + 1) if terms else None


def send_now_refusal(audience: Audience | None, send: Send | None) -> Phrase | None:
    """Why this schedule cannot go with this audience, if it cannot."""
    if send is not Send.NOW:
        return None
    later = ", ".join(later_only_terms(audience))
    return Phrase(SEND_NOW_WITH_LATER_TERMS, terms=later) if later else None


# --- Validation machinery -------------------------------------------------------


class _Report:
    """Where problems go, and the path they are found at."""

    def __init__(
        self,
        path: str,
        problems: list[Problem],
        warnings: list[Problem],
        *,
        stored: bool = False,
    ) -> None:
        self.path = path
        self.problems = problems
        self.warnings = warnings
        # A block read back from the database: it passed the checks of its day, so the
        # limits added since (sizes, years, template bounds) do not make it unreadable.
        self.stored = stored

    def at(self, key: str | int) -> _Report:
        if isinstance(key, int):
            path = f"{self.path}[{key}]"
        else:
            path = f"{self.path}.{key}" if self.path else key
        return _Report(path, self.problems, self.warnings, stored=self.stored)

    def problem(
        self, message: str | Phrase, code: str = "", about: tuple[str, ...] = (), **values: Any
    ) -> None:
        self.problems.append(Problem.of(self.path, message, code, about, **values))

    def warning(self, message: str | Phrase, **values: Any) -> None:
        self.warnings.append(Problem.of(self.path, message, **values))


def _checked(check: Callable[[_Report], T | None], *, stored: bool = False) -> Checked[T]:
    report = _Report("", [], [], stored=stored)
    value = check(report)
    return Checked(None if report.problems else value, report.problems, report.warnings)


def _mapping(
    data: Any, report: _Report, keys: Collection[str], *, not_mapping: str = NOT_A_MAPPING
) -> dict[Any, Any] | None:
    if not isinstance(data, dict):
        report.problem(not_mapping)
        return None
    for key in data:
        if key not in keys:
            report.at(_key_shown(key)).problem(UNKNOWN_KEY)
    return data


def _text(
    fields: dict[Any, Any],
    key: str,
    report: _Report,
    *,
    required: bool,
    one_line: bool = False,
    limit: int | None = None,
) -> str | None:
    if key not in fields or (fields[key] is None and not required):
        if required:
            report.at(key).problem(MISSING)
        return None
    value = fields[key]
    here = report.at(key)
    if not isinstance(value, str):
        here.problem(NOT_TEXT)
    elif limit is not None and len(value) > limit and not report.stored:
        here.problem(TOO_LONG, limit=Number(limit))
    elif "\0" in value:
        here.problem(HAS_NUL)
    elif (surrogate := _SURROGATE.search(value)) is not None:
        here.problem(HAS_SURROGATE, character=f"\\u{ord(surrogate.group()):04x}")
    elif not value.strip():
        here.problem(EMPTY)
    elif one_line and "\n" in value.strip("\n"):
        here.problem(NOT_ONE_LINE)
    else:
        return value.strip("\n") if one_line else value
    return None


_SURROGATE = re.compile("[\ud800-\udfff]")

E = TypeVar("E", bound=StrEnum)


def _choice(
    fields: dict[Any, Any], key: str, choices: type[E], report: _Report, default: E | None = None
) -> E | None:
    if key not in fields:
        if default is None:
            report.at(key).problem(MISSING)
        return default
    value = fields[key]
    if isinstance(value, str) and value in choices._value2member_map_:
        return choices(value)
    names = ", ".join(member.value for member in choices)
    report.at(key).problem(NOT_ONE_OF, value=_shown(value), choices=names)
    return None


def _days(fields: dict[Any, Any], key: str, report: _Report, default: int) -> int | None:
    value = fields.get(key, default)
    # YAML's true is an int to Python; it is not a number of days.
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_DAYS:
        return value
    report.at(key).problem(NOT_A_NUMBER_OF_DAYS, value=_shown(value), max=MAX_DAYS)
    return None


def _name_list(
    fields: dict[Any, Any], key: str, report: _Report, *, empty: str
) -> list[tuple[_Report, str]] | None:
    """A required non-empty list of distinct names, each with where it stands."""
    if key not in fields:
        report.at(key).problem(MISSING)
        return None
    values = fields[key]
    if not isinstance(values, list):
        report.at(key).problem(NOT_A_LIST)
        return None
    if not values:
        report.at(key).problem(empty)
        return None
    names: list[tuple[_Report, str]] = []
    seen: set[str] = set()
    for index, value in enumerate(values):
        here = report.at(key).at(index)
        if not isinstance(value, str):
            here.problem(NOT_TEXT)
        elif value in seen:
            here.problem(LISTED_TWICE, value=_shown(value))
        else:
            seen.add(value)
            names.append((here, value))
    return names


# --- Blocks ---------------------------------------------------------------------

_AUDIENCE_KEYS = ("segments", "who", "match", "terms")
_ACTION_KEYS = ("channel", "subject", "text", "html")
_SCHEDULE_KEYS = ("send", "after", "at", "wait_days")
_CONVERSION_KEYS = ("goal", "window_days", "min_amount", "mechanics")
# `stopped: true`: the step was stopped in a running chain (services/editing.py).
_STEP_KEYS = ("name", *BlockKind, "stopped")
_CHAIN_KEYS = ("format", "name", "enrollment", "campaign", "utm", "holdout_percent", "steps")


def _audience(
    data: Any, report: _Report, *, position: int, known_segments: Collection[str] | None
) -> Audience | None:
    fields = _mapping(data, report, _AUDIENCE_KEYS)
    if fields is None:
        return None
    before = len(report.problems)
    if position == 1:
        for key in ("who", "match", "terms"):
            if key in fields:
                report.at(key).problem(MAIN_STEP_GOES_TO_SEGMENTS)
        segments = _name_list(fields, "segments", report, empty=NO_SEGMENTS)
        for here, name in segments or []:
            if known_segments is not None and name not in known_segments:
                here.problem(UNKNOWN_SEGMENT, value=_shown(name))
        if segments is None or len(report.problems) > before:
            return None
        return SegmentsAudience(tuple(name for _, name in segments))

    if "segments" in fields:
        report.at("segments").problem(ONLY_MAIN_STEP_HAS_SEGMENTS)
    who = _choice(fields, "who", Who, report)
    if who is Who.ALL:
        for key in ("match", "terms"):
            if key in fields:
                report.at(key).problem(ONLY_WITH_TERMS)
        return None if len(report.problems) > before else PreviousStepAudience()
    if who is None:
        return None
    match = _choice(fields, "match", Match, report, default=Match.ALL)
    terms = _name_list(fields, "terms", report, empty=NO_TERMS)
    known_terms = ", ".join(Term)
    for here, name in terms or []:
        if name not in Term._value2member_map_:
            here.problem(UNKNOWN_TERM, value=_shown(name), terms=known_terms)
    if match is None or terms is None or len(report.problems) > before:
        return None
    return TermsAudience(match, tuple(Term(name) for _, name in terms))


def _templates(
    texts: dict[str, str | None], report: _Report, known_attributes: Collection[str] | None
) -> None:
    if report.stored:
        return  # compiled again when rendered; stored ones passed when saved
    known = CUSTOMER_FIELDS | set(known_attributes or ())
    for key, source in texts.items():
        if source is None:
            continue
        error, variables = template_problems(source)
        if error:
            report.at(key).problem(TEMPLATE_ERROR, error=error)
        elif known_attributes is not None:
            for name in sorted(variables - known):
                report.at(key).warning(UNKNOWN_VARIABLE, name=name)


def _action(
    data: Any, report: _Report, *, known_attributes: Collection[str] | None, sms_frame: SmsFrame
) -> Action | None:
    fields = _mapping(data, report, _ACTION_KEYS)
    if fields is None:
        return None
    before = len(report.problems)
    channel = _choice(fields, "channel", Channel, report)
    is_sms = channel is Channel.SMS
    if is_sms:
        for key in ("subject", "html"):
            if key in fields:
                report.at(key).problem(ONLY_FOR_EMAIL)
    subject = html = None
    if not is_sms:
        subject = _text(
            fields, "subject", report, required=True, one_line=True, limit=TEXT_LIMITS["subject"]
        )
        html = _text(fields, "html", report, required=False, limit=TEXT_LIMITS["html"])
    text_limit = SMS_TEXT_LIMIT if is_sms else TEXT_LIMITS["text"]
    text = _text(fields, "text", report, required=True, limit=text_limit)
    _templates({"subject": subject, "text": text, "html": html}, report, known_attributes)
    if is_sms and text is not None:
        as_sent = sms_as_sent(text, sms_frame)
        count = sms_parts(as_sent)
        if count.parts > MAX_SMS_PARTS:
            shortened = as_sent != sms_as_sent(text, replace(sms_frame, public_base_url=""))
            opt_out = sms_frame.shown_opt_out
            report.at("text").problem(
                TOO_MANY_SMS_PARTS,
                parts=count.parts,
                characters=count.characters,
                encoding=count.encoding,
                links=Phrase(WITH_SHORT_LINKS, length=sms_frame.short_link_length)
                if shortened
                else "",
                opt_out=Phrase(WITH_OPT_OUT, line=opt_out) if opt_out else "",
                limit=MAX_SMS_PARTS,
            )
    if len(report.problems) > before or text is None:
        return None
    if is_sms:
        return SmsAction(text)
    if channel is None or subject is None:
        return None
    return EmailAction(subject, text, html)


def _schedule(data: Any, report: _Report, *, audience: Audience | None) -> Schedule | None:
    fields = _mapping(data, report, _SCHEDULE_KEYS)
    if fields is None:
        return None
    before = len(report.problems)
    send = _choice(fields, "send", Send, report)
    after = at = None
    if send is not None:
        for key, needs in (("after", Send.AFTER), ("at", Send.AT)):
            if key in fields and send is not needs:
                report.at(key).problem(ONLY_WITH_SEND, send=needs.value)
    if send is Send.AFTER:
        after = _parsed(fields, "after", report, parse_duration, NOT_A_DURATION)
    if send is Send.AT:
        parse = _unbounded_moment if report.stored else parse_moment
        at = _parsed(fields, "at", report, parse, NOT_A_MOMENT)
    wait_days = _days(fields, "wait_days", report, DEFAULT_WAIT_DAYS)
    refusal = send_now_refusal(audience, send)
    if refusal:
        later = tuple(term.value for term in later_only_terms(audience))
        report.at("send").problem(refusal, SEND_NOW_LATER_CODE, later)
    if send is None or wait_days is None or len(report.problems) > before:
        return None
    return Schedule(send, after, at, wait_days)


def _parsed(
    fields: dict[Any, Any],
    key: str,
    report: _Report,
    parse: Callable[[str], T],
    not_text: str,
) -> T | None:
    """The value parsed; `parse` raises ValueError with the message for bad text."""
    if key not in fields:
        report.at(key).problem(MISSING)
        return None
    value = fields[key]
    if not isinstance(value, str):
        report.at(key).problem(not_text, value=_shown(value))
        return None
    try:
        return parse(value)
    except InvalidValue as exc:
        report.at(key).problem(exc.phrase)
        return None


def _conversion(data: Any, report: _Report) -> Conversion | None:
    fields = _mapping(data, report, _CONVERSION_KEYS)
    if fields is None:
        return None
    before = len(report.problems)
    goal = fields.get("goal", GOAL_ORDER)
    if goal != GOAL_ORDER:
        report.at("goal").problem(NOT_ONE_OF, value=_shown(goal), choices=GOAL_ORDER)
    window_days = _days(fields, "window_days", report, DEFAULT_WINDOW_DAYS)
    amount = fields.get("min_amount", 0)
    is_amount = isinstance(amount, int | float) and not isinstance(amount, bool)
    if not (is_amount and math.isfinite(amount) and amount >= 0):
        report.at("min_amount").problem(NOT_AN_AMOUNT, value=_shown(amount))
    mechanics: tuple[Mechanic, ...] | None = DEFAULT_MECHANICS
    if "mechanics" in fields:
        mechanics = _mechanics(fields, report)
    if window_days is None or mechanics is None or len(report.problems) > before:
        return None
    return Conversion(window_days, Decimal(str(amount)), mechanics=mechanics)


def _mechanics(fields: dict[Any, Any], report: _Report) -> tuple[Mechanic, ...] | None:
    names = _name_list(fields, "mechanics", report, empty=NO_MECHANICS)
    if names is None:
        return None
    known = ", ".join(Mechanic)
    for here, name in names:
        if name not in Mechanic._value2member_map_:
            here.problem(UNKNOWN_MECHANIC, value=_shown(name), mechanics=known)
    given = {name for _, name in names}
    return tuple(mechanic for mechanic in Mechanic if mechanic in given)


def validate_audience(
    data: Any, *, position: int, known_segments: Collection[str] | None, stored: bool = False
) -> Checked[Audience]:
    """Position 1 (the main step) takes segments; later steps `who: all` or `who: terms`.

    `known_segments` None skips the check that segments exist.
    """
    return _checked(
        lambda report: _audience(data, report, position=position, known_segments=known_segments),
        stored=stored,
    )


def validate_action(
    data: Any,
    *,
    known_attributes: Collection[str] | None,
    sms_frame: SmsFrame = BARE_SMS,
    stored: bool = False,
) -> Checked[Action]:
    """`known_attributes` None skips the warnings about unknown template names.

    `sms_frame`: SMS_OPT_OUT_TEXT and PUBLIC_BASE_URL, the opt-out line and short links
    counted in an SMS's parts; a stored block is read back without them, held to the
    rules it was saved under.
    """
    return _checked(
        lambda report: _action(
            data, report, known_attributes=known_attributes, sms_frame=sms_frame
        ),
        stored=stored,
    )


def validate_schedule(
    data: Any, *, audience: Audience | None, stored: bool = False
) -> Checked[Schedule]:
    """`audience` is the step's own (None when not saved yet): `send: now` depends on it."""
    return _checked(lambda report: _schedule(data, report, audience=audience), stored=stored)


def validate_conversion(data: Any, *, stored: bool = False) -> Checked[Conversion]:
    return _checked(lambda report: _conversion(data, report), stored=stored)


def validate_block(
    kind: BlockKind,
    data: Any,
    *,
    position: int,
    known_segments: Collection[str] | None = None,
    known_attributes: Collection[str] | None = None,
    audience: Audience | None = None,
    sms_frame: SmsFrame = BARE_SMS,
    stored: bool = False,
) -> Checked[Block]:
    """One block of the step at `position`, with paths relative to the block.

    `stored`: a block read back from the database, held to the rules it was saved
    under rather than to limits added since (see `_Report.stored`).
    """
    checked: Checked[Any]
    match BlockKind(kind):
        case BlockKind.AUDIENCE:
            checked = validate_audience(
                data, position=position, known_segments=known_segments, stored=stored
            )
        case BlockKind.ACTION:
            checked = validate_action(
                data, known_attributes=known_attributes, sms_frame=sms_frame, stored=stored
            )
        case BlockKind.SCHEDULE:
            checked = validate_schedule(data, audience=audience, stored=stored)
        case BlockKind.CONVERSION:
            checked = validate_conversion(data, stored=stored)
    return checked


def validate_name(name: Any) -> Checked[str]:
    """A chain's or a step's name."""
    return _checked(
        lambda report: _text(
            {"name": name}, "name", report, required=True, one_line=True, limit=NAME_LIMIT
        )
    )


# --- Documents ----------------------------------------------------------------


def _step(
    data: Any,
    report: _Report,
    *,
    position: int,
    known_segments: Collection[str],
    known_attributes: Collection[str],
    sms_frame: SmsFrame,
) -> StepSpec | None:
    fields = _mapping(data, report, _STEP_KEYS)
    if fields is None:
        return None
    name = _text(fields, "name", report, required=True, one_line=True, limit=NAME_LIMIT)
    for kind in (BlockKind.AUDIENCE, BlockKind.ACTION, BlockKind.SCHEDULE):
        if kind not in fields:
            report.at(kind).problem(MISSING)
    audience = action = schedule = None
    if BlockKind.AUDIENCE in fields:
        audience = _audience(
            fields[BlockKind.AUDIENCE],
            report.at(BlockKind.AUDIENCE),
            position=position,
            known_segments=known_segments,
        )
    if BlockKind.ACTION in fields:
        action = _action(
            fields[BlockKind.ACTION],
            report.at(BlockKind.ACTION),
            known_attributes=known_attributes,
            sms_frame=sms_frame,
        )
    if BlockKind.SCHEDULE in fields:
        schedule_data = fields[BlockKind.SCHEDULE]
        schedule = _schedule(schedule_data, report.at(BlockKind.SCHEDULE), audience=audience)
        if (
            schedule is not None
            and "wait_days" in schedule_data
            and audience is not None
            and not isinstance(audience, TermsAudience)
        ):
            report.at(BlockKind.SCHEDULE).at("wait_days").warning(WAIT_DAYS_UNUSED)
    conversion = _conversion(fields.get(BlockKind.CONVERSION, {}), report.at(BlockKind.CONVERSION))
    stopped = fields.get("stopped", False)
    if not isinstance(stopped, bool):
        report.at("stopped").problem(NOT_TRUE_OR_FALSE)
    if name is None or audience is None or action is None or schedule is None:
        return None
    if conversion is None:
        return None
    return StepSpec(name, audience, action, schedule, conversion, stopped is True)


def _chain(
    doc: Any,
    report: _Report,
    *,
    known_segments: Collection[str],
    known_attributes: Collection[str],
    sms_frame: SmsFrame,
) -> ChainSpec | None:
    fields = _mapping(doc, report, _CHAIN_KEYS, not_mapping=NOT_A_CHAIN_DOCUMENT)
    if fields is None:
        return None
    if "format" not in fields:
        report.at("format").problem(MISSING)
    elif fields["format"] != FORMAT:
        report.at("format").problem(WRONG_FORMAT, value=_shown(fields["format"]), format=FORMAT)
    name = _text(fields, "name", report, required=True, one_line=True, limit=NAME_LIMIT)
    enrollment = _choice(fields, "enrollment", Enrollment, report, default=Enrollment.ONCE)
    campaign = _text(fields, "campaign", report, required=False)
    if campaign is not None and not (
        _CAMPAIGN.fullmatch(campaign) and len(campaign) <= CAMPAIGN_LIMIT
    ):
        report.at("campaign").problem(BAD_CAMPAIGN, value=_shown(campaign))
    utm = fields.get("utm", True)
    if not isinstance(utm, bool):
        report.at("utm").problem(NOT_TRUE_OR_FALSE)
    holdout_percent = _holdout_percent(fields, report)
    steps: list[StepSpec | None] = []
    if "steps" not in fields:
        report.at("steps").problem(MISSING)
    elif not isinstance(fields["steps"], list):
        report.at("steps").problem(NOT_A_LIST)
    elif not fields["steps"]:
        report.at("steps").problem(NO_STEPS)
    else:
        steps = [
            _step(
                data,
                report.at("steps").at(index),
                position=index + 1,
                known_segments=known_segments,
                known_attributes=known_attributes,
                sms_frame=sms_frame,
            )
            for index, data in enumerate(fields["steps"])
        ]
    for index in range(1, len(steps)):
        previous, step = steps[index - 1], steps[index]
        if previous is not None and step is not None:
            refusal = terms_after_sms_refusal(step.audience, previous.action, index + 1)
            if refusal:
                report.at("steps").at(index).at(BlockKind.AUDIENCE).at("terms").problem(refusal)
    if report.problems or name is None or enrollment is None or holdout_percent is None:
        return None
    return ChainSpec(
        name=name,
        enrollment=enrollment,
        campaign=campaign or default_campaign(name),
        utm=utm,
        steps=tuple(step for step in steps if step is not None),
        holdout_percent=holdout_percent,
    )


def holdout_percent_problem(value: Any) -> Phrase | None:
    """Why `value` is not a holdout percent (a whole number 0–50), or None."""
    # YAML's true is an int to Python; it is not a percent.
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_HOLDOUT:
        return None
    return Phrase(NOT_A_HOLDOUT_PERCENT, value=_shown(value), max=MAX_HOLDOUT)


def _holdout_percent(fields: dict[Any, Any], report: _Report) -> int | None:
    value = fields.get("holdout_percent", 0)
    problem = holdout_percent_problem(value)
    if problem is not None:
        report.at("holdout_percent").problem(problem)
        return None
    return int(value)


def validate_chain(
    doc: Any,
    *,
    known_segments: Collection[str],
    known_attributes: Collection[str],
    sms_frame: SmsFrame = BARE_SMS,
) -> Checked[ChainSpec]:
    """A whole chain document (as loaded from YAML), with paths from its root.

    `sms_frame`: SMS_OPT_OUT_TEXT and PUBLIC_BASE_URL, the opt-out line and short links
    counted in each SMS's parts.
    """
    return _checked(
        lambda report: _chain(
            doc,
            report,
            known_segments=known_segments,
            known_attributes=known_attributes,
            sms_frame=sms_frame,
        )
    )


# --- YAML -------------------------------------------------------------------------


# libyaml's parser where it is installed: a 10,000-step file loads in seconds.
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Longer whole numbers are kept as LongNumber: no value in a chain file needs more.
_NUMBER_CHARACTERS = 40


class _Loader(_SafeLoader):  # type: ignore[valid-type,misc]
    """safe_load, except that a key given twice is an error, not silently the last one,
    and a value Python cannot hold (a 5,000-digit number, the date 0000-01-01) is kept
    for the validator to name instead of failing the whole load."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if isinstance(key, str | int | float | bool):
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, KEY_GIVEN_TWICE.format(key=_shown(key)), key_node.start_mark
                    )
                seen.add(key)
        return super().construct_mapping(node, deep)  # type: ignore[no-any-return]

    def construct_long_int(self, node: yaml.ScalarNode) -> Any:
        if len(node.value) > _NUMBER_CHARACTERS:
            return LongNumber(node.value)
        return self.construct_yaml_int(node)

    def construct_checked_timestamp(self, node: yaml.ScalarNode) -> Any:
        try:
            return self.construct_yaml_timestamp(node)
        except (ValueError, OverflowError):
            return str(node.value)  # as written; the validator says it is no date


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_long_int)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_checked_timestamp)

_OPENING = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_CLOSING = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


def _check_structure(text: str) -> None:
    """Refuse nesting deeper than DEPTH_LIMIT and aliases that expand the document
    beyond VALUES_LIMIT values (a "billion laughs"), from the parser's events alone:
    nothing is built, nothing recursed into."""
    # Per open collection: [values in it so far, its anchor].
    open_nodes: list[list[Any]] = []
    sizes: dict[str, int] = {}

    def add(count: int, event: yaml.Event) -> None:
        if open_nodes:
            open_nodes[-1][0] += count
            if open_nodes[-1][0] > VALUES_LIMIT:
                line = event.start_mark.line + 1
                raise InvalidChainFile(
                    [Problem.of("", ALIASES_EXPAND, line=line, limit=Number(VALUES_LIMIT))]
                )

    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, _OPENING):
            if len(open_nodes) >= DEPTH_LIMIT:
                line = event.start_mark.line + 1
                raise InvalidChainFile(
                    [Problem.of("", NESTED_TOO_DEEPLY, line=line, limit=DEPTH_LIMIT)]
                )
            open_nodes.append([1, event.anchor])
        elif isinstance(event, _CLOSING):
            count, anchor = open_nodes.pop()
            if anchor is not None:
                sizes[anchor] = count
            add(count, event)
        elif isinstance(event, yaml.ScalarEvent):
            if event.anchor is not None:
                sizes[event.anchor] = 1
            add(1, event)
        elif isinstance(event, yaml.AliasEvent):
            if any(anchor == event.anchor for _, anchor in open_nodes):
                line = event.start_mark.line + 1
                raise InvalidChainFile(
                    [Problem.of("", ALIAS_IN_ITSELF, line=line, anchor=event.anchor[:SHOWN_LIMIT])]
                )
            add(sizes.get(event.anchor, 1), event)


def load_yaml(text: str) -> Any:
    if len(text) > FILE_LIMIT:
        raise InvalidChainFile(
            [Problem.of("", FILE_TOO_LONG, length=Number(len(text)), limit=Number(FILE_LIMIT))]
        )
    if (surrogate := _SURROGATE.search(text)) is not None:
        code = f"\\u{ord(surrogate.group()):04x}"
        error = Phrase(NOT_UNICODE_TEXT, position=surrogate.start() + 1, code=code)
        raise InvalidChainFile([Problem.of("", NOT_YAML, error=error)])
    try:
        _check_structure(text)
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        error = f"{where}{exc.problem}"
    except yaml.YAMLError as exc:
        error = str(exc)
    raise InvalidChainFile([Problem.of("", NOT_YAML, error=error[:200])])


class _Dumper(yaml.SafeDumper):
    # Lists indented under their key, as people write them.
    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _represent_text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # Multi-line texts as literal blocks, readable and diffable line by line.
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _represent_list(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.SequenceNode:
    # Lists of names stay on one line: segments: [vip, new].
    flat = all(isinstance(item, str | int | float | bool) for item in value)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flat)


_Dumper.add_representer(str, _represent_text)
_Dumper.add_representer(list, _represent_list)


def dump_yaml(doc: dict[str, Any]) -> str:
    return yaml.dump(
        doc,
        Dumper=_Dumper,
        allow_unicode=True,
        sort_keys=False,
        default_flow_style=False,
        width=10_000,
    )
