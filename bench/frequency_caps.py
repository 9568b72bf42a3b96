"""The claim with a frequency cap against the same claim without one.

    .venv/bin/python bench/frequency_caps.py [--customers 100000] [--batches 20]
                                             [--cap 3/7d] [--databases sqlite,postgresql]

A shop a week into its campaigns: N customers, each sent an email every day of the
last week and an SMS on two of its days (what earlier chains left behind: 9 × N
deliveries, written set-based), and a chain just activated whose SMS goes to all N
now (N planned rows, planned by `activate_chain`). Then `claims.claim` takes
`--batches` batches of 500 rows, as the engine's claim does, committed one after
the other, alternately with no cap (the baseline) and with FREQUENCY_CAP_SMS =
`--cap`: 3/7d counts every SMS of the week for each customer and lets them all
through (2 < 3), so both variants claim the same rows and write the same; the
difference is the count (and, on PostgreSQL, the advisory lock per customer).

Also the activation forecast of another SMS chain to all N, with and without the cap.
Results go to docs/benchmarks.md, "## Frequency caps".
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import bindparam, select, text, update

from bench.common import SEGMENT, add_customers, scratch_postgres, scratch_sqlite
from models.chains import get_chain, import_chain
from models.db import Database
from models.frequency_caps import FrequencyCaps, parse_frequency_cap
from models.segments import add_segment
from models.tables import Delivery, Step, UtcDateTime
from scheduler import claims, workers
from scheduler.steps import step_plan
from services.forecast import forecast_activation
from services.lifecycle import activate_chain

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
BATCH = 500
EMAIL_DAYS = range(1, 8)
SMS_DAYS = (2, 5)


def _sms_chain(name: str) -> str:
    return f"""
format: chainmail/1
name: {name}
steps:
  - name: Offer
    audience: {{segments: [{SEGMENT}]}}
    action: {{channel: sms, text: "Скидка 20% до воскресенья, {{{{ first_name }}}}"}}
    schedule: {{send: now}}
"""


def _history_chain() -> str:
    """One step for each message of the week, so each (step, customer) stays unique."""
    messages = [("Email", day, "email", f'subject: "Day {day}", text: "…"') for day in EMAIL_DAYS]
    messages += [("SMS", day, "sms", f'text: "Day {day}"') for day in SMS_DAYS]
    steps = [
        f"  - name: {kind} {day}\n"
        f"    audience: {audience}\n"
        f"    action: {{channel: {channel}, {body}}}\n"
        "    schedule: {send: now}\n"
        for (kind, day, channel, body), audience in zip(
            messages, [f"{{segments: [{SEGMENT}]}}"] + ["{who: all}"] * len(messages), strict=False
        )
    ]
    return "format: chainmail/1\nname: The week before\nsteps:\n" + "".join(steps)


@contextmanager
def scratch(kind: str, name: str) -> Iterator[str]:
    with scratch_sqlite(name) if kind == "sqlite" else scratch_postgres(name) as url:
        yield url


async def _fill(db: Database, customers: int) -> tuple[int, int]:
    """The week's history and the chain to claim (active); (its step, a draft to forecast)."""
    await add_customers(db, customers)
    await add_segment(db, SEGMENT, ["bench"], "any", actor="bench")
    history = (await import_chain(db, _history_chain(), actor="bench")).chain_id
    columns = (
        "chain_id, step_id, customer_id, channel, status, eligible_at, due_at, attempts,"
        " created_at, sent_at, triggered_at"
    )
    async with db.writer() as session:
        steps = list(
            await session.execute(
                select(Step.id, Step.name).where(Step.chain_id == history).order_by(Step.position)
            )
        )
        for step_id, name in steps:
            channel, day = name.split()
            at = NOW - timedelta(days=int(day)) + timedelta(hours=3)
            await session.execute(
                text(
                    f"INSERT INTO deliveries ({columns}) SELECT :chain, :step, id, :channel,"
                    " 'sent', :at, :at, 1, :at, :at, :at FROM customers"
                ).bindparams(bindparam("at", type_=UtcDateTime())),
                {"chain": history, "step": step_id, "channel": channel.lower(), "at": at},
            )
    measured = (await import_chain(db, _sms_chain("Распродажа"), actor="bench")).chain_id
    await activate_chain(db, measured, actor="bench", now=NOW)
    draft = (await import_chain(db, _sms_chain("Ещё одна"), actor="bench")).chain_id
    if not db.is_sqlite:
        # What autovacuum does within a minute of so many inserts: statistics, and the
        # visibility map that lets the caps' counts read their indexes alone.
        async with db.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("VACUUM ANALYZE deliveries"))
    async with db.session() as session:
        step_id = await session.scalar(select(Step.id).where(Step.chain_id == measured))
    return step_id, draft


