"""An idle engine tick with many rows waiting on terms, against the same tick with none.

    .venv/bin/python bench/idle_tick.py [--waiting 100000,1000000] [--ticks 40]
                                        [--databases sqlite,postgresql]

The seed chain as a shop runs it for weeks: the welcome email went to everyone, and
"thank you for reading" (`send: now`, terms `[opened]`, wait_days 30) waits for
each customer's open. For each database and each size N: a scratch database with
N customers, the chain active, N welcome deliveries `sent` and N follow-ups
`planned` and parked until their `wait_until` — what the engine leaves behind —
all written set-based. Then `Engine.tick()` is timed `--ticks` times with
nothing due (median and 95th percentile).

The baseline, in the same run and the same process: the same tick on a database
with the same chain active and no deliveries at all. "Flat" means the ratio
stays near 1 from 100,000 to 1,000,000 waiting rows. Results go to
docs/benchmarks.md, "## Idle tick".
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from datetime import time as time_of_day
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import bindparam, text

from bench.common import add_customers, scratch_postgres, scratch_sqlite
from channels.sms import OutboxSmsTransport
from channels.smtp import OutboxEmailTransport
from models.chains import import_chain
from models.db import Database
from models.segments import add_segment
from models.tables import UtcDateTime
from scheduler.engine import Engine, EngineConfig

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
SEED = """
format: chainmail/1
name: Добро пожаловать
steps:
  - name: Welcome
    audience: {segments: [bench-audience]}
    action: {channel: email, subject: "Привет, {{ first_name }}", text: "Рады видеть"}
    schedule: {send: now}
  - name: Thanks for reading
    audience: {who: terms, match: all, terms: [opened]}
    action: {channel: sms, text: "Спасибо, {{ first_name }}"}
    schedule: {send: now, wait_days: 30}
"""
_MOMENT = bindparam("at", type_=UtcDateTime())


@contextmanager
def scratch(kind: str, name: str) -> Iterator[str]:
    with scratch_sqlite(name) if kind == "sqlite" else scratch_postgres(name) as url:
        yield url


async def _seed(db: Database, waiting: int) -> None:
    """The chain active, and `waiting` customers between its two steps."""
    await add_segment(db, "bench-audience", ["bench"], "any", actor="bench")
    chain_id = (await import_chain(db, SEED, actor="bench")).chain_id
    if waiting:
        await add_customers(db, waiting)
    wait_until = NOW + timedelta(days=30)
    async with db.writer() as session:
        await session.execute(
            text(
                "UPDATE chains SET status = 'active', activated_at = :at WHERE id = :chain"
            ).bindparams(_MOMENT),
            {"at": NOW, "chain": chain_id},
        )
        await session.execute(text("UPDATE steps SET planned_version = plan_requested"))
        steps = dict(
            (
                await session.execute(
                    text("SELECT position, id FROM steps WHERE chain_id = :chain"),
                    {"chain": chain_id},
                )
            ).all()
        )
        columns = (
            "chain_id, step_id, customer_id, previous_delivery_id, channel, status,"
            " eligible_at, due_at, wait_until, attempts, created_at, sent_at, triggered_at"
        )
        await session.execute(
            text(
                f"INSERT INTO deliveries ({columns}) SELECT :chain, :step, id, NULL, 'email',"
                " 'sent', :at, :at, NULL, 1, :at, :at, :at FROM customers"
            ).bindparams(_MOMENT),
            {"chain": chain_id, "step": steps[1], "at": NOW},
        )
        await session.execute(
            text(
                f"INSERT INTO deliveries ({columns}) SELECT :chain, :step, d.customer_id, d.id,"
                " 'sms', 'planned', :at, :until, :until, 0, :at, NULL, NULL"
                " FROM deliveries AS d WHERE d.step_id = :previous"
            ).bindparams(_MOMENT, bindparam("until", type_=UtcDateTime())),
            {
                "chain": chain_id,
                "step": steps[2],
                "previous": steps[1],
                "at": NOW,
                "until": wait_until,
            },
        )
    if not db.is_sqlite:
        async with db.engine.connect() as conn:
            await conn.execute(text("ANALYZE"))
            await conn.commit()


async def _seeded(url: str, waiting: int) -> None:
    db = Database(url)
    try:
        await _seed(db, waiting)
    finally:
        await db.dispose()


async def _ticks(url: str, ticks: int, outbox: Path) -> list[float]:
    db = Database(url)
    engine = Engine(
        db,
        EngineConfig(
            mail_from="news@shop.example",
            public_base_url="https://mail.shop.example",
            secret_key="bench",
            quiet_hours_sms=(time_of_day(21, 0), time_of_day(9, 0)),
        ),
        email=OutboxEmailTransport(outbox),
        sms=OutboxSmsTransport(outbox, "Shop"),
        clock=lambda: NOW + timedelta(minutes=1),
    )
    try:
        await engine.tick()  # registers the worker, reads the chains
        timings = []
        for _ in range(ticks):
            started = time.perf_counter()
            report = await engine.tick()
            timings.append(time.perf_counter() - started)
            assert not report.busy, report
            assert report.deferred == 0, report
        return timings
    finally:
        await engine.close()
        await db.dispose()


def _summary(timings: list[float]) -> tuple[float, float]:
    ordered = sorted(timings)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return statistics.median(ordered) * 1000, p95 * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--waiting", default="100000,1000000")
    parser.add_argument("--ticks", type=int, default=40)
    parser.add_argument("--databases", default="sqlite,postgresql")
    args = parser.parse_args()
    sizes = [int(size) for size in args.waiting.split(",")]
    outbox = Path(__file__).resolve().parent / "out" / "idle-outbox"
    for kind in args.databases.split(","):
        with scratch(kind, "bench_idle_base") as url:
            asyncio.run(_seeded(url, 0))
            base_median, base_p95 = _summary(asyncio.run(_ticks(url, args.ticks, outbox)))
        print(
            f"{kind}: baseline (no deliveries): median {base_median:.2f} ms, p95 {base_p95:.2f} ms"
        )
        for size in sizes:
            with scratch(kind, "bench_idle") as url:
                started = time.perf_counter()
                asyncio.run(_seeded(url, size))
                filled = time.perf_counter() - started
                median, p95 = _summary(asyncio.run(_ticks(url, args.ticks, outbox)))
            print(
                f"{kind}: {size:,} waiting (filled in {filled:.0f} s): median {median:.2f} ms,"
                f" p95 {p95:.2f} ms; ratio to baseline {median / base_median:.2f}"
            )


if __name__ == "__main__":
    main()
