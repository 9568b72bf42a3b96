"""Segment counts and planning over an attribute segment, beside bare SQL of the same rows.

    .venv/bin/python bench/segments.py [--customers 1000000] [--repeat 3]
                                       [--databases sqlite,postgresql]

For each database: a fresh scratch database (SQLite: a file under bench/out/;
PostgreSQL: a database `bench_segments` made beside the test suite's, dropped at the
end) with N customers whose attributes are as a CSV import leaves them, text:
`{"city": "Москва" | "Омск" | "Томск", "spent": "<n % 5000>"}` (customer n is in Moscow
when n % 3 = 0), tagged `bench`; every tenth customer has an order, on a day of the
last 60. Then, each timed alone, alternating order round by round:

  count: bare        SELECT count(*) FROM customers (the baseline)
  count: equals      `count_members`, city equals Москва
  count: greater     `count_members`, spent greater than 2500 (numbers read from text)
  count: ordered     `count_members`, ordered in the last 30 days
  count: tag + attr  `count_members`, tag bench AND city contains Мос AND spent less than 100
  plan:  bare        INSERT INTO deliveries … SELECT … FROM customers WHERE id % 3 = 0:
                     the same rows the segment finds, nothing decided (the baseline)
  plan:  segment     `scheduler.planning.enroll_main_step` to a segment "city equals
                     Москва" (ON CONFLICT on the unique key, as at activation)

each followed, for the planning runs, by emptying `deliveries`. Results go to
docs/benchmarks.md, "## Segments".
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import bindparam, func, select, text

from bench.common import add_customers, scratch_postgres, scratch_sqlite, sized_parser
from bench.plan_main_step import _empty_deliveries, _main_step
from models.chains import import_chain
from models.db import Database
from models.segment_rules import SegmentDefinition, parse_definition
from models.segments import count_members, create_segment
from models.tables import Delivery, Step, UtcDateTime
from scheduler import planning
from scheduler.steps import step_plan

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
SEGMENT = "moscow"
_CITY = "CASE {n} % 3 WHEN 0 THEN 'Москва' WHEN 1 THEN 'Омск' ELSE 'Томск' END"
ATTRIBUTES = {
    "sqlite": f"json_object('city', {_CITY}, 'spent', CAST({{n}} % 5000 AS TEXT))",
    "postgresql": f"json_build_object('city', {_CITY}, 'spent', ({{n}} % 5000)::text)",
}
ORDERS = {
    "sqlite": "INSERT INTO orders (external_id, customer_id, amount, currency, created_at,"
    " updated_at, received_at) SELECT 'o' || id, id, 100, 'RUB', placed, placed, :now FROM"
    " (SELECT id, strftime('%Y-%m-%d %H:%M:%f000', :now, '-' || (id % 60) || ' days') AS placed"
    " FROM customers WHERE id % 10 = 0)",
    "postgresql": "INSERT INTO orders (external_id, customer_id, amount, currency, created_at,"
    " updated_at, received_at) SELECT 'o' || id, id, 100, 'RUB', placed, placed, :now FROM"
    " (SELECT id, :now - make_interval(days => (id % 60)::int) AS placed"
    " FROM customers WHERE id % 10 = 0) AS o",
}
COUNTS = {
    "equals": {"attributes": [{"key": "city", "operator": "equals", "value": "Москва"}]},
    "greater": {"attributes": [{"key": "spent", "operator": "greater", "value": "2500"}]},
    "ordered": {"behaviour": [{"behaviour": "ordered", "days": 30}]},
    "tag + attr": {
        "tags": ["bench"],
        "attributes": [
            {"key": "city", "operator": "contains", "value": "Мос"},
            {"key": "spent", "operator": "less", "value": "100"},
        ],
    },
}
BARE_PLAN = text(
    "INSERT INTO deliveries (chain_id, step_id, customer_id, previous_delivery_id, channel,"
    " status, eligible_at, due_at, wait_until, attempts, created_at)"
    " SELECT :chain_id, :step_id, id, NULL, 'email', 'planned', :now, :now, NULL, 0, :now"
    " FROM customers WHERE id % 3 = 0"
).bindparams(bindparam("now", type_=UtcDateTime()))
CHAIN = """
format: chainmail/1
name: Moscow
steps:
  - name: Moscow
    audience: {segments: [moscow]}
    action: {channel: email, subject: "Hi {{ first_name }}", text: "Hello"}
    schedule: {send: now}
