"""Hostile chain files (issue 11, items 1 and 8): every problem listed in words, never a
traceback, nothing stored; the red-team files are in tests/hostile_chainfiles/."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from handlers.when import NotUnderstood, parse_moment_typed
from models.chainfile import (
    FILE_LIMIT,
    BlockKind,
    InvalidBlock,
    InvalidChainFile,
    load_yaml,
    validate_block,
    validate_chain,
)
from models.chains import add_step, create_chain, get_chain, import_chain
from models.db import Database
from models.segments import add_segment
from models.tables import Chain, Step
from services.editing import save_block

FILES = Path(__file__).parent / "hostile_chainfiles"
SECOND_STEP_PROBLEM = "steps[1].schedule.after: '2x' is not a duration"


def problems_of(name: str) -> list[str]:
    """The problems a file is refused with, as people read them."""
    text = (FILES / name).read_text(encoding="utf-8")
    try:
        doc = load_yaml(text)
    except InvalidChainFile as exc:
        return [str(problem) for problem in exc.problems]
    checked = validate_chain(doc, known_segments={"all"}, known_attributes=set())
    assert checked.value is None, f"{name} was accepted"
    return [str(problem) for problem in checked.problems]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("deep_nesting_100.yaml", ["line 13: nested more than 32 levels deep"]),
        (
            "deep_nesting_5000.yaml",
            ["not YAML: line 9, column 1012: exceeded maximum nesting depth"],
        ),
        (
            "long_integer.yaml",
            [
                "steps[0].conversion.window_days: a number of 5,000 characters "
                "is not a whole number of days from 1 to 3650",
                SECOND_STEP_PROBLEM,
            ],
        ),
        (
            "impossible_date.yaml",
            [
                "steps[0].conversion.window_days: '0000-01-01' "
                "is not a whole number of days from 1 to 3650"
            ],
        ),
        (
            "nul.yaml",
            [
                "steps[0].name: contains a NUL character (\\0), which cannot be stored",
                "steps[0].action.text: contains a NUL character (\\0), which cannot be stored",
                SECOND_STEP_PROBLEM,
            ],
        ),
        (
            "lone_surrogate_escaped.yaml",
            ["not YAML: line 6, column 77: found invalid Unicode character escape code"],
        ),
        ("billion_laughs.yaml", ["line 7: aliases expand the file to more than 1,000,000 values"]),
        ("alias_in_itself.yaml", ["line 2: alias *x is used inside the value it names"]),
        (
            "moment_far_future.yaml",
            [
                "steps[0].schedule.at: '9999-12-31 23:59' is not between the years 2000 and 2100",
                SECOND_STEP_PROBLEM,
            ],
        ),
        (
            "moment_year_one.yaml",
            ["steps[0].schedule.at: '0001-01-01 00:00' is not between the years 2000 and 2100"],
        ),
        (
            "template_nested_loops.yaml",
            [
                "steps[0].action.subject: not a valid template: line 1: loops nested over "
                "range() would go round 10,000,000,000 times: at most 100,000",
                SECOND_STEP_PROBLEM,
            ],
        ),
        (
            "template_repeat.yaml",
            [
                "steps[0].action.subject: not a valid template: line 1: an expression would "
                "make a value longer than 1,000,000 characters or items"
            ],
        ),
        (
            "long_quoted_value.yaml",
            [
                "steps[0].schedule.send: 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'… "
                "(100,000 characters) is not one of: now, after, at"
            ],
        ),
    ],
)
def test_a_hostile_file_is_refused_with_its_problems_in_words(
    name: str, expected: list[str]
) -> None:
    assert problems_of(name) == expected


def test_a_value_made_huge_by_aliases_is_mentioned_without_being_expanded() -> None:
    # 9**5 = 59,049 values: under the alias limit, far too much to quote.
    laughs = 'l0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    for n in range(1, 5):
        laughs += f"l{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 9) + "]\n"
    doc = load_yaml(laughs + "format: *a4\nname: *a4\nsteps: *a4\n")
    started = time.perf_counter()
    checked = validate_chain(doc, known_segments=set(), known_attributes=set())
    problems = [str(problem) for problem in checked.problems]
    assert time.perf_counter() - started < 2
    assert "format: a list is not a chain file format this version reads: " in problems[5]
    assert all(len(problem) < 300 for problem in problems)


def test_a_lone_surrogate_in_the_text_itself_is_named_with_its_position() -> None:
    with pytest.raises(InvalidChainFile) as refused:
        load_yaml("format: chainmail/1\nname: x\ud800\n")
    assert str(refused.value) == (
        "not YAML: character 28: a lone surrogate (\\ud800), which is not text"
    )


def test_a_file_over_the_size_limit_is_refused_before_it_is_read() -> None:
    with pytest.raises(InvalidChainFile) as refused:
        load_yaml("#" * (FILE_LIMIT + 1))
    assert str(refused.value) == "the file has 20,000,001 characters: at most 20,000,000"


@pytest.mark.parametrize(
    ("action", "problem"),
    [
        (
            {"channel": "email", "subject": "Hi", "text": "x" * 100_001},
            "text: must be at most 100,000 characters",
        ),
        (
            {"channel": "email", "subject": "x" * 1_001, "text": "Hello"},
            "subject: must be at most 1,000 characters",
        ),
        (
            {"channel": "email", "subject": "Hi", "text": "Hello", "html": "x" * 500_001},
            "html: must be at most 500,000 characters",
        ),
        ({"channel": "sms", "text": "x" * 2_001}, "text: must be at most 2,000 characters"),
        (
            {"channel": "sms", "text": "Hi \ud83d"},
            "text: contains a lone surrogate (\\ud83d), which is not text",
        ),
        (
            {"channel": "email", "subject": "{{ range(10**6)|join }}", "text": "Hello"},
            "subject: not a valid template: line 1: range() of 1,000,000 numbers: at most 100,000",
        ),
    ],
)
def test_a_block_over_a_limit_is_refused_in_words(action: dict[str, str], problem: str) -> None:
    checked = validate_block(BlockKind.ACTION, action, position=1)
    assert [str(found) for found in checked.problems] == [problem]


def test_a_block_stored_under_older_rules_still_reads() -> None:
    stored = {"send": "at", "at": "9999-12-31 23:59", "wait_days": 30}
    assert validate_block(BlockKind.SCHEDULE, stored, position=2).value is None
    assert validate_block(BlockKind.SCHEDULE, stored, position=2, stored=True).value is not None
    action = {"channel": "email", "subject": "Hi", "text": "{{ range(10**6)|join }}" * 10_000}
    assert validate_block(BlockKind.ACTION, action, position=1, stored=True).value is not None


@pytest.mark.parametrize("typed", ["9999-12-31 23:59", "0001-01-01 00:00", "31.12.2101 10:00"])
def test_the_bot_refuses_a_typed_year_outside_the_bounds(typed: str) -> None:
    with pytest.raises(NotUnderstood, match="the year must be between 2000 and 2100"):
        parse_moment_typed(typed, __import__("datetime").date(2026, 1, 1))


# --- Against the databases ------------------------------------------------------------


async def chain_count(db: Database) -> tuple[int, int]:
    async with db.session() as session:
        chains = await session.scalar(select(func.count()).select_from(Chain))
        steps = await session.scalar(select(func.count()).select_from(Step))
    return chains or 0, steps or 0


@pytest.mark.parametrize(
    "name", ["nul.yaml", "moment_far_future.yaml", "billion_laughs.yaml", "deep_nesting_100.yaml"]
)
async def test_a_hostile_file_stores_nothing_and_leaves_other_chains_alone(
    db: Database, name: str
) -> None:
    await add_segment(db, "all", actor="test")
    good = await import_chain(
        db,
        (FILES / "moment_year_one.yaml").read_text().replace("0001-01-01", "2030-01-01"),
        actor="test",
    )
    with pytest.raises(InvalidChainFile) as refused:
        await import_chain(db, (FILES / name).read_text(encoding="utf-8"), actor="test")
    assert str(refused.value) == "\n".join(problems_of(name))
    assert await chain_count(db) == (1, 1)
    assert (await get_chain(db, good.chain_id)).steps[0].schedule is not None


async def test_the_editor_refuses_a_nul_a_huge_text_and_a_far_moment(db: Database) -> None:
    chain_id = await create_chain(db, "Editor", actor="test")
    await add_step(db, chain_id, "Main", actor="test")
    for kind, data, problem in [
        (
            BlockKind.ACTION,
            {"channel": "sms", "text": "Hi\0there"},
            "text: contains a NUL character (\\0), which cannot be stored",
        ),
        (
            BlockKind.ACTION,
            {"channel": "email", "subject": "Hi", "text": "x" * 50_000_000},
            "text: must be at most 100,000 characters",
        ),
        (
            BlockKind.SCHEDULE,
            {"send": "at", "at": "9999-12-31 23:59"},
            "at: '9999-12-31 23:59' is not between the years 2000 and 2100",
        ),
    ]:
        with pytest.raises(InvalidBlock) as refused:
            await save_block(db, chain_id, 1, kind, data, actor="test")
        assert str(refused.value) == problem
    step = (await get_chain(db, chain_id)).steps[0]
    assert step.action is None
    assert step.schedule is None


async def test_ten_thousand_steps_import_in_seconds(db: Database) -> None:
    await add_segment(db, "all", actor="test")
    steps = [
        "  - name: Main\n    audience: {segments: [all]}\n"
        '    action: {channel: email, subject: "Hi {{ first_name }}", text: "Hello"}\n'
        "    schedule: {send: now}\n"
    ]
    steps += [
        f"  - name: Step {n}\n    audience: {{who: terms, match: any, terms: [clicked]}}\n"
        f'    action: {{channel: sms, text: "{{{{ first_name }}}}, offer {n}"}}\n'
        "    schedule: {send: after, after: 2d}\n"
        for n in range(1, 10_000)
    ]
    started = time.perf_counter()
    result = await import_chain(
        db, "format: chainmail/1\nname: Long\nsteps:\n" + "".join(steps), actor="test"
    )
    elapsed = time.perf_counter() - started
    assert await chain_count(db) == (1, 10_000)
    assert len((await get_chain(db, result.chain_id)).steps) == 10_000
    assert elapsed < 30, f"{elapsed:.1f} s"
