"""Customers: one incoming record checked, many upserted, a CSV file imported (SPEC §2, §5, §7).

The CLI, the HTTP API and the bot all come through here, so a customer is treated the
same whatever door it came in by:

- A customer is matched by `external_id`; a customer listed twice in one go: the last
  one wins.
- A field a record does not carry (a column the file does not have, a key the JSON
  object leaves out) keeps its stored value; a field given empty is cleared. So a file
  of `external_id,tags` retags customers without touching their emails or time zones.
- Tags given replace the customer's tags: trimmed, empty ones dropped, duplicates
  dropped, otherwise kept as written (case included).
- Attributes given are merged key by key into the stored ones; an empty CSV cell or a
  JSON null removes the key.
- Email and SMS statuses are never changed by an upsert: an unsubscribed customer stays
  unsubscribed however often the shop re-sends it.
- Time zone: an explicit zone wins; else the phone's; else the default. A stored
  explicit zone stays until a record gives `timezone` (an empty one clears it).

CSV files are read as models/csv_files.py reads any: UTF-8 or cp1251, bad lines refused
by their number; a customer file's other columns become attributes.
"""

from __future__ import annotations

import asyncio
import fcntl
import gc
import itertools
import json
import os
import pickle
import re
import signal
import sys
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES
from phonenumbers import PhoneMetadata
from sqlalchemy import (
    Column,
    ColumnElement,
    Row,
    Table,
    bindparam,
    delete,
    func,
    insert,
    select,
    true,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from i18n import LANGUAGES, N_, Phrase
from models import audit, batch_sql
from models.csv_files import (
    NOT_STORABLE,
    Chunk,
    CsvBatches,
    CsvColumns,
    CsvSource,
    ImportProgress,
    LineError,
    binary,
    shown,
)
from models.db import Database
from models.errors import InvalidValue
from models.tables import Customer, CustomerChange, CustomerTag, EmailStatus, SmsStatus, utcnow
from models.timezones import (
    TimezoneSource,
    is_valid_timezone,
    normalize_phone,
    resolve_timezone,
)

# What people read when a record or a file is refused.
MISSING_EXTERNAL_ID = N_("missing external_id")
TOO_LONG = N_("{field} is longer than {limit} characters")
NOT_TEXT = N_("{field} must be text")
BAD_EMAIL = N_("bad email {value}")
BAD_PHONE = N_("bad phone {value}")
UNKNOWN_TIME_ZONE = N_("unknown time zone {value}")
UNKNOWN_LANGUAGE = N_("language {value} is not one of {known}")
BAD_TAGS = N_("tags must be a list of text")
TAG_TOO_LONG = N_("tag {value} is longer than {limit} characters")
BAD_ATTRIBUTES = N_("attributes must be an object")
ATTRIBUTES_TOO_DEEP = N_("attributes are nested more than {limit} levels deep")
ATTRIBUTES_TOO_BIG = N_("attributes hold more than {limit} characters")
UNKNOWN_FIELD = N_("unknown field {value}")
NOT_AN_OBJECT = N_("expected an object with an external_id")
NOT_JSON = N_("contains a value JSON cannot carry (NaN, infinity or a non-JSON type)")
CSV_COLUMNS = (
    "external_id",
    "email",
    "phone",
    "first_name",
    "last_name",
    "timezone",
    "language",
    "tags",
)
# A CSV's other columns are attributes; a JSON record names them as one object.
FIELDS = frozenset({*CSV_COLUMNS, "attributes"})

# Column widths of models.tables.Customer / CustomerTag: PostgreSQL would refuse longer
# values with an error that takes the whole batch down, so they are refused row by row.
EXTERNAL_ID_MAX = 128
NAME_MAX = 200
TAG_MAX = 100
# Attributes are read by templates and stored as JSON: nested deeper, they would break
# the JSON code of every later batch naming the customer (its recursion limit), and
# no template needs more.
ATTRIBUTES_MAX_DEPTH = 10
# Keys and text values, counted together.
ATTRIBUTES_MAX_CHARS = 65_536

DEFAULT_BATCH_SIZE = 5_000
# A batch is held in memory twice over (records, then rows): bound it.
MAX_BATCH_SIZE = 20_000
# PostgreSQL refuses NUL in text and JSON, and no driver encodes a lone surrogate: such a
# value in a batch would take the whole batch down with it.
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]|\\u0000")