"""


async def _prepare(db: Database, customers: int) -> Step:
    kind = "sqlite" if db.is_sqlite else "postgresql"
    await add_customers(db, customers, attributes=ATTRIBUTES[kind])
    orders = text(ORDERS[kind]).bindparams(bindparam("now", type_=UtcDateTime()))
    async with db.writer() as session:
        await session.execute(orders, {"now": NOW})
    if not db.is_sqlite:
        async with db.engine.connect() as conn:
            await conn.execute(text("ANALYZE"))
            await conn.commit()
    definition = parse_definition(COUNTS["equals"])
    await create_segment(db, SEGMENT, definition, actor="bench")
    chain_id = (await import_chain(db, CHAIN, actor="bench")).chain_id
    return await _main_step(db, chain_id)


async def _bare_count(db: Database) -> int:
    async with db.session() as session:
        return int(await session.scalar(text("SELECT count(*) FROM customers")) or 0)


def _counter(definition: SegmentDefinition) -> Callable[[Database], Awaitable[int]]:
    async def count(db: Database) -> int:
        return await count_members(db, definition, now=NOW)

    return count


async def _deliveries(db: Database) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(Delivery)) or 0)


async def measure(url: str, customers: int, repeat: int) -> dict[str, list[float]]:
    db = Database(url)
    try:
        started = time.perf_counter()
        step = await _prepare(db, customers)
        print(f"  {customers:,} customers in {time.perf_counter() - started:.1f} s", flush=True)
        counts: dict[str, Callable[[Database], Awaitable[int]]] = {"count: bare": _bare_count}
        counts |= {
            f"count: {name}": _counter(parse_definition(document))
            for name, document in COUNTS.items()
        }

        async def bare_plan(db: Database) -> int:
            async with db.writer() as session:
                values = {"chain_id": step.chain_id, "step_id": step.id, "now": NOW}
                return (await session.execute(BARE_PLAN, values)).rowcount

        async def plan(db: Database) -> int:
            async with db.writer() as session:
                return await planning.enroll_main_step(session, step_plan(step), NOW)

        plans = {"plan: bare": bare_plan, "plan: segment": plan}
        seconds: dict[str, list[float]] = {name: [] for name in (*counts, *plans)}
        found: dict[str, int] = {}
        for round_ in range(repeat):
            order = list(counts) if round_ % 2 == 0 else list(reversed(counts))
            for name in order:
                started = time.perf_counter()
                found[name] = await counts[name](db)
                seconds[name].append(time.perf_counter() - started)
            order = list(plans) if round_ % 2 == 0 else list(reversed(plans))
            for name in order:
                await _empty_deliveries(db, analyse=False)
                started = time.perf_counter()
                rows = await plans[name](db)
                seconds[name].append(time.perf_counter() - started)
                if rows != await _deliveries(db):
                    raise RuntimeError(f"{name}: {rows} rows reported, others stored")
                found[name] = rows
        if found["plan: bare"] != found["plan: segment"]:
            raise RuntimeError(f"planned {found['plan: segment']}, bare {found['plan: bare']}")
        for name in seconds:
            runs = ", ".join(f"{s:.3f}" for s in seconds[name])
            print(f"  {name}: {found[name]:,} rows, {statistics.median(seconds[name]):.3f} s"
                  f" (runs {runs})", flush=True)  # fmt: skip
        return seconds
    finally:
        await db.dispose()


def main() -> None:
    options = sized_parser(__doc__).parse_args()
    for kind in options.databases.split(","):
        print(f"{kind}:", flush=True)
        scratch = scratch_sqlite if kind == "sqlite" else scratch_postgres
        with scratch("bench_segments") as url:
            seconds = asyncio.run(measure(url, options.customers, options.repeat))
        median = {name: statistics.median(runs) for name, runs in seconds.items()}
        counts = ", ".join(
            f"{name.removeprefix('count: ')} {value:.3f} s (x{value / median['count: bare']:.0f})"
            for name, value in median.items()
            if name.startswith("count: ") and name != "count: bare"
        )
        print(
            f"{kind}: count bare {median['count: bare']:.3f} s; {counts};"
            f" plan bare {median['plan: bare']:.2f} s, segment {median['plan: segment']:.2f} s,"
            f" segment/bare {median['plan: segment'] / median['plan: bare']:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
