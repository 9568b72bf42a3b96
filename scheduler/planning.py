"""Planning: deliveries come into being set-based, `INSERT … SELECT`, never row by row.

A delivery is planned for a customer when they enter the main step (at
activation, or on joining its segments in a `continuous` chain) or when the
previous step triggered for them. Its `due_at` comes from the step's schedule,
read in the customer's own zone for `at`. Whether it is then sent or skipped is
decided at due time (terms, contacts, quiet hours), not here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, exists, func, literal, null, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement

from models.segments import segment_members_query, segment_rules
from models.tables import Customer, Delivery, DeliveryStatus
from scheduler import sql
from scheduler.steps import StepPlan
from scheduler.timing import due_at_for_zones

_COLUMNS = [
    "chain_id",
    "step_id",
    "customer_id",
    "previous_delivery_id",
    "channel",
    "status",
    "eligible_at",
    "due_at",
    "wait_until",
    "attempts",
    "created_at",
]


async def customer_zones(
    session: AsyncSession, customer_ids: ColumnElement[bool] | None = None
) -> list[str]:
    """The distinct zones of all customers (read off their index), or of those matched."""
    query = select(Customer.timezone).distinct()
    if customer_ids is not None:
        query = query.where(customer_ids)
    return list(await session.scalars(query))


async def _due_expression(
    session: AsyncSession,
    step: StepPlan,
    eligible: ColumnElement[datetime],
    now: datetime,
    among: ColumnElement[bool] | None = None,
    zone: ColumnElement[str] | None = None,
) -> ColumnElement[datetime]:
    """When a row of `step` eligible at `eligible` is due; `zone`: the customer's zone
    (customers.timezone of a joined customers table unless given)."""
    dialect = session.bind.dialect
    if step.send == "after":
        return sql.plus_seconds(dialect, eligible, step.after_seconds)
    if step.send == "at" and step.at_local is not None:
        moments = due_at_for_zones(step.at_local, await customer_zones(session, among))
        zone_column = Customer.__table__.c.timezone if zone is None else zone
        local = sql.per_zone(zone_column, moments, now)
        # Never before the previous step triggered; a passed moment means now.
        return sql.later_of(dialect, local, eligible)
    return eligible


def _wait_until(session: AsyncSession, step: StepPlan, eligible: ColumnElement) -> ColumnElement:
    if not step.waits_for_terms:
        return null()
    return sql.plus_seconds(session.bind.dialect, eligible, step.wait_seconds)


def _not_planned_yet(step: StepPlan, customer_id: ColumnElement[int]) -> ColumnElement[bool]:
    existing = aliased(Delivery)
    return ~exists(
        select(existing.id).where(
            existing.step_id == step.step_id, existing.customer_id == customer_id
        )
    )


async def _step_has_deliveries(session: AsyncSession, step: StepPlan) -> bool:
    return bool(await session.scalar(select(exists().where(Delivery.step_id == step.step_id))))


async def _insert(session: AsyncSession, rows: Select) -> int:
    dialect = session.bind.dialect.name
    table = Delivery.__table__
    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    if dialect == "postgresql":
        # At the default 4 MB, the hash joins of a million-customer audience spill
        # to disk and hand rows over out of id order, which turns every foreign key
        # check and index insert into a random access: 1.28 times the bare
        # INSERT … SELECT of the same rows, 1.16 with this (docs/benchmarks.md,
        # "Planning"). For this transaction only.
        await session.execute(text("SET LOCAL work_mem = '64MB'"))
    statement = (
        insert_(table)
        .from_select(_COLUMNS, rows)
        .on_conflict_do_nothing(index_elements=["step_id", "customer_id"])
    )
    result = await session.execute(statement)
    return max(result.rowcount or 0, 0)


async def enroll_main_step(
    session: AsyncSession,
    step: StepPlan,
    now: datetime,
    customer_ids: Sequence[int] | None = None,
) -> int:
    """Plan the main step for its segments' customers who have no delivery of it yet
    (only those of `customer_ids`, when given: newcomers of a `continuous` chain).

    A step with no deliveries at all (at activation) needs no anti-join against
    `deliveries`: ON CONFLICT still guards the unique key. Leaving it out matters on
    PostgreSQL when `deliveries` was analysed while empty: the planner then scans the
    whole table once per customer while the INSERT grows it, which is quadratic
    (100,000 customers: 50 s instead of 1.5 s).
    """
    rules = await segment_rules(session, step.segments)
    members = segment_members_query(rules, now=now, dialect=session.bind.dialect.name)
    customers = Customer.__table__
    eligible = sql.moment(now)
    among = None if customer_ids is None else customers.c.id.in_(customer_ids)
    due = await _due_expression(session, step, eligible, now, among)
    if among is not None:
        members = members.where(among)
    rows = members.with_only_columns(
        literal(step.chain_id),
        literal(step.step_id),
        customers.c.id,
        null(),
        literal(step.channel),
        literal(DeliveryStatus.PLANNED.value),
        eligible,
        due,
        _wait_until(session, step, eligible),
        literal(0),
        sql.moment(now),
    )
    if await _step_has_deliveries(session, step):
        rows = rows.where(_not_planned_yet(step, customers.c.id))
    return await _insert(session, rows)


async def plan_follow_up(
    session: AsyncSession,
    previous: StepPlan,
    step: StepPlan,
    now: datetime,
    triggered: Sequence[int] | None = None,
) -> int:
    """Plan `step` for customers for whom `previous` triggered and who have none of it yet.

    `triggered`: the previous step's deliveries that just triggered, planned in the
    transaction that recorded them, eligible from that moment. None: a full pass over
    everyone the previous step reached (a step added to a running chain, a block
    saved): those reached before are eligible from now, the moment it is planned.
    """
    customers = Customer.__table__
    before = Delivery.__table__
    dialect = session.bind.dialect
    if triggered is None:
        eligible = sql.later_of(dialect, before.c.triggered_at, sql.moment(now))
        scope = [
            before.c.step_id == previous.step_id,
            before.c.triggered_at.is_not(None),
            _not_planned_yet(step, before.c.customer_id),
        ]
        zones_of = None
    else:
        if not triggered:
            return 0
        eligible = before.c.triggered_at
        scope = [before.c.id.in_(triggered), before.c.triggered_at.is_not(None)]
        zones_of = customers.c.id.in_(
            select(before.c.customer_id).where(before.c.id.in_(triggered)).scalar_subquery()
        )
    rows = (
        select(
            literal(step.chain_id),
            literal(step.step_id),
            before.c.customer_id,
            before.c.id,
            literal(step.channel),
            literal(DeliveryStatus.PLANNED.value),
            eligible,
            await _due_expression(session, step, eligible, now, zones_of),
            _wait_until(session, step, eligible),
            literal(0),
            sql.moment(now),
        )
        .select_from(before.join(customers, customers.c.id == before.c.customer_id))
        .where(*scope)
    )
    return await _insert(session, rows)


@dataclass(frozen=True)
class Replanned:
    rows: int
    # The earliest new due moment of the rows re-planned; None when there are none.
    first_due: datetime | None


async def replan(
    session: AsyncSession, step: StepPlan, now: datetime, *, dry_run: bool = False
) -> Replanned:
    """Compute `due_at` and `wait_until` again, from the step's schedule and audience as
    they are now, for its rows still planned and not yet on their way (`sending` and
    later rows are never touched): one set-based UPDATE. A row parked by a rule
    (terms not yet true, quiet hours) is due again and decided again when claimed.

    `dry_run`: the same numbers, read, nothing written.
    """
    rows = Delivery.__table__
    customers = Customer.__table__
    planned = (rows.c.step_id == step.step_id, rows.c.status == DeliveryStatus.PLANNED.value)
    zone = (
        select(customers.c.timezone).where(customers.c.id == rows.c.customer_id).scalar_subquery()
    )
    among = customers.c.id.in_(select(rows.c.customer_id).where(*planned).scalar_subquery())
    due = await _due_expression(session, step, rows.c.eligible_at, now, among, zone)
    if dry_run:
        count, first = (
            await session.execute(select(func.count(), func.min(due)).where(*planned))
        ).one()
        return Replanned(count, first)
    result = await session.execute(
        update(rows)
        .where(*planned)
        .values(due_at=due, wait_until=_wait_until(session, step, rows.c.eligible_at))
        .execution_options(synchronize_session=False)
    )
    first = await session.scalar(select(func.min(rows.c.due_at)).where(*planned))
    return Replanned(max(result.rowcount or 0, 0), first)