class CleanCustomer(NamedTuple):
    """A record that passed validation, ready to store.

    `given` names the fields the record carried: the others keep their stored values.
    `timezone` and `timezone_source` are what this record alone says; an update may keep
    the stored zone instead (see the module's rules). A tuple: a million of them are
    built per million-line file, and tuples are built fastest.
    """

    external_id: str
    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None
    timezone: str
    timezone_source: TimezoneSource
    language: str | None
    tags: tuple[str, ...] | None
    attributes: dict[str, Any] | None
    given: frozenset[str]


@dataclass(frozen=True, slots=True)
class UpsertResult:
    created: int = 0
    updated: int = 0

    def __add__(self, other: UpsertResult) -> UpsertResult:
        return UpsertResult(self.created + other.created, self.updated + other.updated)


@dataclass(frozen=True, slots=True)
class RecordError:
    index: int
    reason: str


@dataclass(frozen=True, slots=True)
class RecordsReport:
    created: int
    updated: int
    errors: list[RecordError]


@dataclass(slots=True)
class ImportReport:
    created: int = 0
    updated: int = 0
    # Every refused line counts; only the first MAX_KEPT_ERRORS are kept with a reason.
    refused: int = 0
    errors: list[LineError] = field(default_factory=list)

    @property
    def imported(self) -> int:
        return self.created + self.updated


class _Refused(InvalidValue):
    """A record is refused; the message is the reason shown to people."""


def _text(field: str, value: object, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Refused(Phrase(NOT_TEXT, field=field))
    value = value.strip()
    if len(value) > limit:
        raise _Refused(Phrase(TOO_LONG, field=field, limit=limit))
    return value or None


def _external_id(value: object) -> str:
    # Shops often number their customers: a JSON number is as good as a string.
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    text = _text("external_id", value, EXTERNAL_ID_MAX)
    if text is None:
        raise _Refused(MISSING_EXTERNAL_ID)
    return text


@lru_cache(maxsize=4096)
def _checked_domain(domain: str) -> tuple[str, str] | None:
    """The normalized (Unicode, ASCII) forms of a valid email domain, else None."""
    try:
        checked = validate_email("x@" + domain, check_deliverability=False)
    except EmailNotValidError:
        return None
    return checked.domain, checked.ascii_domain


# RFC 5322 dot-atom in ASCII, as email_validator reads it.
_ASCII_DOT_ATOM = re.compile(
    r"[A-Za-z0-9_!#$%&'*+\-/=?^`{|}~]+(?:\.[A-Za-z0-9_!#$%&'*+\-/=?^`{|}~]+)*"
)
_MAILBOX_NAMES = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)
_EMAIL_MAX_BYTES = 254


def _email(value: object) -> str | None:
    raw = _text("email", value, _EMAIL_MAX_BYTES * 4)
    if raw is None:
        return None
    # email_validator takes ~20 µs an address. Nearly every address is a plain ASCII
    # local part at one of a few domains, so check such a local part here and each
    # domain once; anything else gets the full validation. Tests keep both in step.
    local, at, domain = raw.rpartition("@")
    if at and _ASCII_DOT_ATOM.fullmatch(local) and local.lower() not in _MAILBOX_NAMES:
        checked = _checked_domain(domain)
        if checked is not None:
            unicode_domain, ascii_domain = checked
            longest = max(len(raw.encode()), len(local) + 1 + len(unicode_domain.encode()))
            if max(longest, len(local) + 1 + len(ascii_domain)) <= _EMAIL_MAX_BYTES:
                return f"{local}@{unicode_domain}"
    try:
        return validate_email(raw, check_deliverability=False).normalized
    except EmailNotValidError:
        raise _Refused(Phrase(BAD_EMAIL, value=shown(raw))) from None


