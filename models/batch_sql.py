"""A batch of rows written or matched by one statement, the rows passed as one parameter.

Measured on customers (docs/benchmarks.md, "Customer import"): 2 to 3 times faster than
a statement per row, and SQLAlchemy's own `executemany` spent more per row on its
parameters than SQLite spent storing it. PostgreSQL takes a batch as one array per
column, unnested; SQLite as one JSON array of rows, read with `json_each`. The
statements are compiled once and executed straight at the driver with values already
as it takes them (`for_driver`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any, NamedTuple

from sqlalchemy import (
    Column,
    ColumnElement,
    CursorResult,
    Dialect,
    String,
    any_,
    bindparam,
    func,
    literal_column,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from models.tables import UtcDateTime

Rows = Callable[[dict[str, Column[Any]]], list[ColumnElement[Any]]]


def pg_rows(columns: dict[str, Column[Any]]) -> list[ColumnElement[Any]]:
    """PostgreSQL: a batch comes as one array parameter per column."""
    arrays = (
        # Plain VARCHAR: a cast to VARCHAR(n) would cut a value short without a word.
        bindparam(name, type_=ARRAY(String() if isinstance(c.type, String) else c.type))
        for name, c in columns.items()
    )
    return list(func.unnest(*arrays).table_valued(*columns).render_derived().c)


def sqlite_rows(columns: dict[str, Column[Any]]) -> list[ColumnElement[Any]]:
    """SQLite: a batch comes as one JSON array of rows, the parameter `rows`."""
    rows = func.json_each(bindparam("rows")).table_valued("value")
    # json_extract rather than ->>, which needs SQLite 3.38 (2022).
    return [
        func.json_extract(rows.c.value, literal_column(f"'$[{i}]'")) for i in range(len(columns))
    ]


def as_arrays(columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    return dict(zip(columns, zip(*rows, strict=True), strict=True))


def as_json(_columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    return {"rows": json.dumps(rows, ensure_ascii=False)}


class Dialectal(NamedTuple):
    """How a dialect takes a batch: its rows in a statement, its parameters."""

    rows: Rows
    parameters: Callable[[tuple[str, ...], list[tuple[Any, ...]]], dict[str, Any]]


DIALECTS = {"postgresql": Dialectal(pg_rows, as_arrays), "sqlite": Dialectal(sqlite_rows, as_json)}


def among(column: Column[Any], values: list[Any], dialect: Dialect) -> ColumnElement[bool]:
    """`column` is one of `values`, passed as one parameter rather than thousands."""
    if dialect.name == "postgresql":
        return column == any_(bindparam("values", values, type_=ARRAY(column.type)))
    listed = func.json_each(bindparam("values", json.dumps(values))).table_valued("value")
    return column.in_(select(listed.c.value))


@cache
def compiled(statement: Any, dialect: Dialect) -> tuple[str, tuple[str, ...]]:
    """The SQL of a statement and the order of its parameters for the driver."""
    result = statement.compile(dialect=dialect)
    return result.string, tuple(result.positiontup or ())


async def execute(
    session: AsyncSession, statement: Any, parameters: dict[str, Any]
) -> CursorResult[Any]:
    # Straight at the driver with values already as it takes them: SQLAlchemy's own
    # parameter handling would go over every row of the batch once more.
    connection = await session.connection()
    sql, names = compiled(statement, connection.dialect)
    return await connection.exec_driver_sql(sql, tuple(parameters[name] for name in names))


def for_driver(column: Column[Any], value: Any, dialect: Dialect) -> Any:
    """A value as the column's type hands it to the driver (a moment as SQLite's text)."""
    process = _processor(column, dialect)
    return process(value) if process else value


@cache
def _processor(column: Column[Any], dialect: Dialect) -> Callable[[Any], Any] | None:
    if dialect.name == "sqlite" and isinstance(column.type, UtcDateTime):
        # SQLAlchemy's own takes five times longer; the text is the same.
        return sqlite_moment
    return column.type.dialect_impl(dialect).bind_processor(dialect)


def sqlite_moment(value: datetime | None) -> str | None:
    """A moment as SQLite keeps it: UTC text, `YYYY-MM-DD HH:MM:SS.ffffff`."""
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def json_rows(
    columns: list[Column[Any]], rows: list[tuple[Any, ...]], dialect: Dialect
) -> list[tuple[Any, ...]]:
    """SQLite's JSON rows: each value as its column's type hands it to the driver."""
    processors = [_processor(column, dialect) for column in columns]
    return [
        tuple(
            process(value) if process else value
            for process, value in zip(processors, row, strict=True)
        )
        for row in rows
    ]
