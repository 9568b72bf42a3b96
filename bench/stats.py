"""`/stats` of one chain in a shop of 10,000,000 deliveries, 1,000,000 orders and 300,000
order updates, and what keeping attribution costs per fact, on SQLite and PostgreSQL.

    .venv/bin/python bench/stats.py [--customers 1000000] [--orders 1000000]
                                    [--updates 300000] [--runs 5] [--facts 200]
                                    [--databases sqlite,postgresql] [--holdout-percent 10]

The shop, made in the database by set-based statements (recursive CTE /
generate_series), for C customers: the measured chain, four steps (email, SMS,
email, SMS) to every fourth customer (C deliveries), holding out 10 % of its first
step (`held_out`, by a hash of the row number), and nine one-step chains
to every customer (9 C), so 10 C deliveries, each of version 1 once it left
`planned` (as migration 0006 leaves them) but the measured chain's first step,
edited once while it ran: half its messages are of version 2; their events (emails: 30 % opened,
a third of those clicked, 2 % bounced; SMS: 85 % reported delivered, 3 %
bounced); the orders, of random customers over 35 days, 3 % placed cancelled, and
`--updates` of them changed once within 10 days of being placed (the cancelled ones
restored, the others grown); the measured chain counts every mechanic (new orders,
increases, restorations), the others new orders only. Then `attributions`
is built from scratch (`rebuild`: every order of the shop attributed, the work
the old `/stats` redid on every call) and, alternating, each run timed:

  bare   the chain's deliveries counted by step and status, one grouped query
         over its index: the least any per-step report reads;
  stats  `chain_stats` of the measured chain, everything `/stats` shows, the
         holdout's comparison (`models.holdout.itt_sql`) among it;
  holdout that comparison alone.

Then, one transaction each, on customers that have orders (so a refresh has
work to do), against a bare transaction writing the same row:

  open   `record_open` of a sent email (event, wake-ups, attribution refreshed)
         vs an `events` row inserted;
  order  `record_orders` of one order vs an `orders` row inserted;
  update `record_orders` of a stored order grown (its history, the refresh) vs an
         UPDATE of its row;
  send   a group of 32 SMS recorded `sent` with `messages_triggered` (what the
         engine's record adds) vs the same UPDATE alone.

SQLite: a file under bench/out/, never ANALYZEd (Chainmail does not); PostgreSQL:
a scratch database `bench_stats` beside the test suite's, VACUUM ANALYZEd as
autovacuum would leave it, dropped at the end. Figures: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import bindparam, text

from bench.common import scratch_postgres, scratch_sqlite
from models import attribution_table
from models.db import Database
from models.facts import messages_triggered
from models.holdout import itt_sql
from models.orders import record_orders
from models.stats import chain_stats
from models.tables import UtcDateTime
from models.tracking import record_open

START = "2026-03-01 09:00:00"
NOW = datetime(2026, 4, 10, 9, 0, tzinfo=UTC)
MEASURED_CHAIN = 1
HOLDOUT_PERCENT = 10
# (chain, position, channel, days after START it is sent, window days, minimum amount)
STEPS = [
    (1, 1, "email", 0, 7, 0),
    (1, 2, "sms", 3, 3, 0),
    (1, 3, "email", 10, 7, 0),
    (1, 4, "sms", 20, 3, 0),
    *(
        (chain, 1, "email" if chain % 2 else "sms", 3 * (chain - 2) + 1, 7, 0)
        for chain in range(2, 10)
    ),
    (10, 1, "email", 12, 7, 500),
]
GROUP = 32
FACTS = ("open", "order", "update", "send")
EVERY_MECHANIC = '["new_order", "order_increase", "order_restored"]'
# The measured chain's first step: saved anew while it ran, so of two versions.
EDITED_STEP = 1


def _bits(value: str, salt: int) -> str:
    """A pseudo-random 0 .. 2**32 - 1 from an integer expression, the same in both
    databases: a multiplicative hash whose multiplier depends on `salt`."""
    multiplier = (2654435761 * (2 * salt + 1)) % 2**32 | 1
    return f"((CAST({value} AS BIGINT) * {multiplier} + {salt}) % 4294967296)"


def _hash(value: str, salt: int) -> str:
    """0 .. 999 from the high bits of `_bits`."""
    return f"({_bits(value, salt)} / 4294968)"


def _moment(db: Database, seconds: str) -> str:
    if db.is_sqlite:
        return f"(strftime('%Y-%m-%d %H:%M:%f', '{START}', ({seconds}) || ' seconds') || '000')"
    return f"(TIMESTAMPTZ '{START}+00' + ({seconds}) * INTERVAL '1 second')"


def _numbers(db: Database, last: int) -> tuple[str, str]:
    """A WITH clause and a FROM item giving n = 1..last."""
    if db.is_sqlite:
        return (
            f"WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {last})",
            "g",
        )
    return "", f"generate_series(1, {last}) AS g(n)"


def _shop_statements(
    db: Database, customers: int, orders: int, updates: int, holdout: int = HOLDOUT_PERCENT
) -> list[str]:
    now = _moment(db, "0")
    true = "1" if db.is_sqlite else "TRUE"
    with_numbers, numbers = _numbers(db, customers)
    statements = [
        f"{with_numbers} INSERT INTO customers (id, external_id, email, phone, timezone,"
        " timezone_source, email_status, sms_status, attributes, created_at, updated_at)"
        f" SELECT n, 'c' || n, 'c' || n || '@example.com', '+7913' || n, 'Europe/Moscow',"
        f" 'default', 'subscribed', 'subscribed', '{{}}', {now}, {now} FROM {numbers}",
        "INSERT INTO chains (id, name, status, enrollment, campaign_tag, utm_enabled,"
        " created_at, updated_at, holdout_percent) VALUES "
        + ", ".join(
            f"({chain}, 'Chain {chain}', 'active', 'once', 'chain_{chain}', {true}, {now}, {now},"
            f" {holdout if chain == MEASURED_CHAIN else 0})"
            for chain in sorted({chain for chain, *_ in STEPS})
        ),
    ]
    for step_id, (chain, position, channel, _days, window, minimum) in enumerate(STEPS, 1):
        conversion = f'{{"goal": "order", "window_days": {window}, "min_amount": {minimum}'
        # The measured chain counts every mechanic; the others new orders only.
        conversion += f', "mechanics": {EVERY_MECHANIC}}}' if chain == MEASURED_CHAIN else "}"
        statements.append(
            "INSERT INTO steps (id, chain_id, position, name, action, conversion, created_at,"
            f" updated_at) VALUES ({step_id}, {chain}, {position}, 'Step {position}',"
            f" '{{\"channel\": \"{channel}\"}}', '{conversion}', {now}, {now})"
        )
    for step_id, (chain, _position, channel, days, _window, _minimum) in enumerate(STEPS, 1):
        roll = _hash("n", step_id)
        status = (
            f"CASE WHEN {roll} < 900 THEN 'sent' WHEN {roll} < 930 THEN 'failed'"
            f" WHEN {roll} < 980 THEN 'skipped' WHEN {roll} < 990 THEN 'uncertain'"
            " ELSE 'planned' END"
        )
        reason = (
            f"CASE WHEN {roll} >= 900 AND {roll} < 930 THEN 'rejected'"
            f" WHEN {roll} >= 930 AND {roll} < 980 THEN 'terms not met'"
            f" WHEN {roll} >= 980 AND {roll} < 990 THEN 'outcome lost' END"
        )
        moment = _moment(db, f"{days * 86400} + {_hash('n', step_id + 100)} * 21")
        left = f"CASE WHEN {roll} < 900 OR ({roll} >= 980 AND {roll} < 990) THEN {moment} END"
        triggered = f"CASE WHEN {roll} < 930 OR ({roll} >= 980 AND {roll} < 990) THEN {moment} END"
        audience = "WHERE n % 4 = 0" if chain == MEASURED_CHAIN else ""
        second = " WHEN n % 8 = 4 THEN 2" if step_id == EDITED_STEP else ""
        version = f"CASE WHEN {roll} >= 990 THEN NULL{second} ELSE 1 END"
        statements.append(
            f"{with_numbers} INSERT INTO deliveries (chain_id, step_id, customer_id, channel,"
            " status, reason, eligible_at, due_at, attempts, created_at, sent_at, triggered_at,"
            f" version) SELECT {chain}, {step_id}, n, '{channel}', {status}, {reason}, {now},"
            f" {moment}, 1, {now}, {left}, {triggered}, {version} FROM {numbers} {audience}"
        )
    # The blocks of both versions of the edited step, as services/editing.py keeps them.
    statements.append(
        "INSERT INTO step_versions (step_id, version, action, conversion, created_at)"
        f" SELECT id, v.version, action, conversion, {now} FROM steps"
        " CROSS JOIN (SELECT 1 AS version UNION ALL SELECT 2) v"
        f" WHERE id = {EDITED_STEP}"
    )
    # The measured chain's main step holds out its share: never sent, no events.
    statements.append(
        "UPDATE deliveries SET status = 'held_out', reason = NULL, sent_at = NULL,"
        " triggered_at = NULL, version = NULL"
        f" WHERE step_id = 1 AND {_hash('customer_id', 50)} < {holdout * 10}"
    )
    statements += _event_statements(db)
    statements += _order_statements(db, customers, orders, updates)
    return statements


def _order_statements(db: Database, customers: int, orders: int, updates: int) -> list[str]:
    """The orders of random customers, each with its placement as its first state: most
    placed over 35 days after START, 3 % of them cancelled; `updates` of them placed in
    the 10 days before any message and changed once in the 30 days after START, as a
    shop's earlier orders are while a campaign runs: the 20 % placed cancelled are
    restored, the others grown by up to 500. (Orders placed after a message are that
    message's new orders, whatever they grow to later: docs/attribution.md.)"""
    now = _moment(db, "0")
    with_orders, order_numbers = _numbers(db, orders)
    customer = f"1 + {_bits('n', 5)} % {customers}"
    amount = f"(({_bits('n', 7)} % 990001 + 1000) / 100.0)"
    updates = min(updates, orders)
    every = max(1, orders // updates) if updates else orders + 1
    updated = f"(n % {every} = 0 AND n <= {updates * every})"
    offset = _bits("n", 9)
    # Up to 10 days before START, or over 35 days (3,000,000 seconds) after it.
    before = _moment(db, f"-1 - {offset} % 864000")
    after = _moment(db, f"{offset} % 3000000")
    placed = f"CASE WHEN {updated} THEN {before} ELSE {after} END"
    status = (
        f"CASE WHEN {_hash('n', 11)} < CASE WHEN {updated} THEN 200 ELSE 30 END"
        " THEN 'cancelled' ELSE 'new' END"
    )
    changed = _moment(db, f"{_bits('n', 13)} % 2592000")
    return [
        f"{with_orders} INSERT INTO orders (id, external_id, customer_id, amount, currency,"
        f" status, created_at, updated_at, received_at) SELECT n, 'o' || n, {customer},"
        f" {amount}, 'RUB', {status}, {placed}, {placed}, {now} FROM {order_numbers}",
        "INSERT INTO order_changes (order_id, amount, status, changed_at, received_at)"
        " SELECT id, amount, status, created_at, received_at FROM orders",
        f"{with_orders} INSERT INTO order_changes (order_id, amount, status, changed_at,"
        f" received_at) SELECT n, CASE WHEN {status} = 'cancelled' THEN {amount}"
        f" ELSE {amount} + {_bits('n', 15)} % 50000 / 100.0 END, 'new', {changed}, {now}"
        f" FROM {order_numbers} WHERE {updated}",
        "UPDATE orders SET (amount, status, updated_at) = (SELECT c.amount, c.status,"
        " c.changed_at FROM order_changes c WHERE c.order_id = orders.id"
        " ORDER BY c.changed_at DESC, c.id DESC LIMIT 1)"
        " WHERE id IN (SELECT order_id FROM order_changes GROUP BY order_id HAVING COUNT(*) > 1)",
    ]


def _event_statements(db: Database) -> list[str]:
    """Events of the messages that left, chosen by hashes of the delivery id."""
    at = "sent_at"
    kinds = [
        ("opened", "email", f"{_hash('id', 1)} BETWEEN 20 AND 319"),
        ("clicked", "email", f"{_hash('id', 1)} BETWEEN 20 AND 319 AND {_hash('id', 2)} < 333"),
        ("unsubscribed", "email", f"{_hash('id', 1)} BETWEEN 20 AND 319 AND {_hash('id', 3)} < 20"),
        ("bounced", "email", f"{_hash('id', 1)} < 20"),
        ("delivered", "sms", f"{_hash('id', 1)} < 850"),
        ("bounced", "sms", f"{_hash('id', 1)} BETWEEN 850 AND 879"),
    ]
    return [
        "INSERT INTO events (delivery_id, customer_id, type, occurred_at, data)"
        f" SELECT id, customer_id, '{kind}', {at}, '{{}}' FROM deliveries"
        f" WHERE channel = '{channel}' AND sent_at IS NOT NULL AND {condition}"
        for kind, channel, condition in kinds
    ]


async def make_shop(
    db: Database, customers: int, orders: int, updates: int, holdout: int = HOLDOUT_PERCENT
) -> None:
    started = time.perf_counter()
    for statement in _shop_statements(db, customers, orders, updates, holdout):
        async with db.writer() as session:
            if not db.is_sqlite:
                # Loading only: foreign keys unchecked (they hold by construction).
                await session.execute(text("SET LOCAL session_replication_role = replica"))
            await session.execute(text(statement))
    if not db.is_sqlite:
        async with db.writer() as session:
            for table in ("customers", "chains", "steps", "orders"):
                await session.execute(
                    text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), MAX(id))"
                         f" FROM {table}")
                )  # fmt: skip
        autocommit = db.engine.execution_options(isolation_level="AUTOCOMMIT")
        async with autocommit.connect() as conn:
            await conn.execute(text("VACUUM ANALYZE"))
    async with db.session() as session:
        counts = {
            table: await session.scalar(text(f"SELECT COUNT(*) FROM {table}"))
            for table in ("deliveries", "events", "orders", "order_changes")
        }
    print(
        f"  shop: {counts['deliveries']:,} deliveries, {counts['events']:,} events,"
        f" {counts['orders']:,} orders, {counts['order_changes'] - counts['orders']:,} order"
        f" updates in {time.perf_counter() - started:.0f} s",
        flush=True,
    )


