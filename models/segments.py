"""Segments: named audiences of main steps (SPEC §2). What a segment says, and the SQL
that finds its customers, are in models/segment_rules.py; here they are stored."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, false, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from i18n import N_
from models import audit
from models.db import Database
from models.errors import ChainmailError, NotFound
from models.segment_rules import (
    MATCHES,
    AttributeCondition,
    BehaviourCondition,
    SegmentDefinition,
    SegmentRule,
    definition_json,
    member_condition,
    parse_definition,
    stored_definition,
)
from models.tables import Chain, Customer, CustomerTag, Segment, Step

__all__ = [
    "MATCHES",
    "SegmentDefinition",
    "SegmentInUse",
    "SegmentInfo",
    "SegmentRule",
    "SegmentTaken",
    "add_segment",
    "chains_using",
    "count_members",
    "create_segment",
    "delete_segment",
    "get_segment",
    "is_segment_name",
    "list_segments",
    "recent_tags",
    "segment_by_id",
    "segment_members_query",
    "segment_names",
    "segment_rules",
    "update_segment",
]

_NAME = re.compile(r"[\w-]+")
NAME_LIMIT = 100


@dataclass(frozen=True)
class SegmentInfo:
    id: int
    name: str
    tags: tuple[str, ...]  # empty: no tag condition
    match: str  # of the tags: "any" or "all"
    attributes: tuple[AttributeCondition, ...] = ()
    behaviour: tuple[BehaviourCondition, ...] = ()

    @property
    def definition(self) -> SegmentDefinition:
        return SegmentDefinition(self.tags, self.match, self.attributes, self.behaviour)


def _info(segment: Segment) -> SegmentInfo:
    found = stored_definition(segment.tags, segment.match, segment.attributes, segment.behaviour)
    return SegmentInfo(
        segment.id, segment.name, found.tags, found.match, found.attributes, found.behaviour
    )


_TAKEN = N_("segment {name} already exists")
_NO_SEGMENT = N_("there is no segment {name}")


class SegmentTaken(ChainmailError):
    """Another segment has the name."""


class SegmentInUse(ChainmailError):
    """A chain's main step goes to the segment."""


def is_segment_name(name: str) -> bool:
    return bool(_NAME.fullmatch(name)) and len(name) <= NAME_LIMIT


def _check_name(name: str) -> None:
    if not is_segment_name(name):
        raise ChainmailError(
            N_("segment name {name} must be letters, digits, - and _ (at most {limit} characters)"),
            name=repr(name),
            limit=NAME_LIMIT,
        )


def _store(segment: Segment, definition: SegmentDefinition) -> dict[str, Any]:
    document = definition_json(definition)
    segment.tags = document["tags"]
    segment.match = document["match"]
    segment.attributes = document["attributes"]
    segment.behaviour = document["behaviour"]
    return document


async def add_segment(
    db: Database,
    name: str,
    tags: Iterable[str] = (),
    match: str = "any",
    *,
    actor: str,
    attributes: Sequence[Mapping[str, Any]] = (),
    behaviour: Sequence[Mapping[str, Any]] = (),
) -> SegmentInfo:
    """A new segment from its parts as documents (models/segment_rules.py); no
    conditions at all means every customer. Tags match customers' tags exactly."""
    document = {
        "tags": list(tags),
        "match": match,
        "attributes": list(attributes),
        "behaviour": list(behaviour),
    }
    return await create_segment(db, name, parse_definition(document), actor=actor)


async def create_segment(
    db: Database, name: str, definition: SegmentDefinition, *, actor: str
) -> SegmentInfo:
    _check_name(name)
    try:
        async with db.writer() as session:
            if await session.scalar(select(Segment.id).where(Segment.name == name)):
                raise SegmentTaken(_TAKEN, name=repr(name))
            segment = Segment(name=name)
            document = _store(segment, definition)
            session.add(segment)
            await session.flush()
            audit.record(session, actor, "segment.add", name=name, **document)
    except IntegrityError:
        # Another process added the same name between the check and the insert.
        raise SegmentTaken(_TAKEN, name=repr(name)) from None
    return _info(segment)


