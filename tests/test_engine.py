"""The engine's rules of SPEC §2 on both databases, with a clock the test moves.

Email goes through the product's outbox transport (files), SMS through its
outbox file; the end-to-end tests through real servers are in test_e2e_*.
"""

from __future__ import annotations

import email
import email.policy
import json
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from channels.results import SendResult
from channels.sms import OutboxSmsTransport
from channels.smtp import OutboxEmailTransport
from models import reasons
from models.chains import add_step, import_chain
from models.db import Database, installation_id
from models.segments import add_segment
from models.tables import (
    Chain,
    ChainStatus,
    Customer,
    CustomerTag,
    Delivery,
    DeliveryStatus,
    EmailStatus,
    Step,
    Worker,
)
from models.tracking import record_open, unsubscribe
from scheduler import workers
from scheduler.engine import Engine, EngineConfig
from services.editing import save_block
from services.lifecycle import ChainNotReady, activate_chain, pause_all, pause_chain, resume_chain

START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)  # 12:00 in Moscow


@dataclass
class Clock:
    now: datetime = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Harness:
    db: Database
    engine: Engine
    clock: Clock
    outbox: Path

    def emails(self) -> list[email.message.EmailMessage]:
        return [
            email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            for path in sorted(self.outbox.glob("*.eml"))
        ]

    def sms(self) -> list[dict[str, str]]:
        path = self.outbox / "sms.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    async def statuses(self, step_position: int, chain_id: int) -> dict[str, int]:
        async with self.db.session() as session:
            step_ids = await self._step_id(session, chain_id, step_position)
            rows = await session.execute(
                select(Delivery.status, func.count())
                .where(Delivery.step_id == step_ids)
                .group_by(Delivery.status)
            )
            return dict(rows.all())

    async def _step_id(self, session: AsyncSession, chain_id: int, position: int) -> int:
        return await session.scalar(
            select(Step.id).where(Step.chain_id == chain_id, Step.position == position)
        )

    async def deliveries(self, chain_id: int, position: int) -> list[Delivery]:
        async with self.db.session() as session:
            step_id = await self._step_id(session, chain_id, position)
            return list(
                await session.scalars(
                    select(Delivery)
                    .where(Delivery.step_id == step_id)
                    .order_by(Delivery.customer_id)
                )
            )


@pytest.fixture
async def harness(db: Database, tmp_path: Path) -> Harness:
    clock = Clock()
    outbox = tmp_path / "outbox"
    engine = Engine(
        db,
        EngineConfig(
            mail_from="Магазин <news@shop.example>",
            public_base_url="https://mail.shop.example",
            secret_key="secret",
            quiet_hours_sms=(time(21, 0), time(9, 0)),
            batch_size=7,
        ),
        email=OutboxEmailTransport(outbox),
        sms=OutboxSmsTransport(outbox, "Shop"),
        clock=clock,
    )
    return Harness(db, engine, clock, outbox)


async def add_customers(db: Database, *rows: dict[str, object], tag: str = "new") -> list[int]:
    ids = []
    async with db.writer() as session:
        for number, row in enumerate(rows):
            customer = Customer(
                external_id=str(row.get("external_id", f"c{number}")),
                email=row.get("email", f"c{number}@example.com"),
                phone=row.get("phone", f"+7913000{number:04d}"),
                first_name=row.get("first_name", f"Имя{number}"),
                timezone=row.get("timezone", "Europe/Moscow"),
                timezone_source="explicit",
                email_status=row.get("email_status", EmailStatus.SUBSCRIBED),
                language=row.get("language"),
            )
            session.add(customer)
            await session.flush()
            session.add(CustomerTag(customer_id=customer.id, tag=tag))
            ids.append(customer.id)
    return ids


SEED_CHAIN = """
format: chainmail/1
name: Seed
steps:
  - name: Welcome
    audience: {segments: [new-customers]}
    action: {channel: email, subject: "Привет, {{ first_name }}", text: "Текст", html: "<p>Hi <a href='https://shop.example/sale'>sale</a></p>"}
    schedule: {send: now}
  - name: Sorry to see you go
    audience: {who: terms, match: all, terms: [unsubscribed_email]}
    action: {channel: sms, text: "Жаль, {{ first_name }}"}
    schedule: {send: now, wait_days: 30}
"""


