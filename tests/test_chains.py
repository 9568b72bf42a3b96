"""Chains on SQLite and PostgreSQL: import, export, copy, block-by-block editing, the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from models.chainfile import (
    BlockKind,
    InvalidBlock,
    InvalidChainFile,
    PreviousStepAudience,
    Problem,
    SegmentsAudience,
    SmsAction,
)
from models.chains import (
    add_step,
    copy_chain,
    create_chain,
    export_chain,
    get_chain,
    import_chain,
    known_attribute_keys,
    list_chains,
    rename_step,
)
from models.db import Database
from models.errors import ChainmailError, NotFound
from models.segments import add_segment
from models.tables import AuditEntry, ChainStatus, Customer, Step
from services.editing import save_block
from tests.cli import chainmail

# SPEC §7's example, plus an `at` step and an SMS in Cyrillic over several lines.
WELCOME = """\
format: chainmail/1
name: Welcome series
enrollment: once
steps:
  - name: Welcome
    audience: {segments: [new-customers]}
    action: {channel: email, subject: "Hi {{ first_name }}", text: "…", html: "<p>…</p>"}
    schedule: {send: now}
    conversion: {goal: order, window_days: 7, min_amount: 0}
  - name: Reminder
    audience: {who: terms, match: any, terms: [not_opened, not_clicked]}
    action: {channel: email, subject: "…", text: "…"}
    schedule: {send: after, after: 2d}
  - name: Sorry to see you go
    audience: {who: terms, match: all, terms: [unsubscribed_email]}
    action: {channel: sms, text: "…"}
    schedule: {send: now, wait_days: 30}
  - name: Зимняя распродажа
    audience: {who: all}
    action:
      channel: sms
      text: |
        {{ first_name }}, скидка 20% в {{ city }}!
        Только до воскресенья.
    schedule: {send: at, at: "2026-12-01 10:00"}
    conversion: {window_days: 3, min_amount: 1500.5, mechanics: [order_increase, new_order]}