_PHONE_PUNCTUATION = str.maketrans("", "", " ()-")
_RU_DOMESTIC = re.compile(r"(?:\+7|8|7)?([0-9]{10})")
_RU_MOBILE = re.compile(PhoneMetadata.metadata_for_region("RU").mobile.national_number_pattern)


def _phone(value: object, region: str) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    raw = _text("phone", value, NAME_MAX)
    if raw is None:
        return None
    # phonenumbers takes ~20 µs a number. A Russian shop's customers are nearly all
    # Russian mobiles written the few domestic ways; those are read here with
    # phonenumbers' own mobile pattern, the rest go through it. Tests keep both in step.
    if region == "RU":
        domestic = _RU_DOMESTIC.fullmatch(raw.translate(_PHONE_PUNCTUATION))
        if domestic and _RU_MOBILE.fullmatch(domestic[1]):
            return "+7" + domestic[1]
    try:
        return normalize_phone(raw, region)
    except ValueError:
        raise _Refused(Phrase(BAD_PHONE, value=shown(raw))) from None


def normalized_phone(raw: str, region: str) -> str:
    """`raw` in E.164, read as customers' phones are; ValueError with the reason otherwise."""
    try:
        phone = _phone(raw, region)
    except _Refused as exc:
        raise InvalidValue(exc.phrase) from None
    if phone is None:
        raise InvalidValue(Phrase(BAD_PHONE, value=shown(raw)))
    return phone


def _timezone(value: object) -> str | None:
    name = _text("timezone", value, NAME_MAX)
    if name is not None and not is_valid_timezone(name):
        raise _Refused(Phrase(UNKNOWN_TIME_ZONE, value=shown(name)))
    return name


def _language(value: object) -> str | None:
    language = _text("language", value, NAME_MAX)
    if language is None:
        return None
    if language.lower() not in LANGUAGES:
        known = ", ".join(LANGUAGES)
        raise _Refused(Phrase(UNKNOWN_LANGUAGE, value=shown(language), known=known))
    return language.lower()


