"""Frequency caps across chains (issue 15, item 4): FREQUENCY_CAP_SMS / _EMAIL applied in
the claim, over every chain, when the message is about to leave.

Both databases; SMS through the loopback HTTP gateway (tests/servers.py); the clock is
the test's. Two workers claiming at once: PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from channels.results import SendResult
from channels.sms import HttpSmsGateway, SmsTransport
from channels.smtp import OutboxEmailTransport
from handlers import texts
from i18n import use_language
from models import reasons
from models.chains import get_chain, import_chain
from models.db import Database
from models.frequency_caps import FrequencyCap, FrequencyCaps, parse_frequency_cap
from models.segments import add_segment
from models.stats import chain_stats
from models.tables import Delivery, Step
from models.tracking import unsubscribe
from scheduler import claims
from scheduler.engine import Engine, EngineConfig
from services.forecast import forecast_activation
from services.lifecycle import activate_chain
from tests.servers import SmsGatewayTestServer
from tests.test_engine import Clock, add_customers

ONE_SMS_A_DAY = FrequencyCaps(sms=parse_frequency_cap("1/1d"))


def sorry_chain(name: str, *, then_email: bool = True) -> str:
    """The seed's chain: an email, then a "sorry" SMS to those who unsubscribe from it
    (and, to see who moves on, an email a day after the SMS)."""
    last = (
        "  - name: Come back\n"
        "    audience: {who: all}\n"
        f'    action: {{channel: email, subject: "{name}: come back", text: "…"}}\n'
        "    schedule: {send: after, after: 1d}\n"
    )
    return (
        "format: chainmail/1\n"
        f"name: {name}\n"
        "steps:\n"
        "  - name: Welcome\n"
        "    audience: {segments: [new-customers]}\n"
        f'    action: {{channel: email, subject: "{name}", text: "Hello"}}\n'
        "    schedule: {send: now}\n"
        "  - name: Sorry to see you go\n"
        "    audience: {who: terms, match: all, terms: [unsubscribed_email]}\n"
        f'    action: {{channel: sms, text: "{name}: sorry"}}\n'
        "    schedule: {send: now, wait_days: 30}\n" + (last if then_email else "")
    )


def sms_chain(name: str) -> str:
    return (
        "format: chainmail/1\n"
        f"name: {name}\n"
        "steps:\n"
        "  - name: Offer\n"
        "    audience: {segments: [new-customers]}\n"
        f'    action: {{channel: sms, text: "{name}"}}\n'
        "    schedule: {send: now}\n"
    )


@dataclass
class World:
    db: Database
    clock: Clock
    gateway: SmsGatewayTestServer
    outbox: Path
    transports: list[HttpSmsGateway]

    def engine(
        self,
        caps: FrequencyCaps = ONE_SMS_A_DAY,
        *,
        sms: SmsTransport | None = None,
        clock: Clock | None = None,
        **config: Any,
    ) -> Engine:
        if sms is None:
            sms = HttpSmsGateway(self.gateway.url, self.gateway.token, "Shop", rate_per_second=1e4)
            self.transports.append(sms)
        values: dict[str, Any] = {
            "mail_from": "news@shop.example",
            "public_base_url": "https://mail.shop.example",
            "secret_key": "secret",
            "quiet_hours_sms": None,
            "frequency_caps": caps,
        }
        return Engine(
            self.db,
            EngineConfig(**(values | config)),
            email=OutboxEmailTransport(self.outbox),
            sms=sms,
            clock=clock or self.clock,
        )

    async def chain(self, text_: str) -> int:
        chain_id = (await import_chain(self.db, text_, actor="test")).chain_id
        await activate_chain(self.db, chain_id, actor="test", now=self.clock())
        return chain_id

    async def deliveries(self, chain_id: int, position: int) -> list[Delivery]:
        async with self.db.session() as session:
            return list(
                await session.scalars(
                    select(Delivery)
                    .join(Step, Step.id == Delivery.step_id)
                    .where(Step.chain_id == chain_id, Step.position == position)
                    .order_by(Delivery.customer_id)
                )
            )

    def phones_texted(self) -> Counter[str]:
        return Counter(body["to"] for body in self.gateway.accepted())


@pytest.fixture
async def world(
    db: Database, sms_gateway: SmsGatewayTestServer, tmp_path: Path
) -> AsyncIterator[World]:
    await add_segment(db, "new-customers", ["new"], "any", actor="test")
    made = World(db, Clock(), sms_gateway, tmp_path / "outbox", [])
    yield made
    for transport in made.transports:
        await transport.aclose()


def outcome(rows: list[Delivery]) -> Counter[tuple[str, str | None]]:
    return Counter((row.status, row.reason) for row in rows)


async def test_two_chains_sorry_sms_goes_once_a_day_the_other_is_skipped_by_the_cap(
    world: World,
) -> None:
    await add_customers(world.db, *({} for _ in range(10)))
    first = await world.chain(sorry_chain("Spring"))
    second = await world.chain(sorry_chain("Summer"))
    engine = world.engine()
    await engine.tick()
    assert len(list(world.outbox.glob("*.eml"))) == 20  # no email cap: both welcomes
    # Six customers unsubscribe from the first chain's email: both chains' "sorry" SMS
    # come true at that moment, for the same customers, in the same claim.
    for welcome in (await world.deliveries(first, 1))[:6]:
        assert await unsubscribe(world.db, welcome.id, world.clock())
    world.clock.advance(seconds=5)
    report = await engine.tick()

    texted = world.phones_texted()
    assert len(texted) == 6
    assert set(texted.values()) == {1}
    sorry = (await world.deliveries(first, 2)) + (await world.deliveries(second, 2))
    assert outcome(sorry) == Counter(
        {("sent", None): 6, ("skipped", reasons.FREQUENCY_CAP): 6, ("planned", None): 8}
    )
    # The cap is a send-time rule like the others: seen in the wave's tally and in stats.
    skipped = Counter[str]()
    for tally in report.waves.values():
        skipped.update(tally.skipped)
    assert skipped == {reasons.FREQUENCY_CAP: 6}
    # Due at the same moment, the steps go in the order of their ids: the first chain's.
    first_stats, second_stats = [await chain_stats(world.db, c) for c in (first, second)]
    assert (first_stats.steps[1].sent, first_stats.steps[1].skipped_by_reason) == (6, {})
    assert second_stats.steps[1].skipped_by_reason == {reasons.FREQUENCY_CAP: 6}
    page = texts.stats_pages(second_stats, currency="RUB")[0]
    assert "🚦 6 messages skipped by the frequency cap" in page.split("\n\n")[2]

    # A skip leaves the chain there, as any skip does: those whose SMS went move on to
    # the email a day later, the others do not.
    texted_first = {d.customer_id for d in await world.deliveries(first, 2) if d.sent_at}
    assert {d.customer_id for d in await world.deliveries(first, 3)} == texted_first
    assert await world.deliveries(second, 3) == []
    # A day later the period is over, but the skipped ones stay skipped: nothing more.
    world.clock.advance(days=1, seconds=5)
    await engine.tick()
    assert sum(world.phones_texted().values()) == 6


class ThirdPartyAtFirstSms(SmsTransport):
    """An SMS transport that, when it is handed the first message of a wave, lets another
    worker run a tick of its own (another chain's wave) before it answers."""

    description = "test"

    def __init__(self, inner: SmsTransport, meanwhile: Callable[[], Awaitable[object]]) -> None:
        self._inner = inner
        self._meanwhile: Callable[[], Awaitable[object]] | None = meanwhile

    async def send(self, delivery_id: int, to: str, text_: str) -> SendResult:
        meanwhile, self._meanwhile = self._meanwhile, None
        if meanwhile is not None:
            await meanwhile()
        return await self._inner.send(delivery_id, to, text_)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def test_a_message_another_chain_sends_mid_wave_counts_when_the_rest_is_claimed(
    world: World,
) -> None:
    """Worker 1 sends a wave in batches of 32. While its first message is on the wire,
    worker 2 (its clock a second behind, so that only its own chain is due for it) sends
    another chain's SMS to everyone: it leaves alone the 32 customers worker 1 holds, and
    worker 1's later batches, planned before, find the others texted and skip them."""
    await add_customers(world.db, *({} for _ in range(100)))
    wave = await world.chain(sms_chain("Sale"))
    behind = Clock(world.clock() - timedelta(seconds=1))
    other = world.engine(clock=behind)
    interloper: list[int] = []

    async def other_chain_goes_out() -> None:
        chain_id = (await import_chain(world.db, sms_chain("Flash sale"), actor="test")).chain_id
        await activate_chain(world.db, chain_id, actor="test", now=behind())
        interloper.append(chain_id)
        await other.tick()

    plain = HttpSmsGateway(world.gateway.url, world.gateway.token, "Shop", rate_per_second=1e4)
    world.transports.append(plain)
    first = world.engine(
        sms=ThirdPartyAtFirstSms(plain, other_chain_goes_out), batch_size=32, email_concurrency=1
    )
    await first.tick()

    texted = world.phones_texted()
    assert len(texted) == 100
    assert set(texted.values()) == {1}
    assert outcome(await world.deliveries(wave, 1)) == {
        ("sent", None): 32,
        ("skipped", reasons.FREQUENCY_CAP): 68,
    }
    assert outcome(await world.deliveries(interloper[0], 1)) == {
        ("sent", None): 68,
        ("skipped", reasons.FREQUENCY_CAP): 32,
    }


async def test_without_a_cap_both_chains_text_everyone(world: World) -> None:
    await add_customers(world.db, *({} for _ in range(5)))
    for name in ("Sale", "Flash sale"):
        await world.chain(sms_chain(name))
    await world.engine(FrequencyCaps()).tick()
    assert set(world.phones_texted().values()) == {2}


async def test_a_cap_of_two_a_week_counts_what_went_out_over_the_week(world: World) -> None:
    await add_customers(world.db, *({} for _ in range(3)))
    engine = world.engine(FrequencyCaps(sms=FrequencyCap(2, timedelta(days=7))))
    for day, name in enumerate(("Monday", "Tuesday", "Wednesday")):
        await world.chain(sms_chain(name))
        await engine.tick()
        world.clock.advance(days=1)
        assert set(world.phones_texted().values()) == {min(day + 1, 2)}
    # A week after the first, one more may go.
    world.clock.advance(days=4, seconds=1)
    await world.chain(sms_chain("Next Monday"))
    await engine.tick()
    assert set(world.phones_texted().values()) == {3}


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_two_workers_claiming_at_once_take_turns_per_customer(
    world: World, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Worker 1's claim is held open after it took its customers' locks; worker 2, on
    a connection of its own, claims another chain's SMS to the same customers meanwhile.
    It waits, and once worker 1 commits it counts what worker 1 claimed."""
    await add_customers(world.db, *({} for _ in range(20)))
    await world.chain(sms_chain("Sale"))
    second_db = Database(db_url)
    first = world.engine()
    second = Engine(
        second_db,
        first.config,
        email=first.email,
        sms=HttpSmsGateway(world.gateway.url, world.gateway.token, "Shop", rate_per_second=1e4),
        clock=world.clock,
    )
    world.transports.append(second.sms)  # type: ignore[arg-type]
    locked, release = asyncio.Event(), asyncio.Event()
    claim_step = claims._claim_step

    async def held_open(session: Any, step: Any, *args: Any, **kwargs: Any) -> None:
        if args[2] == first.worker_id and not release.is_set():
            locked.set()
            await release.wait()
        await claim_step(session, step, *args, **kwargs)

    monkeypatch.setattr(claims, "_claim_step", held_open)
    try:
        first_tick = asyncio.create_task(first.tick())
        await asyncio.wait_for(locked.wait(), 10)
        other = await world.chain(sms_chain("Flash sale"))
        second_tick = asyncio.create_task(second.tick())
        await asyncio.sleep(1.0)
        assert not second_tick.done(), "worker 2 decided without waiting for worker 1"
        release.set()
        await asyncio.wait_for(asyncio.gather(first_tick, second_tick), 30)
    finally:
        release.set()
        await second.close()
        await second_db.dispose()

    texted = world.phones_texted()
    assert len(texted) == 20
    assert set(texted.values()) == {1}
    assert outcome(await world.deliveries(other, 1)) == {("skipped", reasons.FREQUENCY_CAP): 20}


# The plan is read on SQLite only: PostgreSQL picks its plan by the table's size.
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_claims_count_reads_the_index_of_messages_that_went_out(db: Database) -> None:
    """SQLite's plan for what the cap counts: the customer's messages that went out from
    their partial index alone, those claimed from theirs, never a scan of deliveries."""
    since = Clock()()
    statement = select(
        claims.messages_counted_by_cap(Delivery.__table__.c.customer_id, "sms", since)
    ).select_from(Delivery.__table__)
    compiled = statement.compile(db.engine.sync_engine, compile_kwargs={"literal_binds": True})
    async with db.session() as session:
        plan = [row[-1] for row in await session.execute(text(f"EXPLAIN QUERY PLAN {compiled}"))]
    assert any(
        "COVERING INDEX ix_deliveries_customer_id_channel_sent_at (customer_id=? AND channel=? "
        "AND sent_at>?)" in line
        for line in plan
    ), plan
    assert any(
        "INDEX ix_deliveries_customer_id_channel_claimed (customer_id=? AND channel=? AND "
        "status=?)" in line
        for line in plan
    ), plan
    assert sum(line.startswith("SCAN") for line in plan) == 1, plan  # the outer table only


async def test_the_forecast_counts_who_the_cap_holds_back_now_and_names_the_caps(
    world: World,
) -> None:
    await add_customers(world.db, *({} for _ in range(5)))
    await world.chain(sms_chain("Sale"))
    await world.engine().tick()
    await add_customers(
        world.db, *({"external_id": f"new{n}", "phone": f"+7913111{n:04d}"} for n in range(2))
    )
    draft = (await import_chain(world.db, sorry_chain("Autumn"), actor="test")).chain_id
    caps = FrequencyCaps(sms=FrequencyCap(1, timedelta(days=1)))
    sms_first = sms_chain("Winter")
    sms_draft = (await import_chain(world.db, sms_first, actor="test")).chain_id

    found = await forecast_activation(
        world.db, await get_chain(world.db, sms_draft), now=world.clock(), caps=caps
    )
    assert (found.audience, found.reachable) == (7, 2)
    assert found.skipped == {reasons.FREQUENCY_CAP: 5}
    assert found.caps == (("sms", caps.sms),)
    shown = texts.forecast(await get_chain(world.db, sms_draft), found)
    assert "  · frequency cap: 5" in shown
    assert "🚦 SMS: at most 1 message per customer in 1 day, over all chains (1/1d)." in shown
    with use_language("ru"):
        shown = texts.forecast(await get_chain(world.db, sms_draft), found)
    assert "  · ограничение частоты: 5" in shown
    assert (
        "🚦 SMS: не больше 1 сообщения одному клиенту за 1 день по всем цепочкам (1/1d)." in shown
    )

    # An email chain is not held back by SMS sent; its SMS step's cap is named.
    found = await forecast_activation(
        world.db, await get_chain(world.db, draft), now=world.clock(), caps=caps
    )
    assert (found.audience, found.reachable, found.skipped) == (7, 7, {})
    assert found.caps == (("sms", caps.sms),)
