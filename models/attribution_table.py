"""The `attributions` table: the rule of `models.attribution`, kept in SQL as facts arrive.

Which message an order counts for depends only on its customer's deliveries,
their events, their steps' conversion blocks and the customer's orders with their
histories (`order_changes`). So when
one of those facts changes, the rows of that customer's orders are rewritten —
deleted, then computed again by one `INSERT … SELECT` restricted to the
customers concerned — in the transaction that records the fact (`models.facts`
calls in). Stats then group this table instead of joining every order with
every message on each read.

The SQL is one statement for both databases but for a few spellings (reading the
conversion block and its mechanics, booleans, the window's end). On PostgreSQL,
transactions refreshing the
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

from models.attribution import CANCELLED_STATUSES, DEFAULT_MIN_AMOUNT, PRECEDENCE
from models.chainfile import DEFAULT_MECHANICS, DEFAULT_WINDOW_DAYS, Mechanic
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

# The statuses of a cancelled order (models.attribution.is_cancelled), for `IN (…)`.
CANCELLED_SQL = ", ".join(f"'{status}'" for status in sorted(CANCELLED_STATUSES))
_COLUMNS = (
    "order_id",
    "customer_id",
    "delivery_id",
    "chain_id",
    "step_id",
    "version",
    "mechanic",
    "amount",
    "ordered_at",
)
# What `messages` holds of a message, carried into its pairs with orders.
_MESSAGE_COLUMNS = (
    "delivery_id",
    "customer_id",
    "chain_id",
    "step_id",
    "version",
    "channel",
    "status",
    "sent_at",
    "window_end",
    "min_amount",
    *(mechanic.value for mechanic in Mechanic),
)
_RANK = {mechanic: PRECEDENCE.index(mechanic) for mechanic in Mechanic}


def cancelled_sql(alias: str) -> str:
    return f"LOWER({alias}.status) IN ({CANCELLED_SQL})"


def _state_before(order_id: str, moment: str) -> str:
    """The id of the order's state just before `moment` (its latest change before it)."""
    return (
        f"(SELECT c.id FROM order_changes c WHERE c.order_id = {order_id}"
        f" AND c.changed_at < {moment} ORDER BY c.changed_at DESC, c.id DESC LIMIT 1)"
    )


_PAIRED = ", ".join(f"m.{column}" for column in _MESSAGE_COLUMNS)