"""


async def welcome_segment(db: Database) -> None:
    await add_segment(db, "new-customers", ["new"], actor="cli")


async def add_customer(db: Database, external_id: str, attributes: object) -> None:
    async with db.writer() as session:
        session.add(
            Customer(
                external_id=external_id,
                timezone="Europe/Moscow",
                timezone_source="default",
                attributes=attributes,
            )
        )


# --- Import and export --------------------------------------------------------------


async def test_export_then_import_gives_the_same_chain(db: Database) -> None:
    await welcome_segment(db)
    first = await import_chain(db, WELCOME, actor="cli")
    exported = await export_chain(db, first.chain_id)
    second = await import_chain(db, exported, actor="cli")
    assert second.chain_id != first.chain_id
    assert await export_chain(db, second.chain_id) == exported


async def test_the_export_is_the_canonical_document(db: Database) -> None:
    await welcome_segment(db)
    chain_id = (await import_chain(db, WELCOME, actor="cli")).chain_id
    exported = await export_chain(db, chain_id)
    assert exported.startswith(
        "format: chainmail/1\nname: Welcome series\nenrollment: once\n"
        "campaign: welcome_series\nutm: true\nholdout_percent: 0\nsteps:\n  - name: Welcome\n"
    )
    assert (
        "    action:\n      channel: sms\n      text: |\n"
        "        {{ first_name }}, скидка 20% в {{ city }}!\n"
        "        Только до воскресенья.\n"
    ) in exported
    assert "      at: 2026-12-01 10:00\n" in exported
    assert "      min_amount: 1500.5\n      mechanics: [new_order, order_increase]\n" in exported


async def test_an_imported_chain_is_a_draft_with_typed_steps(db: Database) -> None:
    await welcome_segment(db)
    chain_id = (await import_chain(db, WELCOME, actor="tg:7")).chain_id
    chain = await get_chain(db, chain_id)
    assert (chain.name, chain.status, chain.campaign_tag, chain.utm_enabled) == (
        "Welcome series",
        ChainStatus.DRAFT,
        "welcome_series",
        True,
    )
    assert [step.position for step in chain.steps] == [1, 2, 3, 4]
    assert chain.steps[0].audience == SegmentsAudience(("new-customers",))
    assert chain.steps[3].audience == PreviousStepAudience()
    assert isinstance(chain.steps[3].action, SmsAction)
    assert all(step.missing == () for step in chain.steps)
    async with db.session() as session:
        entry = await session.scalar(select(AuditEntry).where(AuditEntry.action == "chain.import"))
    assert entry is not None
    assert (entry.actor, entry.details["chain_id"]) == ("tg:7", chain_id)


async def test_a_bad_file_is_refused_whole_with_every_problem(db: Database) -> None:
    bad = WELCOME.replace("after: 2d", "after: 2x").replace("[new-customers]", "[nobody]")
    with pytest.raises(InvalidChainFile) as refused:
        await import_chain(db, bad, actor="cli")
    assert str(refused.value).splitlines() == [
        "steps[0].audience.segments[0]: 'nobody' is not a known segment",
        "steps[1].schedule.after: '2x' is not a duration",
    ]
    assert await list_chains(db) == []


async def test_a_file_that_is_not_yaml_is_refused(db: Database) -> None:
    with pytest.raises(InvalidChainFile, match=r"^not YAML: line 2"):
        await import_chain(db, "format: chainmail/1\n  name: - x\n", actor="cli")


async def test_template_names_are_checked_against_customers_attributes(db: Database) -> None:
    await welcome_segment(db)
    await add_customer(db, "c1", {"city": "Омск", "tier": "gold"})
    result = await import_chain(
        db, WELCOME.replace("{{ city }}", "{{ city }} {{ bonus }}"), actor="cli"
    )
    assert [str(w) for w in result.warnings] == [
        "steps[3].action.text: {{ bonus }} is neither a customer field nor an attribute "
        "any customer has: it will be empty"
    ]


async def test_attribute_keys_are_found_across_customers(db: Database) -> None:
    await add_customer(db, "c1", {"city": "Омск", "tier": "gold"})
    await add_customer(db, "c2", {"city": "Тверь", "birthday": "05-01"})
    await add_customer(db, "c3", {})
    # Odd JSON in one row must not break the query for everyone.
    await add_customer(db, "c4", None)
    await add_customer(db, "c5", ["not", "a", "mapping"])
    async with db.session() as session:
        assert await known_attribute_keys(session) == {"city", "tier", "birthday"}


async def test_exporting_an_unknown_chain_is_not_found(db: Database) -> None:
    with pytest.raises(NotFound, match=r"^there is no chain 404$"):
        await export_chain(db, 404)


async def test_an_incomplete_chain_is_not_exported(db: Database) -> None:
    chain_id = await create_chain(db, "Draft", actor="cli")
    with pytest.raises(ChainmailError, match=f"^chain {chain_id} has no steps yet$"):
        await export_chain(db, chain_id)
    await add_step(db, chain_id, "Main", actor="cli")
    with pytest.raises(
        ChainmailError,
        match=rf"^chain {chain_id} is not complete: "
        r"step 1 \(Main\) has no audience, action, schedule$",
    ):
        await export_chain(db, chain_id)


# --- Listing and copying ------------------------------------------------------------


async def test_chains_are_listed_with_status_and_step_count(db: Database) -> None:
    await welcome_segment(db)
    imported = (await import_chain(db, WELCOME, actor="cli")).chain_id
    empty = await create_chain(db, "Весенняя распродажа", actor="cli")
    summaries = await list_chains(db)
    assert [(c.id, c.name, c.status, c.steps) for c in summaries] == [
        (imported, "Welcome series", ChainStatus.DRAFT, 4),
        (empty, "Весенняя распродажа", ChainStatus.DRAFT, 0),
    ]
    assert (await get_chain(db, empty)).campaign_tag == "vesennyaya_rasprodazha"


async def test_a_copy_is_a_new_draft_with_the_same_steps(db: Database) -> None:
    await welcome_segment(db)
    source = (await import_chain(db, WELCOME, actor="cli")).chain_id
    copy_id = await copy_chain(db, source, actor="cli")
    copy = await get_chain(db, copy_id)
    original = await get_chain(db, source)
    assert copy.name == "Welcome series (copy)"
    assert copy.campaign_tag == "welcome_series_copy"
    assert [(s.name, s.audience, s.action, s.schedule, s.conversion) for s in copy.steps] == [
        (s.name, s.audience, s.action, s.schedule, s.conversion) for s in original.steps
    ]
    autumn = await copy_chain(db, source, name="Autumn", actor="cli")
    assert (await get_chain(db, autumn)).name == "Autumn"


# --- Editing block by block -----------------------------------------------------------


async def save(
    db: Database, chain_id: int, position: int, kind: BlockKind, data: object
) -> list[Problem]:
    return (await save_block(db, chain_id, position, kind, data, actor="tg:1")).warnings


async def build_in_the_bot(db: Database) -> int:
    chain_id = await create_chain(db, "Built in the bot", actor="tg:1")
    main = await add_step(db, chain_id, "Main", actor="tg:1")
    assert (main.position, main.missing) == (
        1,
        (BlockKind.AUDIENCE, BlockKind.ACTION, BlockKind.SCHEDULE),
    )
    await save(db, chain_id, 1, BlockKind.AUDIENCE, {"segments": ["new-customers"]})
    await save(db, chain_id, 1, BlockKind.ACTION, {"channel": "sms", "text": "Hi"})
    await save(db, chain_id, 1, BlockKind.SCHEDULE, {"send": "now"})
    await add_step(db, chain_id, "Follow-up", actor="tg:1")
    return chain_id


async def test_a_chain_built_block_by_block_exports_like_an_imported_one(db: Database) -> None:
    await welcome_segment(db)
    chain_id = await build_in_the_bot(db)
    await save(db, chain_id, 2, BlockKind.AUDIENCE, {"who": "terms", "terms": ["clicked"]})
    await save(db, chain_id, 2, BlockKind.ACTION, {"channel": "sms", "text": "Thanks"})
    await save(db, chain_id, 2, BlockKind.SCHEDULE, {"send": "now"})
    await save(db, chain_id, 2, BlockKind.CONVERSION, {"window_days": 2})
    exported = await export_chain(db, chain_id)
    again = (await import_chain(db, exported, actor="cli")).chain_id
    assert await export_chain(db, again) == exported
    assert "    schedule:\n      send: now\n      wait_days: 30\n" in exported


async def test_a_block_the_import_would_refuse_cannot_be_saved(db: Database) -> None:
    await welcome_segment(db)
    chain_id = await build_in_the_bot(db)
    with pytest.raises(InvalidBlock) as refused:
        await save(db, chain_id, 2, BlockKind.SCHEDULE, {"send": "after", "after": "2x"})
    assert [str(p) for p in refused.value.problems] == ["after: '2x' is not a duration"]
    with pytest.raises(InvalidBlock, match=r"^segments\[0\]: 'nobody' is not a known segment$"):
        await save(db, chain_id, 1, BlockKind.AUDIENCE, {"segments": ["nobody"]})
    chain = await get_chain(db, chain_id)
    assert chain.steps[1].schedule is None
    assert chain.steps[0].audience == SegmentsAudience(("new-customers",))


async def test_send_now_and_later_only_terms_are_refused_whichever_is_saved_second(
    db: Database,
) -> None:
    await welcome_segment(db)
    chain_id = await build_in_the_bot(db)
    await save(db, chain_id, 2, BlockKind.SCHEDULE, {"send": "now"})
    with pytest.raises(InvalidBlock) as refused:
        await save(db, chain_id, 2, BlockKind.AUDIENCE, {"who": "terms", "terms": ["not_clicked"]})
    assert [str(p) for p in refused.value.problems] == [
        "terms: send: now cannot wait for not_clicked: known only later;"
        " use send: after or send: at"
    ]
    await save(db, chain_id, 2, BlockKind.SCHEDULE, {"send": "after", "after": "1d"})
    await save(db, chain_id, 2, BlockKind.AUDIENCE, {"who": "terms", "terms": ["not_clicked"]})
    with pytest.raises(InvalidBlock, match=r"^send: send: now cannot wait for not_clicked"):
        await save(db, chain_id, 2, BlockKind.SCHEDULE, {"send": "now"})


async def test_saving_a_block_returns_its_warnings_and_is_audited(db: Database) -> None:
    await welcome_segment(db)
    chain_id = await build_in_the_bot(db)
    saved = await save_block(
        db, chain_id, 2, BlockKind.ACTION, {"channel": "sms", "text": "{{ bonus }}"}, actor="tg:5"
    )
    warnings = saved.warnings
    assert [w.path for w in warnings] == ["text"]
    async with db.session() as session:
        entry = await session.scalar(
            select(AuditEntry)
            .where(AuditEntry.action == "step.save")
            .order_by(AuditEntry.id.desc())
        )
    assert entry is not None
    assert entry.actor == "tg:5"
    assert entry.details == {
        "chain_id": chain_id,
        "position": 2,
        "block": "action",
        "data": {"channel": "sms", "text": "{{ bonus }}"},
        # A draft: saved in place, no version, nothing planned or sent.
        "impact": {
            "position": 2,
            "change": "saved",
            "blocks": ["action"],
            "notes": ["nothing-sent-yet"],
        },
    }


async def test_saving_to_a_missing_step_is_not_found(db: Database) -> None:
    chain_id = await create_chain(db, "Empty", actor="cli")
    with pytest.raises(NotFound, match=f"^chain {chain_id} has no step 1$"):
        await save_block(db, chain_id, 1, BlockKind.SCHEDULE, {"send": "now"}, actor="cli")
    with pytest.raises(NotFound, match=r"^there is no chain 999$"):
        await add_step(db, 999, "Main", actor="cli")


async def test_steps_are_added_in_order_and_renamed(db: Database) -> None:
    chain_id = await create_chain(db, "Steps", actor="cli")
    positions = [(await add_step(db, chain_id, name, actor="cli")).position for name in "ABC"]
    assert positions == [1, 2, 3]
    await rename_step(db, chain_id, 2, "Reminder", actor="cli")
    assert [s.name for s in (await get_chain(db, chain_id)).steps] == ["A", "Reminder", "C"]
    with pytest.raises(InvalidBlock, match=r"^name: must not be empty$"):
        await rename_step(db, chain_id, 2, " ", actor="cli")
    async with db.session() as session:
        conversions = await session.scalars(
            select(Step.conversion).where(Step.chain_id == chain_id)
        )
        assert list(conversions) == [{"goal": "order", "window_days": 7, "min_amount": 0}] * 3


# --- The CLI ----------------------------------------------------------------------------


async def test_cli_imports_a_chain_and_prints_only_its_id(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    await welcome_segment(db)
    path = tmp_path / "welcome.yaml"
    path.write_text(WELCOME.replace("{{ city }}", "{{ bonus }}"), encoding="utf-8")

    imported = chainmail(db_url, "chains", "import", str(path), cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    chain_id = int(imported.stdout)
    assert imported.stdout == f"{chain_id}\n"
    assert imported.stderr.startswith("warning: steps[3].action.text: {{ bonus }} is neither")

    exported = chainmail(db_url, "chains", "export", str(chain_id), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout == await export_chain(db, chain_id)

    listed = chainmail(db_url, "chains", "list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == [
        "ID  NAME            STATUS  STEPS",
        f"{chain_id:<2}  Welcome series  draft   4",
    ]


def test_cli_refuses_a_bad_file_with_every_problem_on_stderr(db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(WELCOME.replace("after: 2d", "after: 2x"), encoding="utf-8")
    result = chainmail(db_url, "chains", "import", str(path), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "steps[0].audience.segments[0]: 'new-customers' is not a known segment",
        "steps[1].schedule.after: '2x' is not a duration",
    ]


def test_cli_export_of_an_unknown_chain_is_one_line_and_exit_1(db_url: str, tmp_path: Path) -> None:
    result = chainmail(db_url, "chains", "export", "404", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == "chainmail: there is no chain 404\n"


async def test_cli_adds_and_lists_segments(db: Database, db_url: str, tmp_path: Path) -> None:
    await add_segment(db, "everyone", actor="cli")
    added = chainmail(
        db_url, "segments", "add", "vip", "--tags", "vip,gold", "--match", "all", cwd=tmp_path
    )
    assert (added.returncode, added.stdout) == (
        0,
        "segment vip: customers with all of: vip, gold\n",
    )
    duplicate = chainmail(db_url, "segments", "add", "vip", cwd=tmp_path)
    assert (duplicate.returncode, duplicate.stderr) == (
        1,
        "chainmail: segment 'vip' already exists\n",
    )
    listed = chainmail(db_url, "segments", "list", cwd=tmp_path)
    assert listed.stdout.splitlines() == [
        "NAME      MATCH  TAGS             CONDITIONS",
        "everyone  -      (all customers)",
        "vip       all    vip, gold",
    ]


async def test_cli_adds_a_segment_by_attributes_and_behaviour(db_url: str, tmp_path: Path) -> None:
    added = chainmail(
        db_url, "segments", "add", "moscow-buyers", "--attribute", "city", "equals", "Москва",
        "--attribute", "spent", "greater", "1 000", "--ordered-within", "30", cwd=tmp_path,
    )  # fmt: skip
    assert (added.returncode, added.stderr) == (0, "")
    assert added.stdout == (
        "segment moscow-buyers: customers; city equals Москва; spent greater than 1000;"
        " ordered in the last 30 days\n"
    )
    listed = chainmail(db_url, "segments", "list", cwd=tmp_path)
    assert listed.stdout.splitlines()[1].split("  ")[-1].strip() == (
        "city equals Москва; spent greater than 1000; ordered in the last 30 days"
    )


@pytest.mark.parametrize(
    ("options", "error"),
    [
        (
            ["--attribute", "spent", "greater", "много"],
            "chainmail: 'много' is not a number: greater than compares numbers\n",
        ),
        (
            ["--attribute", "city", "like", "М"],
            "chainmail: 'like' is not a way to compare an attribute:"
            " use one of equals, contains, greater, less\n",
        ),
        (
            ["--ordered-within", "0"],
            "chainmail: days must be a whole number from 1 to 3650, not 0\n",
        ),
    ],
)
def test_cli_refuses_a_bad_condition_in_one_line(
    db_url: str, tmp_path: Path, options: list[str], error: str
) -> None:
    refused = chainmail(db_url, "segments", "add", "bad", *options, cwd=tmp_path)
    assert (refused.returncode, refused.stdout, refused.stderr) == (1, "", error)
