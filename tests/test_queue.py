"""The engine as one queue (issue 10): rules at the moment of sending, waves that
interleave, facts that wake waiting rows, fenced writes. Both databases.
"""

from __future__ import annotations

import asyncio
import time as wall
from collections import Counter
from datetime import UTC, datetime, time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, update

from channels.results import SendResult
from channels.sms import OutboxSmsTransport
from channels.smtp import OutboxEmailTransport, SmtpPool
from models import reasons
from models.chains import import_chain, list_chains
from models.customers import CleanCustomer, upsert_customers, validate_customer
from models.db import Database
from models.segments import add_segment
from models.tables import CustomerChange, Delivery, Step, Worker
from models.tokens import TokenKind, make_token
from models.tracking import record_open
from scheduler import workers
from scheduler.engine import Engine, EngineConfig
from services.lifecycle import ChainNotReady, activate_chain, resume_chain
from tests.servers import SmtpFaults, SmtpTestServer
from tests.test_engine import Harness, add_customers, import_seed
from tests.test_engine import harness as harness  # the fixture
from web.app import WebConfig, create_app

SECRET = "secret"
BASE_URL = "https://mail.shop.example"


def engine_config(**overrides: object) -> EngineConfig:
    values: dict[str, object] = {
        "mail_from": "news@shop.example",
        "public_base_url": BASE_URL,
        "secret_key": SECRET,
        "quiet_hours_sms": (time(21, 0), time(9, 0)),
    }
    values.update(overrides)
    return EngineConfig(**values)  # type: ignore[arg-type]


def web_client(db: Database) -> httpx.AsyncClient:
    app = create_app(
        db,
        WebConfig(
            api_token="token",
            secret_key=SECRET,
            public_base_url=BASE_URL,
            default_timezone="Europe/Moscow",
            default_phone_region="RU",
        ),
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL)


class UnsubscribingTransport(OutboxEmailTransport):
    """An outbox whose first message sets off one-click unsubscribes (RFC 8058 POSTs to
    the web app) for the given deliveries: customers of the groups not yet on the wire."""

    def __init__(self, outbox: Path, http: httpx.AsyncClient, delivery_ids: list[int]) -> None:
        super().__init__(outbox)
        self._http = http
        self._pending = delivery_ids
        self.recipients: list[str] = []

    async def send(self, sender: str, recipient: str, message_id: str, data: bytes) -> SendResult:
        self.recipients.append(recipient)
        pending, self._pending = self._pending, []
        for delivery_id in pending:
            token = make_token(SECRET, TokenKind.UNSUBSCRIBE, delivery_id)
            response = await self._http.post(
                f"/u/{token}",
                content="List-Unsubscribe=One-Click",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert response.status_code == 200
        return await super().send(sender, recipient, message_id, data)


async def test_an_unsubscribe_posted_mid_wave_reaches_every_message_not_on_the_wire(
    harness: Harness,
) -> None:
    await add_customers(harness.db, *({} for _ in range(100)))
    chain_id = await import_seed(harness.db)
    await activate_chain(harness.db, chain_id, actor="test", now=harness.clock())
    welcome = await harness.deliveries(chain_id, 1)
    # Groups of 16 (4 × EMAIL_CONCURRENCY, at least 16) in due order: while the first
    # is on the wire the second is already marked `sending`. Its customers and some
    # beyond unsubscribe while the first message is being handed over.
    leaving = welcome[16:40]
    async with web_client(harness.db) as http:
        transport = UnsubscribingTransport(harness.outbox, http, [d.id for d in leaving])
        engine = Engine(
            harness.db,
            engine_config(email_concurrency=1, batch_size=100),
            email=transport,
            sms=OutboxSmsTransport(harness.outbox, "Shop"),
            clock=harness.clock,
        )
        report = await engine.tick()

    emailed = Counter(transport.recipients)
    leaving_addresses = {f"c{n}@example.com" for n in range(16, 40)}
    assert set(emailed).isdisjoint(leaving_addresses)
    assert len(emailed) == 76
    assert max(emailed.values()) == 1
    after = {d.id: d for d in await harness.deliveries(chain_id, 1)}
    assert {(after[d.id].status, after[d.id].reason) for d in leaving} == {
        ("skipped", reasons.EMAIL_UNSUBSCRIBED)
    }
    assert report.waves[welcome[0].step_id].skipped == {reasons.EMAIL_UNSUBSCRIBED: 24}
    # And the seed chain's second step, "sorry to see you go", is on its way to them.
    assert await harness.statuses(2, chain_id) == {"planned": 76}


async def test_sms_due_in_quiet_hours_is_moved_to_their_end_not_rescanned(
    harness: Harness,
) -> None:
    harness.clock.now = datetime(2026, 12, 1, 19, 0, tzinfo=UTC)  # 22:00 in Moscow
    await add_customers(harness.db, {"timezone": "Europe/Moscow"}, {"timezone": "Asia/Omsk"})
    chain_id = await import_seed(
        harness.db,
        """
format: chainmail/1
name: Evening SMS
steps:
  - name: Hello
    audience: {segments: [new-customers]}
    action: {channel: sms, text: "Привет"}
    schedule: {send: now}
""",
    )
    await activate_chain(harness.db, chain_id, actor="test", now=harness.clock())
    report = await harness.engine.tick()
    assert report.deferred == 2
    assert harness.sms() == []
    moscow, omsk = await harness.deliveries(chain_id, 1)
    assert moscow.due_at == datetime(2026, 12, 2, 6, 0, tzinfo=UTC)  # 09:00 in Moscow
    assert omsk.due_at == datetime(2026, 12, 2, 3, 0, tzinfo=UTC)  # 09:00 in Omsk
    # Nothing is due until then: a tick looks at no row.
    assert (await harness.engine.tick()).deferred == 0
    harness.clock.now = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
    await harness.engine.tick()
    assert [s["to"] for s in harness.sms()] == ["+79130000001"]
    harness.clock.now = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)
    await harness.engine.tick()
    assert len(harness.sms()) == 2


