"""Time `chain_stats` on a shop-sized dataset, on SQLite and on PostgreSQL.

    python -m bench.stats [--customers 250000] [--orders 100000] [--runs 5]
                          [--postgres postgresql+asyncpg://postgres@127.0.0.1:5432/postgres]

The measured chain has four steps (email, SMS, email, SMS) sent to every
customer: customers × 4 deliveries (1,000,000 by default) with their events; a
second, one-step email chain to every other customer competes for the orders.
The SQLite file lives in a temporary directory; on PostgreSQL a scratch database
`bench_stats` is created on the given server and dropped afterwards. Each
database is timed as migrated, then again with the index proposed for the
per-step counts (SUGGESTED_INDEX).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
from sqlalchemy import make_url

from models import reasons
from models.db import Database
from models.migrate import upgrade
from models.stats import chain_stats

SCRATCH_DATABASE = "bench_stats"
# Proposed for models/tables.py: makes the per-step status counts index-only.
SUGGESTED_INDEX = (
    "CREATE INDEX IF NOT EXISTS ix_deliveries_chain_id_step_id_status"
    " ON deliveries (chain_id, step_id, status)"
)
START = datetime(2026, 3, 1, 9, tzinfo=UTC)
# (chain id, step id, position, channel, days after the start the step is sent)
STEPS = [
    (1, 1, 1, "email", 0),
    (1, 2, 2, "sms", 3),
    (1, 3, 3, "email", 10),
    (1, 4, 4, "sms", 20),
    (2, 5, 1, "email", 5),
]


@dataclass
class Dataset:
    customers: list[tuple]
    chains: list[tuple]
    steps: list[tuple]
    deliveries: list[tuple]
    events: list[tuple]
    orders: list[tuple]


def _delivery_outcome(rng: random.Random, channel: str) -> tuple[str, str | None]:
    roll = rng.random()
    if roll < 0.90:
        return "sent", None
    if roll < 0.93:
        return "failed", "550 mailbox unavailable" if channel == "email" else "rejected"
    if roll < 0.98:
        contact = reasons.NO_EMAIL if channel == "email" else reasons.NO_PHONE
        return "skipped", rng.choice([contact, reasons.TERMS_FALSE])
    if roll < 0.99:
        return "uncertain", reasons.OUTCOME_LOST
    return "planned", None


def _events_for(rng: random.Random, channel: str) -> Iterator[tuple[str, float]]:
    """(type, hours after sending) of one sent message's events."""
    if channel == "email":
        roll = rng.random()
        if roll < 0.02:
            yield "bounced", 0.01
            return
        if roll < 0.32:
            yield "opened", rng.uniform(0, 72)
            if rng.random() < 0.3:
                yield "clicked", rng.uniform(0, 72)
            if rng.random() < 0.02:
                yield "unsubscribed", rng.uniform(0, 72)
    else:
        roll = rng.random()
        if roll < 0.85:
            yield "delivered", rng.uniform(0, 0.1)
        elif roll < 0.88:
            yield "bounced", rng.uniform(0, 0.1)


