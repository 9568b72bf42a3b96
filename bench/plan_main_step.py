"""Planning a main step for a million customers against the bare INSERT … SELECT.

    .venv/bin/python bench/plan_main_step.py [--customers 1000000] [--repeat 3]
                                             [--databases sqlite,postgresql]

For each database: a fresh scratch database (SQLite: a file under bench/out/;
PostgreSQL: a database `bench_plan` made beside the test suite's, dropped at
the end), N customers all in the main step's segment, one draft chain. Then,
alternating, each timed with its commit and followed by emptying `deliveries`:

  bare  INSERT INTO deliveries (the planner's columns) SELECT <constants>, id
        FROM customers: the same rows into the same table, nothing decided;
  plan  scheduler.planning.enroll_main_step: the segment's EXISTS on
        customer_tags, the NOT EXISTS on deliveries (nobody planned twice),
        ON CONFLICT DO NOTHING on (step_id, customer_id).

Last, `activate_chain` itself once (what a manager's tap costs), then the
planner once more with everybody planned (what each tick of a `continuous`
chain costs). Results go to docs/benchmarks.md, "## Planning".
"""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import bindparam, func, select, text
from sqlalchemy.orm import selectinload

from bench.common import (
    add_chain,
    add_customers,
    scratch_postgres,
    scratch_sqlite,
    sized_parser,
)
from models.db import Database
from models.tables import Chain, Delivery, Step, UtcDateTime
from scheduler import planning
from scheduler.steps import step_plan
from services.lifecycle import activate_chain

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
BARE = text(
    "INSERT INTO deliveries (chain_id, step_id, customer_id, previous_delivery_id, channel,"
    " status, eligible_at, due_at, wait_until, attempts, created_at)"
    " SELECT :chain_id, :step_id, id, NULL, 'email', 'planned', :now, :now, NULL, 0, :now"
    " FROM customers"
).bindparams(bindparam("now", type_=UtcDateTime()))


async def _main_step(db: Database, chain_id: int) -> Step:
    async with db.session() as session:
        chain = await session.scalar(
            select(Chain).where(Chain.id == chain_id).options(selectinload(Chain.steps))
        )
        assert chain is not None
        return chain.steps[0]


async def _bare(db: Database, step: Step) -> int:
    async with db.writer() as session:
        result = await session.execute(
            BARE, {"chain_id": step.chain_id, "step_id": step.id, "now": NOW}
        )
    return result.rowcount


async def _plan(db: Database, step: Step) -> int:
    async with db.writer() as session:
        return await planning.enroll_main_step(session, step_plan(step), NOW)


async def _empty_deliveries(db: Database, *, analyse: bool) -> None:
    if db.is_sqlite:
        # A connection of its own without foreign keys: SQLite then truncates in one
        # step instead of checking every row against its references.
        path = db.url.removeprefix("sqlite+aiosqlite:///")
        await asyncio.to_thread(_truncate_sqlite, path)
    else:
        # TRUNCATE leaves the table as never analysed, as on a fresh install;
        # `analyse` makes the planner believe it is empty, as after a VACUUM ANALYZE
        # of an empty table (a restore, or every test chain deleted).
        async with db.writer() as session:
            await session.execute(text("TRUNCATE deliveries CASCADE"))
        if analyse:
            autocommit = db.engine.execution_options(isolation_level="AUTOCOMMIT")
            async with autocommit.connect() as conn:
                await conn.execute(text("VACUUM ANALYZE deliveries"))


def _truncate_sqlite(path: str) -> None:
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("DELETE FROM deliveries")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


async def _count(db: Database) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(Delivery)) or 0)


async def measure(
    url: str, customers: int, repeat: int, *, analysed_empty: bool
) -> dict[str, list[float]]:
    db = Database(url)
    try:
        started = time.perf_counter()
        await add_customers(db, customers)
        chain_id = await add_chain(db)
        print(f"  {customers:,} customers in {time.perf_counter() - started:.1f} s", flush=True)
        step = await _main_step(db, chain_id)
        runs: dict[str, Callable[[Database, Step], Awaitable[int]]] = {
            "bare": _bare,
            "plan": _plan,
        }
        seconds: dict[str, list[float]] = {name: [] for name in runs}
        for round_ in range(repeat):
            # Alternate which goes first, so neither always meets a warmer cache.
            order = list(runs) if round_ % 2 == 0 else list(reversed(runs))
            for name in order:
                await _empty_deliveries(db, analyse=analysed_empty)
                started = time.perf_counter()
                rows = await runs[name](db, step)
                elapsed = time.perf_counter() - started
                if rows != customers or await _count(db) != customers:
                    raise RuntimeError(f"{name}: {rows} rows, not {customers}")
                seconds[name].append(elapsed)
                print(f"  {name}: {elapsed:.2f} s", flush=True)
        await _empty_deliveries(db, analyse=analysed_empty)
        started = time.perf_counter()
        activation = await activate_chain(db, chain_id, actor="bench", now=NOW)
        seconds["activate_chain"] = [time.perf_counter() - started]
        if activation.enrolled != customers:
            raise RuntimeError(f"activate_chain enrolled {activation.enrolled}")
        print(f"  activate_chain: {seconds['activate_chain'][0]:.2f} s", flush=True)
        # What every tick of a `continuous` chain costs once everyone is planned.
        started = time.perf_counter()
        if await _plan(db, step) != 0:
            raise RuntimeError("planned someone twice")
        seconds["replan"] = [time.perf_counter() - started]
        print(f"  plan again, nobody new: {seconds['replan'][0]:.2f} s", flush=True)
        return seconds
    finally:
        await db.dispose()


def main() -> None:
    parser = sized_parser(__doc__)
    parser.add_argument(
        "--analysed-empty",
        action="store_true",
        help="PostgreSQL: VACUUM ANALYZE the empty deliveries table before each run",
    )
    options = parser.parse_args()
    for kind in options.databases.split(","):
        print(f"{kind}:", flush=True)
        scratch = scratch_sqlite if kind == "sqlite" else scratch_postgres
        with scratch("bench_plan") as url:
            seconds = asyncio.run(
                measure(
                    url, options.customers, options.repeat, analysed_empty=options.analysed_empty
                )
            )
        bare, plan = (statistics.median(seconds[name]) for name in ("bare", "plan"))
        print(
            f"{kind}: bare {bare:.2f} s (runs {', '.join(f'{s:.2f}' for s in seconds['bare'])}),"
            f" plan {plan:.2f} s (runs {', '.join(f'{s:.2f}' for s in seconds['plan'])}),"
            f" plan/bare {plan / bare:.2f}; activate_chain {seconds['activate_chain'][0]:.2f} s;"
            f" plan again {seconds['replan'][0]:.2f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