REMINDER_ON_OPEN = """
format: chainmail/1
name: Thanks for reading
steps:
  - name: Welcome
    audience: {segments: [new-customers]}
    action: {channel: email, subject: "Привет", text: "Текст", html: "<p>Hi</p>"}
    schedule: {send: now}
  - name: Thanks
    audience: {who: terms, match: all, terms: [opened]}
    action: {channel: sms, text: "Спасибо, что прочли"}
    schedule: {send: now, wait_days: 30}
"""


async def test_a_follow_up_waiting_for_an_open_is_woken_by_it_not_by_rescans(
    harness: Harness,
) -> None:
    await add_customers(harness.db, *({} for _ in range(5)))
    chain_id = await import_seed(harness.db, REMINDER_ON_OPEN)
    await activate_chain(harness.db, chain_id, actor="test", now=harness.clock())
    report = await harness.engine.tick()
    # Planned in the transaction that recorded the welcome emails, found not opened
    # by the next batch of the same tick, and parked until wait_until.
    assert report.deferred == 5
    assert await harness.statuses(2, chain_id) == {"planned": 5}
    waiting = await harness.deliveries(chain_id, 2)
    assert {d.due_at for d in waiting} == {d.wait_until for d in waiting}
    harness.clock.advance(seconds=5)
    assert (await harness.engine.tick()).deferred == 0

    first = (await harness.deliveries(chain_id, 1))[0]
    assert await record_open(harness.db, first.id, harness.clock())
    await harness.engine.tick()
    assert [s["to"] for s in harness.sms()] == ["+79130000000"]
    assert await harness.statuses(2, chain_id) == {"sent": 1, "planned": 4}


CONTINUOUS = """
format: chainmail/1
name: Welcome newcomers
enrollment: continuous
steps:
  - name: Welcome
    audience: {segments: [new-customers]}
    action: {channel: email, subject: "Привет", text: "Текст"}
    schedule: {send: now}
"""


