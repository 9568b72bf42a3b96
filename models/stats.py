"""A chain's numbers per step (SPEC §7 `chainmail stats`), computed in the database.

Aggregate queries only, never a delivery loaded into Python: the chain's
deliveries counted by step and status, its skips by reason, what the events of
its messages say, and the orders attributed to its steps, grouped from the
`attributions` table that `models.attribution_table` keeps. The same queries
group by the step version of each message too, so a step's numbers come split
by version (services/editing.py makes versions) at no extra read. docs/attribution.md
defines every number.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Numeric, Row, bindparam, select, text

from i18n import N_
from models import reasons
from models.attribution import conversion_settings
from models.attribution_table import EVENT_FLAGS, LEFT_SQL
from models.db import Database
from models.errors import NotFound
from models.holdout import itt_sql
from models.lift import Group, Lift, enough_data, lift
from models.tables import LEFT_STATUSES, Chain, DeliveryStatus, Step, UtcDateTime

CENT = Decimal("0.01")


@dataclass(frozen=True, kw_only=True)
class MessageNumbers:
    """What some messages of a step came to: all of them (`StepStats`) or those of one
    step version (`VersionStats`); docs/attribution.md defines each."""

    sent: int
    failed: int
    skipped: int
    uncertain: int
    delivered: int
    opened: int
    clicked: int
    unsubscribed: int
    bounced: int
    complained: int
    orders: int
    revenue: Decimal
    conversion_rate: float
    # Handed to the channel: left, or refused at once with a bounce; what bounce and
    # complaint rates are of (models/protection.py).
    handed: int


@dataclass(frozen=True, kw_only=True)
class VersionStats(MessageNumbers):
    """A step's messages of one step version: composed with it, or skipped by it. Over
    a step's versions the numbers add up to the step's own."""

    version: int


@dataclass(frozen=True, kw_only=True)
class StepStats(MessageNumbers):
    position: int
    name: str
    # None until the step's action block is saved.
    channel: str | None
    coverage: int
    planned: int
    # Of `planned`: parked until their terms come true, sent only if they do before
    # their wait ends (else skipped, "terms not met"); the rest of `planned` will go.
    waiting_for_terms: int
    skipped_by_reason: dict[str, int]
    # Of the chain's holdout (main step only): never sent, not in `coverage`, not in
    # the JSON's step numbers (the chain's `holdout` counts them).
    held_out: int = 0
    # In version order: every version some message of the step was composed with or
    # skipped by; none while everything is still planned.
    versions: tuple[VersionStats, ...] = ()
    # The step's terms (chain-file values, `unsubscribed_email`…) and how they match;
    # none for a main step or one to everyone from the previous step.
    terms: tuple[str, ...] = ()
    terms_match: str = "all"

    @property
    def to_go(self) -> int:
        """Planned messages that will go (unless a sending rule skips them at the time)."""
        return self.planned - self.waiting_for_terms


@dataclass(frozen=True)
class HoldoutStats:
    """The main step's treated and held-out customers over its conversion window, and
    the lift (docs/attribution.md, "Holdout and lift")."""

    percent: int
    window_days: int
    min_amount: Decimal
    treated: Group
    held_out: Group
    # None while a group is empty.
    lift: Lift | None
    # Whether the groups are big enough for the lift to mean something yet.
    enough_data: bool


@dataclass(frozen=True)
class ChainStats:
    chain_id: int
    name: str
    status: str
    steps: list[StepStats]
    # Only for a chain with a holdout, counted up to `until` (none over a period
    # with `since`: the groups are the chain's whole audience).
    holdout: HoldoutStats | None = None


# The counting queries group by the step version of the message too
# (`deliveries.version`, NULL while planned; copied into `attributions`), as a column,
# not an expression: SQLite then reads the statuses in the order it groups them, from
# the index alone (models/tables.py).

# Orders read from the kept `attributions` table (models.attribution_table).
_ATTRIBUTED_BY_STEP = """
SELECT a.step_id,
       a.version,
       COUNT(*) AS orders,
       SUM(ROUND(a.amount * 100)) AS revenue_cents,
       COUNT(DISTINCT a.customer_id) AS customers
FROM attributions a
WHERE a.chain_id = :chain_id {orders_in_period}
GROUP BY a.step_id, a.version
"""

_DELIVERIES_BY_STATUS = """
SELECT d.step_id, d.version, d.status, COUNT(*) AS deliveries
FROM deliveries d
WHERE d.chain_id = :chain_id {deliveries_in_period}
GROUP BY d.step_id, d.status, d.version
"""

# A row is parked on its terms when the claim found them false and moved its due
# moment to the end of its wait (scheduler/claims.py, `decide`); a fact that may make
# them true brings it forward (models/facts.py), and it is parked again if not.
_WAITING_FOR_TERMS = """
SELECT d.step_id, COUNT(*) AS deliveries
FROM deliveries d
WHERE d.chain_id = :chain_id AND d.status = 'planned'
  AND d.wait_until IS NOT NULL AND d.due_at >= d.wait_until {deliveries_in_period}
