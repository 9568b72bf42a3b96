"""The segment editor (SPEC §2 "Segment", made in the bot) through the Telegram double,
on both databases: built by taps with its live count, saved, discarded, deleted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from models.admins import add_admin
from models.db import Database
from models.segments import add_segment, get_segment, list_segments
from models.tables import AuditEntry, Customer, CustomerTag, Order, Role
from telegram_double import TelegramDouble
from tests.editor_driver import Phone
from tests.test_bot_support import ADMIN, VIEWER, BotUnderTest, running_bot
from tests.test_forged_buttons import press_with_data

# (city, spent, tags, days since the last order or None)
CUSTOMERS = [
    ("Москва", "1500", ["vip"], 3),
    ("Москва", "200", [], 90),
    ("Омск", "5000", ["vip"], None),
    ("Омск", "10", [], 10),
]


@pytest.fixture
async def bot(db: Database, double: TelegramDouble) -> AsyncIterator[BotUnderTest]:
    await add_admin(db, ADMIN, Role.ADMIN, name="Anton", actor="test")
    await add_admin(db, VIEWER, Role.VIEWER, name="Vera", actor="test")
    now = datetime.now(UTC)
    async with db.writer() as session:
        for n, (city, spent, tags, ordered) in enumerate(CUSTOMERS):
            customer = Customer(
                external_id=f"c{n}",
                timezone="Europe/Moscow",
                timezone_source="default",
                attributes={"city": city, "spent": spent},
            )
            session.add(customer)
            await session.flush()
            session.add_all(CustomerTag(customer_id=customer.id, tag=tag) for tag in tags)
            if ordered is not None:
                session.add(
                    Order(
                        external_id=f"o{n}",
                        customer_id=customer.id,
                        amount=Decimal(100),
                        created_at=now - timedelta(days=ordered),
                    )
                )
    async with running_bot(db, double) as running:
        yield running


async def test_a_segment_built_by_taps_shows_its_live_count_and_is_saved(
    bot: BotUnderTest, db: Database
) -> None:
    phone = Phone(bot, ADMIN)
    await phone.send("/start")
    await phone.tap("🎯 Segments")
    assert "There are no segments yet" in phone.text
    await phone.tap("➕ New segment")
    assert "What is it called?" in phone.text
    await phone.send("moscow buyers")
    assert "cannot be a segment's name" in phone.text
    await phone.send("moscow-buyers")
    assert "New segment moscow-buyers" in phone.text
    assert "👥 4 customers match now." in phone.text

    await phone.tap("➕ Attribute")
    assert {"city", "spent"} <= set(phone.labels())
    await phone.tap("city")
    await phone.tap("= equals")
    await phone.send("Москва")
    assert "1. city equals «Москва»" in phone.text
    assert "👥 2 customers match now." in phone.text

    await phone.tap("➕ Attribute")
    await phone.tap("spent")
    await phone.tap("> greater than")
    await phone.send("много")
    assert "'много' is not a number: greater than compares numbers" in phone.text
    await phone.send("1 000")
    assert "2. spent is greater than 1000" in phone.text
    assert "👥 1 customer matches now." in phone.text

    await phone.tap("➕ Behaviour")
    await phone.tap("🛒 Ordered")
    await phone.tap("✍️ Other number")
    await phone.send("0")
    assert "days must be a whole number from 1 to 3650, not '0'" in phone.text
    await phone.send("30")
    assert "3. Ordered in the last 30 days" in phone.text
    assert "👥 1 customer matches now." in phone.text
    # The second condition goes: back to both Moscow customers, of whom one ordered lately.
    await phone.tap("✖ 2.")
    assert "spent" not in phone.text
    assert "👥 1 customer matches now." in phone.text

    await phone.tap("💾 Save")
    assert "Segment saved" in phone.answered()
    assert "🎯 moscow-buyers" in phone.text
    assert "👥 1 customer matches now." in phone.text
    saved = await get_segment(db, "moscow-buyers")
    assert saved.definition.to_json() == {
        "tags": [],
        "match": "any",
        "attributes": [{"key": "city", "operator": "equals", "value": "Москва"}],
        "behaviour": [{"behaviour": "ordered", "days": 30}],
    }
    async with db.session() as session:
        entry = await session.scalar(select(AuditEntry).where(AuditEntry.action == "segment.add"))
    assert entry is not None
    assert entry.actor == f"tg:{ADMIN}"


async def test_changes_are_kept_apart_until_saved_and_discard_forgets_them(
    bot: BotUnderTest, db: Database
) -> None:
    await add_segment(db, "vip", ["vip"], actor="test")
    phone = Phone(bot, ADMIN)
    await phone.send("/start")
    await phone.tap("🎯 Segments")
    await phone.tap("➕ New segment")
    await phone.send("vip")
    assert "There is already a segment vip" in phone.text
    await phone.send("/start")
    await phone.tap("🎯 Segments")
    await phone.tap("🎯 vip")
    assert "Customers with any of these tags: vip" in phone.text
    assert "👥 2 customers match now." in phone.text
    await phone.tap("✏️ Edit")
    await phone.tap("➕ Behaviour")
    await phone.tap("🚫 Never ordered")
    assert "👥 1 customer matches now." in phone.text
    assert "Not saved yet" in phone.text
    assert (await get_segment(db, "vip")).behaviour == ()

    # Leaving by a command asks first; keep editing comes back to the draft.
    await phone.send("/start")
    assert "unsaved changes" in phone.text
    await phone.tap("✏️ Keep editing")
    assert "Never ordered" in phone.text
    await phone.tap("🗑 Discard")
    assert "Changes discarded" in phone.answered()
    assert "👥 2 customers match now." in phone.text
    assert (await get_segment(db, "vip")).behaviour == ()

    # Tags by taps, any ⇄ all; leaving by a command and saving on the way out.
    await phone.tap("✏️ Edit")
    await phone.tap("🏷 Tags")
    await phone.tap("🔁 Any of the tags")
    await phone.tap("✔ Done")
    await phone.send("/chains")
    await phone.tap("💾 Save")
    assert "send /chains again" in phone.text
    assert (await get_segment(db, "vip")).match == "all"


async def test_a_segment_is_deleted_after_asking(bot: BotUnderTest, db: Database) -> None:
    await add_segment(db, "vip", ["vip"], actor="test")
    phone = Phone(bot, ADMIN)
    await phone.send("/start")
    await phone.tap("🎯 Segments")
    await phone.tap("🎯 vip")
    await phone.tap("🗑 Delete")
    assert "Delete the segment vip?" in phone.text
    await phone.tap("🗑 Delete")
    assert "Segment deleted" in phone.answered()
    assert await list_segments(db) == []


async def test_a_viewer_sees_segments_but_cannot_make_or_change_them(
    bot: BotUnderTest, db: Database
) -> None:
    vip = await add_segment(db, "vip", ["vip"], actor="test")
    phone = Phone(bot, VIEWER)
    await phone.send("/start")
    await phone.tap("🎯 Segments")
    assert "➕ New segment" not in phone.labels()
    await phone.tap("🎯 vip")
    assert "👥 2 customers match now." in phone.text
    assert "✏️ Edit" not in phone.labels()
    assert phone.shown is not None
    assert phone.shown.message_id is not None
    for forged in ("sgn", f"sge:{vip.id}", f"sgrm:{vip.id}:ok"):
        events = await press_with_data(bot, VIEWER, phone.shown.message_id, "menu", forged)
        assert [e.text for e in events if e.kind == "answered"] == [
            "Only admins can change things; you can still look at /chains and /stats."
        ]
    assert [segment.name for segment in await list_segments(db)] == ["vip"]