async def import_seed(db: Database, text: str = SEED_CHAIN) -> int:
    await add_segment(db, "new-customers", ["new"], "any", actor="test")
    return (await import_chain(db, text, actor="test")).chain_id


async def test_seed_chain_sends_sms_on_the_tick_after_an_unsubscribe(harness: Harness) -> None:
    ids = await add_customers(harness.db, *({} for _ in range(10)))
    chain_id = await import_seed(harness.db)
    activation = await activate_chain(harness.db, chain_id, actor="test", now=harness.clock())
    assert activation.enrolled == 10

    await harness.engine.tick()
    assert len(harness.emails()) == 10
    assert await harness.statuses(1, chain_id) == {"sent": 10}
    assert harness.sms() == []

    welcome = await harness.deliveries(chain_id, 1)
    for delivery in welcome[:3]:
        assert await unsubscribe(harness.db, delivery.id, harness.clock())
    harness.clock.advance(seconds=5)
    await harness.engine.tick()
    sent_sms = harness.sms()
    assert sorted(s["id"] for s in sent_sms) == sorted(
        str(d.id) for d in await harness.deliveries(chain_id, 2) if d.status == "sent"
    )
    assert len(sent_sms) == 3
    assert {s["text"] for s in sent_sms} == {f"Жаль, Имя{n}" for n in range(3)}
    assert await harness.statuses(2, chain_id) == {"sent": 3, "planned": 7}

    # The others wait for their terms up to wait_days, then leave the chain.
    harness.clock.advance(days=31)
    await harness.engine.tick()
    assert await harness.statuses(2, chain_id) == {"sent": 3, "skipped": 7}
    reasons_seen = {
        d.reason for d in await harness.deliveries(chain_id, 2) if d.status == "skipped"
    }
    assert reasons_seen == {reasons.TERMS_FALSE}
    async with harness.db.session() as session:
        assert (await session.get(Chain, chain_id)).status == ChainStatus.FINISHED
    assert len(ids) == 10


async def test_same_local_time_reaches_moscow_and_vladivostok_seven_hours_apart(
    harness: Harness,
) -> None:
    await add_customers(
        harness.db,
        {"timezone": "Europe/Moscow"},
        {"timezone": "Asia/Vladivostok"},
    )
    chain_id = await import_seed(
        harness.db,
        SEED_CHAIN.replace("schedule: {send: now}", 'schedule: {send: at, at: "2026-12-02 10:00"}'),
    )
    await activate_chain(harness.db, chain_id, actor="test", now=harness.clock())
    moscow, vladivostok = await harness.deliveries(chain_id, 1)
    assert moscow.due_at == datetime(2026, 12, 2, 7, 0, tzinfo=UTC)
    assert vladivostok.due_at == datetime(2026, 12, 2, 0, 0, tzinfo=UTC)

    harness.clock.now = datetime(2026, 12, 2, 0, 30, tzinfo=UTC)
    await harness.engine.tick()
    assert [m["To"].addresses[0].addr_spec for m in harness.emails()] == ["c1@example.com"]
    harness.clock.now = datetime(2026, 12, 2, 7, 0, tzinfo=UTC)
    await harness.engine.tick()
    assert len(harness.emails()) == 2


async def test_passed_at_moment_sends_as_soon_as_possible(harness: Harness) -> None:
    await add_customers(harness.db, {})
    chain_id = await import_seed(
        harness.db,
        SEED_CHAIN.replace("schedule: {send: now}", 'schedule: {send: at, at: "2026-11-01 10:00"}'),
    )
    await activate_chain(harness.db, chain_id, actor="test", now=harness.clock())
    (delivery,) = await harness.deliveries(chain_id, 1)
    assert delivery.due_at == START
    await harness.engine.tick()
    assert len(harness.emails()) == 1


REMINDER_CHAIN = """
format: chainmail/1
name: Reminder
steps:
  - name: Welcome
    audience: {segments: [new-customers]}
    action: {channel: email, subject: "Hi", text: "Hello", html: "<p>Hello</p>"}
    schedule: {send: now}
  - name: Reminder
    audience: {who: terms, match: all, terms: [not_opened]}
    action: {channel: email, subject: "Reminder", text: "Did you see?"}
    schedule: {send: after, after: 2h}
"""