def _tags(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        parts: Iterable[object] = value.split(";")
    elif isinstance(value, list):
        parts = value
    else:
        raise _Refused(BAD_TAGS)
    tags: dict[str, None] = {}
    for part in parts:
        if not isinstance(part, str):
            raise _Refused(BAD_TAGS)
        tag = part.strip()
        if len(tag) > TAG_MAX:
            raise _Refused(Phrase(TAG_TOO_LONG, value=shown(tag), limit=TAG_MAX))
        if tag:
            tags[tag] = None
    return tuple(tags)


def _attributes(value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _Refused(BAD_ATTRIBUTES)
    # Level by level rather than recursively: a value nested 100,000 deep must be
    # refused, not overflow the stack while being looked at.
    chars = 0
    level: list[dict[Any, Any] | list[Any]] = [value]
    for _depth in range(ATTRIBUTES_MAX_DEPTH):
        inner: list[dict[Any, Any] | list[Any]] = []
        for container in level:
            if isinstance(container, dict):
                chars += sum(len(key) for key in container if isinstance(key, str))
                items: Iterable[object] = container.values()
            else:
                items = container
            for item in items:
                if isinstance(item, str):
                    chars += len(item)
                elif isinstance(item, dict | list):
                    inner.append(item)
        if chars > ATTRIBUTES_MAX_CHARS:
            raise _Refused(Phrase(ATTRIBUTES_TOO_BIG, limit=ATTRIBUTES_MAX_CHARS))
        if not inner:
            return value
        level = inner
    raise _Refused(Phrase(ATTRIBUTES_TOO_DEEP, limit=ATTRIBUTES_MAX_DEPTH))


# A record names a subset of FIELDS (checked first), so there are at most 2**9 of these:
# one shared object per subset instead of one per record keeps a batch small in memory and
# lets pickle send the set once per batch (see _ChildReader).
_FIELD_SETS: dict[frozenset[str], frozenset[str]] = {}


def validate_customer(
    record: object, *, default_timezone: str, default_phone_region: str
) -> CleanCustomer | Phrase:
    """Check one incoming customer (a CSV row or a JSON object); return it clean or the
    reason it is refused. Empty strings count as not given values; keys left out are
    fields the record does not carry."""
    if not isinstance(record, dict):
        return Phrase(NOT_AN_OBJECT)
    try:
        if not FIELDS.issuperset(record):
            unknown = min(record.keys() - FIELDS)
            raise _Refused(Phrase(UNKNOWN_FIELD, value=shown(str(unknown))))
        # In the order of the CSV columns: the first problem of a row is the one told.
        external_id = _external_id(record.get("external_id"))
        email = _email(record.get("email"))
        phone = _phone(record.get("phone"), default_phone_region)
        first_name = _text("first_name", record.get("first_name"), NAME_MAX)
        last_name = _text("last_name", record.get("last_name"), NAME_MAX)
        explicit_zone = _timezone(record.get("timezone"))
        language = _language(record.get("language"))
        tags = _tags(record.get("tags"))
        attributes = _attributes(record.get("attributes"))
    except _Refused as refusal:
        return refusal.phrase
    timezone, source = resolve_timezone(explicit_zone, phone, default_timezone)
    given = frozenset(record)
    return CleanCustomer(
        external_id=external_id,
        email=email,
        phone=phone,
        first_name=first_name,
        last_name=last_name,
        timezone=timezone,
        timezone_source=source,
        language=language,
        tags=tags,
        attributes=attributes,
        given=_FIELD_SETS.setdefault(given, given),
    )


# --- storing ---------------------------------------------------------------------------


def _zone_after_update(
    record: CleanCustomer, stored: Row[Any], default_timezone: str
) -> tuple[str, str]:
    if record.timezone_source is TimezoneSource.EXPLICIT:
        return record.timezone, record.timezone_source
    if "timezone" not in record.given:
        if stored.timezone_source == TimezoneSource.EXPLICIT:
            return stored.timezone, stored.timezone_source
        if "phone" not in record.given:
            # Nothing the zone depends on has changed.
            return stored.timezone, stored.timezone_source
    if "phone" in record.given:
        return record.timezone, record.timezone_source
    # The explicit zone is cleared and the phone kept: the stored phone decides now.
    return resolve_timezone(None, stored.phone, default_timezone)


def _merged_attributes(stored: dict[str, Any], given: dict[str, Any] | None) -> dict[str, Any]:
    if not given:
        return stored
    if not stored and None not in given.values():
        # Nothing to merge or remove (a new customer, most rows of a first import): the
        # given dict as it is, which is only serialized, rather than two copies of it.
        return given
    merged = {**stored, **given}
    return {key: value for key, value in merged.items() if value is not None}


# Columns of the upsert that differ from customer to customer, in the order of _row.
_PER_ROW = (
    "external_id",
    "email",
    "phone",
    "first_name",
    "last_name",
    "timezone",
    "timezone_source",
    "language",
    "attributes",
)
# Columns with one value for a whole batch. The statuses and created_at only count for
# new customers: they are not in _UPDATED_ON_CONFLICT.
_PER_BATCH = ("email_status", "sms_status", "created_at", "updated_at")
_UPDATED_ON_CONFLICT = (*_PER_ROW[1:], "updated_at")
_READ_BEFORE_UPSERT = ("id", *_PER_ROW)
_TAG_ROW = ("external_id", "tag")
_CUSTOMERS = Customer.metadata.tables[Customer.__tablename__]
_TAGS = CustomerTag.metadata.tables[CustomerTag.__tablename__]


def _batch_statements(
    insert: Callable[[Table], Any],
    rows: Callable[[dict[str, Column[Any]]], list[ColumnElement[Any]]],
) -> tuple[Any, Any]:
    customers = rows({name: _CUSTOMERS.c[name] for name in _PER_ROW})
    constants = [bindparam(name, type_=_CUSTOMERS.c[name].type) for name in _PER_BATCH]
    # The WHERE: SQLite would read an ON CONFLICT right after FROM as a join's ON.
    upsert = insert(_CUSTOMERS).from_select(
        [*_PER_ROW, *_PER_BATCH], select(*customers, *constants).where(true())
    )
    upsert = upsert.on_conflict_do_update(
        index_elements=[_CUSTOMERS.c.external_id],
        set_={name: upsert.excluded[name] for name in _UPDATED_ON_CONFLICT},
    )
    # New customers' tags need their new ids: the INSERT looks them up by external_id.
    external_id, tag = rows({"external_id": _CUSTOMERS.c.external_id, "tag": _TAGS.c.tag})
    insert_tags = insert(_TAGS).from_select(
        ["customer_id", "tag"],
        select(_CUSTOMERS.c.id, tag).where(_CUSTOMERS.c.external_id == external_id),
    )
    return upsert, insert_tags


def _as_is(value: Any) -> Any:
    return value


class _BatchWriter(NamedTuple):
    """A batch is written with one statement for its customers and one for their tags,
    the rows passed as one parameter: measured, that is 2 to 3 times faster than one
    statement per row (PostgreSQL's work per statement; SQLite's binding of each row's
    parameters from Python)."""

    upsert: Any
    insert_tags: Any
    parameters: Callable[[tuple[str, ...], list[tuple[Any, ...]]], dict[str, Any]]
    # PostgreSQL's json[] array takes each row's attributes as JSON text; SQLite's JSON
    # rows carry them as they are, serialized with the rest in one go.
    attributes_as_text: bool


_WRITERS = {
    "postgresql": _BatchWriter(
        *_batch_statements(postgresql.insert, batch_sql.pg_rows), batch_sql.as_arrays, True
    ),
    "sqlite": _BatchWriter(
        *_batch_statements(sqlite.insert, batch_sql.sqlite_rows), batch_sql.as_json, False
    ),
}


def _row(
    record: CleanCustomer,
    stored: Row[Any] | None,
    default_timezone: str,
    to_json: Callable[[Any], Any],
) -> tuple[Any, ...]:
    """The values of _PER_ROW for the record, over what is stored for the customer."""
    if stored is None:
        return (
            record.external_id,
            record.email,
            record.phone,
            record.first_name,
            record.last_name,
            record.timezone,
            record.timezone_source.value,
            record.language,
            to_json(_merged_attributes({}, record.attributes)),
        )
    given = record.given
    timezone, source = _zone_after_update(record, stored, default_timezone)
    return (
        record.external_id,
        record.email if "email" in given else stored.email,
        record.phone if "phone" in given else stored.phone,
        record.first_name if "first_name" in given else stored.first_name,
        record.last_name if "last_name" in given else stored.last_name,
        timezone,
        str(source),
        record.language if "language" in given else stored.language,
        to_json(_merged_attributes(stored.attributes, record.attributes)),
    )


async def _store_batch(
    session: AsyncSession, batch: Sequence[CleanCustomer], default_timezone: str
) -> UpsertResult:
    """Upsert customers with distinct external_ids in the session's transaction."""
    dialect = session.bind.dialect
    ids = [record.external_id for record in batch]
    # FOR UPDATE (PostgreSQL; SQLite has the whole database locked already): a change
    # made by someone else between this read and the upsert would be overwritten with
    # what was read. Sorted, so two imports lock common customers in the same order.
    stored_rows = await session.execute(
        select(*(_CUSTOMERS.c[name] for name in _READ_BEFORE_UPSERT))
        .where(batch_sql.among(_CUSTOMERS.c.external_id, ids, dialect))
        .order_by(_CUSTOMERS.c.external_id)
        .with_for_update()
    )
    stored = {row.external_id: row for row in stored_rows}

    writer = _WRITERS[dialect.name]
    to_json = _as_is
    if writer.attributes_as_text:
        to_json = _CUSTOMERS.c.attributes.type.bind_processor(dialect) or _as_is
    rows = [_row(r, stored.get(r.external_id), default_timezone, to_json) for r in batch]
    now = utcnow()
    constants = zip(
        _PER_BATCH,
        (EmailStatus.SUBSCRIBED.value, SmsStatus.SUBSCRIBED.value, now, now),
        strict=True,
    )
    await batch_sql.execute(
        session,
        writer.upsert,
        {
            **writer.parameters(_PER_ROW, rows),
            **{
                name: batch_sql.for_driver(_CUSTOMERS.c[name], value, dialect)
                for name, value in constants
            },
        },
    )

    retagged = [record for record in batch if record.tags is not None]
    stale = [stored[r.external_id].id for r in retagged if r.external_id in stored]
    if stale:
        await session.execute(
            delete(_TAGS).where(batch_sql.among(_TAGS.c.customer_id, stale, dialect))
        )
    tag_rows = [(r.external_id, tag) for r in retagged for tag in r.tags or ()]
    if tag_rows:
        await batch_sql.execute(session, writer.insert_tags, writer.parameters(_TAG_ROW, tag_rows))
    # `continuous` chains take newcomers from this queue (scheduler/engine.py).
    await session.execute(
        insert(CustomerChange.__table__).from_select(
            ["customer_id"],
            select(_CUSTOMERS.c.id).where(batch_sql.among(_CUSTOMERS.c.external_id, ids, dialect)),
        )
    )
    return UpsertResult(created=len(batch) - len(stored), updated=len(stored))


async def _store(
    session: AsyncSession, records: Sequence[CleanCustomer], default_timezone: str
) -> UpsertResult:
    if not records:
        # A batch of refused lines only: nothing to write.
        return UpsertResult()
    # PostgreSQL refuses an upsert that touches one row twice, so only the last
    # listing of a customer is stored; the earlier ones count as updates it overwrote.
    latest = {record.external_id: record for record in records}
    result = await _store_batch(session, list(latest.values()), default_timezone)
    return result + UpsertResult(updated=len(records) - len(latest))


def _chunks(records: Iterable[CleanCustomer], size: int) -> Iterator[list[CleanCustomer]]:
    iterator = iter(records)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _check_batch_size(batch_size: int) -> None:
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_SIZE}")


async def upsert_customers(
    db: Database,
    records: Iterable[CleanCustomer],
    *,
    default_timezone: str,
    actor: str,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> UpsertResult:
    """Store validated customers by external_id in one transaction: all or none."""
    _check_batch_size(batch_size)
    result = UpsertResult()
    async with db.writer() as session:
        for chunk in _chunks(records, batch_size):
            result += await _store(session, chunk, default_timezone)
        if result.created or result.updated:
            audit.record(
                session, actor, "customers.upsert", created=result.created, updated=result.updated
            )
    return result


def _unstorable(item: object) -> Phrase | None:
    """Why a JSON object cannot be stored whatever its fields say, if it cannot.

    CSV lines are checked for these as they are read; JSON can carry them anywhere.
    """
    try:
        text = json.dumps(item, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        return Phrase(NOT_JSON)
    return Phrase(NOT_STORABLE) if _UNSTORABLE.search(text) else None


def _validate_all(
    items: Sequence[object], default_timezone: str, default_phone_region: str
) -> tuple[list[CleanCustomer], list[RecordError]]:
    clean: list[CleanCustomer] = []
    errors: list[RecordError] = []
    for index, item in enumerate(items):
        # Validation first: it bounds the nesting that JSON encoding then walks.
        checked = validate_customer(
            item, default_timezone=default_timezone, default_phone_region=default_phone_region
        )
        if not isinstance(checked, Phrase):
            checked = _unstorable(item) or checked
        if isinstance(checked, Phrase):
            errors.append(RecordError(index, checked))
        else:
            clean.append(checked)
    return clean, errors


async def save_customers(
    db: Database,
    items: Sequence[object],
    *,
    default_timezone: str,
    default_phone_region: str,
    actor: str,
) -> RecordsReport:
    """Validate incoming customers (JSON objects) and upsert the good ones; the bad ones
    are reported by their index in `items`."""
    # Validation is CPU work: a thread keeps the event loop (bot, web) answering.
    clean, errors = await asyncio.to_thread(
        _validate_all, items, default_timezone, default_phone_region
    )
    result = UpsertResult()
    if clean:
        result = await upsert_customers(db, clean, default_timezone=default_timezone, actor=actor)
    return RecordsReport(created=result.created, updated=result.updated, errors=errors)


# --- CSV files -------------------------------------------------------------------------


def customer_columns(default_timezone: str, default_phone_region: str) -> CsvColumns:
    """What a customer file holds: any other column is an attribute."""
    return CsvColumns(
        known=CSV_COLUMNS,
        required=("external_id",),
        check=partial(
            validate_customer,
            default_timezone=default_timezone,
            default_phone_region=default_phone_region,
        ),
        extra_key="attributes",
    )


# --- reading in a child process --------------------------------------------------------
# Checking a row costs about as much Python as writing it, and one process runs Python on
# one core at a time. With `workers=1` a child process reads and checks the file while
# this one writes: each half gets a core. The child runs the same CsvBatches, so the
# rows, the refusals and their line numbers are those of reading in this process.
#
# A plain subprocess rather than multiprocessing: its pool hands results over in a thread
# of its own that waits for the GIL at every 64 KiB of a batch while the writer runs
# Python (measured: no faster than one process), and its spawn re-runs the caller's main
# script in the child. Here the event loop reads the child's output while the database
# works, and the child imports this module only.

_PROJECT_ROOT = str(Path(__file__).resolve().parents[1])
_CHILD_COMMAND = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from models.customers import _read_for_parent; _read_for_parent()"
)
# A batch is sent in one piece of about 700 KB: a pipe that holds it lets the child go on
# to the next batch without waiting for the writer to take this one (Linux; elsewhere
# the pipe keeps its size and the child waits).
_PIPE_SIZE = 1 << 20
_LENGTH_BYTES = 8
_CHILD_GC_THRESHOLD = 50_000


def _send(out: BinaryIO, message: tuple[Any, ...]) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(len(data).to_bytes(_LENGTH_BYTES, "little"))
    out.write(data)
    out.flush()


def _packed(chunk: Chunk) -> tuple[str, list[tuple[Any, ...]], Chunk]:
    # As plain tuples: a NamedTuple is pickled through a Python-level __getnewargs__ and
    # unpickled through its Python-level __new__, which doubled the cost of the hand-over.
    return "chunk", [tuple(record) for record in chunk.records], chunk._replace(records=[])


def _unpacked(rows: list[tuple[Any, ...]], chunk: Chunk) -> Chunk:
    new = tuple.__new__
    return chunk._replace(records=[new(CleanCustomer, row) for row in rows])


def _read_for_parent() -> None:
    """The child of _read_in_child: the file named on stdin, read to stdout in chunks."""
    # Ctrl-C reaches the whole process group; the parent ends the child as it stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    out = os.fdopen(os.dup(1), "wb")
    # Anything printed by mistake goes to stderr rather than into the messages.
    os.dup2(2, 1)
    with suppress(AttributeError, OSError):
        fcntl.fcntl(out.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
    # This process only reads the file: the modules' objects need no more collecting,
    # and a collection every 700 new objects is frequent for batches of them
    # (measured: 14.2 → 12.3 µs a row).
    gc.freeze()
    gc.set_threshold(_CHILD_GC_THRESHOLD)
    path, default_timezone, default_phone_region, batch_size = pickle.load(sys.stdin.buffer)
    try:
        with binary(path) as (stream, name):
            reader = CsvBatches(
                stream, name, customer_columns(default_timezone, default_phone_region)
            )
            try:
                _send(out, ("ready",))
                while (chunk := reader.next_chunk(batch_size)) is not None:
                    _send(out, _packed(chunk))
                _send(out, ("end",))
            finally:
                reader.close()
    except BrokenPipeError:
        # The parent stopped reading: it has stopped the import.
        return
    except Exception as exc:
        try:
            pickle.dumps(exc)
        except Exception:
            exc = RuntimeError(traceback.format_exc())
        _send(out, ("error", exc))


@asynccontextmanager
async def _read_in_child(
    path: str, batch_size: int, default_timezone: str, default_phone_region: str
) -> AsyncIterator[Callable[[], Awaitable[Chunk | None]]]:
    """A function giving the next chunk of the file, read and checked in a child process.

    Raises ChainmailError, as reading in this process would, when the file cannot be read.
    """
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        # Not the current directory first on the child's path: a csv.py there would do.
        "-P",
        "-c",
        _CHILD_COMMAND,
        _PROJECT_ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=_PIPE_SIZE,
    )
    assert child.stdin is not None
    assert child.stdout is not None
    stdout = child.stdout

    async def receive() -> tuple[Any, ...]:
        try:
            size = int.from_bytes(await stdout.readexactly(_LENGTH_BYTES), "little")
            message: tuple[Any, ...] = pickle.loads(await stdout.readexactly(size))
        except asyncio.IncompleteReadError:
            code = await child.wait()
            raise RuntimeError(f"the process reading the file stopped (exit code {code})") from None
        if message[0] == "error":
            raise message[1]
        return message

    async def next_chunk() -> Chunk | None:
        message = await receive()
        if message[0] == "end":
            return None
        return _unpacked(message[1], message[2])

    try:
        child.stdin.write(pickle.dumps((path, default_timezone, default_phone_region, batch_size)))
        await child.stdin.drain()
        child.stdin.close()
        # The file's header read, or the reason the file cannot be read.
        await receive()
        yield next_chunk
    finally:
        if child.returncode is None:
            with suppress(ProcessLookupError):
                child.kill()
        await child.wait()


# --- importing -------------------------------------------------------------------------


async def _write_chunks(
    db: Database,
    next_chunk: Callable[[], Awaitable[Chunk | None]],
    report: ImportReport,
    default_timezone: str,
    progress: Callable[[ImportProgress], None] | None,
) -> None:
    while (chunk := await next_chunk()) is not None:
        report.refused += chunk.refused
        report.errors.extend(chunk.errors)
        async with db.writer() as session:
            result = await _store(session, chunk.records, default_timezone)
        report.created += result.created
        report.updated += result.updated
        if progress is not None:
            progress(chunk.progress)


async def import_customers_csv(
    db: Database,
    source: CsvSource,
    *,
    default_timezone: str,
    default_phone_region: str,
    actor: str,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Callable[[ImportProgress], None] | None = None,
    workers: int = 0,
) -> ImportReport:
    """Import a customer CSV file (a path, or a seekable binary stream left open).

    Good rows are upserted in batches, one transaction each, so memory stays flat
    however long the file; refused lines are reported with their line number in the
    file. Should the import stop midway, the batches before are in: importing the file
    again is safe. Raises ChainmailError when the file cannot be read at all.

    `workers=1` reads and checks the file in a child process while this one writes, so
    each half has a core of its own (docs/benchmarks.md); the child's start costs about
    0.3 s, so it is for large files and processes that may start children (the CLI). A
    stream is always read in this process. The result, refusals and progress included,
    is the same either way. (One reader: a file is read in order.)
    """
    _check_batch_size(batch_size)
    if workers not in (0, 1):
        raise ValueError("workers must be 0 or 1")
    report = ImportReport()
    if workers and isinstance(source, str | os.PathLike):
        name = str(Path(source))
        async with _read_in_child(
            os.fspath(source), batch_size, default_timezone, default_phone_region
        ) as next_chunk:
            await _write_chunks(db, next_chunk, report, default_timezone, progress)
    else:
        with binary(source) as (stream, name):
            reader = await asyncio.to_thread(
                CsvBatches, stream, name, customer_columns(default_timezone, default_phone_region)
            )
            try:
                # Reading and checking rows is CPU work: a thread keeps the event loop of
                # the bot or the web app answering meanwhile. (Reading the next batch in
                # a thread while this one is written was measured: no faster, both halves
                # mostly want the GIL. A child process does not share it: `workers`.)
                await _write_chunks(
                    db,
                    partial(asyncio.to_thread, reader.next_chunk, batch_size),
                    report,
                    default_timezone,
                    progress,
                )
            finally:
                reader.close()
    async with db.writer() as session:
        audit.record(
            session,
            actor,
            "customers.import",
            file=name,
            created=report.created,
            updated=report.updated,
            refused=report.refused,
        )
    return report


async def count_customers(db: Database) -> int:
    async with db.session() as session:
        return await session.scalar(select(func.count()).select_from(Customer)) or 0
