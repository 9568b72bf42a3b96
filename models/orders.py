"""Orders pushed by the shop (SPEC §5), by the API or a CSV file: checked one by one,
stored in one go, each under its `external_id` once, with its history.

`OrderItem` is the shape of one order and its rules; the API documents it as
is. A `created_at` or `updated_at` without a UTC offset is read as UTC: a machine
interface should not guess the sender's zone, and shops that mean local time say so
with an offset (`2026-03-01T14:00:00+03:00`). Numbers are accepted where the shop's
ids are numeric; `amount` may be a JSON number or a string (exact decimals).

An order posted again is an update when its amount or status differ from what is
stored, else a duplicate (`store_orders`). Every state an order went through is a
row of `order_changes`, the first from when it was placed; the `orders` row holds
the latest. Attribution reads an order as it stood at a moment (models/attribution.py),
so each update refreshes its customer's attribution in the transaction that stores it.

Each order is checked for what both databases can store, so that one order no
database takes is refused alone and the others beside it are stored: moments lie in
the years 2000–2100 (UTC), far from where converting a zone overflows and from the
dates PostgreSQL would store as ±infinity; no id or status contains a NUL, which
PostgreSQL refuses in text.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)
from sqlalchemy import Dialect, Integer, bindparam, insert, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from models import audit, batch_sql
from models.csv_files import (
    MAX_KEPT_ERRORS,
    CsvBatches,
    CsvColumns,
    CsvSource,
    ImportProgress,
    LineError,
    binary,
)
from models.db import Database
from models.facts import customer_facts_changed
from models.tables import Customer, Order, OrderChange

# What people read when an order is refused.
UNKNOWN_CUSTOMER = "unknown customer {value!r}"
STALE_UPDATE = "updated_at {given} is before the order's last change ({last}): not applied"
# The status of an order posted without one.
NEW = "new"
STATUS_MAX = 64

EARLIEST_ORDER = datetime(2000, 1, 1, tzinfo=UTC)
# Exclusive: the last moment accepted is the end of 2100, UTC.
LATEST_ORDER = datetime(2101, 1, 1, tzinfo=UTC)


def _without_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    return value


ExternalId = Annotated[
    str, StringConstraints(min_length=1, max_length=128), AfterValidator(_without_nul)
]
Status = Annotated[
    str, StringConstraints(min_length=1, max_length=STATUS_MAX), AfterValidator(_without_nul)
]


class OrderItem(BaseModel):
    """One order as the shop sends it."""

    model_config = ConfigDict(str_strip_whitespace=True, coerce_numbers_to_str=True, frozen=True)

    external_id: ExternalId = Field(
        description="The shop's order id; an order posted again counts once, as an update "
        "if its amount or status changed."
    )
    customer_external_id: ExternalId = Field(description="The shop's id of the customer.")
    amount: Annotated[Decimal, Field(ge=0, max_digits=14, decimal_places=2)] = Field(
        description='Order total, at most 2 decimals; a number or a string such as "1990.50".'
    )
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{3}$", to_upper=True)] = Field(
        "RUB", description="ISO 4217 code."
    )
    created_at: datetime | None = Field(
        None,
        description=(
            "When it was placed: ISO 8601, in the years 2000 to 2100; without an offset "
            "it is UTC; default: when received. An order keeps the moment it was first "
            "stored with."
        ),
    )
    status: Status | None = Field(
        None,
        description=(
            "`new`, `cancelled` (or `canceled`, in any case) or the shop's own status, "
            "kept as given; only `cancelled` and `canceled` count as cancelled. "
            "Default: `new` for a new order, the stored status for one stored already."
        ),
    )
    updated_at: datetime | None = Field(
        None,
        description=(
            "When the order took this amount and status, as created_at; default: when "
            "received. Only read when the order is stored already and this is an update; "
            "it must not be before the order's last change."
        ),
    )

    @field_validator("created_at", "updated_at", mode="before")
    @classmethod
    def _iso_text_only(cls, value: Any) -> Any:
        # Pydantic would also take a number as Unix time, in seconds or milliseconds
        # by its size: a guess we would rather not make with someone's revenue.
        if value is not None and not isinstance(value, str):
            raise ValueError("must be an ISO 8601 date and time, as a string")
        return value

    @field_validator("created_at", "updated_at")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        # Compared before converting: aware datetimes compare without overflowing,
        # while converting 9999-12-31T23:59-05:00 to UTC does.
        if not EARLIEST_ORDER <= value < LATEST_ORDER:
            raise ValueError("must lie in the years 2000 to 2100 (UTC)")
        return value.astimezone(UTC)


@dataclass(frozen=True)
class OrdersResult:
    created: int
    updated: int
    duplicates: int
    # (index in the request, or line of the file; what is wrong), in that order.
    errors: list[tuple[int, str]] = field(default_factory=list)

    def __add__(self, other: OrdersResult) -> OrdersResult:
        return OrdersResult(
            self.created + other.created,
            self.updated + other.updated,
            self.duplicates + other.duplicates,
            sorted(self.errors + other.errors),
        )


def parse_order(raw: object) -> OrderItem:
    """The order in `raw`, or ValueError with every problem in one line."""
    try:
        return OrderItem.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {message}" if where else message)
        raise ValueError("; ".join(problems)) from None


async def record_orders(db: Database, items: Sequence[object], now: datetime) -> OrdersResult:
    """Store the valid orders of known customers, each under its `external_id` once, ever;
    an order posted again is an update if its amount or status differ, else a duplicate.

    The bad ones are reported by their index in `items`.
    """
    errors: list[tuple[int, str]] = []
    parsed: list[tuple[int, OrderItem]] = []
    for index, raw in enumerate(items):
        try:
            parsed.append((index, parse_order(raw)))
        except ValueError as exc:
            errors.append((index, str(exc)))
    async with db.writer() as session:
        result = await store_orders(session, parsed, now)
    return result + OrdersResult(0, 0, 0, errors)


@dataclass(slots=True)
class _Standing:
    """An order as it stands: stored (`id`), or to be stored by this batch."""

    id: int | None
    customer_id: int
    amount: Decimal
    status: str
    updated_at: datetime


@dataclass
class _Batch:
    """What a batch of items comes to, decided item by item before anything is written."""

    now: datetime
    customer_ids: dict[str, int]
    standing: dict[str, _Standing]
    created: dict[str, OrderItem] = field(default_factory=dict)
    # (external id, amount, status, from when), in the order they happened.
    changes: list[tuple[str, Decimal, str, datetime]] = field(default_factory=list)
    updated: int = 0
    duplicates: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)

    def take(self, index: int, item: OrderItem) -> None:
        order = self.standing.get(item.external_id)
        if order is None:
            self._create(index, item)
            return
        status = item.status or order.status
        if item.amount == order.amount and status == order.status:
            self.duplicates += 1
            return
        if item.updated_at is not None and item.updated_at < order.updated_at:
            given, last = _iso(item.updated_at), _iso(order.updated_at)
            self.errors.append((index, STALE_UPDATE.format(given=given, last=last)))
            return
        # When received, unless the shop says when; never before the state it follows.
        order.updated_at = max(item.updated_at or self.now, order.updated_at)
        order.amount, order.status = item.amount, status
        self.changes.append((item.external_id, order.amount, order.status, order.updated_at))
        self.updated += 1

    def _create(self, index: int, item: OrderItem) -> None:
        customer_id = self.customer_ids.get(item.customer_external_id)
        if customer_id is None:
            self.errors.append((index, UNKNOWN_CUSTOMER.format(value=item.customer_external_id)))
            return
        placed = item.created_at or self.now
        order = _Standing(None, customer_id, item.amount, item.status or NEW, placed)
        self.standing[item.external_id] = order
        self.created[item.external_id] = item
        self.changes.append((item.external_id, order.amount, order.status, placed))

    def new_orders(self) -> list[tuple[Any, ...]]:
        """The rows of `_NEW_ORDER`: the orders created, as they stand at the batch's end."""
        rows = []
        for external_id, item in self.created.items():
            order = self.standing[external_id]
            placed = item.created_at or self.now
            rows.append(
                (
                    external_id,
                    order.customer_id,
                    order.amount,
                    item.currency,
                    order.status,
                    placed,
                    order.updated_at,
                    self.now,
                )
            )
        return rows

    def states(self) -> list[tuple[Any, ...]]:
        """The rows of `_CHANGE`, once every order has its id."""
        return [
            (self.standing[external_id].id, amount, status, at, self.now)
            for external_id, amount, status, at in self.changes
        ]

    def stored_and_changed(self) -> list[int]:
        """The ids of the orders stored before the batch that it changed."""
        ids = {self.standing[e].id for e, *_ in self.changes if e not in self.created}
        return sorted(order_id for order_id in ids if order_id is not None)

    def customers_changed(self) -> set[int]:
        return {self.standing[external_id].customer_id for external_id, *_ in self.changes}


