"""A chain's numbers per step (SPEC §7 `chainmail stats`), computed in the database.

Aggregate queries only, never a delivery loaded into Python: the chain's
deliveries counted by step and status, its skips by reason, what the events of
its messages say, and the orders attributed to its steps, grouped from the
`attributions` table that `models.attribution_table` keeps. docs/attribution.md
defines every number.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, bindparam, select, text

from models import reasons
from models.attribution_table import EVENT_FLAGS, LEFT_SQL
from models.db import Database
from models.errors import NotFound
from models.tables import LEFT_STATUSES, Chain, DeliveryStatus, Step, UtcDateTime

CENT = Decimal("0.01")


@dataclass(frozen=True)
class StepStats:
    position: int
    name: str
    # None until the step's action block is saved.
    channel: str | None
    coverage: int
    planned: int
    sent: int
    failed: int
    skipped: int
    uncertain: int
    delivered: int
    opened: int
    clicked: int
    unsubscribed: int
    orders: int
    revenue: Decimal
    conversion_rate: float
    skipped_by_reason: dict[str, int]


@dataclass(frozen=True)
class ChainStats:
    chain_id: int
    name: str
    status: str
    steps: list[StepStats]


# Orders read from the kept `attributions` table (models.attribution_table).
_ATTRIBUTED_BY_STEP = """
SELECT a.step_id,
       COUNT(*) AS orders,
       SUM(ROUND(a.amount * 100)) AS revenue_cents,
       COUNT(DISTINCT a.customer_id) AS customers
FROM attributions a
WHERE a.chain_id = :chain_id {orders_in_period}
GROUP BY a.step_id
"""

_DELIVERIES_BY_STATUS = """
SELECT d.step_id, d.status, COUNT(*) AS deliveries
FROM deliveries d
WHERE d.chain_id = :chain_id {deliveries_in_period}
GROUP BY d.step_id, d.status
"""

_SKIPPED_BY_REASON = """
SELECT d.step_id, d.reason, COUNT(*) AS deliveries
FROM deliveries d
WHERE d.chain_id = :chain_id AND d.status = 'skipped' {deliveries_in_period}
GROUP BY d.step_id, d.reason
"""

# Only the chain's messages that have events are looked at, their events folded
# into flags per delivery first. A message counts as delivered when it left (sent
# or uncertain) and did not bounce, or when an arrival event says so:
# `delivered_change` corrects the number that left by the exceptions either way.
_DELIVERIES_BY_EVENTS = f"""
SELECT f.step_id,
       SUM(CASE WHEN f.status IN ({LEFT_SQL}) AND f.arrived = 0 AND f.bounced = 1 THEN -1
                WHEN f.status NOT IN ({LEFT_SQL}) AND f.arrived = 1 THEN 1
                ELSE 0 END) AS delivered_change,
       SUM(f.opened) AS opened,
       SUM(f.clicked) AS clicked,
       SUM(f.unsubscribed) AS unsubscribed