async def test_reminder_after_delay_goes_only_to_those_who_did_not_open(
    harness: Harness,
) -> None:
    await add_customers(harness.db, *({} for _ in range(6)))
    chain_id = await import_seed(harness.db, REMINDER_CHAIN)
    await activate_chain(harness.db, chain_id, actor="test", now=harness.clock())
    await harness.engine.tick()
    welcome = await harness.deliveries(chain_id, 1)
    for delivery in welcome[:2]:
        await record_open(harness.db, delivery.id, harness.clock())

    harness.clock.advance(hours=1, minutes=59)
    await harness.engine.tick()
    assert await harness.statuses(2, chain_id) == {"planned": 6}

    harness.clock.advance(minutes=1)
    await harness.engine.tick()
    assert await harness.statuses(2, chain_id) == {"sent": 4, "skipped": 2}
    subjects = [m["Subject"] for m in harness.emails()]
    assert subjects.count("Reminder") == 4


async def test_pause_holds_everything_and_resume_releases_it(harness: Harness) -> None:
    await add_customers(harness.db, *({} for _ in range(3)))
    chain_id = await import_seed(harness.db)
    await activate_chain(harness.db, chain_id, actor="test", now=harness.clock())
    await pause_chain(harness.db, chain_id, actor="test")
    await harness.engine.tick()
    assert harness.emails() == []
    assert await harness.statuses(1, chain_id) == {"planned": 3}

    await resume_chain(harness.db, chain_id, actor="test")
    await harness.engine.tick()
    assert len(harness.emails()) == 3

    assert await pause_all(harness.db, actor="test") == [chain_id]
    async with harness.db.session() as session:
        assert (await session.get(Chain, chain_id)).status == ChainStatus.PAUSED


async def test_unreachable_customers_are_skipped_with_their_reason(harness: Harness) -> None:
    await add_customers(
        harness.db,
        {},
        {"email": None},
        {"email_status": EmailStatus.UNSUBSCRIBED},
        {"email_status": EmailStatus.BOUNCED},
    )
    chain_id = await import_seed(harness.db)
    await activate_chain(harness.db, chain_id, actor="test", now=harness.clock())
    await harness.engine.tick()
    outcome = {(d.status, d.reason) for d in await harness.deliveries(chain_id, 1)}
    assert outcome == {
        ("sent", None),
        ("skipped", reasons.NO_EMAIL),
        ("skipped", reasons.EMAIL_UNSUBSCRIBED),
        ("skipped", reasons.EMAIL_BOUNCED),
    }
    assert len(harness.emails()) == 1


async def test_step_added_to_active_chain_takes_in_those_already_reached(
    harness: Harness,
) -> None:
    await add_customers(harness.db, *({} for _ in range(4)))
    chain_id = await import_seed(harness.db)
    await activate_chain(harness.db, chain_id, actor="test", now=harness.clock())
    await harness.engine.tick()
    for delivery in (await harness.deliveries(chain_id, 1))[:2]:
        await unsubscribe(harness.db, delivery.id, harness.clock())
    harness.clock.advance(seconds=5)
    await harness.engine.tick()
    assert await harness.statuses(2, chain_id) == {"sent": 2, "planned": 2}

    step = await add_step(harness.db, chain_id, "Last call", actor="test")
    await save_block(harness.db, chain_id, step.position, "audience", {"who": "all"}, actor="t")
    await save_block(
        harness.db, chain_id, step.position, "action", {"channel": "sms", "text": "Bye"}, actor="t"
    )
    await save_block(harness.db, chain_id, step.position, "schedule", {"send": "now"}, actor="t")
    harness.clock.advance(seconds=5)
    await harness.engine.tick()
    await harness.engine.tick()
    assert await harness.statuses(3, chain_id) == {"sent": 2}
    # Eligible from when step 2 reached them, or from when the engine took step 3 in
    # (its first tick after the save, by the engine's own clock) if that is later.
    second = {d.id: d for d in await harness.deliveries(chain_id, 2)}
    for third in await harness.deliveries(chain_id, 3):
        previous = second[third.previous_delivery_id]
        assert third.eligible_at == max(previous.triggered_at, harness.clock())