def generate(customers: int, orders: int, seed: int = 1) -> Dataset:
    rng = random.Random(seed)
    data = Dataset([], [], [], [], [], [])
    for customer_id in range(1, customers + 1):
        data.customers.append(
            (customer_id, f"c{customer_id}", f"c{customer_id}@example.com", "Europe/Moscow")
        )
    data.chains = [(1, "Welcome series", "active", "welcome"), (2, "Spring sale", "active", "sale")]
    for chain_id, step_id, position, channel, _days in STEPS:
        conversion = {"goal": "order", "window_days": 7 if channel == "email" else 3}
        if step_id == 5:
            conversion["min_amount"] = 500
        data.steps.append(
            (step_id, chain_id, position, f"Step {position}", {"channel": channel}, conversion)
        )
    delivery_id = 0
    for chain_id, step_id, _position, channel, days in STEPS:
        # The second chain goes to every other customer.
        audience = range(1, customers + 1, chain_id)
        for customer_id in audience:
            delivery_id += 1
            status, reason = _delivery_outcome(rng, channel)
            moment = START + timedelta(days=days, seconds=rng.uniform(0, 6 * 3600))
            sent_at = moment if status in {"sent", "uncertain"} else None
            triggered_at = moment if status in {"sent", "failed", "uncertain"} else None
            data.deliveries.append(
                (
                    delivery_id,
                    chain_id,
                    step_id,
                    customer_id,
                    channel,
                    status,
                    reason,
                    START,
                    moment,
                    START,
                    sent_at,
                    triggered_at,
                )
            )
            if sent_at is None:
                continue
            for event_type, hours in _events_for(rng, channel):
                occurred_at = sent_at + timedelta(hours=hours)
                data.events.append((delivery_id, customer_id, event_type, occurred_at))
    for order_id in range(1, orders + 1):
        created_at = START + timedelta(seconds=rng.uniform(0, 35 * 86400))
        amount = Decimal(rng.randint(10_000, 1_000_000)) / 100
        data.orders.append(
            (order_id, f"o{order_id}", rng.randint(1, customers), amount, created_at)
        )
    return data


def _sqlite_moment(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def load_sqlite(path: Path, data: Dataset) -> None:
    m = _sqlite_moment
    created = m(START)
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO customers (id, external_id, email, timezone, timezone_source,"
            " email_status, sms_status, attributes, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, 'default', 'subscribed', 'subscribed', '{}', ?, ?)",
            [(*row, created, created) for row in data.customers],
        )
        conn.executemany(
            "INSERT INTO chains (id, name, status, campaign_tag, enrollment, utm_enabled,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, 'once', 1, ?, ?)",
            [(*row, created, created) for row in data.chains],
        )
        conn.executemany(
            "INSERT INTO steps (id, chain_id, position, name, action, conversion,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (sid, cid, pos, name, json.dumps(action), json.dumps(conv), created, created)
                for sid, cid, pos, name, action, conv in data.steps
            ],
        )
        conn.executemany(
            "INSERT INTO deliveries (id, chain_id, step_id, customer_id, channel, status,"
            " reason, eligible_at, due_at, created_at, sent_at, triggered_at, attempts)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
            [
                (*row[:7], m(row[7]), m(row[8]), m(row[9]), m(row[10]), m(row[11]))
                for row in data.deliveries
            ],
        )
        conn.executemany(
            "INSERT INTO events (delivery_id, customer_id, type, occurred_at, data)"
            " VALUES (?, ?, ?, ?, '{}')",
            [(*row[:3], m(row[3])) for row in data.events],
        )
        conn.executemany(
            "INSERT INTO orders (id, external_id, customer_id, amount, currency, created_at,"
            " received_at) VALUES (?, ?, ?, ?, 'RUB', ?, ?)",
            [
                (oid, ext, cid, float(amount), m(at), m(at))
                for oid, ext, cid, amount, at in data.orders
            ],
        )
        conn.execute("ANALYZE")