GROUP BY d.step_id
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
# `bounced_unsent`: refused at once (or turned `failed` by a DSN) with a bounce,
# counted with those that left as handed to the channel.
_DELIVERIES_BY_EVENTS = f"""
SELECT f.step_id,
       f.version,
       SUM(CASE WHEN f.status IN ({LEFT_SQL}) AND f.arrived = 0 AND f.bounced = 1 THEN -1
                WHEN f.status NOT IN ({LEFT_SQL}) AND f.arrived = 1 THEN 1
                ELSE 0 END) AS delivered_change,
       SUM(f.opened) AS opened,
       SUM(f.clicked) AS clicked,
       SUM(f.unsubscribed) AS unsubscribed,
       SUM(f.bounced) AS bounced,
       SUM(f.complained) AS complained,
       SUM(CASE WHEN f.status NOT IN ({LEFT_SQL}) THEN f.bounced ELSE 0 END) AS bounced_unsent
FROM (
    SELECT d.id, d.step_id, d.status, d.version, {EVENT_FLAGS},
           MAX(CASE WHEN e.type = 'complained' THEN 1 ELSE 0 END) AS complained
    FROM deliveries d
    JOIN events e ON e.delivery_id = d.id
    WHERE d.chain_id = :chain_id {{deliveries_in_period}}
      AND e.delivery_id BETWEEN (SELECT MIN(id) FROM deliveries WHERE chain_id = :chain_id)
                            AND (SELECT MAX(id) FROM deliveries WHERE chain_id = :chain_id)
    GROUP BY d.step_id, d.status, d.version, d.id
) f
GROUP BY f.step_id, f.version
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
        params: dict[str, Any] | None = None,
    ) -> list[Row[Any]]:
        """The rows of one aggregate query, on a connection of its own; `moments` are
        further named moments the query compares with, `params` other values."""
        statement = text(sql)
        params = dict(params or {})
        if chain_id is not None:
            params["chain_id"] = chain_id
        named = {"since": self.since, "until": self.until} | (moments or {})
        # Typed so that SQLite compares with the same text form of a moment it stores.
        for name, value in named.items():
            if value is not None:
                statement = statement.bindparams(bindparam(name, type_=UtcDateTime()))
                params[name] = value
        # And amounts as the numbers SQLite stores (its driver takes no Decimal).
        for name, value in params.items():
            if isinstance(value, Decimal):
                statement = statement.bindparams(bindparam(name, type_=Numeric(14, 2)))
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
            raise NotFound(N_("no chain with id {id}"), id=chain_id)
        steps = list(
            await session.scalars(
                select(Step).where(Step.chain_id == chain_id).order_by(Step.position)
            )
        )
    # Independent aggregates, side by side on connections of their own, so that
    # spare cores answer in about the time of the slowest (on a million
    # deliveries, a fraction of a second each). While messages go out, each
    # reads its own moment: numbers may differ by what was sent in between.
    with_holdout = chain.holdout_percent > 0 and bool(steps) and since is None
    by_status, waiting, skipped, by_events, conversions, groups = await asyncio.gather(
        period.rows(db, _DELIVERIES_BY_STATUS.format(deliveries_in_period=in_period), chain_id),
        period.rows(db, _WAITING_FOR_TERMS.format(deliveries_in_period=in_period), chain_id),
        period.rows(db, _SKIPPED_BY_REASON.format(deliveries_in_period=in_period), chain_id),
        period.rows(db, _DELIVERIES_BY_EVENTS.format(deliveries_in_period=in_period), chain_id),
        period.rows(
            db,
            _ATTRIBUTED_BY_STEP.format(orders_in_period=period.condition("a.ordered_at")),
            chain_id,
        ),
        _holdout_groups(db, period, steps[0]) if with_holdout else _nothing(),
    )
    # A step added meanwhile may have rows here; it shows from the next call on.
    tallies: defaultdict[int, _Tally] = defaultdict(_Tally)
    for step_id, version, status, count in by_status:
        tallies[step_id].add_status(version, status, count)
    for step_id, count in waiting:
        tallies[step_id].waiting_for_terms += count
    for step_id, reason, count in skipped:
        tallies[step_id].add_skipped(reason, count)
    for step_id, version, *counts in by_events:
        tallies[step_id].add_events(version, *counts)
    for step_id, version, *counts in conversions:
        tallies[step_id].add_orders(version, *counts)
    return ChainStats(
        chain_id=chain.id,
        name=chain.name,
        status=chain.status,
        steps=[tallies[step.id].step_stats(step) for step in steps],
        holdout=_holdout_stats(chain.holdout_percent, steps[0], groups) if with_holdout else None,
    )


async def _nothing() -> list[Row[Any]]:
    return []


async def _holdout_groups(db: Database, period: _Period, main: Step) -> list[Row[Any]]:
    """The main step's two groups (models.holdout.itt_sql), one row each."""
    window_days, min_amount, _mechanics = conversion_settings(main.conversion)
    sql = itt_sql(db.engine.dialect.name, window_days, until=period.until is not None)
    params = {"step_id": main.id, "min_amount": min_amount}
    return await period.rows(db, sql, main.chain_id, params=params)


