"""Daily summaries and charts (issue 5): numbers by hand, once per chat per day, PNG sizes.

The sender runs in this process with an injected clock, against the Telegram double
served on loopback, on SQLite and PostgreSQL. tests/test_summary_workers.py runs real
worker processes.
"""

from __future__ import annotations

import asyncio
import io
import warnings
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from matplotlib import font_manager
from matplotlib.ft2font import FT2Font
from matplotlib.text import Text
from PIL import Image
from sqlalchemy import select, update

import handlers.charts
from bot.settings import load_settings
from bot.summaries import Photo, SummarySender, compose_summary, summary_sender, telegram_bot
from handlers import texts
from handlers.charts import (
    ChainChart,
    FunnelStep,
    chain_chart_png,
    chart_figure,
    chart_size,
    drawable,
    render_chart,
)
from models import audit, summaries
from models.db import Database
from models.orders import record_orders
from models.stats import ChainStats, DailyStats, chain_stats, conversions_by_day
from models.summaries import claim_summary, day_start, part_sent
from models.tables import Chain, Customer, Step, SubscribedChat, SummarySend
from models.team_chats import is_subscribed, subscribe_chat
from models.tracking import unsubscribe
from services.lifecycle import activate_chain
from telegram_double import TelegramDouble
from tests.test_bot_texts import busy_step
from tests.test_engine import Harness, add_customers, harness, import_seed  # noqa: F401
from tests.test_stats import Shop

ZONE = "Europe/Moscow"
# The summary of 10 March at 09:00 reports from 09:00 on 9 March (Moscow: UTC+3), compared
# with the 24 hours before.
SUMMARY_DAY = date(2026, 3, 10)
REPORTED = date(2026, 3, 9)
NINE = time(9, 0)
TOKEN = "123:ABC"
TEAM = -5001
ANTON = 1002
STRANGER = 1009