# `{order_customers}` and `{message_customers}` restrict the orders and the messages to
# some customers (conditions on o.customer_id and d.customer_id, or TRUE); the settings
# of a step's conversion block and the window's end are spelled per dialect.
#
# `settings` reads each step's conversion block (and each version's: a message's block
# is that of the step version it was composed with, services/editing.py; a version with
# no row in step_versions is the step's own) once, not once per message. `pairs` are
# the orders placed within a message's window (new orders) and those placed before it
# that changed within it; `engaged` keeps the messages the customer engaged with, and
# finds the order's state just before the message and at the window's end. `CROSS
# JOIN` keeps SQLite's join order as written (the customers' rows first), which
# PostgreSQL's planner is free to change. The winner per order, as
# `models.attribution.conversions` decides: the first mechanic in PRECEDENCE; the
# chain whose message came first (ties: lower delivery id), and in it the latest
# message (ties: higher delivery id).
_INSERT = f"""
INSERT INTO attributions ({", ".join(_COLUMNS)})
WITH settings AS MATERIALIZED (
    SELECT s.id AS step_id, NULL AS version, {{step_settings}}
    FROM steps s
    UNION ALL
    SELECT v.step_id, v.version, {{version_settings}}
    FROM step_versions v
    JOIN steps s ON s.id = v.step_id
),
messages AS MATERIALIZED (
    SELECT d.id AS delivery_id, d.customer_id, d.chain_id, d.step_id,
           COALESCE(d.version, 1) AS version, d.channel, d.status, d.sent_at,
           {{window_end}} AS window_end,
           COALESCE(ver.min_amount, own.min_amount) AS min_amount,
           {{mechanics}}
    FROM deliveries d
    CROSS JOIN settings own
    LEFT JOIN settings ver ON ver.step_id = d.step_id AND ver.version = d.version
    WHERE {{message_customers}}
      AND d.sent_at IS NOT NULL
      AND own.step_id = d.step_id
      AND own.version IS NULL
),
pairs AS MATERIALIZED (
    SELECT o.id AS order_id, o.created_at, 1 AS placed, {_PAIRED}
    FROM orders o
    CROSS JOIN messages m
    WHERE {{order_customers}}
      AND m.customer_id = o.customer_id
      AND m.new_order
      AND m.sent_at <= o.created_at
      AND o.created_at < m.window_end
    UNION ALL
    SELECT o.id, o.created_at, 0, {_PAIRED}
    FROM orders o
    CROSS JOIN messages m
    WHERE {{order_customers}}
      AND m.customer_id = o.customer_id
      AND (m.order_increase OR m.order_restored)
      AND o.created_at < m.sent_at
      AND EXISTS (
          SELECT 1 FROM order_changes c
          WHERE c.order_id = o.id AND c.changed_at >= m.sent_at AND c.changed_at < m.window_end
      )
),
flags AS (
    SELECT e.delivery_id, {EVENT_FLAGS}
    FROM events e
    WHERE e.delivery_id IN (SELECT delivery_id FROM pairs)
    GROUP BY e.delivery_id
),
engaged AS MATERIALIZED (
    SELECT p.*,
           {_state_before("p.order_id", "p.window_end")} AS end_id,
           CASE WHEN p.placed = 0 THEN {_state_before("p.order_id", "p.sent_at")} END AS base_id
    FROM pairs p
    LEFT JOIN flags f ON f.delivery_id = p.delivery_id
    -- models.attribution.engaged: an email opened or clicked; an SMS reported
    -- delivered, opened or clicked, or gone out (sent or uncertain) and never bounced.
    WHERE CASE WHEN p.channel = 'email' THEN f.opened = 1
               ELSE f.arrived = 1 OR (p.status IN ({LEFT_SQL}) AND COALESCE(f.bounced, 0) = 0)
          END
),
candidates AS (
    SELECT w.*, b.amount AS base_amount,
           CASE WHEN w.placed = 1 THEN '{Mechanic.NEW_ORDER}'
                WHEN {cancelled_sql("b")} THEN '{Mechanic.ORDER_RESTORED}'
                ELSE '{Mechanic.ORDER_INCREASE}' END AS mechanic,
           CASE WHEN w.placed = 1 THEN {_RANK[Mechanic.NEW_ORDER]}
                WHEN {cancelled_sql("b")} THEN {_RANK[Mechanic.ORDER_RESTORED]}
                ELSE {_RANK[Mechanic.ORDER_INCREASE]} END AS precedence,
           CASE WHEN w.placed = 1 OR {cancelled_sql("b")} THEN e.amount
                ELSE ROUND(e.amount - b.amount, 2) END AS revenue
    FROM engaged w
    JOIN order_changes e ON e.id = w.end_id
    LEFT JOIN order_changes b ON b.id = w.base_id
    -- A cancelled order counts for nothing; one placed before the message converts
    -- if restored (it was cancelled then) or grown (it was not).
    WHERE NOT {cancelled_sql("e")}
      AND (w.placed = 1
           OR CASE WHEN {cancelled_sql("b")} THEN w.order_restored
                   ELSE w.order_increase AND e.amount > b.amount END)
),
ranked AS (
    SELECT c.*,
           MIN(c.precedence) OVER (PARTITION BY c.order_id) AS first_precedence,
           FIRST_VALUE(c.chain_id) OVER (
               PARTITION BY c.order_id ORDER BY c.precedence, c.sent_at, c.delivery_id
           ) AS first_chain_id,
           ROW_NUMBER() OVER (
               PARTITION BY c.order_id, c.precedence, c.chain_id
               ORDER BY c.sent_at DESC, c.delivery_id DESC
           ) AS latest
    FROM candidates c
    WHERE c.revenue >= c.min_amount
)
SELECT r.order_id, r.customer_id, r.delivery_id, r.chain_id, r.step_id, r.version,
       r.mechanic, r.revenue,
       -- When it converted: placed; else the first state within the window restored,
       -- or above the amount the message was sent at.
       CASE WHEN r.placed = 1 THEN r.created_at
            ELSE (SELECT MIN(c.changed_at) FROM order_changes c
                  WHERE c.order_id = r.order_id
                    AND c.changed_at >= r.sent_at AND c.changed_at < r.window_end
                    AND CASE WHEN r.mechanic = '{Mechanic.ORDER_RESTORED}'
                             THEN NOT {cancelled_sql("c")}
                             ELSE c.amount > r.base_amount END)
       END
FROM ranked r
WHERE r.precedence = r.first_precedence AND r.chain_id = r.first_chain_id AND r.latest = 1
"""


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


