"""Editing a chain while it runs (issue 12): each rule of services/editing.py on both
databases, the mid-wave ones against a slow real SMTP server, and `chainmail chains
update` through the CLI."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import func, select

from channels.sms import OutboxSmsTransport
from channels.smtp import SmtpPool
from models import reasons
from models.chainfile import BlockKind, InvalidBlock, InvalidChainFile
from models.chains import add_step, export_chain, get_chain, import_chain
from models.db import Database
from models.errors import ChainmailError
from models.segments import add_segment
from models.tables import AuditEntry, Delivery, Step, StepVersion
from scheduler.engine import Engine
from services.editing import (
    describe,
    preview_block,
    remove_step,
    save_block,
    stop_step,
    update_chain,
)
from services.lifecycle import activate_chain
from tests.cli import chainmail
from tests.servers import ReceivedMessage, SmtpFaults, SmtpTestServer
from tests.test_engine import START, Harness, add_customers
from tests.test_engine import harness as harness  # the fixture
from tests.test_queue import engine_config

T = TypeVar("T")

TWO_STEPS = """
format: chainmail/1
name: Two steps
steps:
  - name: Welcome
    audience: {segments: [everyone]}
    action: {channel: email, subject: "Old subject", text: "Hello"}
    schedule: {send: now}
  - name: Reminder
    audience: {who: all}
    action: {channel: email, subject: "Reminder", text: "Still there?"}
    schedule: {send: after, after: 1h}
