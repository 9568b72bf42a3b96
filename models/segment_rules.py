"""What a segment says, checked, and the SQL condition that says it (SPEC §2, "Segment").

A segment is its tags (any / all of them; none: no tag condition) AND every
attribute condition AND every behaviour condition. Definitions are plain data: the
same JSON document comes from the bot's draft, the CLI's options and the API's body,
and `parse_definition` checks it once for all three, in the manager's words.

Attribute values are JSON in `customers.attributes`. A value *is a number* when it is
a JSON number (not true or false) or text that reads as one (`NUMBER_TEXT`: `1500`,
` 12.5 `, `-3`, `1e3`; CSV columns arrive as text). `greater` and `less`, and `equals`
with a number, compare numbers; `equals` with anything else compares the text of a
string (or `true` / `false`), `contains` looks for text in a string, case as typed.
Each condition reads the attribute once per customer: a JSON function call is most
of what a count over a million customers costs (docs/benchmarks.md, "Segments").

Behaviour is measured back from `now`, the caller's clock, never the wall clock:
ordered in the last N days, never ordered, opened or clicked an email in the last N
days (an `opened` or `clicked` event of a delivery whose channel is email).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import Float, and_, case, cast, exists, func, literal, select, true
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import Numeric

from i18n import N_, Phrase
from models.errors import ChainmailError
from models.tables import (
    Channel,
    Customer,
    CustomerTag,
    Delivery,
    Event,
    EventType,
    Order,
    UtcDateTime,
)

MATCHES = ("any", "all")
TAG_LIMIT = 100
KEY_LIMIT = 100
VALUE_LIMIT = 200
CONDITIONS_LIMIT = 20
MIN_DAYS = 1
MAX_DAYS = 3650
# The largest number a condition compares with: well inside a double's exact range.
NUMBER_LIMIT = Decimal("1e15")

# Text that reads as a number: SQLite's own grammar for numeric text (which its
# comparisons apply), with an exponent of at most four digits so that PostgreSQL's
# numeric reads every match.
_SPACE = " \t\n\x0b\x0c\r"
NUMBER_TEXT = re.compile(
    f"[{_SPACE}]*[+-]?([0-9]+(\\.[0-9]*)?|\\.[0-9]+)([eE][+-]?[0-9]{{1,4}})?[{_SPACE}]*"
)
_PG_NUMBER_TEXT = f"^{NUMBER_TEXT.pattern}$"


class Operator(StrEnum):
    EQUALS = "equals"
    CONTAINS = "contains"
    GREATER = "greater"
    LESS = "less"


class Behaviour(StrEnum):
    ORDERED = "ordered"
    NEVER_ORDERED = "never_ordered"
    OPENED_OR_CLICKED = "opened_or_clicked"


# Behaviours measured over the last N days.
WITH_DAYS = frozenset({Behaviour.ORDERED, Behaviour.OPENED_OR_CLICKED})


@dataclass(frozen=True)
class AttributeCondition:
    key: str
    operator: Operator
    # As given; for greater and less (and a numeric equals) a number in plain digits.
    value: str

    def to_json(self) -> dict[str, str]:
        return {"key": self.key, "operator": self.operator.value, "value": self.value}


@dataclass(frozen=True)
class BehaviourCondition:
    behaviour: Behaviour
    days: int | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"behaviour": self.behaviour.value}
        if self.days is not None:
            data["days"] = self.days
        return data


class SegmentRule(Protocol):
    """What membership depends on: a SegmentDefinition or a SegmentInfo."""

    @property
    def tags(self) -> Sequence[str]: ...

    @property
    def match(self) -> str: ...

    @property
    def attributes(self) -> Sequence[AttributeCondition]: ...

    @property
    def behaviour(self) -> Sequence[BehaviourCondition]: ...


@dataclass(frozen=True)
class SegmentDefinition:
    tags: tuple[str, ...] = ()
    match: str = "any"
    attributes: tuple[AttributeCondition, ...] = ()
    behaviour: tuple[BehaviourCondition, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return definition_json(self)


def definition_json(rule: SegmentRule) -> dict[str, Any]:
    """The document `parse_definition` reads back to the same definition."""
    return {
        "tags": list(rule.tags),
        "match": rule.match,
        "attributes": [condition.to_json() for condition in rule.attributes],
        "behaviour": [condition.to_json() for condition in rule.behaviour],
    }


class InvalidSegment(ChainmailError):
    """Every problem of a definition, each a sentence a manager can act on."""

    def __init__(self, problems: Sequence[Phrase]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(str(problem) for problem in self.problems))

    def translated(self) -> str:
        return "; ".join(self.translated_problems())

    def translated_problems(self) -> list[str]:
        return [problem.translated() for problem in self.problems]


# --- Checking ---------------------------------------------------------------------------


def _storable(text: str) -> bool:
    """Text both databases keep and compare: no NUL, no lone surrogate."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def number_of(text: str) -> Decimal | None:
    """A number as a manager types it (`1500`, `1 500`, `12,5`), or None."""
    cleaned = text.strip().replace("\u00a0", "").replace(" ", "").replace(",", ".")
    if not NUMBER_TEXT.fullmatch(cleaned):
        return None
    try:
        number = Decimal(cleaned)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _plain(number: Decimal) -> str:
    text = format(number.normalize(), "f")
    return "0" if text in ("-0", "") else text


