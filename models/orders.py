"""Orders pushed by the shop (SPEC §5): checked one by one, stored in one go.

`OrderItem` is the shape of one order and its rules; the API documents it as
is. A `created_at` without a UTC offset is read as UTC: a machine interface
should not guess the sender's zone, and shops that mean local time say so with
an offset (`2026-03-01T14:00:00+03:00`). Numbers are accepted where the shop's
ids are numeric; `amount` may be a JSON number or a string (exact decimals).

Each order is checked for what both databases can store, so that one order no
database takes is refused alone and the others beside it are stored: `created_at`
lies in the years 2000–2100 (UTC), far from where converting a zone overflows
and from the dates PostgreSQL would store as ±infinity; no id contains a NUL,
which PostgreSQL refuses in text.
"""

from __future__ import annotations

from collections.abc import Sequence
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
from sqlalchemy import select

from models.db import Database, insert_ignoring_conflicts
from models.facts import customer_facts_changed
from models.tables import Customer, Order

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


class OrderItem(BaseModel):
    """One order as the shop sends it."""

    model_config = ConfigDict(str_strip_whitespace=True, coerce_numbers_to_str=True, frozen=True)

    external_id: ExternalId = Field(description="The shop's order id; re-sent orders count once.")
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
            "ISO 8601, in the years 2000 to 2100; without an offset it is UTC; "
            "default: when received."
        ),
    )

    @field_validator("created_at", mode="before")
    @classmethod
    def _iso_text_only(cls, value: Any) -> Any:
        # Pydantic would also take a number as Unix time, in seconds or milliseconds
        # by its size: a guess we would rather not make with someone's revenue.
        if value is not None and not isinstance(value, str):
            raise ValueError("must be an ISO 8601 date and time, as a string")
        return value

    @field_validator("created_at")
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
    duplicates: int
    # (index in the request, what is wrong), in request order.
    errors: list[tuple[int, str]] = field(default_factory=list)


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
    """Store the valid orders of known customers; each `external_id` is stored once, ever.

    An order already stored, or repeated earlier in `items`, is a duplicate: the
    first one stays as it is.
    """
    errors: list[tuple[int, str]] = []
    parsed: list[tuple[int, OrderItem]] = []
    for index, raw in enumerate(items):
        try:
            parsed.append((index, parse_order(raw)))
        except ValueError as exc:
            errors.append((index, str(exc)))

    async with db.writer() as session:
        wanted = {item.customer_external_id for _, item in parsed}
        customer_ids: dict[str, int] = {}
        if wanted:
            # The orders' foreign keys share-lock their customers; taken here, in the order a
            # customers upsert locks them FOR UPDATE (by external_id, as the database sorts),
            # so the two cannot deadlock on PostgreSQL. SQLite locks the whole file anyway.
            found = await session.execute(
                select(Customer.external_id, Customer.id)
                .where(Customer.external_id.in_(wanted))
                .order_by(Customer.external_id)
                .with_for_update(read=True, key_share=True)
            )
            customer_ids = dict(found.all())
        rows: dict[str, dict[str, Any]] = {}
        duplicates = 0
        for index, item in parsed:
            customer_id = customer_ids.get(item.customer_external_id)
            if customer_id is None:
                errors.append((index, f"unknown customer {item.customer_external_id!r}"))
            elif item.external_id in rows:
                duplicates += 1
            else:
                rows[item.external_id] = {
                    "external_id": item.external_id,
                    "customer_id": customer_id,
                    "amount": item.amount,
                    "currency": item.currency,
                    "created_at": item.created_at or now,
                    "received_at": now,
                }
        created = 0
        if rows:
            inserted = await session.scalars(
                insert_ignoring_conflicts(session, Order).returning(Order.external_id),
                list(rows.values()),
            )
            stored = inserted.all()
            created = len(stored)
            await customer_facts_changed(
                session, {rows[external_id]["customer_id"] for external_id in stored}, now
            )
        duplicates += len(rows) - created

    errors.sort()
    return OrdersResult(created, duplicates, errors)