async def test_sms_waits_for_the_end_of_quiet_hours_in_the_customer_zone(
    harness: Harness,
) -> None:
    await add_customers(harness.db, {"timezone": "Europe/Moscow"}, {"timezone": "Asia/Vladivostok"})
    chain_id = await import_seed(
        harness.db,
        SEED_CHAIN.replace(
            "audience: {who: terms, match: all, terms: [unsubscribed_email]}",
            "audience: {who: all}",
        ),
    )
    # 12:30 UTC: 15:30 in Moscow, 22:30 in Vladivostok.
    harness.clock.now = datetime(2026, 12, 1, 12, 30, tzinfo=UTC)
    await activate_chain(harness.db, chain_id, actor="test", now=harness.clock())
    await harness.engine.tick()
    harness.clock.advance(seconds=5)
    await harness.engine.tick()
    assert [s["to"] for s in harness.sms()] == ["+79130000000"]
    # 09:00 in Vladivostok is 23:00 UTC.
    harness.clock.now = datetime(2026, 12, 1, 23, 0, tzinfo=UTC)
    await harness.engine.tick()
    assert len(harness.sms()) == 2


async def test_delivery_left_sending_by_a_dead_worker_becomes_uncertain_not_resent(
    harness: Harness,
) -> None:
    await add_customers(harness.db, {}, {})
    chain_id = await import_seed(harness.db)
    await activate_chain(harness.db, chain_id, actor="test", now=harness.clock())
    first, second = await harness.deliveries(chain_id, 1)
    other = await workers.register(harness.db, "elsewhere:1")
    marked_at = harness.clock()
    async with harness.db.writer() as session:
        await session.execute(
            update(Delivery)
            .where(Delivery.id == first.id)
            .values(status=DeliveryStatus.SENDING, claimed_by=other, sent_at=marked_at, attempts=1)
        )
    await harness.engine.tick()
    # The other worker is alive: its message is its own business.
    assert len(harness.emails()) == 1
    assert (await harness.deliveries(chain_id, 1))[0].status == "sending"
    await stop_heartbeat(harness.db, other)
    harness.clock.advance(minutes=1)
    report = await harness.engine.tick()
    assert report.recovered_uncertain == 1
    lost, sent = await harness.deliveries(chain_id, 1)
    assert (lost.id, lost.status, lost.reason) == (first.id, "uncertain", reasons.OUTCOME_LOST)
    assert (sent.id, sent.status) == (second.id, "sent")
    # It keeps the last moment known of the message: an open of it can be attributed.
    assert lost.sent_at == marked_at
    assert lost.claimed_by is None
    assert len(harness.emails()) == 1
    assert await workers.alive(harness.db) == [harness.engine.worker_id]


async def stop_heartbeat(db: Database, worker_id: int) -> None:
    """As if the worker had stopped beating longer ago than workers.DEAD_AFTER."""
    async with db.writer() as session:
        await session.execute(
            update(Worker)
            .where(Worker.id == worker_id)
            .values(heartbeat_at=datetime(2000, 1, 1, tzinfo=UTC))
        )


async def test_activation_refuses_a_chain_with_an_incomplete_step(harness: Harness) -> None:
    chain_id = await import_seed(harness.db)
    await add_step(harness.db, chain_id, "Unfinished", actor="test")
    with pytest.raises(ChainNotReady, match="step 3 \\(Unfinished\\) has no audience"):
        await activate_chain(harness.db, chain_id, actor="test")


async def test_one_delivery_per_step_and_customer_is_enforced_by_the_database(
    harness: Harness,
) -> None:
    await add_customers(harness.db, {})
    chain_id = await import_seed(harness.db)
    await activate_chain(harness.db, chain_id, actor="test", now=harness.clock())
    (delivery,) = await harness.deliveries(chain_id, 1)
    with pytest.raises(IntegrityError):
        async with harness.db.writer() as session:
            session.add(
                Delivery(
                    chain_id=chain_id,
                    step_id=delivery.step_id,
                    customer_id=delivery.customer_id,
                    channel="email",
                    eligible_at=START,
                    due_at=START,
                )
            )


class PausingTransport(OutboxEmailTransport):
    """Pauses the chain while its first message is being sent, as a manager would."""

    def __init__(self, outbox: Path, db: Database, chain_id: int) -> None:
        super().__init__(outbox)
        self.db, self.chain_id, self.calls = db, chain_id, 0

    async def send(self, sender: str, recipient: str, message_id: str, data: bytes) -> SendResult:
        self.calls += 1
        if self.calls == 1:
            await pause_chain(self.db, self.chain_id, actor="manager")
        return await super().send(sender, recipient, message_id, data)


