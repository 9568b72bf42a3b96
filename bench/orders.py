"""Orders and their updates through the order API, against a bare `executemany` of the
same rows, on SQLite and PostgreSQL.

    .venv/bin/python bench/orders.py [--orders 100000] [--updates 0.3] [--customers 50000]
                                     [--repeat 3] [--databases sqlite,postgresql]
                                     [--phases bare,api,http]

The items: `--orders` in all, `--updates` of them updates of an order posted earlier (by
default 70,000 new orders and 30,000 updates: amounts grown, orders cancelled and
restored, each with an `updated_at` after the last), in requests of 1,000 (the API's
most), in the order a shop would send them. The shop: `--customers` customers, each sent
one email of an active chain that counts every mechanic, 30 % of them opened, so that
each order and update has attribution to refresh. Each phase runs on a fresh database
made the same way (SQLite: a WAL file under bench/out/; PostgreSQL: a scratch database
`bench_orders`, ANALYZEd as autovacuum would), and only the requests are timed:

  bare  the driver's own executemany (aiosqlite / asyncpg) of the same rows, a
        transaction per request: the new orders INSERTed, the updates an UPDATE by
        external_id; no checking, no history, no attribution;
  api   `record_orders`, what `POST /api/v1/orders` calls: every item checked, the
        customers looked up, new orders, updates and duplicates told apart, the history
        kept, attribution refreshed for the customers concerned;
  http  `POST /api/v1/orders` to the web app on uvicorn on loopback, bodies of 1,000
        JSON orders through httpx: `api` plus HTTP, JSON and the bearer check.

Figures: docs/benchmarks.md, "Orders".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import uvicorn
from sqlalchemy import text

from bench.common import add_customers, scratch_postgres, scratch_sqlite
from models.db import Database
from models.orders import record_orders
from web.app import WebConfig, create_app

REQUEST = 1_000
SENT = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
API_TOKEN = "bench-orders"
_STATUSES = ("new", "paid", "cancelled")


@dataclass(frozen=True)
class Item:
    external_id: str
    customer: int
    amount: Decimal
    status: str
    # When placed (a new order) or changed (an update).
    at: datetime
    update: bool

    def json(self) -> dict[str, Any]:
        moment = "updated_at" if self.update else "created_at"
        return {
            "external_id": self.external_id,
            "customer_external_id": f"c{self.customer}",
            "amount": f"{self.amount}",
            "status": self.status,
            moment: self.at.isoformat(),
        }


def make_items(count: int, updates: float, customers: int) -> list[Item]:
    """New orders and updates of earlier ones, interleaved; every moment after the last."""
    rng = random.Random(15)
    items: list[Item] = []
    placed: list[Item] = []
    latest: dict[str, Item] = {}
    to_update = round(count * updates)
    for number in range(count):
        # Placed a day before the message to a day after it; updated after it.
        at = SENT - timedelta(days=1) + timedelta(seconds=number * 172_800 / count)
        if placed and rng.random() < to_update / (count - number):
            to_update -= 1
            order = latest[rng.choice(placed).external_id]
            grown = order.amount + Decimal(rng.randint(1, 500))
            status = rng.choice(_STATUSES) if rng.random() < 0.3 else order.status
            at = max(at, SENT, order.at) + timedelta(seconds=1)
            item = Item(order.external_id, order.customer, grown, status, at, True)
        else:
            amount = Decimal(rng.randint(1_000, 99_999)) / 100
            status = "cancelled" if rng.random() < 0.05 else "new"
            customer = rng.randint(1, customers)
            item = Item(f"o{number}", customer, amount, status, at, False)
            placed.append(item)
        latest[item.external_id] = item
        items.append(item)
    return items


def requests(items: list[Item]) -> list[list[Item]]:
    return [items[start : start + REQUEST] for start in range(0, len(items), REQUEST)]


async def make_shop(db: Database, customers: int) -> None:
    """The customers, a chain counting every mechanic, an email to each, 30 % opened."""
    await add_customers(db, customers)
    stamp = "'2026-01-01 00:00:00.000000'" if db.is_sqlite else "TIMESTAMPTZ '2026-01-01Z'"
    sent = "'2026-03-01 09:00:00.000000'" if db.is_sqlite else "TIMESTAMPTZ '2026-03-01 09:00Z'"
    true = "1" if db.is_sqlite else "TRUE"
    conversion = json.dumps(
        {
            "goal": "order",
            "window_days": 30,
            "min_amount": 0,
            "mechanics": ["new_order", "order_increase", "order_restored"],
        }
    )
    statements = [
        "INSERT INTO chains (id, name, status, enrollment, campaign_tag, utm_enabled,"
        f" created_at, updated_at) VALUES (1, 'Bench', 'active', 'once', 'bench', {true},"
        f" {stamp}, {stamp})",
        "INSERT INTO steps (id, chain_id, position, name, action, conversion, created_at,"
        f""" updated_at) VALUES (1, 1, 1, 'Bench', '{{"channel": "email"}}', '{conversion}',"""
        f" {stamp}, {stamp})",
        "INSERT INTO deliveries (chain_id, step_id, customer_id, channel, status, eligible_at,"
        " due_at, attempts, created_at, sent_at, triggered_at, version)"
        f" SELECT 1, 1, id, 'email', 'sent', {stamp}, {stamp}, 1, {stamp}, {sent}, {sent}, 1"
        " FROM customers",
        "INSERT INTO events (delivery_id, customer_id, type, occurred_at, data)"
        f" SELECT id, customer_id, 'opened', {sent}, '{{}}' FROM deliveries WHERE id % 10 < 3",
    ]
    async with db.writer() as session:
        for statement in statements:
            await session.execute(text(statement))
    if not db.is_sqlite:
        async with db.engine.connect() as conn:
            await conn.execute(text("ANALYZE"))
            await conn.commit()


async def bare(url: str, batches: list[list[Item]]) -> float:
    """The same rows by the driver's executemany, a transaction per request."""
    spent = 0.0
    new_columns = "external_id, customer_id, amount, currency, status, created_at, updated_at"
    if url.startswith("postgresql"):
        import asyncpg

        conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
        insert = (
            f"INSERT INTO orders ({new_columns}, received_at)"
            " VALUES ($1, $2, $3, 'RUB', $4, $5, $5, $6)"
        )
        change = (
            "UPDATE orders SET amount = $1, status = $2, updated_at = $3 WHERE external_id = $4"
        )
        for batch in batches:
            created, changed = _rows(batch, postgres=True)
            started = time.perf_counter()
            async with conn.transaction():
                await conn.executemany(insert, created)
                await conn.executemany(change, changed)
            spent += time.perf_counter() - started
        await conn.close()
        return spent
    import aiosqlite

    async with aiosqlite.connect(url.split("///", 1)[1], isolation_level=None) as conn:
        # As models.db sets up every SQLite connection.
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        insert = (
            f"INSERT INTO orders ({new_columns}, received_at) VALUES (?, ?, ?, 'RUB', ?, ?, ?, ?)"
        )
        change = "UPDATE orders SET amount = ?, status = ?, updated_at = ? WHERE external_id = ?"
        for batch in batches:
            created, changed = _rows(batch, postgres=False)
            started = time.perf_counter()
            await conn.execute("BEGIN IMMEDIATE")
            await conn.executemany(insert, created)
            await conn.executemany(change, changed)
            await conn.execute("COMMIT")
            spent += time.perf_counter() - started
    return spent


def _rows(
    batch: list[Item], *, postgres: bool
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    def moment(at: datetime) -> Any:
        return at if postgres else at.strftime("%Y-%m-%d %H:%M:%S.%f")

    def amount(value: Decimal) -> Any:
        return value if postgres else float(value)

    now = moment(datetime.now(UTC))
    created = [
        (
            i.external_id,
            i.customer,
            amount(i.amount),
            i.status,
            moment(i.at),
            *(() if postgres else (moment(i.at),)),
            now,
        )
        for i in batch
        if not i.update
    ]
    changed = [(amount(i.amount), i.status, moment(i.at), i.external_id) for i in batch if i.update]
    return created, changed


async def api(url: str, batches: list[list[Item]]) -> float:
    db = Database(url)
    bodies = [[item.json() for item in batch] for batch in batches]
    spent = 0.0
    try:
        for body in bodies:
            started = time.perf_counter()
            result = await record_orders(db, body, datetime.now(UTC))
            spent += time.perf_counter() - started
            assert not result.errors, result.errors[:3]
    finally:
        await db.dispose()
    return spent


async def http(url: str, batches: list[list[Item]]) -> float:
    db = Database(url)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = WebConfig(
        api_token=API_TOKEN,
        secret_key="bench-orders-secret",
        public_base_url=f"http://127.0.0.1:{port}",
        default_timezone="Europe/Moscow",
        default_phone_region="RU",
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(db, config), host="127.0.0.1", port=port, log_level="warning",
            lifespan="off",
        )
    )  # fmt: skip
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
        await asyncio.sleep(0.01)
    bodies = [json.dumps([item.json() for item in batch]).encode() for batch in batches]
    headers = {"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"}
    spent = 0.0
    try:
        async with httpx.AsyncClient(base_url=config.public_base_url, timeout=60) as client:
            for body in bodies:
                started = time.perf_counter()
                response = await client.post("/api/v1/orders", content=body, headers=headers)
                spent += time.perf_counter() - started
                assert response.status_code == 200, response.text
                assert not response.json()["errors"]
    finally:
        server.should_exit = True
        await serving
        await db.dispose()
    return spent


PHASES: dict[str, Callable[[str, list[list[Item]]], Awaitable[float]]] = {
    "bare": bare,
    "api": api,
    "http": http,
}


async def stored_counts(url: str) -> tuple[int, int]:
    db = Database(url)
    try:
        async with db.session() as session:
            orders = await session.scalar(text("SELECT COUNT(*) FROM orders"))
            changes = await session.scalar(text("SELECT COUNT(*) FROM order_changes"))
            return int(orders or 0), int(changes or 0)
    finally:
        await db.dispose()


def run_phase(kind: str, phase: str, options: argparse.Namespace, items: list[Item]) -> float:
    scratch = scratch_sqlite if kind == "sqlite" else scratch_postgres
    with scratch(options.scratch) as url:

        async def measured() -> float:
            db = Database(url)
            try:
                await make_shop(db, options.customers)
            finally:
                await db.dispose()
            seconds = await PHASES[phase](url, requests(items))
            orders, changes = await stored_counts(url)
            print(
                f"  {kind} {phase}: {len(items) / seconds:,.0f} items/s ({seconds:.2f} s;"
                f" {orders:,} orders, {changes:,} states stored)",
                flush=True,
            )
            return seconds

        return asyncio.run(measured())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--updates", type=float, default=0.3)
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--phases", default="bare,api,http")
    parser.add_argument("--scratch", default="bench_orders", help="the scratch database's name")
    options = parser.parse_args()
    items = make_items(options.orders, options.updates, options.customers)
    updates = sum(item.update for item in items)
    print(f"{len(items) - updates:,} new orders and {updates:,} updates", flush=True)
    phases = options.phases.split(",")
    for kind in options.databases.split(","):
        seconds: dict[str, list[float]] = {phase: [] for phase in phases}
        for _ in range(options.repeat):
            for phase in phases:
                seconds[phase].append(run_phase(kind, phase, options, items))
        rates = {phase: len(items) / statistics.median(runs) for phase, runs in seconds.items()}
        for phase in phases:
            runs = ", ".join(f"{len(items) / s:,.0f}" for s in seconds[phase])
            ratio = f", {phase}/bare {rates[phase] / rates['bare']:.2f}" if "bare" in rates else ""
            print(f"{kind}: {phase} {rates[phase]:,.0f} items/s median (runs {runs}){ratio}")


if __name__ == "__main__":
    main()