def _holdout_stats(percent: int, main: Step, groups: list[Row[Any]]) -> HoldoutStats:
    found = {
        held_out: Group(
            customers=customers,
            converted=converted,
            orders=int(orders),
            revenue=(Decimal(int(revenue_cents)) / 100).quantize(CENT),
        )
        for held_out, customers, converted, orders, revenue_cents in groups
    }
    nobody = Group(customers=0, converted=0, orders=0, revenue=Decimal("0.00"))
    treated, held_out = found.get(0, nobody), found.get(1, nobody)
    window_days, min_amount, _mechanics = conversion_settings(main.conversion)
    return HoldoutStats(
        percent=percent,
        window_days=window_days,
        min_amount=min_amount,
        treated=treated,
        held_out=held_out,
        lift=lift(treated, held_out),
        enough_data=enough_data(treated, held_out),
    )


@dataclass(frozen=True)
class DailyStats:
    """A chain's numbers for a report: one day (a daily summary's: the 24 hours before its
    moment), the day before it, and everything until the day's end (so that the same
    day's report reads the same when made again)."""

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
class _Counts:
    """The numbers a step and each of its versions carry, summed from the rows of the
    counting queries."""

    by_status: dict[str, int] = field(default_factory=dict)
    delivered_change: int = 0
    opened: int = 0
    clicked: int = 0
    unsubscribed: int = 0
    bounced: int = 0
    complained: int = 0
    bounced_unsent: int = 0
    orders: int = 0
    revenue_cents: int = 0
    converted_customers: int = 0

    def add_status(self, status: str, count: int) -> None:
        self.by_status[status] = self.by_status.get(status, 0) + count

    def add_events(
        self,
        delivered_change: int,
        opened: int,
        clicked: int,
        unsubscribed: int,
        bounced: int,
        complained: int,
        bounced_unsent: int,
    ) -> None:
        self.delivered_change += int(delivered_change)
        self.opened += int(opened)
        self.clicked += int(clicked)
        self.unsubscribed += int(unsubscribed)
        self.bounced += int(bounced)
        self.complained += int(complained)
        self.bounced_unsent += int(bounced_unsent)

    def add_orders(self, orders: int, revenue_cents: Decimal | float, customers: int) -> None:
        self.orders += orders
        self.revenue_cents += int(revenue_cents)
        # A customer has one message per step, so one version: the sum stays distinct.
        self.converted_customers += customers

    def numbers(self) -> dict[str, Any]:
        """The fields of `MessageNumbers`."""
        count = self.by_status.get
        sent = count(DeliveryStatus.SENT, 0)
        left = sum(count(status, 0) for status in LEFT_STATUSES)
        return {
            "sent": sent,
            "failed": count(DeliveryStatus.FAILED, 0),
            "skipped": count(DeliveryStatus.SKIPPED, 0),
            "uncertain": count(DeliveryStatus.UNCERTAIN, 0),
            "delivered": left + self.delivered_change,
            "opened": self.opened,
            "clicked": self.clicked,
            "unsubscribed": self.unsubscribed,
            "bounced": self.bounced,
            "complained": self.complained,
            "orders": self.orders,
            "revenue": (Decimal(self.revenue_cents) / 100).quantize(CENT),
            "conversion_rate": round(self.converted_customers / sent, 4) if sent else 0.0,
            "handed": left + self.bounced_unsent,
        }


