"""Tables of SPEC §2. The database is the source of truth for everything."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from models.timezones import TimezoneSource

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets BIGINT.
Id = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out; SQLite would otherwise hand back naive ones."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class EmailStatus(StrEnum):
    SUBSCRIBED = "subscribed"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"


class SmsStatus(StrEnum):
    SUBSCRIBED = "subscribed"
    UNSUBSCRIBED = "unsubscribed"


class ChainStatus(StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    PAUSED = "paused"
    FINISHED = "finished"
    ARCHIVED = "archived"


class Enrollment(StrEnum):
    ONCE = "once"
    CONTINUOUS = "continuous"


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"


class DeliveryStatus(StrEnum):
    PLANNED = "planned"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"
    UNCERTAIN = "uncertain"
    # Of the chain's holdout (models/holdout.py): never sent, and the customer goes no
    # further; `due_at` is the moment the message would have gone.
    HELD_OUT = "held_out"


# Handed to the channel as far as we know: `uncertain` most likely went out (SPEC §2).
# The one definition of "the message left" for terms, attribution and stats.
LEFT_STATUSES = (DeliveryStatus.SENT.value, DeliveryStatus.UNCERTAIN.value)
# The step triggered for the customer: the next step may follow (SPEC §2).
TRIGGERED_STATUSES = (*LEFT_STATUSES, DeliveryStatus.FAILED.value)


class EventType(StrEnum):
    DELIVERED = "delivered"
    OPENED = "opened"
    CLICKED = "clicked"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    # A spam complaint (a feedback-loop report, RFC 5965) about the message.
    COMPLAINED = "complained"
    # A mail server reported the message delayed; it goes on trying.
    DELAYED = "delayed"


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    VIEWER = "viewer"


class BotStateKind(StrEnum):
    CONVERSATION = "conversation"
    USER = "user"
    CHAT = "chat"
    BOT = "bot"


def _in(column: str, enum: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(m.value) for m in enum)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Customer(Base):
    __tablename__ = "customers"
    __table_args__ = (
        # The distinct zones of an audience, for `at` moments, read off the index.
        Index("ix_customers_timezone", "timezone"),
        CheckConstraint(_in("timezone_source", TimezoneSource), name="timezone_source"),
        CheckConstraint(_in("email_status", EmailStatus), name="email_status"),
        CheckConstraint(_in("sms_status", SmsStatus), name="sms_status"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    external_id: Mapped[str] = mapped_column(String(128), unique=True)
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(20))
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    timezone_source: Mapped[str] = mapped_column(String(16))
    # "ru", "en" (i18n.LANGUAGES), as the shop gave it; None: from the phone's country,
    # else DEFAULT_LANGUAGE (i18n.customer_language).
    language: Mapped[str | None] = mapped_column(String(8))
    email_status: Mapped[str] = mapped_column(String(16), default=EmailStatus.SUBSCRIBED)
    sms_status: Mapped[str] = mapped_column(String(16), default=SmsStatus.SUBSCRIBED)
    email_status_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    sms_status_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    tags: Mapped[list[CustomerTag]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, lazy="raise"
    )


class CustomerTag(Base):
    """One row per (customer, tag): segments are joins on this table, not JSON scans."""

    __tablename__ = "customer_tags"
    __table_args__ = (Index("ix_customer_tags_tag_customer", "tag", "customer_id"),)

    customer_id: Mapped[int] = mapped_column(
        Id, ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(100), primary_key=True)


class Segment(Base):
    __tablename__ = "segments"
    __table_args__ = (CheckConstraint("match IN ('any', 'all')", name="match"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # Empty lists everywhere: every customer (models/segment_rules.py).
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Of the tags: any or all of them. Every attribute and behaviour condition must hold.
    match: Mapped[str] = mapped_column(String(3), default="any")
    # [{"key", "operator", "value"}]
    attributes: Mapped[list[dict[str, Any]]] = mapped_column(
        JSON, default=list, server_default="[]"
    )
    # [{"behaviour", "days"?}]
    behaviour: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list, server_default="[]")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Chain(Base):
    __tablename__ = "chains"
    __table_args__ = (
        CheckConstraint(_in("status", ChainStatus), name="status"),
        CheckConstraint(_in("enrollment", Enrollment), name="enrollment"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default=ChainStatus.DRAFT)
    enrollment: Mapped[str] = mapped_column(String(16), default=Enrollment.ONCE)
    campaign_tag: Mapped[str] = mapped_column(String(100))
    utm_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Why the engine paused it (a step it could not plan or claim); cleared on resume.
    hold_reason: Mapped[str | None] = mapped_column(String(500))
    # The share of the main step's audience held out (0–50), fixed once activated
    # (models/holdout.py).
    holdout_percent: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    steps: Mapped[list[Step]] = relationship(
        back_populates="chain",
        order_by="Step.position",
        cascade="all, delete-orphan",
        passive_deletes=True,
        lazy="raise",
    )


class Step(Base):
    """A chain step; each block is a validated JSON document, NULL until first saved."""

    __tablename__ = "steps"
    __table_args__ = (UniqueConstraint("chain_id", "position"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    chain_id: Mapped[int] = mapped_column(Id, ForeignKey("chains.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    audience: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    action: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    schedule: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    conversion: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # A full planning pass over this step's whole audience is owed while
    # `plan_requested > planned_version` (a block saved, a step added, a chain
    # resumed); the engine sets `planned_version` to the request it served, so a
    # request made meanwhile stays owed (scheduler/planning.py).
    plan_requested: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    planned_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The version messages are composed with now; a block saved while the step has
    # deliveries makes a new one (services/editing.py), kept in `step_versions`.
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # Stopped: its planned rows were skipped, nobody is planned into it or past it.
    stopped_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    chain: Mapped[Chain] = relationship(back_populates="steps", lazy="raise")


class StepVersion(Base):
    """The blocks of a step as they were at one version: every version but the current
    one of a step that was ever versioned, and the current one too once there are two.
    A delivery whose version has no row here was composed with the step's own blocks."""

    __tablename__ = "step_versions"
    __table_args__ = (UniqueConstraint("step_id", "version"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    step_id: Mapped[int] = mapped_column(Id, ForeignKey("steps.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    audience: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    action: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    schedule: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    conversion: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Delivery(Base):
    """One message of one step to one customer; the unique key is the "never twice" rule."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("step_id", "customer_id"),
        CheckConstraint(_in("status", DeliveryStatus), name="status"),
        CheckConstraint(_in("channel", Channel), name="channel"),
        # The claim: a step's planned rows in due order, and its earliest one.
        Index("ix_deliveries_step_id_status_due_at", "step_id", "status", "due_at"),
        Index("ix_deliveries_customer_id", "customer_id"),
        # A fact about a message wakes the follow-up waiting on it (models/facts.py).
        Index("ix_deliveries_previous_delivery_id", "previous_delivery_id"),
        # The rows a worker holds: few, whatever the size of the table.
        Index(
            "ix_deliveries_claimed_by",
            "claimed_by",
            sqlite_where=text("claimed_by IS NOT NULL"),
            postgresql_where=text("claimed_by IS NOT NULL"),
        ),
        Index("ix_deliveries_chain_id_status", "chain_id", "status"),
        # The frequency caps (scheduler/claims.py): a customer's messages of a channel
        # that went out lately, read in the claim. Only rows that went out (or were about
        # to) have a `sent_at`: planned and skipped ones cost nothing here.
        Index(
            "ix_deliveries_customer_id_channel_sent_at",
            "customer_id",
            "channel",
            "sent_at",
            "status",
            sqlite_where=text("sent_at IS NOT NULL"),
            postgresql_where=text("sent_at IS NOT NULL"),
        ),
        # And those claimed to go now, by customer: few rows, but the claim looks them up
        # for every candidate (not by worker, as ix_deliveries_claimed_by does).
        Index(
            "ix_deliveries_customer_id_channel_claimed",
            "customer_id",
            "channel",
            "status",
            sqlite_where=text("claimed_by IS NOT NULL"),
            postgresql_where=text("claimed_by IS NOT NULL"),
        ),
        # Lets the per-step (and per-version) status counts of stats read the index
        # alone, in the order they group by.
        Index(
            "ix_deliveries_chain_id_step_id_status_version",
            "chain_id",
            "step_id",
            "status",
            "version",
        ),
        # A chain's deliveries in id order, with what stats read of them: its range of
        # ids bounds the events read, and both are walked in the same order.
        Index("ix_deliveries_chain_id_id", "chain_id", "id", "step_id", "status", "version"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    chain_id: Mapped[int] = mapped_column(Id, ForeignKey("chains.id", ondelete="CASCADE"))
    step_id: Mapped[int] = mapped_column(Id, ForeignKey("steps.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(Id, ForeignKey("customers.id", ondelete="CASCADE"))
    # The same customer's delivery of the previous step, whose outcome the terms read.
    previous_delivery_id: Mapped[int | None] = mapped_column(
        Id, ForeignKey("deliveries.id", ondelete="SET NULL")
    )
    channel: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PLANNED)
    reason: Mapped[str | None] = mapped_column(String(200))
    # When the previous step triggered for this customer (main step: enrollment).
    eligible_at: Mapped[datetime] = mapped_column(UtcDateTime)
    due_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # Terms that can still come true are re-checked until this moment.
    wait_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # The worker (workers.id) that holds the row, `planned` (claimed) or `sending`;
    # every write after the claim is conditional on it: the fence.
    claimed_by: Mapped[int | None] = mapped_column(Id)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    message_id: Mapped[str | None] = mapped_column(String(255))
    # The step version it was composed with (sent) or decided by (skipped); NULL
    # while planned.
    version: Mapped[int | None] = mapped_column(Integer)
    # The original targets of the message's tracked links, in order: a click
    # token names an index here, so the redirect never comes from the URL.
    links: Mapped[list[str] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # When the message was handed to the channel (for `uncertain`: when it was
    # about to be, the last moment known).
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # When the step triggered for the customer: sent, finally failed or uncertain.
    triggered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class CustomerChange(Base):
    """A customer added or changed since the engine last looked: `continuous` chains
    take in newcomers from this queue instead of re-reading every customer."""

    __tablename__ = "customer_changes"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    customer_id: Mapped[int] = mapped_column(Id, ForeignKey("customers.id", ondelete="CASCADE"))


class Worker(Base):
    """An engine process. Its heartbeat (the database's clock) says it is alive; the
    rows of a worker whose heartbeat stopped are taken back by the others."""

    __tablename__ = "workers"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        CheckConstraint(_in("type", EventType), name="type"),
        Index("ix_events_delivery_id_type", "delivery_id", "type"),
        Index("ix_events_customer_id_type", "customer_id", "type"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    delivery_id: Mapped[int | None] = mapped_column(
        Id, ForeignKey("deliveries.id", ondelete="CASCADE")
    )
    customer_id: Mapped[int] = mapped_column(Id, ForeignKey("customers.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(16))
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


def _when_placed(context: Any) -> datetime:
    return context.get_current_parameters()["created_at"]


class Order(Base):
    """An order as it stands now: its latest state of `order_changes` (models/orders.py)."""

    __tablename__ = "orders"
    __table_args__ = (Index("ix_orders_customer_id_created_at", "customer_id", "created_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    external_id: Mapped[str] = mapped_column(String(128), unique=True)
    customer_id: Mapped[int] = mapped_column(Id, ForeignKey("customers.id", ondelete="CASCADE"))
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    currency: Mapped[str] = mapped_column(String(3), default="RUB")
    # `new`, `cancelled` or the shop's own, as given (models.attribution.is_cancelled).
    status: Mapped[str] = mapped_column(String(64), default="new", server_default="new")
    # When it was placed.
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # When its current state began: `created_at` until it is updated.
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=_when_placed)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class OrderChange(Base):
    """Every state an order went through, the first when it was placed: attribution reads
    an order as it stood at a moment (models/attribution.py)."""

    __tablename__ = "order_changes"
    __table_args__ = (
        # An order's state at a moment: its latest row before it (ties: the later row).
        Index("ix_order_changes_order_id_changed_at_id", "order_id", "changed_at", "id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    order_id: Mapped[int] = mapped_column(Id, ForeignKey("orders.id", ondelete="CASCADE"))
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    status: Mapped[str] = mapped_column(String(64))
    # From when the order said this: placed, the shop's `updated_at`, or when received.
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Attribution(Base):
    """The message an order counts for (SPEC §2), kept up to date as facts arrive.

    One row per attributed order, by whichever mechanic it converted; an order that
    counts for nothing has none.
    `models.attribution_table` rewrites a customer's rows whenever one of their
    facts changes; the order's amount and moment, and the message's step version,
    are copied so that stats group this table alone.
    """

    __tablename__ = "attributions"
    __table_args__ = (
        Index("ix_attributions_chain_id_step_id_ordered_at", "chain_id", "step_id", "ordered_at"),
        Index("ix_attributions_customer_id", "customer_id"),
        Index("ix_attributions_delivery_id", "delivery_id"),
    )

    order_id: Mapped[int] = mapped_column(
        Id, ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    customer_id: Mapped[int] = mapped_column(Id)
    delivery_id: Mapped[int] = mapped_column(Id, ForeignKey("deliveries.id", ondelete="CASCADE"))
    chain_id: Mapped[int] = mapped_column(Id)
    step_id: Mapped[int] = mapped_column(Id)
    # The step version of the message (`deliveries.version`; none recorded: 1).
    version: Mapped[int] = mapped_column(Integer, server_default="1")
    # How it converted: models.chainfile.Mechanic.
    mechanic: Mapped[str] = mapped_column(String(16), server_default="new_order")
    # What it counts: the order's amount, or its increase (`order_increase`).
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    # When it converted (models.attribution.Conversion.at): for a new order, when placed.
    ordered_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Admin(Base):
    """Admins and viewers added by an owner; owners themselves come from ADMIN_IDS."""

    __tablename__ = "admins"
    __table_args__ = (CheckConstraint(_in("role", Role), name="role"),)

    telegram_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    role: Mapped[str] = mapped_column(String(8))
    name: Mapped[str | None] = mapped_column(String(200))
    added_by: Mapped[str] = mapped_column(String(64))
    added_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class SubscribedChat(Base):
    __tablename__ = "subscribed_chats"

    chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    title: Mapped[str | None] = mapped_column(String(255))
    timezone: Mapped[str | None] = mapped_column(String(64))
    subscribed_by: Mapped[int | None] = mapped_column(BigInteger)
    # The language of whoever subscribed the chat, for its summaries.
    language: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class BotUser(Base):
    """The language the bot speaks with a person: chosen with /language, else the one
    their Telegram app said last (`language_code`); the worker reads it for the notices
    it sends them (models/bot_users.py)."""

    __tablename__ = "bot_users"

    telegram_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    chosen_language: Mapped[str | None] = mapped_column(String(8))
    telegram_language: Mapped[str | None] = mapped_column(String(8))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class SummaryStatus(StrEnum):
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


class SummarySend(Base):
    """One daily summary of one chat: the primary key is the "once per chat per day" rule.

    `day` is the summary's day in the chat's zone. A worker owns the row while its
    lease runs and it holds the latest `claim` number; `parts_sent` lets a retry
    go on after the messages already sent (docs/reporting.md).
    """

    __tablename__ = "summary_sends"
    __table_args__ = (CheckConstraint(_in("status", SummaryStatus), name="status"),)

    chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default=SummaryStatus.SENDING)
    claim: Mapped[int] = mapped_column(Integer, default=1)
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    parts_sent: Mapped[int] = mapped_column(Integer, default=0)
    claimed_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    error: Mapped[str | None] = mapped_column(String(500))


class AuditEntry(Base):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_at", "at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # "tg:<user id>", "cli", "api" or "web".
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class BotState(Base):
    """What the Telegram bot remembers between updates, so that a restart loses nothing.

    Keys: a conversation's is the JSON list `[name, chat id, user id]` (PTB's key
    with the conversation's name first), a user's or chat's its id, the bot's "".
    `data` is any JSON value: a conversation's state, a user's or chat's dict.
    """

    __tablename__ = "bot_state"
    __table_args__ = (CheckConstraint(_in("kind", BotStateKind), name="kind"),)

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    data: Mapped[Any] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class AppState(Base):
    """Small values every process must agree on, such as the generated secret key."""

    __tablename__ = "app_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