"""


async def running_chain(db: Database, text: str = TWO_STEPS, *, customers: int = 10) -> int:
    await add_customers(db, *({"timezone": "UTC"} for _ in range(customers)), tag="all")
    await add_segment(db, "everyone", ["all"], "any", actor="test")
    return (await import_chain(db, text, actor="test")).chain_id


async def by_status(
    db: Database, chain_id: int, position: int
) -> dict[tuple[str, str | None], int]:
    async with db.session() as session:
        rows = await session.execute(
            select(Delivery.status, Delivery.reason, func.count())
            .join(Step, Step.id == Delivery.step_id)
            .where(Step.chain_id == chain_id, Step.position == position)
            .group_by(Delivery.status, Delivery.reason)
        )
        return {(status, reason): count for status, reason, count in rows}


async def versions_sent(db: Database, chain_id: int, position: int) -> Counter[int | None]:
    async with db.session() as session:
        rows = await session.execute(
            select(Delivery.version)
            .join(Step, Step.id == Delivery.step_id)
            .where(Step.chain_id == chain_id, Step.position == position)
        )
        return Counter(version for (version,) in rows)


# --- Mid-wave, against a slow SMTP server ------------------------------------------
async def wave_with_an_edit(
    db: Database,
    tmp_path: Path,
    chain_id: int,
    *,
    edit_after: int,
    until: int,
    edit: Callable[[], Awaitable[T]],
) -> tuple[list[ReceivedMessage], int, T]:
    """Activate the chain against a slow real SMTP server, `edit` once `edit_after`
    messages were received, and go on until `until` were: the messages, how many had
    arrived when the edit returned, and what it returned."""
    with SmtpTestServer() as smtp:
        smtp.faults = SmtpFaults(slow_reply=0.02)
        email = SmtpPool("127.0.0.1", smtp.port, concurrency=4)
        engine = Engine(
            db,
            engine_config(tick_seconds=1.0, email_concurrency=4),
            email=email,
            sms=OutboxSmsTransport(tmp_path, "Shop"),
        )
        await activate_chain(db, chain_id, actor="test")
        running = asyncio.create_task(engine.run_until_idle())
        while len(smtp.messages) < edit_after:  # noqa: ASYNC110 - the server offers no event
            await asyncio.sleep(0.005)
        edited = await edit()
        received_when_edited = len(smtp.messages)
        while len(smtp.messages) < until:
            assert not running.done(), "the engine stopped before every message went out"
            await asyncio.sleep(0.01)
        engine.stop()
        await running
        await engine.close()
        await email.aclose()
        return list(smtp.messages), received_when_edited, edited


async def test_a_subject_fixed_mid_wave_reaches_everyone_not_already_on_the_wire(
    db: Database, tmp_path: Path
) -> None:
    total = 400
    chain_id = await running_chain(db, customers=total)
    fixed = {"channel": "email", "subject": "New subject", "text": "Hello"}
    messages, received_when_saved, saved = await wave_with_an_edit(
        db,
        tmp_path,
        chain_id,
        edit_after=40,
        until=total,
        edit=lambda: save_block(db, chain_id, 1, BlockKind.ACTION, fixed, actor="test"),
    )

    subjects = [str(m.parsed()["Subject"]) for m in messages]
    recipients = Counter(m.rcpt_tos[0] for m in messages)
    assert len(recipients) == total
    assert max(recipients.values()) == 1
    # What was on the wire when the save committed went out as it was: at most one
    # group (4 × EMAIL_CONCURRENCY = 16); after it, only the new text.
    late_old = subjects[received_when_saved:].count("Old subject")
    assert late_old <= 16, f"{late_old} old subjects after the save"
    assert set(subjects[received_when_saved + 16 :]) == {"New subject"}
    assert saved.impact.version == 2
    assert saved.impact.kept >= 40
    # Each message records the version it was composed with.
    versions = await versions_sent(db, chain_id, 1)
    assert versions == {1: subjects.count("Old subject"), 2: subjects.count("New subject")}
    async with db.session() as session:
        kept = await session.scalars(select(StepVersion.version).order_by(StepVersion.version))
        assert list(kept) == [1, 2]


async def test_a_step_appended_mid_wave_reaches_everyone_past_the_previous_one(
    db: Database, tmp_path: Path
) -> None:
    total = 200
    one_step = TWO_STEPS.split("  - name: Reminder")[0]
    chain_id = await running_chain(db, one_step, customers=total)

    async def append() -> None:
        step = await add_step(db, chain_id, "Thanks", actor="test")
        for kind, block in (
            (BlockKind.AUDIENCE, {"who": "all"}),
            (BlockKind.ACTION, {"channel": "email", "subject": "Thanks", "text": "Thank you"}),
            (BlockKind.SCHEDULE, {"send": "now"}),
        ):
            await save_block(db, chain_id, step.position, kind, block, actor="test")

    messages, _, _ = await wave_with_an_edit(
        db, tmp_path, chain_id, edit_after=50, until=2 * total, edit=append
    )
    by_subject = Counter(str(m.parsed()["Subject"]) for m in messages)
    assert by_subject == {"Old subject": total, "Thanks": total}
    assert await by_status(db, chain_id, 2) == {("sent", None): total}


# --- Each rule, with the engine's clock ---------------------------------------------


async def test_a_delay_shortened_from_an_hour_to_five_seconds_sends_within_a_tick(
    harness: Harness,
) -> None:
    chain_id = await running_chain(harness.db)
    await activate_chain(harness.db, chain_id, actor="test", now=harness.clock())
    await harness.engine.run_until_idle()
    assert await by_status(harness.db, chain_id, 2) == {("planned", None): 10}

    shorter = {"send": "after", "after": "5s"}
    preview = await preview_block(
        harness.db, chain_id, 2, BlockKind.SCHEDULE, shorter, now=harness.clock()
    )
    saved = await save_block(
        harness.db, chain_id, 2, BlockKind.SCHEDULE, shorter, actor="t", now=harness.clock()
    )
    assert (preview.replanned, preview.first_due) == (
        saved.impact.replanned,
        saved.impact.first_due,
    )
    assert saved.impact.replanned == 10
    assert saved.impact.first_due == harness.clock() + timedelta(seconds=5)
    assert "10 waiting re-planned: the first go out now" in describe(saved.impact, harness.clock())

    harness.clock.advance(seconds=6)
    await harness.engine.tick()
    assert await by_status(harness.db, chain_id, 2) == {("sent", None): 10}
    assert await versions_sent(harness.db, chain_id, 2) == {2: 10}


async def test_an_at_moved_later_makes_the_waiting_rows_wait(harness: Harness) -> None:
    chain_id = await running_chain(harness.db)
    await activate_chain(harness.db, chain_id, actor="test", now=harness.clock())
    await harness.engine.run_until_idle()
    later = harness.clock() + timedelta(days=2)
    at = {"send": "at", "at": later.strftime("%Y-%m-%d %H:%M")}
    saved = await save_block(
        harness.db, chain_id, 2, BlockKind.SCHEDULE, at, actor="t", now=harness.clock()
    )
    assert saved.impact.first_due == later.replace(second=0, microsecond=0)
    harness.clock.advance(hours=2)  # the old delay has passed
    await harness.engine.run_until_idle()
    assert await by_status(harness.db, chain_id, 2) == {("planned", None): 10}


async def test_a_channel_switch_of_a_step_that_sent_is_refused_and_nothing_changes(
    harness: Harness,
) -> None:
    chain_id = await running_chain(harness.db)
    await activate_chain(harness.db, chain_id, actor="test", now=harness.clock())
    await harness.engine.run_until_idle()
    before = await export_chain(harness.db, chain_id)

    with pytest.raises(InvalidBlock) as refused:
        await save_block(
            harness.db, chain_id, 1, BlockKind.ACTION, {"channel": "sms", "text": "Hi"}, actor="t"
        )
    (problem,) = refused.value.problems
    assert problem.path == "channel"
    assert "has sent 10 messages by email: its channel cannot change" in problem.message
    assert "Add a step with sms after it, or copy the chain" in problem.message
    assert await export_chain(harness.db, chain_id) == before
    assert (await get_chain(harness.db, chain_id)).steps[0].version == 1


async def test_a_channel_switch_of_a_step_with_only_planned_rows_moves_them_along(
    harness: Harness,
) -> None:
    chain_id = await running_chain(harness.db)
    await activate_chain(harness.db, chain_id, actor="test", now=harness.clock())
    await harness.engine.run_until_idle()  # step 2 planned, nothing of it sent
    sms = {"channel": "sms", "text": "Still there?"}
    saved = await save_block(harness.db, chain_id, 2, BlockKind.ACTION, sms, actor="t")
    assert (saved.impact.version, saved.impact.to_go) == (2, 10)
    async with harness.db.session() as session:
        channels = await session.scalars(
            select(Delivery.channel).join(Step).where(Step.position == 2).distinct()
        )
        assert list(channels) == ["sms"]
    harness.clock.now = harness.clock.now.replace(hour=12) + timedelta(days=1)
    await harness.engine.run_until_idle()
    assert len(harness.sms()) == 10


async def test_new_terms_decide_the_rows_still_waiting(harness: Harness) -> None:
    chain_id = await running_chain(harness.db)
    await activate_chain(harness.db, chain_id, actor="test", now=harness.clock())
    await harness.engine.run_until_idle()
    terms = {"who": "terms", "match": "all", "terms": ["opened"]}
    saved = await save_block(
        harness.db, chain_id, 2, BlockKind.AUDIENCE, terms, actor="t", now=harness.clock()
    )
    assert "10 waiting are decided by the new terms" in describe(saved.impact, harness.clock())
    harness.clock.advance(hours=2)
    await harness.engine.run_until_idle()
    # Nobody opened the welcome: the reminder is skipped for all, not sent.
    assert await by_status(harness.db, chain_id, 2) == {("skipped", reasons.TERMS_FALSE): 10}


async def test_a_stopped_step_skips_its_waiting_rows_and_nobody_moves_past_it(
    harness: Harness,
) -> None:
    three = (
        TWO_STEPS
        + """  - name: Last call
    audience: {who: all}
    action: {channel: email, subject: "Last call", text: "Bye"}
    schedule: {send: now}