def newcomer(external_id: str, tags: list[str]) -> CleanCustomer:
    record = validate_customer(
        {"external_id": external_id, "email": f"{external_id}@example.com", "tags": tags},
        default_timezone="Europe/Moscow",
        default_phone_region="RU",
    )
    assert isinstance(record, CleanCustomer), record
    return record


async def test_a_continuous_chain_takes_in_newcomers_from_the_change_queue(
    harness: Harness,
) -> None:
    await add_customers(harness.db, {}, {})
    chain_id = await import_seed(harness.db, CONTINUOUS)
    await activate_chain(harness.db, chain_id, actor="test", now=harness.clock())
    await harness.engine.tick()
    assert await harness.statuses(1, chain_id) == {"sent": 2}

    await upsert_customers(
        harness.db,
        [newcomer("n1", ["new"]), newcomer("n2", ["new"]), newcomer("n3", ["vip"])],
        default_timezone="Europe/Moscow",
        actor="test",
    )
    harness.clock.advance(seconds=5)
    report = await harness.engine.tick()
    assert report.planned == 2
    assert await harness.statuses(1, chain_id) == {"sent": 4}
    async with harness.db.session() as session:
        assert await session.scalar(select(func.count()).select_from(CustomerChange)) == 0

    # n3 joins the segment later: a change like any other.
    await upsert_customers(
        harness.db, [newcomer("n3", ["vip", "new"])], default_timezone="UTC", actor="test"
    )
    harness.clock.advance(seconds=5)
    await harness.engine.tick()
    assert await harness.statuses(1, chain_id) == {"sent": 5}
    assert len(harness.emails()) == 5


class HeldTransport(OutboxEmailTransport):
    """An outbox that holds its first message until released: a worker frozen mid-send."""

    def __init__(self, outbox: Path) -> None:
        super().__init__(outbox)
        self.holding = asyncio.Event()
        self.release = asyncio.Event()
        self.sent: list[str] = []

    async def send(self, sender: str, recipient: str, message_id: str, data: bytes) -> SendResult:
        if not self.holding.is_set():
            self.holding.set()
            await self.release.wait()
        self.sent.append(message_id)
        return await super().send(sender, recipient, message_id, data)


async def test_a_worker_taken_for_dead_cannot_overwrite_or_resend_what_another_did(
    harness: Harness,
) -> None:
    await add_customers(harness.db, *({} for _ in range(60)))
    chain_id = await import_seed(harness.db)
    await activate_chain(harness.db, chain_id, actor="test", now=harness.clock())
    frozen_transport = HeldTransport(harness.outbox)
    frozen = Engine(
        harness.db,
        engine_config(email_concurrency=1, batch_size=60),
        email=frozen_transport,
        sms=OutboxSmsTransport(harness.outbox, "Shop"),
        clock=harness.clock,
        name="frozen",
    )
    frozen_tick = asyncio.create_task(frozen.tick())
    await frozen_transport.holding.wait()
    # It holds all 60: 16 `sending` (on the wire), 16 marked next, the rest claimed.
    assert frozen.worker_id is not None
    async with harness.db.writer() as session:
        await session.execute(
            update(Worker)
            .where(Worker.id == frozen.worker_id)
            .values(heartbeat_at=datetime(2000, 1, 1, tzinfo=UTC))
        )
    other = harness.engine
    report = await other.tick()
    assert report.recovered_uncertain == 32
    assert report.sent == 28

    frozen_transport.release.set()
    await frozen_tick
    # The frozen worker's group on the wire went out (it was on the wire); its
    # outcome stays `uncertain` as the other worker recorded; nothing was sent twice.
    rows = await harness.deliveries(chain_id, 1)
    assert Counter(d.status for d in rows) == {"sent": 28, "uncertain": 32}
    ids = [m["Message-ID"] for m in harness.emails()]
    assert len(ids) == len(set(ids)) == 28 + 16
    # It finds out at its next heartbeat, and comes back as a new worker.
    assert await workers.alive(harness.db) == [other.worker_id]
    old_id = frozen.worker_id
    await frozen.heartbeat()
    assert frozen.worker_id not in (None, old_id)
    await frozen.close()