async def load_postgres(url: str, data: Dataset) -> None:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await conn.copy_records_to_table(
            "customers",
            columns=[
                "id",
                "external_id",
                "email",
                "timezone",
                "timezone_source",
                "email_status",
                "sms_status",
                "attributes",
                "created_at",
                "updated_at",
            ],
            records=[
                (*row, "default", "subscribed", "subscribed", "{}", START, START)
                for row in data.customers
            ],
        )
        await conn.copy_records_to_table(
            "chains",
            columns=[
                "id",
                "name",
                "status",
                "campaign_tag",
                "enrollment",
                "utm_enabled",
                "created_at",
                "updated_at",
            ],
            records=[(*row, "once", True, START, START) for row in data.chains],
        )
        await conn.copy_records_to_table(
            "steps",
            columns=[
                "id",
                "chain_id",
                "position",
                "name",
                "action",
                "conversion",
                "created_at",
                "updated_at",
            ],
            records=[
                (sid, cid, pos, name, json.dumps(action), json.dumps(conv), START, START)
                for sid, cid, pos, name, action, conv in data.steps
            ],
        )
        await conn.copy_records_to_table(
            "deliveries",
            columns=[
                "id",
                "chain_id",
                "step_id",
                "customer_id",
                "channel",
                "status",
                "reason",
                "eligible_at",
                "due_at",
                "created_at",
                "sent_at",
                "triggered_at",
                "attempts",
            ],
            records=[(*row, 1) for row in data.deliveries],
        )
        await conn.copy_records_to_table(
            "events",
            columns=["delivery_id", "customer_id", "type", "occurred_at", "data"],
            records=[(*row, "{}") for row in data.events],
        )
        await conn.copy_records_to_table(
            "orders",
            columns=[
                "id",
                "external_id",
                "customer_id",
                "amount",
                "currency",
                "created_at",
                "received_at",
            ],
            records=[
                (oid, ext, cid, amount, "RUB", at, at) for oid, ext, cid, amount, at in data.orders
            ],
        )
        # As autovacuum would have left a live database: statistics and a visibility map.
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


def add_suggested_index_sqlite(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(SUGGESTED_INDEX)
        conn.execute("ANALYZE")


async def add_suggested_index_postgres(url: str) -> None:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await conn.execute(SUGGESTED_INDEX)
        await conn.execute("ANALYZE deliveries")
    finally:
        await conn.close()


async def _admin(server_url: str, statement: str) -> None:
    conn = await asyncpg.connect(server_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def measure(url: str, runs: int) -> list[float]:
    db = Database(url)
    timings = []
    try:
        for _ in range(runs):
            started = time.perf_counter()
            await chain_stats(db, 1)
            timings.append(time.perf_counter() - started)
    finally:
        await db.dispose()
    return timings


def _report(name: str, timings: list[float]) -> None:
    shown = ", ".join(f"{t:.2f}" for t in timings)
    print(
        f"{name}: chain_stats median {statistics.median(timings):.2f} s, "
        f"best {min(timings):.2f} s (runs: {shown})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=250_000)
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--postgres",
        default="postgresql+asyncpg://postgres@127.0.0.1:5432/postgres",
        help="a server to create the scratch database on; empty: SQLite only",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    data = generate(args.customers, args.orders)
    measured = sum(1 for row in data.deliveries if row[1] == 1)
    print(
        f"generated {len(data.deliveries):,} deliveries ({measured:,} in the measured chain), "
        f"{len(data.events):,} events, {len(data.orders):,} orders "
        f"in {time.perf_counter() - started:.0f} s"
    )
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "bench.db"
        url = f"sqlite+aiosqlite:///{path}"
        upgrade(url)
        load_sqlite(path, data)
        _report("SQLite", asyncio.run(measure(url, args.runs)))
        add_suggested_index_sqlite(path)
        _report("SQLite, suggested index", asyncio.run(measure(url, args.runs)))
    if args.postgres:
        server = args.postgres
        url = make_url(server).set(database=SCRATCH_DATABASE).render_as_string(hide_password=False)
        asyncio.run(_admin(server, f"DROP DATABASE IF EXISTS {SCRATCH_DATABASE} WITH (FORCE)"))
        asyncio.run(_admin(server, f"CREATE DATABASE {SCRATCH_DATABASE}"))
        try:
            upgrade(url)
            asyncio.run(load_postgres(url, data))
            _report("PostgreSQL", asyncio.run(measure(url, args.runs)))
            asyncio.run(add_suggested_index_postgres(url))
            _report("PostgreSQL, suggested index", asyncio.run(measure(url, args.runs)))
        finally:
            asyncio.run(_admin(server, f"DROP DATABASE IF EXISTS {SCRATCH_DATABASE} WITH (FORCE)"))


if __name__ == "__main__":
    main()
