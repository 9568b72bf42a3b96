"""Segments on SQLite and PostgreSQL: adding, listing, deleting, and who is in them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from models.chains import import_chain
from models.db import Database
from models.errors import ChainmailError, NotFound
from models.segments import (
    SegmentInfo,
    add_segment,
    delete_segment,
    list_segments,
    segment_members_query,
    segment_rules,
)
from models.tables import AuditEntry, Customer, CustomerTag

PEOPLE = {
    "both": ["vip", "new"],
    "vip": ["vip"],
    "new": ["new"],
    "untagged": [],
    "other": ["other"],
}


async def seed_customers(db: Database, tags_by_customer: dict[str, list[str]]) -> dict[str, int]:
    ids: dict[str, int] = {}
    async with db.writer() as session:
        for external_id, tags in tags_by_customer.items():
            customer = Customer(
                external_id=external_id, timezone="Europe/Moscow", timezone_source="default"
            )
            session.add(customer)
            await session.flush()
            session.add_all(CustomerTag(customer_id=customer.id, tag=tag) for tag in tags)
            ids[external_id] = customer.id
    return ids


NOW = datetime(2031, 6, 1, 12, 0, tzinfo=UTC)


async def members(db: Database, *segments: SegmentInfo) -> set[str]:
    async with db.session() as session:
        found = segment_members_query(segments, now=NOW, dialect=session.bind.dialect.name)
        query = select(Customer.external_id).where(Customer.id.in_(found))
        return set(await session.scalars(query))


async def test_a_segment_without_tags_is_every_customer(db: Database) -> None:
    await seed_customers(db, PEOPLE)
    everyone = await add_segment(db, "everyone", actor="cli")
    assert everyone.tags == ()
    assert await members(db, everyone) == set(PEOPLE)


async def test_match_any_takes_customers_with_at_least_one_tag(db: Database) -> None:
    await seed_customers(db, PEOPLE)
    segment = await add_segment(db, "vip-or-new", ["vip", "new"], "any", actor="cli")
    assert await members(db, segment) == {"both", "vip", "new"}


async def test_match_all_takes_customers_with_every_tag(db: Database) -> None:
    await seed_customers(db, PEOPLE)
    segment = await add_segment(db, "vip-and-new", ["vip", "new"], "all", actor="cli")
    assert await members(db, segment) == {"both"}


async def test_several_segments_are_their_union_each_customer_once(db: Database) -> None:
    await seed_customers(db, PEOPLE)
    both = await add_segment(db, "both", ["vip", "new"], "all", actor="cli")
    other = await add_segment(db, "other", ["other"], actor="cli")
    vip = await add_segment(db, "vip", ["vip"], actor="cli")
    assert await members(db, both, other, vip) == {"both", "vip", "other"}
    async with db.session() as session:
        found = segment_members_query([both, vip], now=NOW, dialect=session.bind.dialect.name)
        assert await session.scalar(select(func.count()).select_from(found.subquery())) == 2


async def test_no_segments_means_no_customers(db: Database) -> None:
    await seed_customers(db, PEOPLE)
    assert await members(db) == set()


async def test_segments_are_read_back_by_name_as_rules(db: Database) -> None:
    await seed_customers(db, PEOPLE)
    await add_segment(db, "new", ["new"], actor="cli")
    async with db.session() as session:
        rules = await segment_rules(session, ["new", "missing"])
    assert [rule.name for rule in rules] == ["new"]
    assert await members(db, *rules) == {"both", "new"}


async def test_tags_are_trimmed_deduplicated_and_listed(db: Database) -> None:
    await add_segment(db, "vip", [" vip", "", "vip ", "gold"], "all", actor="tg:1")
    await add_segment(db, "all-customers", actor="cli")
    assert [(s.name, s.tags, s.match) for s in await list_segments(db)] == [
        ("all-customers", (), "any"),
        ("vip", ("vip", "gold"), "all"),
    ]
    async with db.session() as session:
        entry = await session.scalar(select(AuditEntry).where(AuditEntry.action == "segment.add"))
    assert entry is not None
    assert (entry.actor, entry.details["name"]) == ("tg:1", "vip")


async def test_a_duplicate_name_is_refused_clearly(db: Database) -> None:
    await add_segment(db, "vip", ["vip"], actor="cli")
    with pytest.raises(ChainmailError, match=r"^segment 'vip' already exists$"):
        await add_segment(db, "vip", ["gold"], actor="cli")


@pytest.mark.parametrize("name", ["", "two words", "a/b", "x" * 101])
async def test_a_name_must_be_letters_digits_dashes_underscores(db: Database, name: str) -> None:
    with pytest.raises(ChainmailError, match="must be letters, digits, - and _"):
        await add_segment(db, name, actor="cli")


async def test_names_may_be_cyrillic(db: Database) -> None:
    assert (await add_segment(db, "постоянные_клиенты", ["loyal"], actor="cli")).name == (
        "постоянные_клиенты"
    )


async def test_match_must_be_any_or_all(db: Database) -> None:
    with pytest.raises(ChainmailError, match="match must be any or all, not 'most'"):
        await add_segment(db, "vip", ["vip"], "most", actor="cli")


async def test_a_segment_no_chain_uses_can_be_deleted(db: Database) -> None:
    await add_segment(db, "vip", ["vip"], actor="cli")
    await delete_segment(db, "vip", actor="cli")
    assert await list_segments(db) == []
    with pytest.raises(NotFound, match="there is no segment 'vip'"):
        await delete_segment(db, "vip", actor="cli")


async def test_a_segment_a_chain_uses_cannot_be_deleted(db: Database) -> None:
    await add_segment(db, "vip", ["vip"], actor="cli")
    chain = """
format: chainmail/1
name: VIP offer
steps:
  - name: Offer
    audience: {segments: [vip]}
    action: {channel: sms, text: Hi}
    schedule: {send: now}
"""
    chain_id = (await import_chain(db, chain, actor="cli")).chain_id
    with pytest.raises(
        ChainmailError, match=rf"^segment 'vip' is used by chain 'VIP offer' \(id {chain_id}\)$"
    ):
        await delete_segment(db, "vip", actor="cli")
    assert [s.name for s in await list_segments(db)] == ["vip"]