def parse_days(value: object) -> int:
    """Whole days from 1 to 3650, or an InvalidSegment saying so."""
    days: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        days = value
    elif isinstance(value, str) and value.strip().isdigit():
        days = int(value.strip())
    if days is None or not MIN_DAYS <= days <= MAX_DAYS:
        raise InvalidSegment(
            [
                Phrase(
                    N_("days must be a whole number from {first} to {last}, not {value}"),
                    first=MIN_DAYS,
                    last=MAX_DAYS,
                    value=repr(value),
                )
            ]
        )
    return days


def parse_attribute(key: object, operator: object, value: object) -> AttributeCondition:
    problems: list[Phrase] = []
    if not isinstance(key, str) or not key.strip():
        problems.append(Phrase(N_("an attribute condition needs the attribute's name")))
        key = ""
    key = key.strip()
    if not _storable(key):
        problems.append(Phrase(N_("an attribute name has a character that cannot be stored")))
        key = ""
    if len(key) > KEY_LIMIT:
        problems.append(
            Phrase(
                N_("attribute name {key}… is longer than {limit} characters"),
                key=repr(key[:20]),
                limit=KEY_LIMIT,
            )
        )
    if '"' in key:
        problems.append(
            Phrase(
                N_("attribute name {key} has a double quote, which segments cannot read"),
                key=repr(key),
            )
        )
    names = ", ".join(op.value for op in Operator)
    if not isinstance(operator, str) or operator not in set(Operator):
        problems.append(
            Phrase(
                N_("{operator} is not a way to compare an attribute: use one of {names}"),
                operator=repr(operator),
                names=names,
            )
        )
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        problems.append(
            Phrase(N_("the value to compare {key} with must be text or a number"), key=repr(key))
        )
        value = ""
    text = value if isinstance(value, str) else str(value)
    text = text.strip()
    if not _storable(text):
        problems.append(
            Phrase(
                N_("the value to compare {key} with has a character that cannot be stored"),
                key=repr(key),
            )
        )
        text = "?"
    if not text:
        problems.append(Phrase(N_("the value to compare {key} with is empty"), key=repr(key)))
    if len(text) > VALUE_LIMIT:
        problems.append(
            Phrase(
                N_("the value to compare {key} with is longer than {limit} characters"),
                key=repr(key),
                limit=VALUE_LIMIT,
            )
        )
    if problems:
        raise InvalidSegment(problems)
    op = Operator(operator)
    number = number_of(text)
    if op in (Operator.GREATER, Operator.LESS) and number is None:
        compares = (
            N_("{value} is not a number: greater than compares numbers")
            if op is Operator.GREATER
            else N_("{value} is not a number: less than compares numbers")
        )
        raise InvalidSegment([Phrase(compares, value=repr(text))])
    if number is not None and op is not Operator.CONTAINS:
        if abs(number) > NUMBER_LIMIT:
            raise InvalidSegment(
                [Phrase(N_("{value} is too large a number for a segment"), value=repr(text))]
            )
        text = _plain(number)
    return AttributeCondition(key, op, text)


def parse_behaviour(behaviour: object, days: object = None) -> BehaviourCondition:
    names = ", ".join(kind.value for kind in Behaviour)
    if not isinstance(behaviour, str) or behaviour not in set(Behaviour):
        raise InvalidSegment(
            [
                Phrase(
                    N_("{behaviour} is not a behaviour: use one of {names}"),
                    behaviour=repr(behaviour),
                    names=names,
                )
            ]
        )
    kind = Behaviour(behaviour)
    if kind in WITH_DAYS:
        return BehaviourCondition(kind, parse_days(days))
    if days is not None:
        raise InvalidSegment([Phrase(N_("{behaviour} takes no days"), behaviour=kind.value)])
    return BehaviourCondition(kind)