_ORDERS = Order.__table__
_CHANGES = OrderChange.__table__
_NEW_ORDER = (
    "external_id",
    "customer_id",
    "amount",
    "currency",
    "status",
    "created_at",
    "updated_at",
    "received_at",
)
_CHANGE = ("order_id", "amount", "status", "changed_at", "received_at")
# The class of the advisory locks on orders' external ids (PostgreSQL): "ordr".
_LOCK_CLASS = 0x6F726472


def _batch_statements(rows: batch_sql.Rows) -> tuple[Any, Any]:
    new_orders = rows({name: _ORDERS.c[name] for name in _NEW_ORDER})
    insert_orders = (
        insert(_ORDERS)
        .from_select(list(_NEW_ORDER), select(*new_orders))
        .returning(_ORDERS.c.id, _ORDERS.c.external_id)
    )
    changes = rows({name: _CHANGES.c[name] for name in _CHANGE})
    insert_changes = insert(_CHANGES).from_select(list(_CHANGE), select(*changes))
    return insert_orders, insert_changes


_STATEMENTS = {
    name: _batch_statements(dialectal.rows) for name, dialectal in batch_sql.DIALECTS.items()
}


def _latest(column: str) -> Any:
    """The order's latest state's `column`, for bringing the order row up to date."""
    return (
        select(_CHANGES.c[column])
        .where(_CHANGES.c.order_id == _ORDERS.c.id)
        .order_by(_CHANGES.c.changed_at.desc(), _CHANGES.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )


def _keys(external_ids: Iterable[str]) -> list[int]:
    return sorted({zlib.crc32(external_id.encode()) - 2**31 for external_id in external_ids})


async def store_orders(
    session: AsyncSession, items: Sequence[tuple[int, OrderItem]], now: datetime
) -> OrdersResult:
    """Store checked orders in the session's transaction, a statement for each kind of
    write whatever their number; `items` are (index or line, order) in the order given.

    An order posted again with the same amount and status (a status left out is the
    stored one) is a duplicate; with others, an update from `updated_at`, else from
    `now`, kept in `order_changes` while the order row takes the new state. An
    `updated_at` before the order's last change is refused: it would rewrite what
    attribution already read. Customer, currency and `created_at` stay as first stored.
    """
    if not items:
        return OrdersResult(0, 0, 0)
    dialect = session.bind.dialect
    batch = _Batch(
        now,
        await _customers(session, {item.customer_external_id for _, item in items}),
        await _stored(session, sorted({item.external_id for _, item in items})),
    )
    for index, item in items:
        batch.take(index, item)

    insert_orders, insert_changes = _STATEMENTS[dialect.name]
    parameters = batch_sql.DIALECTS[dialect.name].parameters
    if batch.created:
        rows = _for_dialect(_ORDERS, _NEW_ORDER, batch.new_orders(), dialect)
        inserted = await batch_sql.execute(session, insert_orders, parameters(_NEW_ORDER, rows))
        for order_id, external_id in inserted.all():
            batch.standing[external_id].id = order_id
    if batch.changes:
        rows = _for_dialect(_CHANGES, _CHANGE, batch.states(), dialect)
        await batch_sql.execute(session, insert_changes, parameters(_CHANGE, rows))
        # Created orders were inserted as they stand; stored ones take their latest state.
        if stored_and_changed := batch.stored_and_changed():
            await session.execute(
                update(_ORDERS)
                .where(batch_sql.among(_ORDERS.c.id, stored_and_changed, dialect))
                .values(
                    amount=_latest("amount"),
                    status=_latest("status"),
                    updated_at=_latest("changed_at"),
                )
                .execution_options(synchronize_session=False)
            )
        # An update refreshes attribution like a new order: in this transaction.
        await customer_facts_changed(session, batch.customers_changed(), now)
    return OrdersResult(len(batch.created), batch.updated, batch.duplicates, batch.errors)


async def _customers(session: AsyncSession, external_ids: set[str]) -> dict[str, int]:
    """{external id: id} of the customers named that exist."""
    # The orders' foreign keys share-lock their customers; taken here, in the order a
    # customers upsert locks them FOR UPDATE (by external_id, as the database sorts),
    # so the two cannot deadlock on PostgreSQL. SQLite locks the whole file anyway.
    dialect = session.bind.dialect
    found = await session.execute(
        select(Customer.external_id, Customer.id)
        .where(batch_sql.among(Customer.__table__.c.external_id, sorted(external_ids), dialect))
        .order_by(Customer.external_id)
        .with_for_update(read=True, key_share=True)
    )
    return dict(found.all())


async def _stored(session: AsyncSession, external_ids: list[str]) -> dict[str, _Standing]:
    """The orders stored under these external ids, as they stand."""
    dialect = session.bind.dialect
    if dialect.name == "postgresql":
        # Two requests posting the same order queue here, so that the second reads what
        # the first stored: an update, not a second order (a lock per external id, all
        # taken by one statement, in one order).
        await session.execute(
            text(
                "SELECT pg_advisory_xact_lock(:class, k) FROM (SELECT unnest(:keys) AS k"
                " ORDER BY 1) AS keys"
            ).bindparams(bindparam("keys", _keys(external_ids), type_=ARRAY(Integer))),
            {"class": _LOCK_CLASS},
        )
    stored = await session.execute(
        select(
            _ORDERS.c.external_id,
            _ORDERS.c.id,
            _ORDERS.c.customer_id,
            _ORDERS.c.amount,
            _ORDERS.c.status,
            _ORDERS.c.updated_at,
        ).where(batch_sql.among(_ORDERS.c.external_id, external_ids, dialect))
    )
    return {row.external_id: _Standing(*row[1:]) for row in stored}


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _for_dialect(
    table: Any, columns: tuple[str, ...], rows: list[tuple[Any, ...]], dialect: Dialect
) -> list[tuple[Any, ...]]:
    """Rows as the driver takes them: asyncpg's arrays as they are; SQLite's JSON moments
    as its text and amounts as numbers."""
    if dialect.name == "postgresql":
        return rows
    return batch_sql.json_rows([table.c[name] for name in columns], rows, dialect)


# --- CSV files -------------------------------------------------------------------------

CSV_COLUMNS = (
    "external_id",
    "customer_external_id",
    "amount",
    "currency",
    "status",
    "created_at",
    "updated_at",
)
# An empty cell of these is as if the column were not there.
_OPTIONAL_COLUMNS = frozenset({"currency", "status", "created_at", "updated_at"})
DEFAULT_BATCH_SIZE = 5_000
# Spaces a spreadsheet writes between thousands: plain, no-break and narrow no-break.
_THOUSANDS = str.maketrans("", "", " \u00a0\u202f")


def _amount_from_cell(text: str) -> str:
    """`1 990,50` (a spreadsheet's, in Russian) as `1990.50`; anything else as written,
    for OrderItem to judge."""
    amount = text.strip().translate(_THOUSANDS)
    if "." not in amount and amount.count(",") == 1:
        amount = amount.replace(",", ".")
    return amount


def _order_from_row(record: dict[str, object]) -> OrderItem | str:
    given = {
        key: value
        for key, value in record.items()
        if key not in _OPTIONAL_COLUMNS or str(value).strip()
    }
    if isinstance(given.get("amount"), str):
        given["amount"] = _amount_from_cell(str(given["amount"]))
    try:
        return parse_order(given)
    except ValueError as exc:
        return str(exc)


ORDER_COLUMNS = CsvColumns(
    known=CSV_COLUMNS,
    required=("external_id", "customer_external_id", "amount"),
    check=_order_from_row,
    numbered=True,
)


@dataclass(slots=True)
class OrdersImportReport:
    created: int = 0
    updated: int = 0
    duplicates: int = 0
    # Every refused line counts; only the first MAX_KEPT_ERRORS are kept with a reason.
    refused: int = 0
    errors: list[LineError] = field(default_factory=list)
    # Columns of the file that orders do not have: not read.
    ignored_columns: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "created": self.created,
            "updated": self.updated,
            "duplicates": self.duplicates,
            "refused": self.refused,
        }

    def refuse(self, errors: Iterable[LineError]) -> None:
        for error in errors:
            self.refused += 1
            if len(self.errors) < MAX_KEPT_ERRORS:
                self.errors.append(error)