FROM (
    SELECT d.id, d.step_id, d.status, {EVENT_FLAGS}
    FROM deliveries d
    JOIN events e ON e.delivery_id = d.id
    WHERE d.chain_id = :chain_id {{deliveries_in_period}}
      AND e.delivery_id BETWEEN (SELECT MIN(id) FROM deliveries WHERE chain_id = :chain_id)
                            AND (SELECT MAX(id) FROM deliveries WHERE chain_id = :chain_id)
    GROUP BY d.step_id, d.status, d.id
) f
GROUP BY f.step_id
"""

# A delivery belongs to a period by when it went out, or else by when it was planned.
_DELIVERY_MOMENT = "COALESCE(d.sent_at, d.triggered_at, d.created_at)"


@dataclass(frozen=True)
class _Period:
    since: datetime | None
    until: datetime | None

    def condition(self, column: str) -> str:
        conditions = []
        if self.since is not None:
            conditions.append(f"AND {column} >= :since")
        if self.until is not None:
            conditions.append(f"AND {column} < :until")
        return " ".join(conditions)

    async def rows(
        self,
        db: Database,
        sql: str,
        chain_id: int | None,
        moments: dict[str, datetime] | None = None,
    ) -> list[Row[Any]]:
        """The rows of one aggregate query, on a connection of its own; `moments` are
        further named moments the query compares with."""
        statement = text(sql)
        params: dict[str, Any] = {}
        if chain_id is not None:
            params["chain_id"] = chain_id
        named = {"since": self.since, "until": self.until} | (moments or {})
        # Typed so that SQLite compares with the same text form of a moment it stores.
        for name, value in named.items():
            if value is not None:
                statement = statement.bindparams(bindparam(name, type_=UtcDateTime()))
                params[name] = value
        async with db.session() as session:
            if not db.is_sqlite:
                # The estimates for these joins pass jit_above_cost, and compiling
                # them took longer (about a second on a million deliveries) than
                # running them. For this transaction only.
                await session.execute(text("SET LOCAL jit = off"))
            return list(await session.execute(statement, params))


async def attributed_orders(db: Database, chain_id: int | None = None) -> dict[int, int]:
    """{order id: delivery id} for the orders that count for a message (of one chain)."""
    sql = "SELECT order_id, delivery_id FROM attributions"
    if chain_id is not None:
        sql += " WHERE chain_id = :chain_id"
    rows = await _Period(None, None).rows(db, sql, chain_id)
    return {order_id: delivery_id for order_id, delivery_id in rows}


async def chain_stats(
    db: Database,
    chain_id: int,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> ChainStats:
    """Per-step numbers of a chain; `since`/`until` (until exclusive) narrow them to a period.

    In a period, deliveries count by when they were sent (or, never sent, by when
    they were planned) and orders by when they were placed; an order in the
    period may count for a message sent before it.
    """
    period = _Period(since, until)
    in_period = period.condition(_DELIVERY_MOMENT)
    async with db.session() as session:
        chain = await session.get(Chain, chain_id)
        if chain is None:
            raise NotFound(f"no chain with id {chain_id}")
        steps = list(
            await session.scalars(
                select(Step).where(Step.chain_id == chain_id).order_by(Step.position)
            )
        )
    # Independent aggregates, side by side on connections of their own, so that
    # spare cores answer in about the time of the slowest (on a million
    # deliveries, a fraction of a second each). While messages go out, each
    # reads its own moment: numbers may differ by what was sent in between.
    by_status, skipped, by_events, conversions = await asyncio.gather(
        period.rows(db, _DELIVERIES_BY_STATUS.format(deliveries_in_period=in_period), chain_id),
        period.rows(db, _SKIPPED_BY_REASON.format(deliveries_in_period=in_period), chain_id),
        period.rows(db, _DELIVERIES_BY_EVENTS.format(deliveries_in_period=in_period), chain_id),
        period.rows(
            db,
            _ATTRIBUTED_BY_STEP.format(orders_in_period=period.condition("a.ordered_at")),
            chain_id,
        ),
    )
    # A step added meanwhile may have rows here; it shows from the next call on.
    tallies: defaultdict[int, _Tally] = defaultdict(_Tally)
    for step_id, status, count in by_status:
        tallies[step_id].by_status[status] = count
    for step_id, reason, count in skipped:
        tallies[step_id].add_skipped(reason, count)
    for step_id, *counts in by_events:
        tallies[step_id].set_events(*counts)
    for step_id, orders, revenue_cents, customers in conversions:
        tallies[step_id].set_orders(orders, revenue_cents, customers)
    return ChainStats(
        chain_id=chain.id,
        name=chain.name,
        status=chain.status,
        steps=[tallies[step.id].step_stats(step) for step in steps],
    )


@dataclass(frozen=True)
class DailyStats:
    """A chain's numbers for a report: one day, the day before it, and everything until
    the day's end (so that the same day's report reads the same when made again)."""

    day: ChainStats
    day_before: ChainStats
    total: ChainStats


async def daily_stats(
    db: Database,
    chain_id: int,
    *,
    day_before_start: datetime,
    day_start: datetime,
    day_end: datetime,
) -> DailyStats:
    """The day is [day_start, day_end); the moments come from the reader's time zone."""
    day, day_before, total = await asyncio.gather(
        chain_stats(db, chain_id, since=day_start, until=day_end),
        chain_stats(db, chain_id, since=day_before_start, until=day_start),
        chain_stats(db, chain_id, until=day_end),
    )
    return DailyStats(day=day, day_before=day_before, total=total)


