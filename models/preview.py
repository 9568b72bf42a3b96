"""Whose data a preview or a test send of a step's message is rendered with (SPEC §3).

A customer the admin names (external id, email or phone), else a sample: the first
customer of the main step's segments for step 1, the first customer for later steps,
one with the step's contact (email or phone) preferred. With no customers at all, a
made-up one, so that a new shop still sees its placeholders filled in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, or_, select

from i18n import Phrase
from models.customers import BAD_EMAIL, BAD_PHONE, validate_customer
from models.db import Database
from models.errors import InvalidValue
from models.segments import segment_members_query, segment_rules
from models.tables import Channel, Customer
from models.templates import customer_context, template_context

MADE_UP_FIELDS = {
    "external_id": "sample",
    "email": "anna@example.com",
    "phone": "+79001234567",
    "first_name": "Anna",
    "last_name": "Sample",
}


@dataclass(frozen=True)
class PreviewCustomer:
    # 0 for the made-up customer: no customer has that id.
    id: int
    external_id: str
    first_name: str | None
    email: str | None
    phone: str | None
    # What the templates see (`models.templates.template_context`).
    context: dict[str, Any]
    made_up: bool = False

    def contact(self, channel: str) -> str | None:
        return self.email if channel == Channel.EMAIL else self.phone


class BadAddress(InvalidValue):
    """An address an admin typed for test sends is not usable; the message says why."""


def made_up_customer(default_timezone: str, default_language: str) -> PreviewCustomer:
    fields = {**MADE_UP_FIELDS, "timezone": default_timezone, "language": default_language}
    return PreviewCustomer(
        id=0,
        external_id=fields["external_id"],
        first_name=fields["first_name"],
        email=fields["email"],
        phone=fields["phone"],
        context=template_context(fields, {}),
        made_up=True,
    )


def _preview_customer(customer: Customer, default_language: str) -> PreviewCustomer:
    return PreviewCustomer(
        id=customer.id,
        external_id=customer.external_id,
        first_name=customer.first_name,
        email=customer.email,
        phone=customer.phone,
        context=customer_context(customer, default_language),
    )


async def _first(
    db: Database, query: Select[tuple[Customer]], default_language: str
) -> PreviewCustomer | None:
    async with db.session() as session:
        customer = await session.scalar(query.limit(1))
    return None if customer is None else _preview_customer(customer, default_language)


async def customer_by_id(
    db: Database, customer_id: int, *, default_language: str
) -> PreviewCustomer | None:
    """None when the customer is gone (deleted since it was picked)."""
    return await _first(db, select(Customer).where(Customer.id == customer_id), default_language)


async def find_customer(
    db: Database, typed: str, *, default_phone_region: str, default_language: str
) -> PreviewCustomer | None:
    """The customer with this external id, else this email (any case), else this phone."""
    typed = typed.strip()
    if not typed:
        return None
    matches = [Customer.external_id == typed]
    checked = validate_customer(
        {"external_id": typed, "email": typed},
        default_timezone="UTC",
        default_phone_region=default_phone_region,
    )
    if not isinstance(checked, Phrase) and checked.email:
        matches.append(func.lower(Customer.email) == checked.email.lower())
    checked = validate_customer(
        {"external_id": typed, "phone": typed},
        default_timezone="UTC",
        default_phone_region=default_phone_region,
    )
    if not isinstance(checked, Phrase) and checked.phone:
        matches.append(Customer.phone == checked.phone)
    query = (
        select(Customer)
        .where(or_(*matches))
        # An external id wins over a contact that happens to look the same.
        .order_by((Customer.external_id != typed), Customer.id)
    )
    return await _first(db, query, default_language)


async def sample_customer(
    db: Database,
    *,
    segments: Sequence[str],
    channel: str,
    default_timezone: str,
    default_language: str,
    now: datetime,
) -> PreviewCustomer:
    """The first customer of `segments` (any customer when there are none or they are
    empty), one with the channel's contact first; made up when there are no customers."""
    contact = Customer.email if channel == Channel.EMAIL else Customer.phone
    with_contact_first = (contact.is_(None), Customer.id)
    if segments:
        async with db.session() as session:
            rules = await segment_rules(session, segments)
            dialect = session.bind.dialect.name
        if rules:
            members = segment_members_query(rules, now=now, dialect=dialect).scalar_subquery()
            query = select(Customer).where(Customer.id.in_(members)).order_by(*with_contact_first)
            found = await _first(db, query, default_language)
            if found is not None:
                return found
    found = await _first(db, select(Customer).order_by(*with_contact_first), default_language)
    return found or made_up_customer(default_timezone, default_language)


def checked_address(channel: str, typed: str, *, default_phone_region: str) -> str:
    """The admin's own email or phone for test sends, normalised as a customer's would be.

    BadAddress with the reason a customer's contact would be refused for.
    """
    field = "email" if channel == Channel.EMAIL else "phone"
    checked = validate_customer(
        {"external_id": "test", field: typed},
        default_timezone="UTC",
        default_phone_region=default_phone_region,
    )
    if isinstance(checked, Phrase):
        raise BadAddress(checked)
    address = checked.email if field == "email" else checked.phone
    if not address:
        refusal = BAD_EMAIL if field == "email" else BAD_PHONE
        raise BadAddress(refusal, value=repr(typed))
    return address


async def sample_customers(
    db: Database,
    *,
    segments: Sequence[str],
    channel: str,
    limit: int,
    default_language: str,
    now: datetime,
) -> list[PreviewCustomer]:
    """Up to `limit` customers of `segments` (any customers when there are none or they
    are empty) with the channel's contact: whose renderings a composer counts."""
    contact = Customer.email if channel == Channel.EMAIL else Customer.phone
    query = select(Customer).where(contact.is_not(None)).order_by(Customer.id).limit(limit)
    async with db.session() as session:
        if segments:
            rules = await segment_rules(session, segments)
            if rules:
                dialect = session.bind.dialect.name
                members = segment_members_query(rules, now=now, dialect=dialect).scalar_subquery()
                found = list(await session.scalars(query.where(Customer.id.in_(members))))
                if found:
                    return [_preview_customer(c, default_language) for c in found]
        found = list(await session.scalars(query))
    return [_preview_customer(customer, default_language) for customer in found]