async def update_segment(
    db: Database, name: str, definition: SegmentDefinition, *, actor: str
) -> SegmentInfo:
    """The segment says something else from now on: chains that use it take in whom
    it finds when they next look (activation, a `continuous` chain's newcomers)."""
    async with db.writer() as session:
        segment = await session.scalar(select(Segment).where(Segment.name == name))
        if segment is None:
            raise NotFound(_NO_SEGMENT, name=repr(name))
        before = definition_json(_info(segment))
        document = _store(segment, definition)
        if document != before:
            audit.record(session, actor, "segment.update", name=name, before=before, **document)
    return _info(segment)


async def get_segment(db: Database, name: str) -> SegmentInfo:
    async with db.session() as session:
        segment = await session.scalar(select(Segment).where(Segment.name == name))
        if segment is None:
            raise NotFound(_NO_SEGMENT, name=repr(name))
        return _info(segment)


async def segment_by_id(db: Database, segment_id: int) -> SegmentInfo | None:
    async with db.session() as session:
        segment = await session.get(Segment, segment_id)
        return _info(segment) if segment is not None else None


async def recent_tags(db: Database, latest: int) -> list[str]:
    """The tags of the `latest` customers added, for a screen's choices: reading every
    customer's tags would take a scan of the whole table."""
    tags = CustomerTag.__table__
    newest = select(Customer.id).order_by(Customer.id.desc()).limit(latest).subquery()
    query = (
        select(tags.c.tag).distinct().where(tags.c.customer_id.in_(select(newest.c.id)))
    ).order_by(tags.c.tag)
    async with db.session() as session:
        return list(await session.scalars(query))


async def list_segments(db: Database) -> list[SegmentInfo]:
    async with db.session() as session:
        segments = await session.scalars(select(Segment).order_by(Segment.name))
        return [_info(segment) for segment in segments]


async def segment_names(session: AsyncSession) -> set[str]:
    return set(await session.scalars(select(Segment.name)))


async def segment_rules(session: AsyncSession, names: Iterable[str]) -> list[SegmentInfo]:
    """The segments of these names that exist, for planning, previews and forecasts."""
    rows = await session.scalars(select(Segment).where(Segment.name.in_(list(names))))
    return [_info(segment) for segment in rows]


async def chains_using(session: AsyncSession, name: str) -> list[str]:
    """The chains whose main step goes to the segment, as `'Name' (id 3)`."""
    # Only main steps name segments, and there are few steps: read them all.
    main_steps = await session.execute(
        select(Chain.id, Chain.name, Step.audience)
        .join(Step, Step.chain_id == Chain.id)
        .where(Step.position == 1, Step.audience.is_not(None))
        .order_by(Chain.id)
    )
    return [
        f"{chain_name!r} (id {chain_id})"
        for chain_id, chain_name, audience in main_steps
        if name in audience.get("segments", ())
    ]


async def delete_segment(db: Database, name: str, *, actor: str) -> None:
    """Refused while any chain's main step goes to the segment."""
    async with db.writer() as session:
        segment = await session.scalar(select(Segment).where(Segment.name == name))
        if segment is None:
            raise NotFound(_NO_SEGMENT, name=repr(name))
        users = await chains_using(session, name)
        if users:
            raise SegmentInUse(
                N_("segment {name} is used by chain {chains}"),
                name=repr(name),
                chains=", ".join(users),
            )
        await session.delete(segment)
        audit.record(session, actor, "segment.delete", name=name)


def segment_members_query(
    segments: Iterable[SegmentRule], *, now: datetime, dialect: str
) -> Select[tuple[int]]:
    """SELECT customers.id of the customers in any of `segments`, each once; behaviour
    is measured back from `now`, attributes read in `dialect`'s JSON functions.

    A Core select, meant to be filtered further or used in INSERT … SELECT.
    """
    conditions = [member_condition(rule, now=now, dialect=dialect) for rule in segments]
    return select(Customer.id).where(or_(*conditions) if conditions else false())


async def count_members(db: Database, rule: SegmentRule, *, now: datetime) -> int:
    """How many customers the segment finds now: one set-based count."""
    async with db.session() as session:
        condition = member_condition(rule, now=now, dialect=session.bind.dialect.name)
        query = select(func.count()).select_from(Customer.__table__).where(condition)
        return int(await session.scalar(query) or 0)