async def test_a_small_chain_goes_out_within_two_ticks_of_a_big_wave_it_meets(
    db: Database, tmp_path: Path
) -> None:
    big, tick = 3000, 1.0
    await add_customers(db, *({"timezone": "UTC"} for _ in range(big)), tag="everyone")
    small_ids = await add_customers(
        db,
        *({"external_id": f"s{n}", "email": f"s{n}@example.com"} for n in range(5)),
        tag="few",
    )
    await add_segment(db, "everyone", ["everyone"], "any", actor="test")
    await add_segment(db, "few", ["few"], "any", actor="test")
    wave = """
format: chainmail/1
name: {name}
steps:
  - name: Main
    audience: {{segments: [{segment}]}}
    action: {{channel: email, subject: "Hi", text: "Hello"}}
    schedule: {{send: now}}
"""
    big_chain = await import_chain(db, wave.format(name="Big", segment="everyone"), actor="t")
    small_chain = await import_chain(db, wave.format(name="Small", segment="few"), actor="t")
    with SmtpTestServer() as smtp:
        smtp.faults = SmtpFaults(slow_reply=0.02)
        email = SmtpPool("127.0.0.1", smtp.port, concurrency=4)
        engine = Engine(
            db,
            engine_config(tick_seconds=tick),
            email=email,
            sms=OutboxSmsTransport(tmp_path, "Shop"),
        )
        await activate_chain(db, big_chain.chain_id, actor="test")
        running = asyncio.create_task(engine.run_until_idle())
        while len(smtp.messages) < 200:  # noqa: ASYNC110 - the server offers no event
            await asyncio.sleep(0.01)
        activated = wall.monotonic()
        await activate_chain(db, small_chain.chain_id, actor="test")
        while sum(m.rcpt_tos[0].startswith("s") for m in smtp.messages) < 5:
            assert wall.monotonic() - activated < 30, "the small chain never went out"
            await asyncio.sleep(0.01)
        waited = wall.monotonic() - activated
        big_done = len(smtp.messages) - 5
        engine.stop()
        await running
        await engine.close()
        await email.aclose()
    assert big_done < big, "the big wave was over before the small chain went out"
    assert waited <= 2 * tick, f"the small chain waited {waited:.2f} s"
    async with db.session() as session:
        statuses = Counter(
            await session.scalars(
                select(Delivery.status).where(Delivery.customer_id.in_(small_ids))
            )
        )
    assert statuses == {"sent": 5}


POISON = """
format: chainmail/1
name: Poison
enrollment: continuous
steps:
  - name: Far away
    audience: {segments: [new-customers]}
    action: {channel: email, subject: "Привет", text: "Текст"}
    schedule: {send: at, at: "2026-12-10 10:00"}
"""
HEALTHY = """
format: chainmail/1
name: Healthy
steps:
  - name: Now
    audience: {segments: [new-customers]}
    action: {channel: email, subject: "Здравствуйте", text: "Текст"}
    schedule: {send: now}
"""