def utc(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


def moscow(day: int, hour: int, minute: int = 0) -> datetime:
    return utc(day, hour, minute) - timedelta(hours=3)


async def seeded_chain(db: Database) -> int:
    """Two email steps; the expected numbers are worked out in the test below."""
    shop = Shop(db)
    a, b, c = await shop.customers(3)
    chain, (main, follow_up) = await shop.chain("Welcome", [("email", None), ("email", None)])
    # 8 March (the day before): a gets the main step, opens it, orders 50.
    await shop.delivery(main, a, sent_at=utc(8, 10), events=("opened",))
    await shop.order(a, utc(8, 12), "50.00")
    # 9 March (the reported day): b opens and orders 100 (sent twice by the shop);
    # c never opens; a gets step 2, clicks, and orders 250: for step 2 only.
    await shop.delivery(main, b, sent_at=utc(9, 10), events=("opened",))
    await shop.delivery(main, c, sent_at=utc(9, 11))
    await shop.delivery(follow_up, a, sent_at=utc(9, 12), events=("opened", "clicked"))
    await shop.order(a, utc(9, 13), "250.00")
    resent = {"external_id": "B-1", "customer_external_id": "c2", "amount": "100.00"}
    result = await record_orders(
        db, [resent | {"created_at": "2026-03-09T14:00:00Z"}] * 2, utc(9, 14)
    )
    assert (result.created, result.duplicates) == (1, 1)
    return chain


async def test_summary_numbers_match_a_hand_count(db: Database) -> None:
    chain = await seeded_chain(db)
    parts = await compose_summary(db, SUMMARY_DAY, ZONE, at=NINE, currency="RUB")
    assert isinstance(parts[0], Photo)
    assert parts[0].caption == texts.chart_caption("Welcome")
    (text,) = parts[1:]
    assert isinstance(text, str)
    lines = text.splitlines()
    assert lines[:2] == [
        f"📬 <b>Daily summary</b> · Tue 10 Mar ({ZONE})",
        "From 09:00 yesterday to 09:00 today, with the change against the 24 hours before; "
        "totals up to 09:00 today.",
    ]
    assert lines[3] == "📊 <b>Welcome</b> · ▶️ active"
    assert lines[5:8] == [
        "<b>1. Welcome 1</b> · email",
        # b and c in the last 24 hours, a in the 24 before; one open each; b's order once.
        "last 24 h: sent 2 (+1) · opened 1 · clicked 0 · 🛒 1 · RUB100.00",
        # a and b converted of three sent; a's second order went to step 2.
        "in total: sent 3 · opened 2 (67%) · clicked 0 (0%) · 🛒 2 · RUB150.00 · conv. 66.7%",
    ]
    assert lines[9:] == [
        "<b>2. Welcome 2</b> · email",
        "last 24 h: sent 1 (+1) · opened 1 (+1) · clicked 1 (+1) · 🛒 1 (+1) · RUB250.00",
        "in total: sent 1 · opened 1 (100%) · clicked 1 (100%) · 🛒 1 · RUB250.00 · conv. 100.0%",
    ]
    starts = [day_start(date(2026, 3, 6) + timedelta(days=n), ZONE) for n in range(5)]
    assert await conversions_by_day(db, chain, starts) == {1: [0, 0, 1, 1], 2: [0, 0, 0, 1]}


async def test_a_summary_shows_yesterdays_bounces_and_complaints_and_their_rates(
    db: Database,
) -> None:
    await seeded_chain(db)
    async with db.writer() as session:
        main = await session.scalar(select(Step.id).where(Step.position == 1))
        latecomers = [
            Customer(external_id=name, timezone=ZONE, timezone_source="default")
            for name in ("d", "e")
        ]
        session.add_all(latecomers)
        await session.flush()
        d, e = (customer.id for customer in latecomers)
    assert main is not None
    shop = Shop(db)
    await shop.delivery(main, d, sent_at=utc(9, 15), events=("bounced",))
    await shop.delivery(main, e, sent_at=utc(9, 16), events=("opened", "complained"))
    (_, text) = await compose_summary(db, SUMMARY_DAY, ZONE, at=NINE, currency="RUB")
    assert isinstance(text, str)
    lines = text.splitlines()
    assert lines[5:9] == [
        "<b>1. Welcome 1</b> · email",
        "last 24 h: sent 4 (+3) · opened 2 (+1) · clicked 0 · bounced 1 (+1) · spam 1 (+1)"
        " · 🛒 1 · RUB100.00",
        "in total: sent 5 · opened 3 (60%) · clicked 0 (0%) · 🛒 2 · RUB150.00 · conv. 40.0%",
        "bounced 1 (20.0%) · spam 1 (20.0%)",
    ]


async def test_reported_chains_are_those_that_ran_in_the_last_seven_days(db: Database) -> None:
    shop = Shop(db)
    (customer,) = await shop.customers(1)
    names = ("active", "paused long ago", "paused, sent lately", "finished lately", "draft")
    ids = {}
    for name in names:
        ids[name], (step,) = await shop.chain(name, [("sms", None)])
        if name == "paused, sent lately":
            await shop.delivery(step, customer, sent_at=utc(5, 10))
    long_ago = utc(1, 0) - timedelta(days=30)
    changes: dict[str, dict[str, Any]] = {
        "paused long ago": {"status": "paused", "updated_at": long_ago},
        "paused, sent lately": {"status": "paused", "updated_at": long_ago},
        "finished lately": {"status": "finished", "finished_at": utc(4, 0)},
        "draft": {"status": "draft"},
    }
    async with db.writer() as session:
        for name, values in changes.items():
            await session.execute(update(Chain).where(Chain.id == ids[name]).values(**values))
    reported = await summaries.reported_chains(db, utc(2, 0))
    assert [chain.name for chain in reported] == [
        "active",
        "paused, sent lately",
        "finished lately",
    ]


# --- Charts ----------------------------------------------------------------------------


def funnel(steps: int) -> list[FunnelStep]:
    return [
        FunnelStep(n, f"Шаг {n}", 12000 - n * 100, 5000, "opened", 800, 120, 240 * (n % 2), 3)
        for n in range(1, steps + 1)
    ]


@pytest.mark.parametrize("steps", [1, 3, 20])
def test_chart_is_a_png_of_the_size_for_phones(steps: int) -> None:
    labels = [f"{n:02d}.03" for n in range(1, 15)]
    png = render_chart(ChainChart("Распродажа", funnel(steps), labels, {1: list(range(14))}))
    assert png is not None
    image = Image.open(io.BytesIO(png))
    image.load()
    assert image.format == "PNG"
    assert image.size == chart_size(steps)
    assert image.size[0] == 1080


def test_no_chart_when_nothing_was_sent_or_ordered() -> None:
    quiet = [FunnelStep(1, "Main", 0, 0, "opened", 0, 0)]
    assert render_chart(ChainChart("Quiet", quiet, ["01.03"], {1: [0]})) is None


async def test_no_chart_for_a_chain_without_messages(db: Database) -> None:
    chain, _ = await Shop(db).chain("Empty", [("email", None)])
    stats = await chain_stats(db, chain)
    assert await chain_chart_png(db, stats, last_day=REPORTED, zone=ZONE) is None


def emoji_chart() -> ChainChart:
    return ChainChart(
        title="🌸 Весна — spring sale 🚀",
        steps=[
            FunnelStep(1, "🎁 Подарок", 10, 6, "opened", 3, 1),
            FunnelStep(2, "Напоминание 👋🏽 ❤️", 6, 4, "opened", 1, 0),
            FunnelStep(3, "👨‍👩‍👧", 4, 2, "delivered", 0, 0),
        ],
        day_labels=["01.03", "02.03"],
        orders_per_day={1: [0, 1]},
    )


def test_chart_labels_leave_out_what_the_font_cannot_draw_and_keep_cyrillic() -> None:
    figure = chart_figure(emoji_chart())
    assert figure is not None
    labels = [text for text in figure.findobj(Text) if text.get_text()]
    for label in labels:
        font = FT2Font(font_manager.findfont(label.get_fontproperties()))
        drawable_here = set(font.get_charmap())
        missing = {c for c in label.get_text() if ord(c) not in drawable_here}
        assert not missing, f"{label.get_text()!r} has {missing}"
    shown = [label.get_text() for label in labels]
    assert "Весна — spring sale" in shown
    assert any(text.startswith("1. Подарок: 10 → 6 opened") for text in shown)
    # ❤ is in the font (without its colour and its U+FE0F), 👋🏽 is not.
    assert any(text.startswith("2. Напоминание ❤: 6 → 4 opened") for text in shown)
    assert any(text.startswith("3.: 4 → 2 delivered") for text in shown)
    # Rendering draws no empty box: matplotlib warns of every glyph it lacks.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert render_chart(emoji_chart()) is not None


def test_drawable_keeps_letters_of_both_languages_and_closes_up_spaces() -> None:
    assert drawable("🔥 Распродажа  -50% 🔥 → today") == "Распродажа -50% → today"
    assert drawable("Ёжик №1 «ёлка»") == "Ёжик №1 «ёлка»"


# --- What is still to go ------------------------------------------------------------------


async def test_messages_waiting_for_their_terms_are_not_counted_as_to_go(
    harness: Harness,  # noqa: F811
) -> None:
    """The seed chain: the SMS goes only to those who unsubscribe from the email."""
    await add_customers(harness.db, *({} for _ in range(10)))
    chain_id = await import_seed(harness.db)
    await activate_chain(harness.db, chain_id, actor="test", now=harness.clock())
    await harness.engine.tick()
    welcome = await harness.deliveries(chain_id, 1)
    for delivery in welcome[:3]:
        assert await unsubscribe(harness.db, delivery.id, harness.clock())
    harness.clock.advance(seconds=5)
    await harness.engine.tick()

    sorry = (await chain_stats(harness.db, chain_id)).steps[1]
    assert (sorry.sent, sorry.planned, sorry.waiting_for_terms, sorry.to_go) == (3, 7, 7, 0)
    assert (sorry.terms, sorry.terms_match) == (("unsubscribed_email",), "all")
    page = texts.stats_pages(await chain_stats(harness.db, chain_id), currency="RUB")[0]
    block = page.split("\n\n")[2]
    assert block.splitlines()[1:3] == [
        "sent 3/10",
        "⏳ 7 messages wait for their terms (unsubscribed email): sent only if they come true "
        "in time",
    ]
    assert "to go" not in page

    # Their wait over, they leave the chain: nothing waits any more.
    harness.clock.advance(days=31)
    await harness.engine.tick()
    sorry = (await chain_stats(harness.db, chain_id)).steps[1]
    assert (sorry.planned, sorry.waiting_for_terms, sorry.skipped) == (0, 0, 7)


# --- Limits ----------------------------------------------------------------------------


def test_summary_of_a_twenty_step_chain_passes_telegrams_limits() -> None:
    stats = ChainStats(1, "Ж" * 200, "active", [busy_step(n) for n in range(1, 21)])
    messages = texts.summary_messages(
        DailyStats(stats, stats, stats),
        texts.summary_header(SUMMARY_DAY, ZONE, moscow(9, 9), moscow(10, 9)),
        currency="RUB",
    )
    assert len(messages) > 1
    fake = TelegramDouble(TOKEN)
    fake.user(ANTON, "Anton")
    for message in messages:
        status, body = _call(fake, "sendMessage", chat_id=ANTON, text=message, parse_mode="HTML")
        assert status == 200, body
    caption = texts.chart_caption(stats.name)
    assert len(caption) <= 1024


def _call(fake: TelegramDouble, method: str, **params: Any) -> tuple[int, Any]:
    return asyncio.run(fake.call(method, {k: str(v) for k, v in params.items()}))


# --- Once per chat per day -----------------------------------------------------------------


@pytest.fixture
def double() -> Iterator[TelegramDouble]:
    served = TelegramDouble(TOKEN).start()
    served.user(ANTON, "Anton", "anton")
    served.user(STRANGER, "Stranger", "stranger", started=False)
    served.add_to_group(ANTON, TEAM, "Team")
    try:
        yield served
    finally:
        served.stop()


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def bot_messages(double: TelegramDouble, chat_id: int) -> list[dict[str, Any]]:
    return [m for m in double.chat_messages(chat_id) if m["from"]["is_bot"]]


async def subscribed(db: Database, chat_id: int, since: datetime, zone: str = ZONE) -> None:
    await subscribe_chat(db, chat_id, title="Team", timezone=zone, by=ANTON, actor="test")
    async with db.writer() as session:
        await session.execute(
            update(SubscribedChat).where(SubscribedChat.chat_id == chat_id).values(created_at=since)
        )


async def sent_days(db: Database) -> list[tuple[int, date, str, int]]:
    async with db.session() as session:
        rows = await session.execute(
            select(
                SummarySend.chat_id, SummarySend.day, SummarySend.status, SummarySend.claim
            ).order_by(SummarySend.chat_id, SummarySend.day)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


def sender(db: Database, double: TelegramDouble, clock: Clock) -> SummarySender:
    settings = load_settings(
        telegram_bot_token=TOKEN,
        telegram_api_base_url=double.api_base_url,
        default_timezone=ZONE,
        admin_ids=[ANTON],
    )
    made = summary_sender(settings, db)
    assert made is not None
    made.clock = clock
    return made


async def test_summary_goes_out_once_at_summary_time_and_not_again_after_a_restart(
    db: Database, double: TelegramDouble
) -> None:
    await seeded_chain(db)
    # Subscribed after 9 March's summary time: the first summary is 10 March's.
    await subscribed(db, TEAM, moscow(9, 10))
    clock = Clock(moscow(10, 8, 59))
    first = sender(db, double, clock)
    assert await first.send_due() == 0
    clock.now = moscow(10, 9, 0)
    assert await first.send_due() == 1
    assert await first.send_due() == 0
    messages = bot_messages(double, TEAM)
    assert [("photo" in m) for m in messages] == [True, False]
    assert messages[0]["caption"] == "📈 Welcome: funnel per step, orders per day"
    assert messages[1]["text"].startswith("📬 Daily summary · Tue 10 Mar (Europe/Moscow)")
    # A restarted worker (a new sender) later that day finds it sent.
    clock.now = moscow(10, 15, 0)
    assert await sender(db, double, clock).send_due() == 0
    clock.now = moscow(11, 8, 0)
    assert await sender(db, double, clock).send_due() == 0
    assert len(bot_messages(double, TEAM)) == 2
    assert await sent_days(db) == [(TEAM, SUMMARY_DAY, "sent", 1)]


@pytest.fixture
def charts(monkeypatch: pytest.MonkeyPatch) -> list[ChainChart]:
    """Every chart rendered meanwhile, as handed to the renderer."""
    drawn: list[ChainChart] = []
    render = handlers.charts.render_chart

    def keep(chart: ChainChart) -> bytes | None:
        drawn.append(chart)
        return render(chart)

    monkeypatch.setattr(handlers.charts, "render_chart", keep)
    return drawn


async def test_an_evening_summary_reports_the_24_hours_before_it_with_the_chart(
    db: Database, double: TelegramDouble, charts: list[ChainChart]
) -> None:
    """SUMMARY_TIME=18:30: the summary of 10 March covers 18:30 on the 9th to 18:30 on the
    10th, the day's sends and orders included, and totals stop at 18:30 even when the
    worker sends it late."""
    shop = Shop(db)
    a, b, c = await shop.customers(3)
    _, (main,) = await shop.chain("Evening", [("email", None)])
    await shop.delivery(main, a, sent_at=moscow(9, 17), events=("opened",))  # the day before
    await shop.delivery(main, b, sent_at=moscow(10, 10), events=("opened",))
    await shop.delivery(main, c, sent_at=moscow(10, 18))
    await shop.order(b, moscow(10, 12), "80.00")
    # After the summary's moment: in tomorrow's summary, not in this one.
    await shop.order(a, moscow(10, 18, 45), "500.00")
    await shop.delivery(main, (await shop.customers(1))[0], sent_at=moscow(10, 18, 50))
    await subscribed(db, TEAM, moscow(9, 19))
    settings = load_settings(
        telegram_bot_token=TOKEN,
        telegram_api_base_url=double.api_base_url,
        default_timezone=ZONE,
        admin_ids=[ANTON],
        summary_time=time(18, 30),
    )
    worker = summary_sender(settings, db)
    assert worker is not None
    worker.clock = Clock(moscow(10, 18, 29))
    assert await worker.send_due() == 0
    worker.clock.now = moscow(10, 19, 0)  # half an hour late
    assert await worker.send_due() == 1

    photo, summary = bot_messages(double, TEAM)
    assert photo["caption"] == "📈 Evening: funnel per step, orders per day"
    assert "photo" in photo
    assert summary["text"].splitlines()[:2] == [
        f"📬 Daily summary · Tue 10 Mar ({ZONE})",
        "From 18:30 yesterday to 18:30 today, with the change against the 24 hours before; "
        "totals up to 18:30 today.",
    ]
    assert summary["text"].splitlines()[5:8] == [
        "1. Evening 1 · email",
        "last 24 h: sent 2 (+1) · opened 1 · clicked 0 · 🛒 1 (+1) · RUB80.00",
        "in total: sent 3 · opened 2 (67%) · clicked 0 (0%) · 🛒 1 · RUB80.00 · conv. 33.3%",
    ]
    # The chart's last day is today up to 18:30: b's order is on it, a's later one is not.
    (chart,) = charts
    assert chart.day_labels[-1] == "10.03"
    assert chart.orders_per_day == {1: [0] * 13 + [1]}
    assert [step.sent for step in chart.steps] == [3]


async def test_a_midnight_summary_is_the_calendar_day_before_and_so_is_its_chart(
    db: Database, charts: list[ChainChart]
) -> None:
    await seeded_chain(db)
    photo, text = await compose_summary(db, SUMMARY_DAY, ZONE, at=time(0, 0), currency="RUB")
    assert isinstance(photo, Photo)
    assert isinstance(text, str)
    assert text.splitlines()[1].startswith("From 00:00 yesterday to 00:00 today")
    (chart,) = charts
    assert chart.day_labels[-1] == "09.03"
    assert chart.orders_per_day[1][-1] == 1


async def test_chats_in_one_zone_share_one_composition_of_their_day(
    db: Database, double: TelegramDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seeded_chain(db)
    other_team = TEAM - 1
    double.add_to_group(ANTON, other_team, "Other team")
    for chat_id in (TEAM, other_team):
        await subscribed(db, chat_id, moscow(1, 0))
    await subscribed(db, ANTON, moscow(1, 0), "Asia/Vladivostok")
    composed: list[tuple[date, str]] = []

    async def counted(db: Database, day: date, zone: str, **kwargs: Any) -> list[Any]:
        composed.append((day, zone))
        return await compose_summary(db, day, zone, **kwargs)

    monkeypatch.setattr("bot.summaries.compose_summary", counted)
    assert await sender(db, double, Clock(moscow(10, 9, 0))).send_due() == 3
    assert sorted(composed) == [(SUMMARY_DAY, "Asia/Vladivostok"), (SUMMARY_DAY, ZONE)]
    texts_of = {
        chat_id: [m.get("text", m.get("caption")) for m in bot_messages(double, chat_id)]
        for chat_id in (TEAM, other_team, ANTON)
    }
    assert texts_of[TEAM] == texts_of[other_team]
    assert texts_of[ANTON] != texts_of[TEAM]


async def test_after_days_of_downtime_only_the_latest_summary_goes_out_late_once(
    db: Database, double: TelegramDouble
) -> None:
    await seeded_chain(db)
    await subscribed(db, TEAM, moscow(1, 0))
    clock = Clock(moscow(10, 9, 30))
    assert await sender(db, double, clock).send_due() == 1
    # Down from 10 March 10:00 until 13 March 15:00.
    clock.now = moscow(13, 15, 0)
    worker = sender(db, double, clock)
    assert await worker.send_due() == 1
    assert await worker.send_due() == 0
    days = [(day, status) for _, day, status, _ in await sent_days(db)]
    assert days == [(SUMMARY_DAY, "sent"), (date(2026, 3, 13), "sent")]
    assert len(bot_messages(double, TEAM)) == 4


async def test_a_claim_whose_worker_died_is_sent_after_its_lease_from_the_next_part(
    db: Database, double: TelegramDouble
) -> None:
    await seeded_chain(db)
    await subscribed(db, TEAM, moscow(1, 0))
    clock = Clock(moscow(10, 9, 0))
    # A worker claimed it, sent the photo, and died before the text.
    claim = await claim_summary(db, TEAM, SUMMARY_DAY, clock.now)
    assert claim is not None
    assert await part_sent(db, claim, 1, clock.now)
    worker = sender(db, double, clock)
    clock.now += summaries.LEASE - timedelta(seconds=1)
    assert await worker.send_due() == 0
    clock.now += timedelta(seconds=2)
    assert await worker.send_due() == 1
    (text,) = bot_messages(double, TEAM)
    assert text["text"].startswith("📬 Daily summary")
    assert await sent_days(db) == [(TEAM, SUMMARY_DAY, "sent", 2)]
    # The dead worker wakes up: its claim number is no longer the row's.
    assert not await summaries.renew(db, claim, clock.now)


async def test_a_chat_that_blocked_the_bot_is_unsubscribed_not_retried(
    db: Database, double: TelegramDouble, caplog: pytest.LogCaptureFixture
) -> None:
    await seeded_chain(db)
    # A viewer who subscribed their private chat and then blocked the bot: 403.
    await subscribed(db, STRANGER, moscow(1, 0))
    clock = Clock(moscow(10, 9, 0))
    worker = sender(db, double, clock)
    worker.owner_ids = (STRANGER,)
    assert await worker.send_due() == 0
    assert not await is_subscribed(db, STRANGER)
    assert await sent_days(db) == [(STRANGER, SUMMARY_DAY, "failed", 1)]
    assert "unsubscribed from daily summaries" in caplog.text
    clock.now += timedelta(hours=1)
    assert await worker.send_due() == 0


async def test_a_private_chat_of_someone_no_longer_allowed_gets_nothing(
    db: Database, double: TelegramDouble
) -> None:
    await seeded_chain(db)
    await subscribed(db, ANTON, moscow(1, 0))
    worker = sender(db, double, Clock(moscow(10, 9, 0)))
    worker.owner_ids = ()
    assert await worker.send_due() == 0
    assert bot_messages(double, ANTON) == []
    assert not await is_subscribed(db, ANTON)


async def test_without_a_bot_token_no_summaries_and_one_log_line(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    assert summary_sender(load_settings(telegram_bot_token=""), db) is None
    assert caplog.text.count("daily summaries are not sent") == 1


def test_the_worker_bot_uses_the_configured_api_and_file_urls() -> None:
    settings = load_settings(
        telegram_bot_token=TOKEN, telegram_api_base_url="http://127.0.0.1:9/bot"
    )
    bot = telegram_bot(settings)
    assert bot.base_url == f"http://127.0.0.1:9/bot{TOKEN}"
    assert bot.base_file_url == f"http://127.0.0.1:9/file/bot{TOKEN}"


async def test_a_chain_the_engine_held_is_told_to_owners_and_admins_once(
    db: Database, double: TelegramDouble
) -> None:
    chain_id = await seeded_chain(db)
    async with db.writer() as session:
        audit.record(
            session,
            "engine",
            "chain.hold",
            chain_id=chain_id,
            reason="step 1 (Welcome): planning failed: OverflowError: date value out of range",
        )
    first, second = (
        sender(db, double, Clock(moscow(10, 9))),
        sender(db, double, Clock(moscow(10, 9))),
    )
    await first.bot.initialize()
    await second.bot.initialize()
    assert await first.tell_holds() == 1
    # Another worker, and the same one again: it was told once.
    assert await second.tell_holds() == 0
    assert await first.tell_holds() == 0
    [notice] = bot_messages(double, ANTON)
    assert notice["text"].startswith("⚠ Welcome (#")
    assert "planning failed: OverflowError" in notice["text"]
    assert f"/resume {chain_id}" in notice["text"]
    await first.bot.shutdown()
    await second.bot.shutdown()
