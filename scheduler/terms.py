"""Terms of a follow-up step (SPEC §2), about the previous step's message to the customer.

`terms_hold` is the rule over plain facts; `terms_condition` is the same rule as
one SQL boolean, evaluated for a whole audience at once. Tests keep them equal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, exists, false, not_, or_, select, true
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import FromClause

from models.tables import LEFT_STATUSES, EmailStatus, EventType, Order, SmsStatus
from models.tables import Event as EventRow


@dataclass(frozen=True)
class MessageFacts:
    """What is known about one previous-step message and its customer since it was sent."""

    opened: bool = False
    clicked: bool = False
    delivered: bool = False
    unsubscribed_email: bool = False
    unsubscribed_sms: bool = False
    ordered: bool = False


def term_holds(term: str, facts: MessageFacts) -> bool:
    negated = term.startswith("not_")
    fact = term.removeprefix("not_")
    if fact == "opened":
        # A click proves the email was opened even when its images were blocked.
        value = facts.opened or facts.clicked
    else:
        value = getattr(facts, fact)
    return not value if negated else value


def terms_hold(terms: Sequence[str], match: str, facts: MessageFacts) -> bool:
    results = (term_holds(term, facts) for term in terms)
    return all(results) if match == "all" else any(results)


def _event_exists(previous: FromClause, *types: EventType) -> ColumnElement[bool]:
    return exists(
        select(EventRow.id).where(
            EventRow.delivery_id == previous.c.id, EventRow.type.in_([t.value for t in types])
        )
    )


def fact_condition(fact: str, previous: FromClause, customer: FromClause) -> ColumnElement[bool]:
    """One fact as SQL over the previous delivery `previous` and its customer `customer`."""
    since = previous.c.triggered_at
    if fact == "opened":
        return _event_exists(previous, EventType.OPENED, EventType.CLICKED)
    if fact == "clicked":
        return _event_exists(previous, EventType.CLICKED)
    if fact == "delivered":
        return and_(
            previous.c.status.in_(LEFT_STATUSES),
            not_(_event_exists(previous, EventType.BOUNCED)),
        )
    if fact == "unsubscribed_email":
        return and_(
            customer.c.email_status == EmailStatus.UNSUBSCRIBED.value,
            customer.c.email_status_at >= since,
        )
    if fact == "unsubscribed_sms":
        return and_(
            customer.c.sms_status == SmsStatus.UNSUBSCRIBED.value,
            customer.c.sms_status_at >= since,
        )
    if fact == "ordered":
        return exists(
            select(Order.id).where(
                Order.customer_id == previous.c.customer_id, Order.created_at >= since
            )
        )
    raise ValueError(f"unknown term {fact!r}")


def terms_condition(
    terms: Sequence[str], match: str, previous: FromClause, customer: FromClause
) -> ColumnElement[bool]:
    parts = []
    for term in terms:
        condition = fact_condition(term.removeprefix("not_"), previous, customer)
        parts.append(not_(condition) if term.startswith("not_") else condition)
    if not parts:
        return true()
    return and_(*parts) if match == "all" else or_(false(), *parts)