@dataclass
class _Tally:
    """A step's numbers, and those of each of its versions, from the counting queries."""

    step: _Counts = field(default_factory=_Counts)
    versions: defaultdict[int, _Counts] = field(default_factory=lambda: defaultdict(_Counts))
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    waiting_for_terms: int = 0

    def _version(self, version: int | None) -> _Counts:
        # A message that left with no version recorded (none should, after migration
        # 0006) was composed before versions existed: version 1.
        return self.versions[1 if version is None else version]

    def add_status(self, version: int | None, status: str, count: int) -> None:
        self.step.add_status(status, count)
        # A planned row has no version yet; any other was composed with or skipped by
        # one, but a held-out one, for which nothing was composed.
        if status not in (DeliveryStatus.PLANNED, DeliveryStatus.HELD_OUT):
            self._version(version).add_status(status, count)

    def add_events(self, version: int | None, *counts: int) -> None:
        self.step.add_events(*counts)
        self._version(version).add_events(*counts)

    def add_orders(
        self, version: int | None, orders: int, revenue_cents: Decimal | float, customers: int
    ) -> None:
        self.step.add_orders(orders, revenue_cents, customers)
        self._version(version).add_orders(orders, revenue_cents, customers)

    def add_skipped(self, reason: str | None, count: int) -> None:
        key = reason or "unknown"
        self.skipped_by_reason[key] = self.skipped_by_reason.get(key, 0) + count

    def step_stats(self, step: Step) -> StepStats:
        count = self.step.by_status.get
        out_of_reach = sum(
            n for reason, n in self.skipped_by_reason.items() if reason in reasons.OUT_OF_REACH
        )
        held_out = count(DeliveryStatus.HELD_OUT, 0)
        audience = step.audience or {}
        terms = tuple(audience.get("terms") or ()) if audience.get("who") == "terms" else ()
        return StepStats(
            position=step.position,
            name=step.name,
            channel=(step.action or {}).get("channel"),
            coverage=sum(self.step.by_status.values()) - out_of_reach - held_out,
            # `sending` is a message on its way: still to go, like `planned`.
            planned=count(DeliveryStatus.PLANNED, 0) + count(DeliveryStatus.SENDING, 0),
            held_out=held_out,
            waiting_for_terms=self.waiting_for_terms,
            **self.step.numbers(),
            skipped_by_reason=dict(sorted(self.skipped_by_reason.items())),
            versions=tuple(
                VersionStats(version=version, **counts.numbers())
                for version, counts in sorted(self.versions.items())
            ),
            terms=terms,
            terms_match=str(audience.get("match") or "all"),
        )


def stats_document(stats: ChainStats) -> dict[str, Any]:
    """The JSON document of `chainmail stats ID --json` (SPEC §7), keys in its order."""
    chain: dict[str, Any] = {"id": stats.chain_id, "name": stats.name, "status": stats.status}
    if stats.holdout is not None:
        chain |= _holdout_document(stats.holdout)
    return {
        "chain": chain,
        "steps": [
            {
                "position": step.position,
                "name": step.name,
                "channel": step.channel,
                "coverage": step.coverage,
                "planned": step.planned,
                **_numbers_document(step),
                "versions": [
                    {"version": version.version, **_numbers_document(version)}
                    for version in step.versions
                ],
            }
            for step in stats.steps
        ],
    }


def _numbers_document(numbers: MessageNumbers) -> dict[str, Any]:
    """The numbers a step and its versions both carry, in the document's order."""
    return {
        "sent": numbers.sent,
        "failed": numbers.failed,
        "skipped": numbers.skipped,
        "uncertain": numbers.uncertain,
        "delivered": numbers.delivered,
        "opened": numbers.opened,
        "clicked": numbers.clicked,
        "unsubscribed": numbers.unsubscribed,
        "bounced": numbers.bounced,
        "complained": numbers.complained,
        "orders": numbers.orders,
        "revenue": f"{numbers.revenue:.2f}",
        "conversion_rate": numbers.conversion_rate,
    }


def _group_document(group: Group) -> dict[str, Any]:
    return {
        "customers": group.customers,
        "orders": group.orders,
        "revenue": f"{group.revenue:.2f}",
        "conversion_rate": round(group.conversion_rate, 4),
    }


def _holdout_document(holdout: HoldoutStats) -> dict[str, Any]:
    """The chain's `holdout_percent`, `treated`, `holdout` and `lift` (docs/attribution.md)."""
    found = holdout.lift
    return {
        "holdout_percent": holdout.percent,
        "treated": _group_document(holdout.treated),
        "holdout": _group_document(holdout.held_out),
        "lift": {
            "conversion_rate_delta": None
            if found is None
            else round(found.conversion_rate_delta, 4),
            "ci95": None if found is None else [round(bound, 4) for bound in found.ci95],
            "incremental_orders": None if found is None else round(found.incremental_orders, 2),
            "incremental_revenue": None if found is None else f"{found.incremental_revenue:.2f}",
            "enough_data": holdout.enough_data,
        },
    }
