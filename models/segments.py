"""Segments: named audiences of main steps — all customers, or those with any / all of some tags."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import Select, exists, false, func, or_, select, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from models import audit
from models.db import Database
from models.errors import ChainmailError, NotFound
from models.tables import Chain, Customer, CustomerTag, Segment, Step

_NAME = re.compile(r"[\w-]+")
NAME_LIMIT = 100
TAG_LIMIT = 100
MATCHES = ("any", "all")


class SegmentRule(Protocol):
    """What membership depends on; a Segment row or a SegmentInfo."""

    @property
    def tags(self) -> Sequence[str]: ...

    @property
    def match(self) -> str: ...


@dataclass(frozen=True)
class SegmentInfo:
    id: int
    name: str
    tags: tuple[str, ...]  # empty: every customer
    match: str  # "any" or "all"


def _info(segment: Segment) -> SegmentInfo:
    return SegmentInfo(segment.id, segment.name, tuple(segment.tags), segment.match)


def _clean_tags(tags: Iterable[str]) -> list[str]:
    cleaned: list[str] = []
    for tag in (tag.strip() for tag in tags):
        if len(tag) > TAG_LIMIT:
            raise ChainmailError(f"tag {tag[:20]!r}… is longer than {TAG_LIMIT} characters")
        if tag and tag not in cleaned:
            cleaned.append(tag)
    return cleaned


async def add_segment(
    db: Database, name: str, tags: Iterable[str] = (), match: str = "any", *, actor: str
) -> SegmentInfo:
    """A new segment; no tags means every customer. Tags match customers' tags exactly."""
    if not _NAME.fullmatch(name) or len(name) > NAME_LIMIT:
        raise ChainmailError(
            f"segment name {name!r} must be letters, digits, - and _ "
            f"(at most {NAME_LIMIT} characters)"
        )
    if match not in MATCHES:
        raise ChainmailError(f"match must be any or all, not {match!r}")
    clean = _clean_tags(tags)
    try:
        async with db.writer() as session:
            if await session.scalar(select(Segment.id).where(Segment.name == name)):
                raise ChainmailError(f"segment {name!r} already exists")
            segment = Segment(name=name, tags=clean, match=match)
            session.add(segment)
            await session.flush()
            audit.record(session, actor, "segment.add", name=name, tags=clean, match=match)
    except IntegrityError:
        # Another process added the same name between the check and the insert.
        raise ChainmailError(f"segment {name!r} already exists") from None
    return _info(segment)


async def list_segments(db: Database) -> list[SegmentInfo]:
    async with db.session() as session:
        segments = await session.scalars(select(Segment).order_by(Segment.name))
        return [_info(segment) for segment in segments]


async def segment_names(session: AsyncSession) -> set[str]:
    return set(await session.scalars(select(Segment.name)))


async def delete_segment(db: Database, name: str, *, actor: str) -> None:
    """Refused while any chain's main step goes to the segment."""
    async with db.writer() as session:
        segment = await session.scalar(select(Segment).where(Segment.name == name))
        if segment is None:
            raise NotFound(f"there is no segment {name!r}")
        # Only main steps name segments, and there are few steps: read them all.
        main_steps = await session.execute(
            select(Chain.id, Chain.name, Step.audience)
            .join(Step, Step.chain_id == Chain.id)
            .where(Step.position == 1, Step.audience.is_not(None))
            .order_by(Chain.id)
        )
        users = [
            f"{chain_name!r} (id {chain_id})"
            for chain_id, chain_name, audience in main_steps
            if name in audience.get("segments", ())
        ]
        if users:
            raise ChainmailError(f"segment {name!r} is used by chain {', '.join(users)}")
        await session.delete(segment)
        audit.record(session, actor, "segment.delete", name=name)


def _member_condition(rule: SegmentRule) -> ColumnElement[bool]:
    tags = list(rule.tags)
    if not tags:
        return true()
    if rule.match == "any":
        return exists().where(CustomerTag.customer_id == Customer.id, CustomerTag.tag.in_(tags))
    # (customer_id, tag) is the key, so counting rows counts distinct tags.
    having_all = (
        select(CustomerTag.customer_id)
        .where(CustomerTag.tag.in_(tags))
        .group_by(CustomerTag.customer_id)
        .having(func.count() == len(tags))
    )
    return Customer.id.in_(having_all)


def segment_members_query(segments: Iterable[SegmentRule]) -> Select[tuple[int]]:
    """SELECT customers.id of the customers in any of `segments`, each once.

    A Core select, meant to be filtered further or used in INSERT … SELECT.
    """
    conditions = [_member_condition(rule) for rule in segments]
    return select(Customer.id).where(or_(*conditions) if conditions else false())