async def rebuild(db: Database) -> float:
    started = time.perf_counter()
    async with db.writer() as session:
        await attribution_table.rebuild(session)
    elapsed = time.perf_counter() - started
    if not db.is_sqlite:
        autocommit = db.engine.execution_options(isolation_level="AUTOCOMMIT")
        async with autocommit.connect() as conn:
            await conn.execute(text("VACUUM ANALYZE attributions"))
    async with db.session() as session:
        by_mechanic = dict(
            list(
                await session.execute(
                    text("SELECT mechanic, COUNT(*) FROM attributions GROUP BY mechanic")
                )
            )
        )
    kinds = ", ".join(f"{count:,} {mechanic}" for mechanic, count in sorted(by_mechanic.items()))
    print(
        f"  rebuild: {sum(by_mechanic.values()):,} orders attributed ({kinds}) in {elapsed:.1f} s",
        flush=True,
    )
    return elapsed


BARE_COUNT = text(
    "SELECT step_id, status, COUNT(*) FROM deliveries WHERE chain_id = :chain_id"
    " GROUP BY step_id, status"
)


async def _bare_count(db: Database) -> None:
    async with db.session() as session:
        list(await session.execute(BARE_COUNT, {"chain_id": MEASURED_CHAIN}))


async def _stats(db: Database) -> None:
    await chain_stats(db, MEASURED_CHAIN)