def _clean_tags(tags: object, problems: list[Phrase]) -> tuple[str, ...]:
    if isinstance(tags, str):
        tags = tags.split(",")
    if not isinstance(tags, list | tuple):
        problems.append(Phrase(N_("tags must be a list of text")))
        return ()
    cleaned: list[str] = []
    for tag in tags:
        if not isinstance(tag, str):
            problems.append(Phrase(N_("tags must be a list of text")))
            return ()
        tag = tag.strip()
        if not _storable(tag):
            problems.append(Phrase(N_("a tag has a character that cannot be stored")))
        elif len(tag) > TAG_LIMIT:
            problems.append(
                Phrase(
                    N_("tag {tag}… is longer than {limit} characters"),
                    tag=repr(tag[:20]),
                    limit=TAG_LIMIT,
                )
            )
        elif tag and tag not in cleaned:
            cleaned.append(tag)
    return tuple(cleaned)


def _each(items: object, what: str, problems: list[Phrase]) -> list[Mapping[str, Any]]:
    if items is None:
        return []
    if not isinstance(items, list | tuple) or not all(isinstance(i, Mapping) for i in items):
        problems.append(Phrase(N_("{what} must be a list of conditions"), what=what))
        return []
    if len(items) > CONDITIONS_LIMIT:
        problems.append(
            Phrase(
                N_("a segment takes at most {limit} {what} conditions"),
                limit=CONDITIONS_LIMIT,
                what=what,
            )
        )
        return []
    return list(items)


def parse_definition(data: Mapping[str, Any]) -> SegmentDefinition:
    """A definition from its JSON document, or an InvalidSegment listing every problem.

    `{"tags": [..], "match": "any"|"all", "attributes": [{"key", "operator", "value"}],
    "behaviour": [{"behaviour", "days"?}]}`, every part optional. Repeated conditions
    count once."""
    problems: list[Phrase] = []
    unknown = set(data) - {"tags", "match", "attributes", "behaviour"}
    if unknown:
        problems.append(
            Phrase(N_("a segment has no {keys}"), keys=", ".join(sorted(map(str, unknown))))
        )
    tags = _clean_tags(data.get("tags") or [], problems)
    match = data.get("match") or "any"
    if not isinstance(match, str) or match not in MATCHES:
        problems.append(Phrase(N_("match must be any or all, not {match}"), match=repr(match)))
    attributes: list[AttributeCondition] = []
    for item in _each(data.get("attributes"), "attribute", problems):
        try:
            condition = parse_attribute(item.get("key"), item.get("operator"), item.get("value"))
        except InvalidSegment as refused:
            problems += refused.problems
            continue
        if condition not in attributes:
            attributes.append(condition)
    behaviour: list[BehaviourCondition] = []
    for item in _each(data.get("behaviour"), "behaviour", problems):
        try:
            found = parse_behaviour(item.get("behaviour"), item.get("days"))
        except InvalidSegment as refused:
            problems += refused.problems
            continue
        if found not in behaviour:
            behaviour.append(found)
    if problems:
        raise InvalidSegment(problems)
    return SegmentDefinition(tags, match, tuple(attributes), tuple(behaviour))


def stored_definition(
    tags: Iterable[str], match: str, attributes: object, behaviour: object
) -> SegmentDefinition:
    """A Segment row's columns as a definition (they were checked when saved)."""
    return parse_definition(
        {"tags": list(tags), "match": match, "attributes": attributes, "behaviour": behaviour}
    )


# --- SQL --------------------------------------------------------------------------------

_customers = Customer.__table__
_attributes = _customers.c.attributes
_INFINITY = float("inf")


def _tags_condition(rule: SegmentRule) -> ColumnElement[bool]:
    tags = list(rule.tags)
    if not tags:
        return true()
    if rule.match == "any":
        return exists().where(CustomerTag.customer_id == _customers.c.id, CustomerTag.tag.in_(tags))
    # (customer_id, tag) is the key, so counting rows counts distinct tags.
    having_all = (
        select(CustomerTag.customer_id)
        .where(CustomerTag.tag.in_(tags))
        .group_by(CustomerTag.customer_id)
        .having(func.count() == len(tags))
    )
    return _customers.c.id.in_(having_all)


def _numeric(value: float) -> ColumnElement[Any]:
    # NUMERIC affinity makes SQLite compare numeric text as the number it reads as.
    return cast(literal(value, Float()), Numeric())


