"""Small chains that come due while a big wave is on the wire: how long they wait.

    .venv/bin/python bench/interleave.py [--big 20000] [--tick 5] [--connections 8]
                                         [--spacing 2] [--databases sqlite,postgresql]

One large chain (the benchmark's two-part Cyrillic email to `--big` customers)
and ten small ones (five customers each, an email `send: after` 2, 4, … 20
seconds: `--spacing` apart) are activated at the same moment, so the small chains come due one
after the other while the large wave runs. The engine ticks as `chainmail
worker` does (every `--tick` seconds, or at once while there is work) against an
aiosmtpd server in a process of its own that only counts. For every small
message: the delay from its due moment to its `sent_at`.

The baseline, in the same run: the same ten small chains with no large wave.
The aim (issue 10): a p95 delay of at most two ticks while the large wave runs.
Results go to docs/benchmarks.md, "## Interleaving".
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from datetime import time as time_of_day
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import select, text

from bench.common import CHAIN_FILE, add_customers, scratch_postgres, scratch_sqlite
from bench.send_email import SmtpSink
from channels.sms import OutboxSmsTransport
from channels.smtp import SmtpPool
from models.chains import import_chain
from models.db import Database
from models.segments import add_segment
from models.tables import Delivery
from scheduler.engine import Engine, EngineConfig
from services.lifecycle import activate_chain

OUTBOX = Path(__file__).resolve().parent / "out"
SMALL_CHAINS = 10
SMALL_AUDIENCE = 5
SMALL_CHAIN = """
format: chainmail/1
name: Small {number}
steps:
  - name: Hello
    audience: {{segments: [small-{number}]}}
    action: {{channel: email, subject: "Привет, {{{{ first_name }}}}", text: "Короткое письмо"}}
    schedule: {{send: after, after: {delay}s}}
"""


async def _fill(db: Database, big: int, spacing: int) -> tuple[list[int], int | None]:
    """The small chains' customers and chains; the big ones if `big`. Chain ids."""
    async with db.writer() as session:
        for number in range(SMALL_CHAINS):
            for member in range(SMALL_AUDIENCE):
                name = f"s{number}-{member}"
                customer_id = await session.scalar(
                    text(
                        "INSERT INTO customers (external_id, email, first_name, timezone,"
                        " timezone_source, email_status, sms_status, attributes, created_at,"
                        " updated_at) VALUES (:name, :email, 'Маша', 'Europe/Moscow', 'explicit',"
                        " 'subscribed', 'subscribed', '{}', '2026-01-01 00:00:00',"
                        " '2026-01-01 00:00:00') RETURNING id"
                    ),
                    {"name": name, "email": f"{name}@example.com"},
                )
                await session.execute(
                    text("INSERT INTO customer_tags (customer_id, tag) VALUES (:id, :tag)"),
                    {"id": customer_id, "tag": f"small-{number}"},
                )
    small = []
    for number in range(SMALL_CHAINS):
        await add_segment(db, f"small-{number}", [f"small-{number}"], "any", actor="bench")
        chain = SMALL_CHAIN.format(number=number, delay=spacing * (number + 1))
        small.append((await import_chain(db, chain, actor="bench")).chain_id)
    big_chain = None
    if big:
        await add_customers(db, big, first=1_000_000)
        await add_segment(db, "bench-audience", ["bench"], "any", actor="bench")
        big_chain = (await import_chain(db, CHAIN_FILE, actor="bench")).chain_id
    return small, big_chain


async def _run(
    url: str, big: int, tick: float, connections: int, port: int, spacing: int
) -> list[float]:
    db = Database(url)
    small, big_chain = await _fill(db, big, spacing)
    email = SmtpPool("127.0.0.1", port, concurrency=connections)
    engine = Engine(
        db,
        EngineConfig(
            mail_from="Магазин <news@shop.example>",
            public_base_url="https://mail.shop.example",
            secret_key="bench",
            quiet_hours_sms=(time_of_day(21, 0), time_of_day(9, 0)),
            email_concurrency=connections,
            tick_seconds=tick,
        ),
        email=email,
        sms=OutboxSmsTransport(OUTBOX, "Shop"),
    )
    try:
        for chain_id in ([big_chain] if big_chain else []) + small:
            await activate_chain(db, chain_id, actor="bench")
        deadline = time.monotonic() + 600
        while True:
            report = await engine.tick()
            async with db.session() as session:
                left = await session.scalar(
                    select(Delivery.id).where(Delivery.status == "planned").limit(1)
                )
            if left is None:
                break
            assert time.monotonic() < deadline, "not done in 10 minutes"
            if not report.busy:
                await asyncio.sleep(tick)
        async with db.session() as session:
            rows = await session.execute(
                select(Delivery.sent_at, Delivery.due_at).where(Delivery.chain_id.in_(small))
            )
            delays = [(sent - due).total_seconds() for sent, due in rows]
    finally:
        await engine.close()
        await email.aclose()
        await db.dispose()
    assert len(delays) == SMALL_CHAINS * SMALL_AUDIENCE
    return delays


def _describe(delays: list[float]) -> str:
    ordered = sorted(delays)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"p50 {statistics.median(ordered):.2f} s, p95 {p95:.2f} s, max {ordered[-1]:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--big", type=int, default=20_000)
    parser.add_argument("--tick", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--spacing", type=int, default=2)
    parser.add_argument("--databases", default="sqlite,postgresql")
    args = parser.parse_args()
    sink = SmtpSink()
    try:
        for kind in args.databases.split(","):
            scratch = scratch_sqlite if kind == "sqlite" else scratch_postgres
            with scratch("bench_interleave_base") as url:
                alone = asyncio.run(
                    _run(url, 0, args.tick, args.connections, sink.port, args.spacing)
                )
            with scratch("bench_interleave") as url:
                started = time.monotonic()
                beside = asyncio.run(
                    _run(url, args.big, args.tick, args.connections, sink.port, args.spacing)
                )
                took = time.monotonic() - started
            p95 = sorted(beside)[int(len(beside) * 0.95)]
            print(f"{kind}: small chains alone: {_describe(alone)}")
            print(
                f"{kind}: beside a {args.big:,}-email wave ({took:.0f} s in all):"
                f" {_describe(beside)}; p95 = {p95 / args.tick:.2f} ticks of {args.tick:g} s"
            )
    finally:
        sink.stop()


if __name__ == "__main__":
    main()
