"""The few SQL expressions that SQLite and PostgreSQL spell differently."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Dialect, case, func, literal, type_coerce
from sqlalchemy.sql.elements import ColumnElement

from models.tables import UtcDateTime

# SQLAlchemy keeps SQLite datetimes as text 'YYYY-MM-DD HH:MM:SS.ffffff'; values
# computed inside SQLite must come out in the same shape to compare and read back.
_SQLITE_DATETIME = "%Y-%m-%d %H:%M:%f"


def moment(value: datetime) -> ColumnElement[datetime]:
    """A bound UTC moment, stored in the dialect's own datetime form."""
    return literal(value, UtcDateTime())


def plus_seconds(dialect: Dialect, expr: ColumnElement[datetime], seconds: int) -> ColumnElement:
    if dialect.name == "sqlite":
        # datetime() drops the fraction, which whole seconds never change: it is put
        # back from the text as it was, to the microsecond. Two and a half times
        # cheaper than strftime('%f'), which also kept only milliseconds: a million
        # rows re-planned in the UPDATE of `planning.replan` (docs/benchmarks.md).
        shifted = func.datetime(expr, f"{int(seconds):+d} seconds")
        return type_coerce(shifted.op("||")(func.substr(expr, 20)), UtcDateTime())
    return expr + func.make_interval(0, 0, 0, 0, 0, 0, int(seconds))


def later_of(
    dialect: Dialect, first: ColumnElement[datetime], second: ColumnElement[datetime]
) -> ColumnElement:
    if dialect.name == "sqlite":
        # SQLite's two-argument max() compares the text forms, which sort in time order.
        return func.max(first, second, type_=UtcDateTime())
    return func.greatest(first, second, type_=UtcDateTime())


def per_zone(
    zone_column: ColumnElement[str], moments: dict[str, datetime], fallback: datetime
) -> ColumnElement:
    """`moments[zone]` for each row's zone: one local date and time read in every zone."""
    if not moments:
        return moment(fallback)
    return case(
        *((zone_column == zone, moment(at)) for zone, at in sorted(moments.items())),
        else_=moment(fallback),
    )


def database_now(dialect: Dialect) -> ColumnElement[datetime]:
    """The database server's clock: what leases and heartbeats are measured with, so
    that workers on machines whose clocks disagree still agree on who is alive."""
    if dialect.name == "sqlite":
        now = func.strftime(_SQLITE_DATETIME, "now")
        return type_coerce(now.op("||")(literal("000")), UtcDateTime())
    return func.now(type_=UtcDateTime())