async def test_a_chain_the_engine_cannot_plan_is_held_with_its_reason_and_others_send(
    harness: Harness,
) -> None:
    await add_customers(harness.db, {"timezone": "Pacific/Pago_Pago"}, {})
    poison = await import_seed(harness.db, POISON)
    healthy = (await import_chain(harness.db, HEALTHY, actor="test")).chain_id
    # A moment no zone conversion survives, as a row written before the chain file's
    # bounds existed (or by hand) would hold: not something the validator lets in.
    async with harness.db.writer() as session:
        await session.execute(
            update(Step)
            .where(Step.chain_id == poison)
            .values(schedule={"send": "at", "at": "9999-12-31 23:59", "wait_days": 30})
        )
    await activate_chain(harness.db, poison, actor="test", now=harness.clock())
    await activate_chain(harness.db, healthy, actor="test", now=harness.clock())

    report = await harness.engine.tick()
    assert report.sent == 2
    assert [m["Subject"] for m in harness.emails()] == ["Здравствуйте", "Здравствуйте"]
    chains = {c.id: c for c in await list_chains(harness.db)}
    assert chains[poison].status == "paused"
    assert chains[poison].hold_reason is not None
    assert "step 1 (Far away): planning failed: OverflowError" in chains[poison].hold_reason
    assert chains[healthy].status == "finished"
    # The next ticks go on as if it were not there; resuming clears the reason.
    harness.clock.advance(seconds=5)
    assert not (await harness.engine.tick()).busy
    await resume_chain(harness.db, poison, actor="manager")
    assert (await list_chains(harness.db))[0].hold_reason is None
    # Resumed unfixed, the pass it still owes fails again: held again, nothing sent.
    harness.clock.advance(seconds=5)
    await harness.engine.tick()
    again = (await list_chains(harness.db))[0]
    assert again.status == "paused"
    assert again.hold_reason == chains[poison].hold_reason
    assert len(harness.emails()) == 2


async def test_activating_a_once_chain_it_cannot_plan_is_refused_in_words(
    harness: Harness,
) -> None:
    await add_customers(harness.db, {"timezone": "Asia/Kamchatka"})
    chain_id = await import_seed(harness.db, POISON.replace("continuous", "once"))
    async with harness.db.writer() as session:
        await session.execute(
            update(Step)
            .where(Step.chain_id == chain_id)
            .values(schedule={"send": "at", "at": "0001-01-01 00:00", "wait_days": 30})
        )
    with pytest.raises(ChainNotReady, match="step 1 \\(Far away\\) cannot be planned"):
        await activate_chain(harness.db, chain_id, actor="test", now=harness.clock())
    assert (await list_chains(harness.db))[0].status == "draft"


@pytest.mark.parametrize(
    ("failing", "uncertain"),
    [
        # Recording group 2 fails: it and group 3, on the wire beside it, are unknown.
        ("_record", 32),
        # Marking group 3 fails: group 2, on the wire, is still recorded; 3 goes back.
        ("_prepare", 0),
    ],
)
async def test_a_batch_failing_midway_hands_back_what_this_worker_still_holds(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, failing: str, uncertain: int
) -> None:
    await add_customers(harness.db, *({} for _ in range(60)))
    chain_id = await import_seed(harness.db)
    await activate_chain(harness.db, chain_id, actor="test", now=harness.clock())
    engine = Engine(
        harness.db,
        # A long tick: no deadline cuts the batch, whatever the clock does.
        engine_config(email_concurrency=1, batch_size=60, tick_seconds=600),
        email=OutboxEmailTransport(harness.outbox),
        sms=OutboxSmsTransport(harness.outbox, "Shop"),
        clock=harness.clock,
    )
    sender = engine._sender
    step = getattr(sender, failing)
    calls = 0

    async def fail_once(*args: object) -> None:
        nonlocal calls
        calls += 1
        if calls == (2 if failing == "_record" else 3):
            raise ConnectionResetError("the database connection was lost")
        await step(*args)

    monkeypatch.setattr(sender, failing, fail_once)
    with pytest.raises(ConnectionResetError):
        await engine.tick()
    monkeypatch.setattr(sender, failing, step)

    # Nothing stays claimed by the live worker: groups whose outcomes were not recorded
    # are uncertain (handed over, never resent), the rest go out on the next tick.
    async with harness.db.session() as session:
        held = await session.scalar(select(func.count()).where(Delivery.claimed_by.is_not(None)))
    assert held == 0
    await engine.run_until_idle()
    statuses = await harness.statuses(1, chain_id)
    assert statuses == (
        {"sent": 60 - uncertain, "uncertain": uncertain} if uncertain else {"sent": 60}
    )
    assert len(harness.emails()) == 60
    await engine.close()
