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

CSV files are read as UTF-8 (with or without BOM) unless their first non-ASCII bytes are
not UTF-8, then as cp1251. A line that does not decode in the chosen encoding (a file
pasted together from two encodings) is refused like any other bad line.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import io
import itertools
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES
from phonenumbers import PhoneMetadata
from sqlalchemy import Row, String, bindparam, cast, delete, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from models import audit
from models.db import Database
from models.errors import ChainmailError
from models.tables import Customer, CustomerTag, EmailStatus, SmsStatus, utcnow
from models.timezones import (
    TimezoneSource,
    is_valid_timezone,
    normalize_phone,
    resolve_timezone,
)

# What people read when a record or a file is refused.
MISSING_EXTERNAL_ID = "missing external_id"
TOO_LONG = "{field} is longer than {limit} characters"
NOT_TEXT = "{field} must be text"
BAD_EMAIL = "bad email {value}"
BAD_PHONE = "bad phone {value}"
UNKNOWN_TIME_ZONE = "unknown time zone {value}"
BAD_TAGS = "tags must be a list of text"
TAG_TOO_LONG = "tag {value} is longer than {limit} characters"
BAD_ATTRIBUTES = "attributes must be an object"
UNKNOWN_FIELD = "unknown field {value}"
NOT_AN_OBJECT = "expected an object with an external_id"
WRONG_COLUMN_COUNT = "expected {expected} columns, found {found}"
NOT_DECODABLE = "not {encoding} text: save the whole file in one encoding, UTF-8 preferably"
UNREADABLE_LINE = "cannot read this line: {reason}"
FILE_UNREADABLE = "cannot read {name}: {reason}"
FILE_EMPTY = "{name} is empty"
NO_EXTERNAL_ID_COLUMN = "{name} has no external_id column in its first line (found: {found})"
DUPLICATE_COLUMN = "{name} has the column {column} twice"

FIELDS = frozenset(
    {"external_id", "email", "phone", "first_name", "last_name", "timezone", "tags", "attributes"}
)
CSV_COLUMNS = ("external_id", "email", "phone", "first_name", "last_name", "timezone", "tags")

# Column widths of models.tables.Customer / CustomerTag: PostgreSQL would refuse longer
# values with an error that takes the whole batch down, so they are refused row by row.
EXTERNAL_ID_MAX = 128
NAME_MAX = 200
TAG_MAX = 100
# A refused value is quoted in the reason; a garbage cell must not make a huge reason.
SHOWN_MAX = 60

DEFAULT_BATCH_SIZE = 5_000
# One batch's external_ids go into one `IN (…)`: asyncpg allows 32,767 parameters.
MAX_BATCH_SIZE = 20_000
# A million-line garbage file must not keep a million reasons in memory.
MAX_KEPT_ERRORS = 1_000
_SAMPLE_BYTES = 1 << 16
_NON_ASCII = re.compile(rb"[\x80-\xff]")
# `surrogateescape` turns bytes that do not decode into these code points.
_UNDECODED = re.compile("[\udc80-\udcff]")


@dataclass(frozen=True, slots=True)
class CleanCustomer:
    """A record that passed validation, ready to store.

    `given` names the fields the record carried: the others keep their stored values.
    `timezone` and `timezone_source` are what this record alone says; an update may keep
    the stored zone instead (see the module's rules).
    """

    external_id: str
    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None
    timezone: str
    timezone_source: TimezoneSource
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


@dataclass(frozen=True, slots=True)
class LineError:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


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


@dataclass(frozen=True, slots=True)
class ImportProgress:
    bytes_read: int
    total_bytes: int | None
    lines: int


class _Refused(Exception):
    """A record is refused; the message is the reason shown to people."""


def _shown(value: str) -> str:
    if len(value) > SHOWN_MAX:
        value = value[:SHOWN_MAX] + "…"
    return repr(value)