def _sqlite_attribute(condition: AttributeCondition) -> ColumnElement[bool]:
    path = literal('$."' + condition.key + '"')
    value = func.json_extract(_attributes, path)
    kind = func.json_type(_attributes, path)
    number = number_of(condition.value) if condition.operator is not Operator.CONTAINS else None
    if condition.operator is Operator.CONTAINS:
        # The type is read only for the customers whose value has the text in it.
        return and_(func.instr(value, condition.value) > 0, kind == "text")
    if number is None:
        matched = and_(value == condition.value, kind == "text")
        if condition.value in ("true", "false"):
            return matched | (kind == condition.value)
        return matched
    bound = float(number)
    if condition.operator is Operator.EQUALS:
        low, high = bound, bound
    elif condition.operator is Operator.GREATER:
        low, high = math.nextafter(bound, _INFINITY), _INFINITY
    else:
        low, high = -_INFINITY, math.nextafter(bound, -_INFINITY)
    # BETWEEN reads the value once; JSON's true and false come out as 1 and 0.
    in_range = value.between(_numeric(low), _numeric(high))
    if low <= 1 and high >= 0:
        return and_(in_range, kind.not_in(["true", "false"]))
    return in_range


def _postgresql_attribute(condition: AttributeCondition) -> ColumnElement[bool]:
    key = literal(condition.key)
    text = _attributes.op("->>")(key)
    kind = func.json_typeof(_attributes.op("->")(key))
    number = number_of(condition.value) if condition.operator is not Operator.CONTAINS else None
    if condition.operator is Operator.CONTAINS:
        return and_(func.strpos(text, condition.value) > 0, kind == "string")
    if number is None:
        return and_(text == condition.value, kind.in_(["string", "boolean"]))
    # JSON numbers come out of ->> as their own digits, true and false as words.
    as_number = case((text.op("~")(literal(_PG_NUMBER_TEXT)), cast(text, Numeric())))
    bound = literal(number, Numeric())
    match condition.operator:
        case Operator.EQUALS:
            return as_number == bound
        case Operator.GREATER:
            return as_number > bound
        case _:
            return as_number < bound


def _attribute_condition(condition: AttributeCondition, dialect: str) -> ColumnElement[bool]:
    if dialect == "sqlite":
        return _sqlite_attribute(condition)
    return _postgresql_attribute(condition)


def _since(now: datetime, days: int) -> ColumnElement[datetime]:
    return literal(now - timedelta(days=days), UtcDateTime())


def _behaviour_condition(condition: BehaviourCondition, now: datetime) -> ColumnElement[bool]:
    orders = Order.__table__
    if condition.behaviour is Behaviour.NEVER_ORDERED:
        return ~exists().where(orders.c.customer_id == _customers.c.id)
    assert condition.days is not None
    since = _since(now, condition.days)
    if condition.behaviour is Behaviour.ORDERED:
        return exists().where(orders.c.customer_id == _customers.c.id, orders.c.created_at >= since)
    events = Event.__table__
    deliveries = Delivery.__table__
    return exists().where(
        events.c.customer_id == _customers.c.id,
        events.c.type.in_([EventType.OPENED.value, EventType.CLICKED.value]),
        events.c.occurred_at >= since,
        deliveries.c.id == events.c.delivery_id,
        deliveries.c.channel == Channel.EMAIL.value,
    )


def member_condition(rule: SegmentRule, *, now: datetime, dialect: str) -> ColumnElement[bool]:
    """Whether the `customers` row is in the segment: a condition on `customers` alone."""
    conditions = [_tags_condition(rule)] if rule.tags else []
    conditions += [_attribute_condition(item, dialect) for item in rule.attributes]
    conditions += [_behaviour_condition(item, now) for item in rule.behaviour]
    return and_(*conditions) if conditions else true()


# --- In words (the CLI and the API; the bot has its own in handlers/texts.py) ------------

_OPERATOR_WORDS = {
    Operator.EQUALS: "equals",
    Operator.CONTAINS: "contains",
    Operator.GREATER: "greater than",
    Operator.LESS: "less than",
}


def condition_words(condition: AttributeCondition | BehaviourCondition) -> str:
    if isinstance(condition, AttributeCondition):
        return f"{condition.key} {_OPERATOR_WORDS[condition.operator]} {condition.value}"
    match condition.behaviour:
        case Behaviour.ORDERED:
            return f"ordered in the last {condition.days} days"
        case Behaviour.NEVER_ORDERED:
            return "never ordered"
        case _:
            return f"opened or clicked an email in the last {condition.days} days"


def rule_words(rule: SegmentRule) -> str:
    """`customers with all of: vip, gold; spent greater than 1000`, or `all customers`."""
    parts = [f"customers with {rule.match} of: {', '.join(rule.tags)}"] if rule.tags else []
    conditions = [condition_words(c) for c in (*rule.attributes, *rule.behaviour)]
    if conditions and not parts:
        parts.append("customers")
    if not parts:
        return "all customers"
    return "; ".join(parts + conditions)