async def test_pause_during_a_wave_stops_it_within_one_group(harness: Harness) -> None:
    await add_customers(harness.db, *({} for _ in range(100)))
    chain_id = await import_seed(harness.db)
    await activate_chain(harness.db, chain_id, actor="test", now=harness.clock())
    transport = PausingTransport(harness.outbox, harness.db, chain_id)
    engine = Engine(
        harness.db,
        EngineConfig(
            mail_from="news@shop.example",
            public_base_url="https://mail.shop.example",
            secret_key="secret",
            quiet_hours_sms=None,
            email_concurrency=1,
            batch_size=100,
        ),
        email=transport,
        sms=OutboxSmsTransport(harness.outbox, "Shop"),
        clock=harness.clock,
    )
    await engine.tick()
    group = 16  # 4 × EMAIL_CONCURRENCY, at least 16
    assert len(harness.emails()) == group
    # The rest of the claimed batch is handed back, not left leased for minutes,
    # including the next group, marked `sending` while the first was on the wire.
    waiting = [d for d in await harness.deliveries(chain_id, 1) if d.status == "planned"]
    assert len(waiting) == 100 - group
    assert all(d.claimed_by is None for d in waiting)
    assert all(d.attempts == 0 for d in waiting)
    await resume_chain(harness.db, chain_id, actor="manager")
    await engine.tick()
    assert len(harness.emails()) == 100


async def test_a_groups_sent_rows_carry_each_messages_own_id_and_links(harness: Harness) -> None:
    ids = await add_customers(harness.db, *({} for _ in range(20)))
    chain_id = await import_seed(harness.db)
    await activate_chain(harness.db, chain_id, actor="test", now=harness.clock())
    await harness.engine.run_until_idle()
    by_customer = {d.customer_id: d for d in await harness.deliveries(chain_id, 1)}
    assert sorted(by_customer) == sorted(ids)
    headers = {str(m["Message-ID"]) for m in harness.emails()}
    assert {d.message_id for d in by_customer.values()} == headers
    installation = await installation_id(harness.db)
    for customer_id, delivery in by_customer.items():
        assert delivery.status == "sent"
        assert delivery.message_id == (
            f"<cm.{installation}.{delivery.step_id}.{customer_id}@shop.example>"
        )
        assert delivery.links == [
            "https://shop.example/sale?utm_source=chainmail"
            "&utm_medium=email&utm_campaign=seed&utm_content=step1"
        ]


async def test_links_built_from_customer_data_are_stored_per_message(harness: Harness) -> None:
    await add_customers(harness.db, *({"first_name": f"n{i}"} for i in range(5)))
    personal = SEED_CHAIN.replace(
        "<p>Hi <a href='https://shop.example/sale'>sale</a></p>",
        "<a href='https://shop.example/for/{{ first_name }}'>yours</a>",
    )
    chain_id = await import_seed(harness.db, personal)
    await activate_chain(harness.db, chain_id, actor="test", now=harness.clock())
    await harness.engine.run_until_idle()
    links = sorted(d.links[0].split("?")[0] for d in await harness.deliveries(chain_id, 1))
    assert links == [f"https://shop.example/for/n{i}" for i in range(5)]


async def test_each_customer_gets_the_footer_in_their_own_language(harness: Harness) -> None:
    """Their own language, else their phone's country (+7: Russian), else the default."""
    await add_customers(
        harness.db,
        {"language": "en"},
        {"phone": "+79130001122"},
        {"phone": "+995555123456"},  # Georgia: DEFAULT_LANGUAGE, ru by default
        {"phone": "+995555123457", "language": "en"},
    )
    chain_id = await import_seed(harness.db)
    await activate_chain(harness.db, chain_id, actor="test", now=harness.clock())

    await harness.engine.tick()

    footers = {
        str(message["To"]).split("<")[1].rstrip(">"): message.get_body(("plain",))
        .get_content()
        .rsplit("-- ", 1)[1]
        .strip()
        .split(":")[0]
        for message in harness.emails()
    }
    assert footers == {
        "c0@example.com": "To stop receiving these emails",
        "c1@example.com": "Чтобы не получать эти письма",
        "c2@example.com": "Чтобы не получать эти письма",
        "c3@example.com": "To stop receiving these emails",
    }