async def _holdout(db: Database) -> None:
    async with db.session() as session:
        sql = itt_sql(db.engine.dialect.name, 7, until=False)
        params = {"chain_id": MEASURED_CHAIN, "step_id": 1, "min_amount": 0}
        list(await session.execute(text(sql), params))


async def _timed(run: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await run()
    return time.perf_counter() - started


async def measure_stats(db: Database, runs: int) -> dict[str, list[float]]:
    runners = {"bare": _bare_count, "stats": _stats, "holdout": _holdout}
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    for round_ in range(runs):
        order = list(runners) if round_ % 2 == 0 else list(reversed(runners))
        for name in order:
            run = runners[name]
            seconds[name].append(await _timed(lambda run=run: run(db)))
    return seconds


async def _sample(db: Database, sql: str, count: int) -> list[int]:
    async with db.session() as session:
        rows = list(await session.scalars(text(sql)))
    return random.Random(1).sample(rows, min(count, len(rows)))


async def measure_facts(db: Database, facts: int) -> dict[str, list[float]]:
    """Each fact in a transaction of its own, against a bare transaction writing its row."""
    with_orders = "customer_id IN (SELECT customer_id FROM orders)"
    emails = await _sample(
        db,
        "SELECT id FROM deliveries WHERE channel = 'email' AND status = 'sent'"
        f" AND {with_orders} LIMIT {facts * 50}",
        facts,
    )
    buyers = await _sample(db, f"SELECT DISTINCT customer_id FROM orders LIMIT {facts * 50}", facts)
    sms = await _sample(
        db,
        "SELECT id FROM deliveries WHERE channel = 'sms' AND status = 'sent'"
        f" AND {with_orders} LIMIT {facts * GROUP * 5}",
        facts * GROUP,
    )
    seconds: dict[str, list[float]] = {
        name: [] for fact in FACTS for name in (f"bare {fact}", fact)
    }
    moment = bindparam("at", type_=UtcDateTime())
    bare_event = text(
        "INSERT INTO events (delivery_id, customer_id, type, occurred_at, data)"
        " SELECT id, customer_id, 'opened', :at, '{}' FROM deliveries WHERE id = :id"
    ).bindparams(moment)
    bare_order = text(
        "INSERT INTO orders (external_id, customer_id, amount, currency, created_at,"
        " updated_at, received_at) VALUES (:external_id, :customer_id, 1990.00, 'RUB', :at,"
        " :at, :at)"
    ).bindparams(moment)
    # Orders of the measured chain's customers, grown once more by each update.
    stored = await _sample(
        db,
        f"SELECT id FROM orders WHERE customer_id % 4 = 0 LIMIT {facts * 50}",
        2 * facts,
    )
    async with db.session() as session:
        rows = await session.execute(
            text(
                "SELECT id, external_id, customer_id, amount FROM orders WHERE id IN :ids"
            ).bindparams(bindparam("ids", expanding=True)),
            {"ids": stored},
        )
        grown_orders = [tuple(row) for row in rows]
    bare_update = text(
        "UPDATE orders SET amount = amount + 10, updated_at = :at WHERE id = :id"
    ).bindparams(moment)
    for number, (email, buyer) in enumerate(zip(emails, buyers, strict=False)):
        group = sms[number * GROUP : (number + 1) * GROUP]

        async def bare_open(email: int = email) -> None:
            async with db.writer() as session:
                await session.execute(bare_event, {"id": email, "at": NOW})

        async def order_row(buyer: int = buyer, number: int = number) -> None:
            async with db.writer() as session:
                await session.execute(
                    bare_order, {"external_id": f"bare-{number}", "customer_id": buyer, "at": NOW}
                )

        async def placed(buyer: int = buyer, number: int = number) -> None:
            item = {
                "external_id": f"bench-{number}",
                "customer_external_id": f"c{buyer}",
                "amount": "1990.00",
                "created_at": NOW.isoformat(),
            }
            await record_orders(db, [item], NOW)

        async def sent(group: list[int] = group, triggered: bool = False) -> None:
            async with db.writer() as session:
                await session.execute(
                    text("UPDATE deliveries SET sent_at = sent_at, claimed_by = NULL"
                         " WHERE id IN :ids").bindparams(bindparam("ids", expanding=True)),
                    {"ids": group},
                )  # fmt: skip
                if triggered:
                    await messages_triggered(session, group, NOW)

        seconds["bare open"].append(await _timed(bare_open))
        seconds["open"].append(await _timed(lambda email=email: record_open(db, email, NOW)))
        seconds["bare order"].append(await _timed(order_row))
        seconds["order"].append(await _timed(placed))
        seconds["bare send"].append(await _timed(sent))
        seconds["send"].append(await _timed(lambda group=group: sent(group, triggered=True)))
    for number, (order_id, external_id, customer_id, amount) in enumerate(grown_orders):
        if number % 2:

            async def bare_grown(order_id: int = order_id) -> None:
                async with db.writer() as session:
                    await session.execute(bare_update, {"id": order_id, "at": NOW})

            seconds["bare update"].append(await _timed(bare_grown))
            continue
        item = {
            "external_id": external_id,
            "customer_external_id": f"c{customer_id}",
            "amount": f"{amount + 10}",
            "updated_at": NOW.isoformat(),
        }
        seconds["update"].append(await _timed(lambda item=item: record_orders(db, [item], NOW)))
    return seconds


def _median_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.2f} ms"