@dataclass(frozen=True)
class _Spelling:
    """What the two databases spell differently, over a conversion block `{c}`."""

    window_days: str
    min_amount: str
    # Whether the block lists a mechanic; `{default}` when it lists none.
    lists: str
    true: str
    false: str
    # The window's end, from d.sent_at and `{days}`.
    window_end: str

    def settings(self, conversion: str) -> str:
        mechanics = ", ".join(
            self.lists.format(
                c=conversion,
                name=mechanic.value,
                default=self.true if mechanic in DEFAULT_MECHANICS else self.false,
            )
            + f" AS {mechanic.value}"
            for mechanic in Mechanic
        )
        return (
            f"{self.window_days.format(c=conversion)} AS window_days,"
            f" {self.min_amount.format(c=conversion)} AS min_amount, {mechanics}"
        )


_SPELLING = {
    "sqlite": _Spelling(
        window_days=f"COALESCE(json_extract({{c}}, '$.window_days'), {DEFAULT_WINDOW_DAYS:d})",
        min_amount=f"COALESCE(json_extract({{c}}, '$.min_amount'), {int(DEFAULT_MIN_AMOUNT)})",
        lists=(
            "CASE WHEN json_type({c}, '$.mechanics') IS NULL THEN {default}"
            " ELSE EXISTS (SELECT 1 FROM json_each({c}, '$.mechanics') WHERE value = '{name}')"
            " END"
        ),
        true="1",
        false="0",
        window_end=window_end_sql("sqlite", "d.sent_at", "{days}"),
    ),
    "postgresql": _Spelling(
        window_days=(
            f"COALESCE(CAST({{c}} ->> 'window_days' AS INTEGER), {DEFAULT_WINDOW_DAYS:d})"
        ),
        min_amount=(
            f"COALESCE(CAST({{c}} ->> 'min_amount' AS NUMERIC), {int(DEFAULT_MIN_AMOUNT)})"
        ),
        lists=(
            "COALESCE(CAST({c} AS jsonb) -> 'mechanics' @> CAST('[\"{name}\"]' AS jsonb),"
            " {default})"
        ),
        true="TRUE",
        false="FALSE",
        window_end=window_end_sql("postgresql", "d.sent_at", "{days}"),
    ),
}


def _insert(dialect: str, customers: _Ids | None) -> str:
    """The statement attributing the orders of `customers` (None: of everyone)."""
    spelling = _SPELLING[dialect]

    def own_or_version(column: str) -> str:
        return f"COALESCE(ver.{column}, own.{column})"

    return _INSERT.format(
        step_settings=spelling.settings("s.conversion"),
        version_settings=spelling.settings("COALESCE(v.conversion, s.conversion)"),
        window_end=spelling.window_end.format(days=own_or_version("window_days")),
        mechanics=", ".join(
            f"{own_or_version(mechanic.value)} AS {mechanic.value}" for mechanic in Mechanic
        ),
        order_customers=customers.among("o.customer_id") if customers else "TRUE",
        message_customers=customers.among("d.customer_id") if customers else "TRUE",
    )


def rebuild_statements(dialect: str) -> list[str]:
    """Every order attributed again from scratch."""
    return ["DELETE FROM attributions", _insert(dialect, None)]


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
    await session.execute(listed.statement(_insert(dialect, listed)))