async def conversions_by_day(
    db: Database, chain_id: int, day_starts: list[datetime]
) -> dict[int, list[int]]:
    """{step position: orders attributed to it on each day}; day i is
    [day_starts[i], day_starts[i + 1]), so n + 1 moments give n days.

    The moments are computed by the caller in its time zone (SQLite knows no zones)
    and each order is put in its day by a `CASE` over them, in the database.
    """
    days = len(day_starts) - 1
    if days < 1:
        return {}
    period = _Period(day_starts[0], day_starts[-1])
    branches = " ".join(
        f"WHEN a.ordered_at < :day_{index + 1} THEN {index}" for index in range(days - 1)
    )
    day_of_order = f"CASE {branches} ELSE {days - 1} END" if branches else "0"
    sql = f"""
SELECT s.position, {day_of_order} AS day_index, COUNT(*) AS orders
FROM attributions a
JOIN steps s ON s.id = a.step_id
WHERE a.chain_id = :chain_id {period.condition("a.ordered_at")}
GROUP BY s.position, {day_of_order}
"""
    moments = {f"day_{index}": day_starts[index] for index in range(1, days)}
    counts: dict[int, list[int]] = {}
    for position, day_index, orders in await period.rows(db, sql, chain_id, moments):
        counts.setdefault(position, [0] * days)[day_index] = orders
    return counts


@dataclass
class _Tally:
    """A step's numbers, summed from the rows of the counting queries."""

    by_status: dict[str, int] = field(default_factory=dict)
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    delivered_change: int = 0
    opened: int = 0
    clicked: int = 0
    unsubscribed: int = 0
    orders: int = 0
    revenue: Decimal = Decimal("0.00")
    converted_customers: int = 0

    def add_skipped(self, reason: str | None, count: int) -> None:
        key = reason or "unknown"
        self.skipped_by_reason[key] = self.skipped_by_reason.get(key, 0) + count

    def set_events(
        self, delivered_change: int, opened: int, clicked: int, unsubscribed: int
    ) -> None:
        self.delivered_change = int(delivered_change)
        self.opened = int(opened)
        self.clicked = int(clicked)
        self.unsubscribed = int(unsubscribed)

    def set_orders(self, orders: int, revenue_cents: Decimal | float, customers: int) -> None:
        self.orders = orders
        self.revenue = (Decimal(int(revenue_cents)) / 100).quantize(CENT)
        self.converted_customers = customers

    def step_stats(self, step: Step) -> StepStats:
        count = self.by_status.get
        sent = count(DeliveryStatus.SENT, 0)
        out_of_reach = sum(
            n for reason, n in self.skipped_by_reason.items() if reason in reasons.OUT_OF_REACH
        )
        return StepStats(
            position=step.position,
            name=step.name,
            channel=(step.action or {}).get("channel"),
            coverage=sum(self.by_status.values()) - out_of_reach,
            # `sending` is a message on its way: still to go, like `planned`.
            planned=count(DeliveryStatus.PLANNED, 0) + count(DeliveryStatus.SENDING, 0),
            sent=sent,
            failed=count(DeliveryStatus.FAILED, 0),
            skipped=count(DeliveryStatus.SKIPPED, 0),
            uncertain=count(DeliveryStatus.UNCERTAIN, 0),
            delivered=sum(count(status, 0) for status in LEFT_STATUSES) + self.delivered_change,
            opened=self.opened,
            clicked=self.clicked,
            unsubscribed=self.unsubscribed,
            orders=self.orders,
            revenue=self.revenue,
            conversion_rate=round(self.converted_customers / sent, 4) if sent else 0.0,
            skipped_by_reason=dict(sorted(self.skipped_by_reason.items())),
        )


def stats_document(stats: ChainStats) -> dict[str, Any]:
    """The JSON document of `chainmail stats ID --json` (SPEC §7), keys in its order."""
    return {
        "chain": {"id": stats.chain_id, "name": stats.name, "status": stats.status},
        "steps": [
            {
                "position": step.position,
                "name": step.name,
                "channel": step.channel,
                "coverage": step.coverage,
                "planned": step.planned,
                "sent": step.sent,
                "failed": step.failed,
                "skipped": step.skipped,
                "uncertain": step.uncertain,
                "delivered": step.delivered,
                "opened": step.opened,
                "clicked": step.clicked,
                "unsubscribed": step.unsubscribed,
                "orders": step.orders,
                "revenue": f"{step.revenue:.2f}",
                "conversion_rate": step.conversion_rate,
            }
            for step in stats.steps
        ],
    }