async def import_orders_csv(
    db: Database,
    source: CsvSource,
    *,
    actor: str,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Callable[[ImportProgress], None] | None = None,
) -> OrdersImportReport:
    """Import an orders CSV file (a path, or a seekable binary stream left open): as the
    API takes orders, a batch per transaction, so memory stays flat however long the
    file; refused lines are reported with their line number in the file.

    Lines are taken in the file's order, so a file of an order's states one after the
    other stores them as its history. Should the import stop midway, the batches
    before are in: importing the file again is safe (its orders are duplicates).
    Raises ChainmailError when the file cannot be read at all.
    """
    report = OrdersImportReport()
    with binary(source) as (stream, name):
        reader = await asyncio.to_thread(CsvBatches, stream, name, ORDER_COLUMNS)
        try:
            report.ignored_columns = reader.other_columns
            while (chunk := await asyncio.to_thread(reader.next_chunk, batch_size)) is not None:
                # Refusals of the reader and of the store, in line order within a batch.
                refused = list(chunk.errors)
                report.refused += chunk.refused - len(chunk.errors)
                async with db.writer() as session:
                    result = await store_orders(session, chunk.records, datetime.now(UTC))
                refused += [LineError(line, reason) for line, reason in result.errors]
                report.refuse(sorted(refused, key=lambda error: error.line))
                report.created += result.created
                report.updated += result.updated
                report.duplicates += result.duplicates
                if progress is not None:
                    progress(chunk.progress)
        finally:
            reader.close()
    async with db.writer() as session:
        audit.record(session, actor, "orders.import", file=name, **report.counts())
    return report