def report(
    kind: str, rebuilt: float, stats: dict[str, list[float]], facts: dict[str, list[float]]
) -> None:
    bare, full, holdout = (statistics.median(stats[name]) for name in ("bare", "stats", "holdout"))
    runs = ", ".join(f"{s:.2f}" for s in stats["stats"])
    print(
        f"{kind}: rebuild {rebuilt:.1f} s; bare {bare:.3f} s, chain_stats {full:.3f} s"
        f" (runs {runs}), stats/bare {full / bare:.2f}; holdout alone {holdout:.3f} s",
        flush=True,
    )
    for name in FACTS:
        plain, kept = statistics.median(facts[f"bare {name}"]), statistics.median(facts[name])
        p95 = statistics.quantiles(facts[name], n=20)[-1] if len(facts[name]) > 1 else kept
        print(
            f"{kind}: {name} {kept * 1000:.2f} ms (p95 {p95 * 1000:.2f}),"
            f" bare {plain * 1000:.2f} ms, {name}/bare {kept / plain:.2f}",
            flush=True,
        )


async def run(url: str, options: argparse.Namespace) -> tuple[float, dict, dict]:
    db = Database(url)
    try:
        await make_shop(
            db, options.customers, options.orders, options.updates, options.holdout_percent
        )
        rebuilt = await rebuild(db)
        stats = await measure_stats(db, options.runs)
        facts = await measure_facts(db, options.facts)
        return rebuilt, stats, facts
    finally:
        await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--updates", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--holdout-percent", type=int, default=HOLDOUT_PERCENT, help="0: no holdout, as before"
    )
    parser.add_argument("--facts", type=int, default=200)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--scratch", default="bench_stats", help="the scratch database's name")
    options = parser.parse_args()
    for kind in options.databases.split(","):
        print(f"{kind}:", flush=True)
        scratch = scratch_sqlite if kind == "sqlite" else scratch_postgres
        with scratch(options.scratch) as url:
            report(kind, *asyncio.run(run(url, options)))


if __name__ == "__main__":
    main()
