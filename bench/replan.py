"""`chains update` re-planning a step with a million planned rows, against a bare UPDATE.

    .venv/bin/python bench/replan.py [--customers 1000000] [--repeat 3]
                                     [--databases sqlite,postgresql]

For each database: a fresh scratch database (SQLite: a file under bench/out/;
PostgreSQL: `bench_replan`, dropped at the end), N customers, the benchmark chain
activated with its main step changed to `send: after 30m` first, so N rows wait,
planned. Then, alternating, each timed with its commit:

  bare    UPDATE deliveries SET due_at = eligible_at, wait_until = NULL for the
          step's planned rows: the same rows, the same columns and index, nothing
          computed;
  update  services.editing.update_chain with the chain file, its delay changed
          (1h, 2h, …): the file read and checked, every refusal looked for, the
          step's counts, a new version, the one set-based UPDATE of
          scheduler.planning.replan, the audit entry — what `chainmail chains
          update ID FILE` does after it has opened the database.

Results go to docs/benchmarks.md, "## Editing a running chain".
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import select, text

from bench.common import (
    add_chain,
    add_customers,
    scratch_postgres,
    scratch_sqlite,
    sized_parser,
)
from models.chainfile import BlockKind
from models.chains import export_chain
from models.db import Database
from models.tables import Step
from services.editing import save_block, update_chain
from services.lifecycle import activate_chain

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
BARE = text(
    "UPDATE deliveries SET due_at = eligible_at, wait_until = NULL"
    " WHERE step_id = :step_id AND status = 'planned'"
)


async def _bare(db: Database, step_id: int, _round: int) -> int:
    async with db.writer() as session:
        result = await session.execute(BARE, {"step_id": step_id})
    return result.rowcount


async def measure(url: str, customers: int, repeat: int) -> dict[str, list[float]]:
    db = Database(url)
    try:
        started = time.perf_counter()
        await add_customers(db, customers)
        chain_id = await add_chain(db)
        waiting = {"send": "after", "after": "30m"}
        await save_block(db, chain_id, 1, BlockKind.SCHEDULE, waiting, actor="bench")
        activation = await activate_chain(db, chain_id, actor="bench", now=NOW)
        if activation.enrolled != customers:
            raise RuntimeError(f"enrolled {activation.enrolled}, not {customers}")
        print(f"  {customers:,} planned in {time.perf_counter() - started:.1f} s", flush=True)
        async with db.session() as session:
            step_id = await session.scalar(select(Step.id).where(Step.chain_id == chain_id))
        exported = await export_chain(db, chain_id)

        async def update(db: Database, _step_id: int, round_: int) -> int:
            changed = exported.replace("after: 30m", f"after: {round_ + 1}h")
            impacts = await update_chain(db, chain_id, changed, actor="bench", now=NOW)
            return impacts[0].replanned

        runs = {"bare": _bare, "update": update}
        seconds: dict[str, list[float]] = {name: [] for name in runs}
        for round_ in range(repeat):
            # Alternate which goes first, so neither always meets a warmer cache.
            order = list(runs) if round_ % 2 == 0 else list(reversed(runs))
            for name in order:
                started = time.perf_counter()
                rows = await runs[name](db, step_id, round_)
                elapsed = time.perf_counter() - started
                if rows != customers:
                    raise RuntimeError(f"{name}: {rows} rows, not {customers}")
                seconds[name].append(elapsed)
                print(f"  {name}: {elapsed:.2f} s", flush=True)
        return seconds
    finally:
        await db.dispose()


def main() -> None:
    parser = sized_parser(__doc__)
    options = parser.parse_args()
    for kind in options.databases.split(","):
        print(f"{kind}:", flush=True)
        scratch = scratch_sqlite if kind == "sqlite" else scratch_postgres
        with scratch("bench_replan") as url:
            seconds = asyncio.run(measure(url, options.customers, options.repeat))
        bare, update = (statistics.median(seconds[name]) for name in ("bare", "update"))
        runs = {name: ", ".join(f"{s:.2f}" for s in values) for name, values in seconds.items()}
        print(
            f"{kind}: bare {bare:.2f} s (runs {runs['bare']}), update {update:.2f} s"
            f" (runs {runs['update']}), update/bare {update / bare:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