"""
    )
    chain_id = await running_chain(harness.db, three)
    await activate_chain(harness.db, chain_id, actor="test", now=harness.clock())
    await harness.engine.run_until_idle()

    impact = await stop_step(harness.db, chain_id, 2, actor="t", now=harness.clock())
    assert (impact.change, impact.to_go, impact.kept) == ("stopped", 10, 0)
    assert await by_status(harness.db, chain_id, 2) == {("skipped", reasons.STEP_STOPPED): 10}
    harness.clock.advance(hours=3)
    await harness.engine.run_until_idle()
    assert await by_status(harness.db, chain_id, 3) == {}
    assert len(harness.emails()) == 10
    chain = await get_chain(harness.db, chain_id)
    assert chain.status == "finished"
    assert chain.steps[1].stopped
    assert "    stopped: true\n" in await export_chain(harness.db, chain_id)
    with pytest.raises(ChainmailError, match="already stopped"):
        await stop_step(harness.db, chain_id, 2, actor="t")


async def test_only_a_step_without_messages_can_be_removed(harness: Harness) -> None:
    chain_id = await running_chain(harness.db)
    await activate_chain(harness.db, chain_id, actor="test", now=harness.clock())
    await harness.engine.run_until_idle()
    with pytest.raises(ChainmailError, match="has 10 messages: it cannot be removed, only"):
        await remove_step(harness.db, chain_id, 2, actor="t")
    extra = await add_step(harness.db, chain_id, "Draft idea", actor="t")
    impact = await remove_step(harness.db, chain_id, extra.position, actor="t")
    assert impact.change == "removed"
    assert [s.name for s in (await get_chain(harness.db, chain_id)).steps] == [
        "Welcome",
        "Reminder",
    ]


async def test_a_draft_is_edited_in_place_without_versions(db: Database) -> None:
    chain_id = await running_chain(db)
    saved = await save_block(
        db, chain_id, 1, BlockKind.ACTION, {"channel": "sms", "text": "Hi"}, actor="t"
    )
    assert saved.impact.version is None
    assert "action saved (nothing planned or sent yet)" in describe(saved.impact, START)
    async with db.session() as session:
        assert await session.scalar(select(func.count()).select_from(StepVersion)) == 0


# --- A whole file ---------------------------------------------------------------------


async def test_update_applies_a_file_step_by_step_all_or_nothing(harness: Harness) -> None:
    db = harness.db
    chain_id = await running_chain(db)
    await activate_chain(db, chain_id, actor="test", now=harness.clock())
    await harness.engine.run_until_idle()
    exported = await export_chain(db, chain_id)

    edited = exported.replace("Old subject", "Fixed subject").replace("after: 1h", "after: 5m")
    dry = await update_chain(db, chain_id, edited, actor="cli", dry_run=True, now=harness.clock())
    assert await export_chain(db, chain_id) == exported
    done = await update_chain(db, chain_id, edited, actor="cli", now=harness.clock())
    assert dry == done
    assert [(i.position, i.blocks, i.version) for i in done] == [
        (1, ("action",), 2),
        (2, ("schedule",), 2),
    ]
    assert done[0].kept == 10
    assert done[1].replanned == 10
    assert await export_chain(db, chain_id) == edited
    assert await update_chain(db, chain_id, edited, actor="cli") == []

    # Two refusals at once: step 1 switched to SMS, and step 2 (with messages) left out.
    switched = edited.replace(
        "      channel: email\n      subject: Fixed subject\n", "      channel: sms\n"
    ).split("  - name: Reminder")[0]
    with pytest.raises(InvalidChainFile) as problems:
        await update_chain(db, chain_id, switched, actor="cli")
    paths = [problem.path for problem in problems.value.problems]
    assert paths == ["steps[0].action.channel", "steps[1]"]
    assert "mark it `stopped: true`" in str(problems.value)
    assert await export_chain(db, chain_id) == edited
    async with db.session() as session:
        entry = await session.scalar(select(AuditEntry).where(AuditEntry.action == "chain.update"))
    assert entry is not None
    assert len(entry.details["impacts"]) == 2


async def test_chains_update_through_the_cli(db_url: str, db: Database, tmp_path: Path) -> None:
    chain_id = await running_chain(db)
    await activate_chain(db, chain_id, actor="test")
    file = tmp_path / "chain.yaml"
    exported = chainmail(db_url, "chains", "export", str(chain_id), cwd=tmp_path)
    file.write_text(exported.stdout.replace("Old subject", "Fixed"))

    dry = chainmail(db_url, "chains", "update", str(chain_id), str(file), "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "step 1 (Welcome): action → version 2" in dry.stdout
    assert "10 still to go get the new one" in dry.stdout
    assert dry.stdout.rstrip().endswith(f"dry run: chain {chain_id} not changed")
    again = chainmail(db_url, "chains", "export", str(chain_id), cwd=tmp_path)
    assert again.stdout == exported.stdout

    applied = chainmail(db_url, "chains", "update", str(chain_id), str(file), cwd=tmp_path)
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.rstrip().endswith(f"chain {chain_id} updated")
    after = chainmail(db_url, "chains", "export", str(chain_id), cwd=tmp_path)
    assert after.stdout == file.read_text()

    file.write_text(after.stdout.replace("enrollment: once", "enrollment: continuous"))
    bad = chainmail(db_url, "chains", "update", str(chain_id), str(file), cwd=tmp_path)
    assert bad.returncode == 1
    assert bad.stderr.splitlines() == [
        f"chain {chain_id} not changed:",
        "enrollment: the chain is active: enrollment (once) can only change before activation",
    ]
