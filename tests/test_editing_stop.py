"""Stopping and removing steps of a running chain, as services/editing weighs and does
them (the bot's Stop step and Remove step show these numbers), on both databases."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, update

from models import reasons
from models.chainfile import BlockKind, InvalidBlock, InvalidChainFile
from models.chains import export_chain, get_chain, import_chain
from models.customers import save_customers
from models.db import Database
from models.errors import ChainmailError
from models.segments import add_segment
from models.tables import Delivery, DeliveryStatus
from services.editing import (
    preview_block,
    preview_remove,
    preview_stop,
    save_block,
    step_options,
    stop_step,
    update_chain,
)
from services.lifecycle import activate_chain

TWO_STEPS = """\
format: chainmail/1
name: Welcome
steps:
  - name: Welcome
    audience: {segments: [new-customers]}
    action: {channel: email, subject: "Hi", text: "Welcome to the shop."}
    schedule: {send: now}
  - name: Reminder
    audience: {who: all}
    action: {channel: email, subject: "Still there?", text: "We saved your cart."}
    schedule: {send: after, after: 2d}
"""


async def draft_chain(db: Database) -> int:
    """TWO_STEPS, not activated, and its segment."""
    await add_segment(db, "new-customers", ["new"], actor="test")
    return (await import_chain(db, TWO_STEPS, actor="test")).chain_id


async def live_chain(db: Database, *, customers: int = 5, sent: int = 3) -> int:
    """TWO_STEPS activated for `customers` customers, `sent` of the main step's messages
    sent (as the engine marks them), the others still planned; step 2 has none yet."""
    chain_id = await draft_chain(db)
    rows = [
        {"external_id": f"c{n}", "email": f"c{n}@example.com", "tags": ["new"]}
        for n in range(customers)
    ]
    await save_customers(
        db, rows, default_timezone="Europe/Moscow", default_phone_region="RU", actor="test"
    )
    await activate_chain(db, chain_id, actor="test")
    now = datetime.now(UTC)
    async with db.writer() as session:
        first = select(Delivery.id).where(Delivery.chain_id == chain_id).order_by(Delivery.id)
        ids = list(await session.scalars(first.limit(sent)))
        await session.execute(
            update(Delivery)
            .where(Delivery.id.in_(ids))
            .values(status=DeliveryStatus.SENT.value, version=1, sent_at=now, triggered_at=now)
        )
    return chain_id


async def statuses(db: Database, chain_id: int) -> dict[tuple[str, str | None], int]:
    async with db.session() as session:
        rows = await session.execute(
            select(Delivery.status, Delivery.reason, func.count())
            .where(Delivery.chain_id == chain_id)
            .group_by(Delivery.status, Delivery.reason)
        )
    return {(status, reason): count for status, reason, count in rows}


async def test_what_a_stop_would_do_is_weighed_without_writing(db: Database) -> None:
    chain_id = await live_chain(db)
    main, follow_up = await step_options(db, chain_id, 1), await step_options(db, chain_id, 2)
    assert main.stop is not None
    assert (main.stop.to_go, main.stop.kept) == (2, 3)
    assert main.remove is None
    assert follow_up.stop is None
    assert follow_up.remove is not None
    weighed = await preview_stop(db, chain_id, 1)
    assert (weighed.change, weighed.to_go, weighed.kept) == ("stopped", 2, 3)
    assert await statuses(db, chain_id) == {("sent", None): 3, ("planned", None): 2}
    assert not (await get_chain(db, chain_id)).steps[0].stopped
    assert (await preview_remove(db, chain_id, 2)).change == "removed"
    with pytest.raises(ChainmailError, match="has 5 messages: it cannot be removed"):
        await preview_remove(db, chain_id, 1)
    with pytest.raises(ChainmailError, match="has no messages yet: remove it instead"):
        await preview_stop(db, chain_id, 2)


async def test_a_stopped_step_keeps_its_blocks_whichever_door_tries(db: Database) -> None:
    chain_id = await live_chain(db)
    stopped = await stop_step(db, chain_id, 1, actor="test")
    assert (stopped.to_go, stopped.kept) == (2, 3)
    assert await statuses(db, chain_id) == {
        ("sent", None): 3,
        ("skipped", reasons.STEP_STOPPED): 2,
    }
    options = await step_options(db, chain_id, 1)
    assert (options.stop, options.remove) == (None, None)
    before = await export_chain(db, chain_id)

    changed = {"channel": "email", "subject": "New", "text": "Welcome to the shop."}
    with pytest.raises(InvalidBlock) as weighed:
        await preview_block(db, chain_id, 1, BlockKind.ACTION, changed)
    with pytest.raises(InvalidBlock) as saved:
        await save_block(db, chain_id, 1, BlockKind.ACTION, changed, actor="test")
    for refused in (weighed, saved):
        [problem] = refused.value.problems
        assert problem.path == ""
        assert problem.message.startswith("step 1 (Welcome) is stopped: its blocks stay")

    with pytest.raises(InvalidChainFile) as refused_file:
        await update_chain(db, chain_id, before.replace("subject: Hi", "subject: New"), actor="t")
    assert [(p.path, p.message[:30]) for p in refused_file.value.problems] == [
        ("steps[0]", "step 1 (Welcome) is stopped: i")
    ]
    assert await export_chain(db, chain_id) == before
    assert (await get_chain(db, chain_id)).steps[0].version == 1
    # The same file unchanged is no change at all, stopped step included.
    assert await update_chain(db, chain_id, before, actor="t") == []
