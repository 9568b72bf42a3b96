"""Automatic hold (issue 13): the rule at its boundaries, the service on both databases,
and a storm of refusals at SMTP time holding a chain mid-wave, told in Telegram."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import insert, select

from bot.settings import load_settings
from bot.summaries import summary_sender
from channels.sms import OutboxSmsTransport
from channels.smtp import SmtpPool
from models.admins import add_admin
from models.chains import list_chains
from models.db import Database
from models.holds import HoldKind, claim_untold_holds
from models.protection import HoldPolicy, StepHealth, hold_reason, hold_unhealthy_steps
from models.tables import AuditEntry, Chain, Customer, Delivery, Event, Role, Step
from scheduler.engine import Engine
from services.lifecycle import activate_chain, resume_chain
from telegram_double import TelegramDouble
from tests.cli import chainmail
from tests.servers import SmtpFaults, SmtpTestServer
from tests.test_engine import Clock, add_customers, import_seed
from tests.test_queue import engine_config

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
POLICY = HoldPolicy()
TOKEN = "123:ABC"
OWNER = 1002
ADMIN = 1003
VIEWER = 1004

# --- The rule -------------------------------------------------------------------------

rates = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("1"), places=4)


def step(sent: int, *, bounced: int = 0, complained: int = 0) -> StepHealth:
    return StepHealth(2, "Reminder", sent, bounced, complained)


def least_reaching(rate: Decimal, sent: int) -> int:
    """The fewest of `sent` whose share reaches `rate`."""
    return math.ceil(Fraction(rate) * sent)


@pytest.mark.parametrize(
    ("field", "policy_field", "words"),
    [
        ("complained", "complaint_rate", "spam complaints"),
        ("bounced", "bounce_rate", "hard bounces"),
    ],
)
@given(rate=rates, min_sent=st.integers(1, 500), extra=st.integers(0, 10_000))
def test_a_rate_that_reaches_the_limit_holds_and_one_fewer_does_not(
    field: str, policy_field: str, words: str, rate: Decimal, min_sent: int, extra: int
) -> None:
    policy = replace(POLICY, **{policy_field: rate, "min_sent": min_sent})
    sent = min_sent + extra
    count = least_reaching(rate, sent)
    reason = hold_reason(step(sent, **{field: count}), policy)
    assert reason is not None
    assert reason.startswith(f"step 2 (Reminder): {words} ")
    assert hold_reason(step(sent, **{field: count - 1}), policy) is None


@given(min_sent=st.integers(1, 10_000), data=st.data())
def test_below_min_sent_nothing_holds_even_when_every_message_went_wrong(
    min_sent: int, data: st.DataObject
) -> None:
    sent = data.draw(st.integers(0, min_sent - 1))
    every = step(sent, bounced=sent, complained=sent)
    assert hold_reason(every, HoldPolicy(min_sent=min_sent)) is None
    # One more message sent, and the same storm holds.
    assert hold_reason(step(min_sent, bounced=min_sent), HoldPolicy(min_sent=min_sent))


@given(rate=rates, sent=st.integers(1, 100_000), data=st.data())
def test_a_rate_that_reached_its_limit_never_reads_as_below_it(
    rate: Decimal, sent: int, data: st.DataObject
) -> None:
    count = data.draw(st.integers(least_reaching(rate, sent), sent))
    if count == 0:
        return
    reason = hold_reason(step(sent, bounced=count), HoldPolicy(bounce_rate=rate, min_sent=1))
    assert reason is not None
    shown = Decimal(reason.split("hard bounces ")[1].split(" %")[0])
    assert shown >= rate * 100


def test_the_reason_says_what_crossed_in_a_managers_words() -> None:
    assert hold_reason(step(250, complained=1), POLICY) == (
        "step 2 (Reminder): spam complaints 0.4 % of 250 sent (limit 0.3 %)"
    )
    assert hold_reason(step(200, bounced=10), POLICY) == (
        "step 2 (Reminder): hard bounces 5 % of 200 sent (limit 5 %)"
    )
    assert hold_reason(step(250, bounced=15, complained=1), POLICY) == (
        "step 2 (Reminder): spam complaints 0.4 % and hard bounces 6 % of 250 sent"
        " (limits 0.3 % and 5 %)"
    )
    assert hold_reason(step(1000, bounced=49, complained=2), POLICY) is None


# --- The service, on both databases ---------------------------------------------------


async def seeded_step(
    db: Database,
    name: str,
    *,
    sent: int,
    refused: int = 0,
    bounced_after: int = 0,
    complained: int = 0,
    status: str = "active",
) -> tuple[int, int]:
    """An email step whose messages went: `sent` left, `bounced_after` of them bounced
    later (a DSN: `failed`, with a `bounced` event), `complained` of the rest drew a
    complaint, and `refused` more were refused at SMTP time (`failed`, `bounced`).
    Also a few planned and skipped rows, which count for nothing. (chain, step)."""
    async with db.writer() as session:
        chain = Chain(name=name, status=status, campaign_tag=name.lower())
        session.add(chain)
        await session.flush()
        row = Step(chain_id=chain.id, position=1, name="Welcome", action={"channel": "email"})
        session.add(row)
        await session.flush()
        total = sent + refused + 5
        customers = [
            {
                "external_id": f"{name}-{n}",
                "email": f"{name}-{n}@example.com",
                "timezone": "UTC",
                "timezone_source": "default",
            }
            for n in range(total)
        ]
        ids = list(await session.scalars(insert(Customer).returning(Customer.id), customers))
        statuses = (
            ["failed"] * bounced_after
            + ["sent"] * (sent - bounced_after)
            + ["failed"] * refused
            + ["planned"] * 3
            + ["skipped"] * 2
        )
        deliveries = [
            {
                "chain_id": chain.id,
                "step_id": row.id,
                "customer_id": customer,
                "channel": "email",
                "status": status,
                "version": 1,
                "eligible_at": NOW,
                "due_at": NOW,
                "sent_at": NOW if status == "sent" else None,
            }
            for customer, status in zip(ids, statuses, strict=True)
        ]
        delivery_ids = list(
            await session.scalars(insert(Delivery).returning(Delivery.id), deliveries)
        )
        customer_of = dict(zip(delivery_ids, ids, strict=True))
        bounced = delivery_ids[:bounced_after] + delivery_ids[sent : sent + refused]
        complaining = delivery_ids[bounced_after : bounced_after + complained]
        events = [
            {"delivery_id": d, "customer_id": customer_of[d], "type": kind, "occurred_at": NOW}
            for kind, chosen in (("bounced", bounced), ("complained", complaining))
            for d in chosen
        ]
        # Opens and a second bounce event of one message change nothing.
        events += [
            {"delivery_id": d, "customer_id": customer_of[d], "type": "opened", "occurred_at": NOW}
            for d in delivery_ids[:sent]
        ]
        if bounced:
            events.append(
                {"delivery_id": bounced[0], "customer_id": customer_of[bounced[0]]}
                | {"type": "bounced", "occurred_at": NOW}
            )
        if events:
            await session.execute(insert(Event), events)
        return chain.id, row.id


async def hold(db: Database, *step_ids: int, policy: HoldPolicy = POLICY) -> list[str]:
    async with db.writer() as session:
        holds = await hold_unhealthy_steps(session, step_ids, policy, NOW)
    return [h.reason for h in holds]


async def chain_row(db: Database, chain_id: int) -> Chain:
    async with db.session() as session:
        chain = await session.get(Chain, chain_id)
        assert chain is not None
        return chain


async def test_bounces_at_exactly_the_limit_hold_the_chain_and_one_fewer_does_not(
    db: Database,
) -> None:
    # 200 handed to the channel: 195 left (5 of them bounced later), 5 refused at once.
    at_limit, step_at = await seeded_step(db, "at", sent=195, refused=5, bounced_after=5)
    below, step_below = await seeded_step(db, "below", sent=196, refused=4, bounced_after=5)

    assert await hold(db, step_at, step_below) == [
        "step 1 (Welcome): hard bounces 5 % of 200 sent (limit 5 %)"
    ]

    held, fine = await chain_row(db, at_limit), await chain_row(db, below)
    assert (held.status, held.hold_reason) == (
        "paused",
        "step 1 (Welcome): hard bounces 5 % of 200 sent (limit 5 %)",
    )
    assert held.updated_at == NOW
    assert (fine.status, fine.hold_reason) == ("active", None)
    [told] = await claim_untold_holds(db)
    assert (told.chain_id, told.kind) == (at_limit, HoldKind.DELIVERABILITY)
    # Asked again (the next bounce of the storm): held once, told once.
    assert await hold(db, step_at) == []
    assert await claim_untold_holds(db) == []


async def test_complaints_at_exactly_the_limit_hold_and_one_fewer_does_not(db: Database) -> None:
    at_limit, step_at = await seeded_step(db, "at", sent=1000, complained=3)
    _, step_below = await seeded_step(db, "below", sent=1000, complained=2)
    assert await hold(db, step_at, step_below) == [
        "step 1 (Welcome): spam complaints 0.3 % of 1000 sent (limit 0.3 %)"
    ]
    assert (await chain_row(db, at_limit)).status == "paused"


async def test_below_hold_min_sent_a_storm_holds_nothing(db: Database) -> None:
    chain_id, step_id = await seeded_step(db, "few", sent=150, refused=49, complained=100)
    assert await hold(db, step_id) == []
    assert (await chain_row(db, chain_id)).status == "active"
    # The setting moves the bar.
    assert await hold(db, step_id, policy=HoldPolicy(min_sent=199)) != []


async def test_a_chain_paused_or_finished_is_left_as_it_is(db: Database) -> None:
    paused, paused_step = await seeded_step(db, "paused", sent=200, refused=50, status="paused")
    done, done_step = await seeded_step(db, "done", sent=200, complained=50, status="finished")
    assert await hold(db, paused_step, done_step) == []
    assert (await chain_row(db, paused)).hold_reason is None
    assert (await chain_row(db, done)).status == "finished"
    assert await claim_untold_holds(db) == []


async def test_resuming_clears_the_reason_and_the_next_bounce_over_the_limit_holds_again(
    db: Database,
) -> None:
    chain_id, step_id = await seeded_step(db, "again", sent=190, refused=10)
    await hold(db, step_id)
    await resume_chain(db, chain_id, actor="manager")
    assert (await chain_row(db, chain_id)).hold_reason is None
    assert len(await hold(db, step_id)) == 1


async def test_chains_list_shows_why_the_chain_is_held(
    db_url: str, db: Database, tmp_path: Path
) -> None:
    _, step_id = await seeded_step(db, "Spring", sent=1000, complained=4)
    await hold(db, step_id)
    [listed] = await list_chains(db)
    assert (
        listed.hold_reason == "step 1 (Welcome): spam complaints 0.4 % of 1000 sent (limit 0.3 %)"
    )
    shown = chainmail(db_url, "chains", "list", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[1].split(None, 2)[2] == (
        "paused (held: step 1 (Welcome): spam complaints 0.4 % of 1000 sent (limit 0.3 %))  1"
    )


# --- A storm of refusals at SMTP time, through the engine -----------------------------


@pytest.fixture
def telegram() -> Iterator[TelegramDouble]:
    served = TelegramDouble(TOKEN).start()
    for person, name in ((OWNER, "Owner"), (ADMIN, "Admin"), (VIEWER, "Viewer")):
        served.user(person, name, name.lower())
    try:
        yield served
    finally:
        served.stop()


def bot_messages(double: TelegramDouble, chat_id: int) -> list[str]:
    return [m["text"] for m in double.chat_messages(chat_id) if m["from"]["is_bot"]]


async def test_a_bounce_storm_holds_the_chain_mid_wave_and_owners_and_admins_are_told(
    db: Database, tmp_path: Path, telegram: TelegramDouble
) -> None:
    customers = 400
    await add_customers(db, *({} for _ in range(customers)))
    # Every fourth address is unknown to the receiving server: 550 5.1.1 at RCPT TO.
    unknown = frozenset(f"c{n}@example.com" for n in range(0, customers, 4))
    chain_id = await import_seed(db)
    clock = Clock()
    await activate_chain(db, chain_id, actor="test", now=clock())
    with SmtpTestServer(faults=SmtpFaults(reject=unknown, slow_reply=0.005)) as smtp:
        email = SmtpPool("127.0.0.1", smtp.port, concurrency=1)
        engine = Engine(
            db,
            # Groups of 16; a hold from 48 messages on (three groups recorded).
            engine_config(
                email_concurrency=1,
                batch_size=customers,
                hold_policy=HoldPolicy(min_sent=48),
            ),
            email=email,
            sms=OutboxSmsTransport(tmp_path, "Shop"),
            clock=clock,
        )
        try:
            await engine.run_until_idle()
        finally:
            await engine.close()
            await email.aclose()
        tried = {address for message in smtp.messages for address in message.rcpt_tos}
        tried |= {address for address in unknown if smtp.attempts(address)}

    # Recorded with the third group: the fourth was on the wire already, no later one went.
    assert 48 <= len(tried) <= 64
    async with db.session() as session:
        statuses = Counter(
            await session.scalars(
                select(Delivery.status).where(
                    Delivery.chain_id == chain_id, Delivery.channel == "email"
                )
            )
        )
    assert statuses["planned"] == customers - len(tried)
    assert statuses["sent"] + statuses["failed"] == len(tried)
    [chain] = await list_chains(db)
    assert chain.status == "paused"
    assert chain.hold_reason is not None
    assert chain.hold_reason.startswith("step 1 (Welcome): hard bounces 25 % of 48 sent")
    async with db.session() as session:
        holds = list(
            await session.scalars(
                select(AuditEntry.details).where(AuditEntry.action == "chain.hold")
            )
        )
    assert holds == [{"chain_id": chain_id, "reason": chain.hold_reason, "kind": "deliverability"}]

    await add_admin(db, ADMIN, Role.ADMIN, name="Admin", actor="test")
    await add_admin(db, VIEWER, Role.VIEWER, name="Viewer", actor="test")
    settings = load_settings(
        telegram_bot_token=TOKEN, telegram_api_base_url=telegram.api_base_url, admin_ids=[OWNER]
    )
    worker = summary_sender(settings, db)
    assert worker is not None
    await worker.bot.initialize()
    try:
        assert await worker.tell_holds() == 1
        assert await worker.tell_holds() == 0
    finally:
        await worker.bot.shutdown()
    for person in (OWNER, ADMIN):
        [notice] = bot_messages(telegram, person)
        assert notice.startswith(f"⚠ Seed (#{chain_id}) is paused to protect your sender")
        assert "hard bounces 25 % of 48 sent (limit 5 %)" in notice
        assert f"/resume {chain_id}" in notice
    assert bot_messages(telegram, VIEWER) == []