def _text(field: str, value: object, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Refused(NOT_TEXT.format(field=field))
    value = value.strip()
    if len(value) > limit:
        raise _Refused(TOO_LONG.format(field=field, limit=limit))
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
        raise _Refused(BAD_EMAIL.format(value=_shown(raw))) from None


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
        raise _Refused(BAD_PHONE.format(value=_shown(raw))) from None


def _timezone(value: object) -> str | None:
    name = _text("timezone", value, NAME_MAX)
    if name is not None and not is_valid_timezone(name):
        raise _Refused(UNKNOWN_TIME_ZONE.format(value=_shown(name)))
    return name


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
            raise _Refused(TAG_TOO_LONG.format(value=_shown(tag), limit=TAG_MAX))
        if tag:
            tags[tag] = None
    return tuple(tags)


def _attributes(value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _Refused(BAD_ATTRIBUTES)
    return value


def validate_customer(
    record: object, *, default_timezone: str, default_phone_region: str
) -> CleanCustomer | str:
    """Check one incoming customer (a CSV row or a JSON object); return it clean or the
    reason it is refused. Empty strings count as not given values; keys left out are
    fields the record does not carry."""
    if not isinstance(record, Mapping):
        return NOT_AN_OBJECT
    try:
        unknown = record.keys() - FIELDS
        if unknown:
            raise _Refused(UNKNOWN_FIELD.format(value=_shown(min(unknown))))
        external_id = _external_id(record.get("external_id"))
        phone = _phone(record.get("phone"), default_phone_region)
        explicit_zone = _timezone(record.get("timezone"))
        timezone, source = resolve_timezone(explicit_zone, phone, default_timezone)
        return CleanCustomer(
            external_id=external_id,
            email=_email(record.get("email")),
            phone=phone,
            first_name=_text("first_name", record.get("first_name"), NAME_MAX),
            last_name=_text("last_name", record.get("last_name"), NAME_MAX),
            timezone=timezone,
            timezone_source=source,
            tags=_tags(record.get("tags")),
            attributes=_attributes(record.get("attributes")),
            given=frozenset(record.keys()),
        )
    except _Refused as refusal:
        return str(refusal)


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
    merged = {**stored, **given}
    return {key: value for key, value in merged.items() if value is not None}


def _row(
    record: CleanCustomer, stored: Row[Any] | None, default_timezone: str, now: datetime
) -> dict[str, Any]:
    if stored is None:
        return {
            "external_id": record.external_id,
            "email": record.email,
            "phone": record.phone,
            "first_name": record.first_name,
            "last_name": record.last_name,
            "timezone": record.timezone,
            "timezone_source": record.timezone_source,
            "attributes": _merged_attributes({}, record.attributes),
            "email_status": EmailStatus.SUBSCRIBED,
            "sms_status": SmsStatus.SUBSCRIBED,
            "created_at": now,
            "updated_at": now,
        }
    given = record.given
    timezone, source = _zone_after_update(record, stored, default_timezone)
    return {
        "external_id": record.external_id,
        "email": record.email if "email" in given else stored.email,
        "phone": record.phone if "phone" in given else stored.phone,
        "first_name": record.first_name if "first_name" in given else stored.first_name,
        "last_name": record.last_name if "last_name" in given else stored.last_name,
        "timezone": timezone,
        "timezone_source": source,
        "attributes": _merged_attributes(stored.attributes, record.attributes),
        # Only the INSERT half of the upsert uses these: stored statuses stay.
        "email_status": EmailStatus.SUBSCRIBED,
        "sms_status": SmsStatus.SUBSCRIBED,
        "created_at": now,
        "updated_at": now,
    }


_UPDATED_ON_CONFLICT = (
    "email",
    "phone",
    "first_name",
    "last_name",
    "timezone",
    "timezone_source",
    "attributes",
    "updated_at",
)


def _upsert_statement(dialect: str) -> Any:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(Customer.__table__)
    return statement.on_conflict_do_update(
        index_elements=[Customer.external_id],
        set_={name: statement.excluded[name] for name in _UPDATED_ON_CONFLICT},
    )


# Tags of new customers need their new ids: look each one up by external_id in the
# INSERT itself rather than reading the ids back.
_INSERT_TAGS = insert(CustomerTag).from_select(
    ["customer_id", "tag"],
    select(Customer.id, cast(bindparam("tag"), String)).where(
        Customer.external_id == bindparam("external_id")
    ),
)


async def _store_batch(
    session: AsyncSession, batch: Sequence[CleanCustomer], default_timezone: str
) -> UpsertResult:
    """Upsert customers with distinct external_ids in the session's transaction."""
    ids = [record.external_id for record in batch]
    # FOR UPDATE (PostgreSQL; SQLite has the whole database locked already): a change
    # made by someone else between this read and the upsert would be overwritten with
    # what was read. Sorted, so two imports lock common customers in the same order.
    stored_rows = await session.execute(
        select(
            Customer.id,
            Customer.external_id,
            Customer.email,
            Customer.phone,
            Customer.first_name,
            Customer.last_name,
            Customer.timezone,
            Customer.timezone_source,
            Customer.attributes,
        )
        .where(Customer.external_id.in_(ids))
        .order_by(Customer.external_id)
        .with_for_update()
    )
    stored = {row.external_id: row for row in stored_rows}
    now = utcnow()
    rows = [_row(record, stored.get(record.external_id), default_timezone, now) for record in batch]
    await session.execute(_upsert_statement(session.bind.dialect.name), rows)

    retagged = [record for record in batch if record.tags is not None]
    stale = [stored[r.external_id].id for r in retagged if r.external_id in stored]
    if stale:
        await session.execute(delete(CustomerTag).where(CustomerTag.customer_id.in_(stale)))
    tag_rows = [{"external_id": r.external_id, "tag": tag} for r in retagged for tag in r.tags or ()]
    if tag_rows:
        await session.execute(_INSERT_TAGS, tag_rows)
    return UpsertResult(created=len(batch) - len(stored), updated=len(stored))
