"""Segments by attributes and behaviour: the checks in the manager's words, and the SQL
against a plain Python reading of the same rule, on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select

from models.db import Database
from models.segment_rules import (
    NUMBER_TEXT,
    AttributeCondition,
    Behaviour,
    BehaviourCondition,
    InvalidSegment,
    Operator,
    SegmentDefinition,
    member_condition,
    number_of,
    parse_definition,
)
from models.segments import (
    add_segment,
    count_members,
    create_segment,
    get_segment,
    update_segment,
)
from models.tables import AuditEntry, Chain, Customer, CustomerTag, Delivery, Event, Order, Step

# Years ahead of the wall clock: no rule may read it.
NOW = datetime(2034, 5, 1, 12, 0, tzinfo=UTC)
_SPACE = " \t\n\x0b\x0c\r"
_serial = itertools.count()


# --- The rule in Python -----------------------------------------------------------------


def number_in(value: object) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return Decimal(str(value))
    if isinstance(value, str) and NUMBER_TEXT.fullmatch(value):
        return Decimal(value.strip(_SPACE))
    return None


def attribute_holds(attributes: dict[str, Any], condition: AttributeCondition) -> bool:
    if condition.key not in attributes:
        return False
    value = attributes[condition.key]
    if condition.operator is Operator.CONTAINS:
        return isinstance(value, str) and condition.value in value
    wanted = number_of(condition.value)
    if wanted is None:
        if isinstance(value, bool):
            return ("true" if value else "false") == condition.value
        return isinstance(value, str) and value == condition.value
    found = number_in(value)
    if found is None:
        return False
    if condition.operator is Operator.EQUALS:
        return found == wanted
    return found > wanted if condition.operator is Operator.GREATER else found < wanted


@dataclass
class Person:
    attributes: dict[str, Any]
    tags: list[str] = field(default_factory=list)
    # Days before NOW of each order, and of each opened or clicked event by channel.
    orders: list[int] = field(default_factory=list)
    engaged: list[tuple[str, int]] = field(default_factory=list)


def behaviour_holds(person: Person, condition: BehaviourCondition) -> bool:
    if condition.behaviour is Behaviour.NEVER_ORDERED:
        return not person.orders
    assert condition.days is not None
    if condition.behaviour is Behaviour.ORDERED:
        return any(days <= condition.days for days in person.orders)
    return any(channel == "email" and days <= condition.days for channel, days in person.engaged)


def holds(person: Person, rule: SegmentDefinition) -> bool:
    if rule.tags:
        have = set(person.tags) & set(rule.tags)
        if not (have if rule.match == "any" else have == set(rule.tags)):
            return False
    return all(attribute_holds(person.attributes, c) for c in rule.attributes) and all(
        behaviour_holds(person, c) for c in rule.behaviour
    )


# --- Storing people -------------------------------------------------------------------


async def store(db: Database, people: list[Person]) -> list[int]:
    """The customers, with orders and email/SMS events days before NOW; their ids."""
    batch = next(_serial)
    ids: list[int] = []
    async with db.writer() as session:
        chain_id = await session.scalar(
            insert(Chain).values(name="T", campaign_tag="t").returning(Chain.id)
        )
        step_id = await session.scalar(
            insert(Step).values(chain_id=chain_id, position=1, name="Main").returning(Step.id)
        )
        for n, person in enumerate(people):
            customer = Customer(
                external_id=f"b{batch}.{n}",
                timezone="Europe/Moscow",
                timezone_source="default",
                attributes=person.attributes,
            )
            session.add(customer)
            await session.flush()
            ids.append(customer.id)
            session.add_all(CustomerTag(customer_id=customer.id, tag=tag) for tag in person.tags)
            for number, days in enumerate(person.orders):
                session.add(
                    Order(
                        external_id=f"o{batch}.{n}.{number}",
                        customer_id=customer.id,
                        amount=Decimal(100),
                        created_at=NOW - timedelta(days=days, hours=-1),
                    )
                )
            for channel, days in person.engaged:
                at = NOW - timedelta(days=days, hours=-1)
                delivery = await session.scalar(
                    insert(Delivery)
                    .values(
                        chain_id=chain_id,
                        step_id=step_id,
                        customer_id=customer.id,
                        channel=channel,
                        status="sent",
                        eligible_at=at,
                        due_at=at,
                    )
                    .returning(Delivery.id)
                )
                session.add(
                    Event(
                        delivery_id=delivery, customer_id=customer.id, type="opened", occurred_at=at
                    )
                )
                # One delivery per (step, customer): the next event gets a step of its own.
                step_id = await session.scalar(
                    insert(Step)
                    .values(chain_id=chain_id, position=next(_serial) + 2, name="More")
                    .returning(Step.id)
                )
    return ids


async def found(db: Database, ids: list[int], rule: SegmentDefinition) -> set[int]:
    async with db.session() as session:
        condition = member_condition(rule, now=NOW, dialect=session.bind.dialect.name)
        query = select(Customer.id).where(Customer.id.in_(ids), condition)
        return set(await session.scalars(query))


def rule(**document: Any) -> SegmentDefinition:
    return parse_definition(document)


def attribute(key: str, operator: str, value: object) -> dict[str, Any]:
    return {"key": key, "operator": operator, "value": value}


# --- Checks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (
            {"attributes": [attribute("city", "between", "a")]},
            "'between' is not a way to compare an attribute: use one of equals, contains,"
            " greater, less",
        ),
        (
            {"attributes": [attribute("spent", "greater", "много")]},
            "'много' is not a number: greater than compares numbers",
        ),
        (
            {"attributes": [attribute("spent", "less", "1e")]},
            "'1e' is not a number: less than compares numbers",
        ),
        (
            {"behaviour": [{"behaviour": "ordered", "days": 0}]},
            "days must be a whole number from 1 to 3650, not 0",
        ),
        (
            {"behaviour": [{"behaviour": "opened_or_clicked", "days": 3651}]},
            "days must be a whole number from 1 to 3650, not 3651",
        ),
        (
            {"behaviour": [{"behaviour": "ordered"}]},
            "days must be a whole number from 1 to 3650, not None",
        ),
        (
            {"behaviour": [{"behaviour": "bought", "days": 3}]},
            "'bought' is not a behaviour: use one of ordered, never_ordered, opened_or_clicked",
        ),
        ({"behaviour": [{"behaviour": "never_ordered", "days": 3}]}, "never_ordered takes no days"),
        ({"attributes": [attribute("", "equals", "x")]}, "needs the attribute's name"),
        ({"attributes": [attribute("city", "equals", " ")]}, "'city' with is empty"),
        ({"match": "most"}, "match must be any or all, not 'most'"),
        ({"colour": "red"}, "a segment has no colour"),
    ],
)
def test_a_bad_definition_is_refused_in_the_managers_words(
    document: dict[str, Any], problem: str
) -> None:
    with pytest.raises(InvalidSegment) as refused:
        parse_definition(document)
    assert any(problem in found for found in refused.value.problems), refused.value.problems


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(InvalidSegment) as refused:
        parse_definition(
            {
                "attributes": [attribute("a", "greater", "x"), attribute("b", "like", "y")],
                "behaviour": [{"behaviour": "ordered", "days": -1}],
            }
        )
    assert len(refused.value.problems) == 3


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("1 500", "1500"),
        ("12,5", "12.5"),
        ("+7", "7"),
        ("0010", "10"),
        ("-0", "0"),
        ("2e3", "2000"),
    ],
)
def test_numbers_are_read_as_a_manager_types_them(typed: str, stored: str) -> None:
    definition = rule(attributes=[attribute("spent", "greater", typed)])
    assert definition.attributes[0].value == stored


def test_contains_keeps_the_text_as_typed_and_repeats_count_once() -> None:
    twice = [attribute("phone", "contains", "0010")] * 2
    assert rule(attributes=twice).attributes == (
        AttributeCondition("phone", Operator.CONTAINS, "0010"),
    )


def test_a_definition_reads_back_from_its_own_document() -> None:
    definition = rule(
        tags=["vip", "vip ", "new"],
        match="all",
        attributes=[attribute("city", "equals", "Москва")],
        behaviour=[{"behaviour": "ordered", "days": "30"}, {"behaviour": "never_ordered"}],
    )
    assert definition.tags == ("vip", "new")
    assert parse_definition(definition.to_json()) == definition


# --- The SQL, on both databases ----------------------------------------------------------

PEOPLE = [
    Person({"city": "Москва", "spent": 1500, "visits": "12", "vip": True}, ["vip"], [3]),
    Person({"city": "Омск", "spent": "700.50", "visits": " 3 ", "vip": False}, [], [40, 400]),
    Person({"city": "Москва-Сити", "spent": "много", "visits": 3.0}, ["vip", "new"]),
    Person({"city": ["Москва"], "spent": None}, ["new"], [], [("email", 2), ("sms", 1)]),
    Person({}, [], [], [("email", 20)]),
]


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({}, {0, 1, 2, 3, 4}),
        ({"attributes": [attribute("city", "equals", "Москва")]}, {0}),
        ({"attributes": [attribute("city", "contains", "Москва")]}, {0, 2}),
        ({"attributes": [attribute("city", "contains", "москва")]}, set()),
        ({"attributes": [attribute("spent", "greater", "700")]}, {0, 1}),
        ({"attributes": [attribute("spent", "greater", "700,5")]}, {0}),
        ({"attributes": [attribute("spent", "less", "1500")]}, {1}),
        ({"attributes": [attribute("visits", "equals", "3")]}, {1, 2}),
        ({"attributes": [attribute("visits", "greater", "0")]}, {0, 1, 2}),
        ({"attributes": [attribute("vip", "equals", "true")]}, {0}),
        ({"attributes": [attribute("vip", "equals", "false")]}, {1}),
        # true and false are not the numbers 1 and 0.
        ({"attributes": [attribute("vip", "greater", "-1")]}, set()),
        ({"attributes": [attribute("vip", "equals", "1")]}, set()),
        ({"attributes": [attribute("missing", "less", "1")]}, set()),
        (
            {
                "tags": ["vip"],
                "attributes": [attribute("city", "contains", "Москва")],
                "behaviour": [{"behaviour": "never_ordered"}],
            },
            {2},
        ),
        ({"behaviour": [{"behaviour": "ordered", "days": 30}]}, {0}),
        ({"behaviour": [{"behaviour": "ordered", "days": 365}]}, {0, 1}),
        ({"behaviour": [{"behaviour": "never_ordered"}]}, {2, 3, 4}),
        ({"behaviour": [{"behaviour": "opened_or_clicked", "days": 7}]}, {3}),
        ({"behaviour": [{"behaviour": "opened_or_clicked", "days": 30}]}, {3, 4}),
        ({"tags": ["vip", "new"], "match": "all"}, {2}),
        ({"tags": ["vip", "new"], "match": "any"}, {0, 2, 3}),
    ],
)
async def test_conditions_find_whom_they_say(
    db: Database, document: dict[str, Any], expected: set[int]
) -> None:
    ids = await store(db, PEOPLE)
    definition = rule(**document)
    assert await found(db, ids, definition) == {ids[n] for n in expected}
    assert {n for n, person in enumerate(PEOPLE) if holds(person, definition)} == expected


async def test_the_live_count_counts_every_customer_the_segment_finds(db: Database) -> None:
    await store(db, PEOPLE)
    everyone = await count_members(db, SegmentDefinition(), now=NOW)
    assert everyone == len(PEOPLE)
    in_moscow = rule(attributes=[attribute("city", "contains", "Москва")])
    assert await count_members(db, in_moscow, now=NOW) == 2


async def test_behaviour_is_measured_from_the_callers_now(db: Database) -> None:
    ids = await store(db, [Person({}, orders=[10])])
    recent = rule(behaviour=[{"behaviour": "ordered", "days": 30}])
    assert await found(db, ids, recent) == set(ids)
    async with db.session() as session:
        dialect = session.bind.dialect.name
        later = member_condition(recent, now=NOW + timedelta(days=25), dialect=dialect)
        assert set(await session.scalars(select(Customer.id).where(later))) == set()


async def test_a_segment_is_stored_changed_and_audited(db: Database) -> None:
    created = await add_segment(
        db,
        "big-spenders",
        ["vip"],
        actor="api",
        attributes=[attribute("spent", "greater", "1 000")],
        behaviour=[{"behaviour": "ordered", "days": 90}],
    )
    assert created.attributes == (AttributeCondition("spent", Operator.GREATER, "1000"),)
    assert (await get_segment(db, "big-spenders")) == created
    changed = rule(behaviour=[{"behaviour": "never_ordered"}])
    updated = await update_segment(db, "big-spenders", changed, actor="tg:5")
    assert updated.definition == changed
    async with db.session() as session:
        entries = list(await session.scalars(select(AuditEntry).order_by(AuditEntry.id)))
    assert [(e.actor, e.action) for e in entries] == [
        ("api", "segment.add"),
        ("tg:5", "segment.update"),
    ]
    assert entries[1].details["before"]["attributes"] == [
        {"key": "spent", "operator": "greater", "value": "1000"}
    ]
    assert entries[1].details["behaviour"] == [{"behaviour": "never_ordered"}]


async def test_an_unchanged_save_writes_no_audit_entry(db: Database) -> None:
    definition = rule(tags=["vip"])
    await create_segment(db, "vip", definition, actor="cli")
    await update_segment(db, "vip", definition, actor="cli")
    async with db.session() as session:
        actions = list(await session.scalars(select(AuditEntry.action)))
    assert actions == ["segment.add"]


# --- SQL and Python agree ----------------------------------------------------------------

KEYS = ["spent", "city", "code"]
_numbers = st.one_of(
    st.integers(-2000, 2000),
    st.decimals(-2000, 2000, places=2, allow_nan=False).map(float),
)
_numeric_text = st.one_of(
    st.integers(-2000, 2000).map(str),
    st.decimals(-2000, 2000, places=2, allow_nan=False).map(str),
    st.sampled_from(["+5", ".5", "5.", " 12 ", "0012", "-0", "1e3", "2E+2", "1e", "0x10", "5-"]),
)
_words = st.sampled_from(["Москва", "Омск", "мос", "Москва-Сити", "true", "false", "", "abc"])
_values = st.one_of(
    _numbers, _numeric_text, _words, st.booleans(), st.none(), st.just([1]), st.just({"a": 1})
)
people = st.builds(
    Person,
    attributes=st.dictionaries(st.sampled_from(KEYS), _values, max_size=3),
    tags=st.lists(st.sampled_from(["vip", "new"]), max_size=2, unique=True),
    orders=st.lists(st.integers(0, 60), max_size=2),
    engaged=st.lists(st.tuples(st.sampled_from(["email", "sms"]), st.integers(0, 60)), max_size=2),
)
_comparisons = st.one_of(
    st.builds(
        attribute,
        st.sampled_from(KEYS),
        st.sampled_from(["greater", "less", "equals"]),
        st.one_of(st.integers(-2000, 2000).map(str), st.sampled_from(["0", "1", "700.5", "-0.5"])),
    ),
    st.builds(
        attribute,
        st.sampled_from(KEYS),
        st.sampled_from(["equals", "contains"]),
        _words.filter(bool) | st.sampled_from(["12", "5"]),
    ),
)
_behaviours = st.one_of(
    st.builds(
        lambda kind, days: {"behaviour": kind, "days": days},
        st.sampled_from(["ordered", "opened_or_clicked"]),
        st.integers(1, 60),
    ),
    st.just({"behaviour": "never_ordered"}),
)
definitions = st.builds(
    lambda tags, match, attributes, behaviour: parse_definition(
        {"tags": tags, "match": match, "attributes": attributes, "behaviour": behaviour}
    ),
    st.lists(st.sampled_from(["vip", "new"]), max_size=2, unique=True),
    st.sampled_from(["any", "all"]),
    st.lists(_comparisons, max_size=2),
    st.lists(_behaviours, max_size=1),
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(crowd=st.lists(people, min_size=1, max_size=10), definition=definitions)
async def test_sql_and_python_agree_on_who_is_in_a_segment(
    db: Database, crowd: list[Person], definition: SegmentDefinition
) -> None:
    ids = await store(db, crowd)
    expected = {ids[n] for n, person in enumerate(crowd) if holds(person, definition)}
    assert await found(db, ids, definition) == expected
