"""The `attributions` table: the rule of `models.attribution`, kept in SQL as facts arrive.

Which message an order counts for depends only on its customer's deliveries,
their events, their steps' conversion blocks and the customer's orders. So when
one of those facts changes, the rows of that customer's orders are rewritten —
deleted, then computed again by one `INSERT … SELECT` restricted to the
customers concerned — in the transaction that records the fact (`models.facts`
calls in). Stats then group this table instead of joining every order with
every message on each read.

The SQL is one statement for both databases but for two spellings (the step's
conversion block, the window's end). On PostgreSQL, transactions refreshing the
same customer queue on a transaction-scoped advisory lock per customer, taken
before anything is read: without it, an order and an open recorded at the same
moment would each compute without the other's uncommitted fact, and neither
would attribute the order. SQLite has one writer at a time.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ARRAY, BigInteger, TextClause, bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from models.attribution import DEFAULT_MIN_AMOUNT
from models.chainfile import DEFAULT_WINDOW_DAYS
from models.tables import LEFT_STATUSES

# LEFT_STATUSES as an SQL list: `status IN ({LEFT_SQL})`.
LEFT_SQL = ", ".join(f"'{status}'" for status in LEFT_STATUSES)
# What a delivery's events say, as 0/1 flags; one row per delivery however many
# events (a message opened five times counts once).
EVENT_FLAGS = """
    MAX(CASE WHEN e.type IN ('delivered', 'opened', 'clicked') THEN 1 ELSE 0 END) AS arrived,
    MAX(CASE WHEN e.type = 'bounced' THEN 1 ELSE 0 END) AS bounced,
    MAX(CASE WHEN e.type IN ('opened', 'clicked') THEN 1 ELSE 0 END) AS opened,
    MAX(CASE WHEN e.type = 'clicked' THEN 1 ELSE 0 END) AS clicked,
    MAX(CASE WHEN e.type = 'unsubscribed' THEN 1 ELSE 0 END) AS unsubscribed"""
# The class of our advisory locks (the first of the two keys): "attr" in ASCII.
_LOCK_CLASS = 0x61747472

# `{customers}` restricts the orders to some customers (a condition on
# o.customer_id, or TRUE); `{window_end}` and `{min_amount}` are spelled per dialect.
#
# `CROSS JOIN` keeps SQLite's join order as written (the orders, then each
# customer's messages, then their step), which PostgreSQL's planner is free to
# change; the first pass reads only columns of the index on orders
# (customer_id, created_at). The winner per order: the chain whose qualifying
# message came first (ties: lower delivery id), and in it the latest qualifying
# message (ties: higher delivery id), as `models.attribution.attribute` decides.
_INSERT = f"""
INSERT INTO attributions ({{columns}})
WITH in_window AS MATERIALIZED (
    SELECT o.id AS order_id, o.customer_id, o.amount, o.created_at AS ordered_at,
           d.id AS delivery_id, d.chain_id, d.step_id, d.channel, d.status, d.sent_at
           {{message_version}}
    FROM orders o
    CROSS JOIN deliveries d
    CROSS JOIN steps s
    {{versions}}
    WHERE {{customers}}
      AND d.customer_id = o.customer_id
      AND d.sent_at <= o.created_at
      AND s.id = d.step_id
      AND o.created_at < {{window_end}}
      AND o.amount >= {{min_amount}}
),
flags AS (
    SELECT e.delivery_id, {EVENT_FLAGS}
    FROM events e
    WHERE e.delivery_id IN (SELECT delivery_id FROM in_window)
    GROUP BY e.delivery_id
),
qualifying AS (
    SELECT {{qualifying_columns}},
           FIRST_VALUE(w.chain_id) OVER (
               PARTITION BY w.order_id ORDER BY w.sent_at, w.delivery_id
           ) AS first_chain_id,
           ROW_NUMBER() OVER (
               PARTITION BY w.order_id, w.chain_id ORDER BY w.sent_at DESC, w.delivery_id DESC
           ) AS latest
    FROM in_window w
    LEFT JOIN flags f ON f.delivery_id = w.delivery_id
    -- models.attribution.engaged: an email opened or clicked; an SMS reported
    -- delivered, opened or clicked, or gone out (sent or uncertain) and never bounced.
    WHERE CASE WHEN w.channel = 'email' THEN f.opened = 1
               ELSE f.arrived = 1 OR (w.status IN ({LEFT_SQL}) AND COALESCE(f.bounced, 0) = 0)
          END
)
SELECT {{columns}}
FROM qualifying
WHERE chain_id = first_chain_id AND latest = 1
"""

_SQLITE_WINDOW_DAYS = (
    f"COALESCE(json_extract(s.conversion, '$.window_days'), {DEFAULT_WINDOW_DAYS:d})"
)
_POSTGRESQL_WINDOW_DAYS = (
    f"COALESCE(CAST(s.conversion ->> 'window_days' AS INTEGER), {DEFAULT_WINDOW_DAYS:d})"
)


def window_end_sql(dialect: str, moment: str, days: str) -> str:
    """The SQL of `moment` plus `days` whole days (both SQL expressions): where a
    conversion window ends.

    SQLite keeps moments as text 'YYYY-MM-DD HH:MM:SS.ffffff': datetime() drops the
    fraction, which whole days never change, so it is put back to compare exactly.
    PostgreSQL adds hours, not days: a day interval follows the session's time zone
    across DST.
    """
    if dialect == "sqlite":
        return f"datetime({moment}, '+' || {days} || ' days') || substr({moment}, 20)"
    return f"{moment} + {days} * INTERVAL '24 hours'"


_SPELLING = {
    "sqlite": {
        "window_end": window_end_sql("sqlite", "d.sent_at", _SQLITE_WINDOW_DAYS),
        "min_amount": (
            f"COALESCE(json_extract(s.conversion, '$.min_amount'), {int(DEFAULT_MIN_AMOUNT)})"
        ),
    },
    "postgresql": {
        "window_end": window_end_sql("postgresql", "d.sent_at", _POSTGRESQL_WINDOW_DAYS),
        "min_amount": (
            f"COALESCE(CAST(s.conversion ->> 'min_amount' AS NUMERIC), {int(DEFAULT_MIN_AMOUNT)})"
        ),
    },
}


# A message's conversion block is that of the step version it was composed with
# (services/editing.py); a version with no row in step_versions is the step's own.
_VERSIONS_JOIN = "LEFT JOIN step_versions v ON v.step_id = d.step_id AND v.version = d.version"
_COLUMNS = ("order_id", "customer_id", "delivery_id", "chain_id", "step_id", "amount", "ordered_at")
# The message's version is copied too, for stats per version (none recorded: 1, as
# models.stats counts it).
_VERSION_COLUMNS = (*_COLUMNS[:5], "version", *_COLUMNS[5:])


def _insert(dialect: str, customers: str, *, versions: bool = True) -> str:
    spelling = _SPELLING[dialect]
    conversion = "COALESCE(v.conversion, s.conversion)" if versions else "s.conversion"
    columns = _VERSION_COLUMNS if versions else _COLUMNS
    return _INSERT.format(
        columns=", ".join(columns),
        qualifying_columns=", ".join(f"w.{column}" for column in columns),
        message_version=", COALESCE(d.version, 1) AS version" if versions else "",
        customers=customers,
        versions=_VERSIONS_JOIN if versions else "",
        window_end=spelling["window_end"].replace("s.conversion", conversion),
        min_amount=spelling["min_amount"].replace("s.conversion", conversion),
    )


def rebuild_statements(dialect: str, *, versions: bool = True) -> list[str]:
    """Every order attributed again from scratch. `versions` False: as before step
    versions existed, into the table as it was then (the migration that made the
    table runs before theirs)."""
    return ["DELETE FROM attributions", _insert(dialect, "TRUE", versions=versions)]


async def rebuild(session: AsyncSession) -> None:
    dialect = session.bind.dialect.name
    if dialect == "postgresql":
        await session.execute(text("LOCK TABLE attributions IN SHARE ROW EXCLUSIVE MODE"))
        # Compiling the big joins takes longer than running them.
        await session.execute(text("SET LOCAL jit = off"))
    for statement in rebuild_statements(dialect):
        await session.execute(text(statement))


@dataclass(frozen=True)
class _Ids:
    """Some ids as SQL: a query returning them, or a list passed as one parameter
    however long it is (PostgreSQL: an array; SQLite: a JSON array)."""

    query: str
    params: dict[str, Any]

    def among(self, column: str) -> str:
        return f"{column} IN ({self.query})"

    def statement(self, sql: str) -> TextClause:
        value = self.params.get("ids")
        if isinstance(value, list):
            return text(sql).bindparams(bindparam("ids", value, type_=ARRAY(BigInteger)))
        return text(sql).bindparams(**self.params)


def _listed(dialect: str, ids: Collection[int]) -> _Ids:
    if dialect == "postgresql":
        return _Ids("SELECT unnest(:ids)", {"ids": sorted(ids)})
    return _Ids("SELECT value FROM json_each(:ids)", {"ids": json.dumps(sorted(ids))})


async def refresh_customers(session: AsyncSession, customer_ids: Collection[int]) -> None:
    """The orders of these customers attributed again."""
    if customer_ids:
        await _refresh(session, _listed(session.bind.dialect.name, customer_ids))


async def refresh_customers_of(
    session: AsyncSession, delivery_ids: Collection[int], *, engaged_only: bool = False
) -> None:
    """The orders of these messages' customers attributed again; only messages that went
    out can change anything. `engaged_only`: emails that were not opened or clicked
    change nothing either (the case of a message that has just left)."""
    if not delivery_ids:
        return
    listed = _listed(session.bind.dialect.name, delivery_ids)
    engaged = (
        " AND (d.channel <> 'email' OR EXISTS (SELECT 1 FROM events e"
        " WHERE e.delivery_id = d.id AND e.type IN ('opened', 'clicked')))"
        if engaged_only
        else ""
    )
    query = (
        f"SELECT DISTINCT d.customer_id FROM deliveries d"
        f" WHERE {listed.among('d.id')} AND d.sent_at IS NOT NULL{engaged}"
    )
    await _refresh(session, _Ids(query, listed.params))


async def refresh_step(session: AsyncSession, step_id: int) -> None:
    """The orders of everyone the step's messages went to attributed again (its
    conversion block changed); on PostgreSQL, other refreshes wait meanwhile."""
    if session.bind.dialect.name == "postgresql":
        await session.execute(text("LOCK TABLE attributions IN SHARE ROW EXCLUSIVE MODE"))
    query = (
        "SELECT DISTINCT customer_id FROM deliveries"
        " WHERE step_id = :step_id AND sent_at IS NOT NULL"
    )
    await _refresh(session, _Ids(query, {"step_id": step_id}), table_locked=True)


async def _refresh(session: AsyncSession, customers: _Ids, *, table_locked: bool = False) -> None:
    dialect = session.bind.dialect.name
    if dialect == "postgresql" and not table_locked:
        await session.execute(
            customers.statement(
                f"SELECT pg_advisory_xact_lock({_LOCK_CLASS}, CAST(id % 2147483648 AS INTEGER))"
                f" FROM ({customers.query} ORDER BY 1) AS c (id)"
            )
        )
    # Read after the lock, so that a transaction that waited sees what the other committed.
    # Customers without orders have nothing to attribute (most, when a message leaves).
    with_orders = await session.scalars(
        customers.statement(
            f"SELECT DISTINCT customer_id FROM orders WHERE {customers.among('customer_id')}"
        )
    )
    ids = list(with_orders)
    if not ids:
        return
    listed = _listed(dialect, ids)
    await session.execute(
        listed.statement(f"DELETE FROM attributions WHERE {listed.among('customer_id')}")
    )
    await session.execute(listed.statement(_insert(dialect, listed.among("o.customer_id"))))