async def _not_held(*_: object) -> None:
    raise AssertionError("a step of the benchmark could not be claimed")


async def _claim(db: Database, step_id: int, worker_id: int, caps: FrequencyCaps) -> float:
    async with db.session() as session:
        step = step_plan(await session.get(Step, step_id))
        due = claims.due_steps(await claims.earliest_planned(session, [step_id]), NOW)
    started = time.perf_counter()
    async with db.writer() as session:
        taken = await claims.claim(
            session,
            {step_id: step},
            due,
            NOW,
            worker_id=worker_id,
            limit=BATCH,
            quiet_hours_sms=None,
            default_language="ru",
            on_error=_not_held,
            frequency_caps=caps,
        )
    elapsed = time.perf_counter() - started
    assert len(taken.rows) == BATCH, len(taken.rows)
    assert not taken.skipped, taken.skipped
    # Sent, as the engine would a moment later: claimed rows do not pile up in the queue.
    async with db.writer() as session:
        await session.execute(
            update(Delivery)
            .where(Delivery.id.in_([row.delivery_id for row in taken.rows]))
            .values(status="sent", sent_at=NOW, triggered_at=NOW, claimed_by=None)
        )
    return elapsed


async def _forecast(db: Database, chain_id: int, caps: FrequencyCaps) -> tuple[float, int]:
    chain = await get_chain(db, chain_id)
    started = time.perf_counter()
    found = await forecast_activation(db, chain, now=NOW, caps=caps)
    return time.perf_counter() - started, found.reachable


async def _run(url: str, customers: int, batches: int, capped: FrequencyCaps) -> dict[str, object]:
    db = Database(url)
    try:
        started = time.perf_counter()
        step_id, draft = await _fill(db, customers)
        filled = time.perf_counter() - started
        worker_id = await workers.register(db, "bench")
        off: list[float] = []
        on: list[float] = []
        for batch in range(batches):
            if batch % 2:
                on.append(await _claim(db, step_id, worker_id, capped))
            else:
                off.append(await _claim(db, step_id, worker_id, FrequencyCaps()))
        forecasts = {
            "off": [await _forecast(db, draft, FrequencyCaps()) for _ in range(3)],
            "on": [await _forecast(db, draft, capped) for _ in range(3)],
        }
        return {"filled": filled, "off": off, "on": on, "forecasts": forecasts}
    finally:
        await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--cap", default="3/7d")
    parser.add_argument("--databases", default="sqlite,postgresql")
    args = parser.parse_args()
    capped = FrequencyCaps(sms=parse_frequency_cap(args.cap))
    for kind in args.databases.split(","):
        with scratch(kind, "bench_caps") as url:
            result = asyncio.run(_run(url, args.customers, args.batches, capped))
        off = statistics.median(result["off"]) * 1000  # type: ignore[arg-type]
        on = statistics.median(result["on"]) * 1000  # type: ignore[arg-type]
        print(
            f"{kind}: {args.customers:,} customers, a week of history"
            f" (filled in {result['filled']:.0f} s)"
        )
        print(
            f"{kind}: claim of {BATCH}: no cap (baseline) median {off:.1f} ms,"
            f" FREQUENCY_CAP_SMS={args.cap} median {on:.1f} ms; ratio to baseline {on / off:.2f}"
        )
        forecasts: dict[str, list[tuple[float, int]]] = result["forecasts"]  # type: ignore[assignment]
        off_f = statistics.median(seconds for seconds, _ in forecasts["off"]) * 1000
        on_f = statistics.median(seconds for seconds, _ in forecasts["on"]) * 1000
        print(
            f"{kind}: activation forecast of {args.customers:,}: no cap median {off_f:.0f} ms,"
            f" with the cap {on_f:.0f} ms (reachable {forecasts['on'][0][1]:,});"
            f" ratio {on_f / off_f:.2f}"
        )


if __name__ == "__main__":
    main()
