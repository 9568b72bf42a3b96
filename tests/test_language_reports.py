"""What the worker sends, in the language of whom it goes to (issue 14, item 1): a team
chat's daily summary and chart in its subscriber's language, a hold notice in each
person's. Against the Telegram double served on loopback, on both databases."""

from __future__ import annotations

from typing import Any

import pytest
from matplotlib.figure import Figure
from sqlalchemy import update

from handlers.charts import ChainChart, FunnelStep, render_chart
from i18n import use_language
from models import audit
from models.bot_users import choose_language, remember_telegram_language
from models.db import Database
from models.tables import SubscribedChat
from models.team_chats import subscribe_chat
from telegram_double import TelegramDouble
from tests.test_reporting import (
    ANTON,
    SUMMARY_DAY,
    TEAM,
    ZONE,
    Clock,
    bot_messages,
    double,
    moscow,
    seeded_chain,
    sender,
)

__all__ = ["double"]  # the served double of tests/test_reporting.py


async def test_a_team_chat_gets_its_summary_and_chart_in_its_subscribers_language(
    db: Database, double: TelegramDouble
) -> None:
    await seeded_chain(db)
    await subscribe_chat(
        db, TEAM, title="Команда", timezone=ZONE, by=ANTON, language="ru", actor="test"
    )
    other = TEAM - 1
    double.add_to_group(ANTON, other, "Team")
    await subscribe_chat(db, other, title="Team", timezone=ZONE, by=ANTON, actor="test")
    # Subscribed on the 9th, so the 10th's summary is due.
    async with db.writer() as session:
        await session.execute(update(SubscribedChat).values(created_at=moscow(9, 10)))
    clock = Clock(moscow(SUMMARY_DAY.day, 9, 0))
    assert await sender(db, double, clock).send_due() == 2
    photo, summary = bot_messages(double, TEAM)
    assert photo["caption"] == "📈 Welcome: воронка по шагам, заказы по дням"
    lines = summary["text"].splitlines()
    assert lines[0] == "📬 Ежедневная сводка · вт 10 мар. (Europe/Moscow)"
    assert lines[3] == "📊 Welcome · ▶️ работает"
    assert lines[6].startswith("за сутки: отправлено 2 (+1) · открыли 1 · клики 0")
    assert lines[7].startswith("всего: отправлено 3 · открыли 2 (67 %)")
    # A chat subscribed without a language (before there were any) reads English.
    assert bot_messages(double, other)[1]["text"].startswith("📬 Daily summary · Tue 10 Mar")


def drawn_words(monkeypatch: pytest.MonkeyPatch, chart: ChainChart) -> list[str]:
    """Every title, label and legend entry handed to matplotlib for the chart."""
    figures: list[Figure] = []
    original = Figure.savefig

    def keep(figure: Figure, *args: Any, **kwargs: Any) -> None:
        figures.append(figure)
        original(figure, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    assert render_chart(chart) is not None
    [figure] = figures
    words = []
    for axes in figure.axes:
        words.append(axes.get_title(loc="left"))
        words += [text.get_text() for text in axes.texts]
        legend = axes.get_legend()
        if legend is not None:
            words += [text.get_text() for text in legend.get_texts()]
    return words


def test_a_charts_words_are_in_the_current_language(monkeypatch: pytest.MonkeyPatch) -> None:
    steps = [
        FunnelStep(1, "Письмо", 1200, 500, "opened", 80, 12, bounced=4, complained=2),
        FunnelStep(2, "SMS", 700, 650, "delivered", 30, 0),
    ]
    chart = ChainChart("Распродажа", steps, ["01.03", "02.03"], {1: [3, 1], 2: [0, 2]})
    with use_language("ru"):
        words = drawn_words(monkeypatch, chart)
    assert words == [
        "Воронка по шагам",
        "1. Письмо: 1200 → 500 открыли → 80 → 12 (отказы: 4, спам: 2)",
        "2. SMS: 700 → 650 получили → 30 → 0",
        "отправлено",
        "открыли / доставлено",
        "кликнули",
        "заказали",
        "Заказы по дням, последние 2 дня",
        "шаг 1",
        "шаг 2",
    ]
    assert drawn_words(monkeypatch, chart)[0] == "Funnel per step"


async def test_a_hold_notice_goes_to_each_person_in_their_language(
    db: Database, double: TelegramDouble
) -> None:
    chain_id = await seeded_chain(db)
    await remember_telegram_language(db, ANTON, "ru")
    async with db.writer() as session:
        audit.record(
            session, "engine", "chain.hold", chain_id=chain_id, reason="step 1 (Welcome): boom"
        )
    worker = sender(db, double, Clock(moscow(10, 9)))
    await worker.bot.initialize()
    assert await worker.tell_holds() == 1
    [notice] = bot_messages(double, ANTON)
    assert notice["text"].startswith("⚠ Welcome (#")
    assert "движок не смог продолжить рассылку" in notice["text"]
    assert f"Исправьте шаг, затем /resume {chain_id}." in notice["text"]
    # Their /language choice outweighs their Telegram app's.
    await choose_language(db, ANTON, "en", spoken="en", actor="test")
    async with db.writer() as session:
        audit.record(session, "engine", "chain.hold", chain_id=chain_id, reason="again")
    assert await worker.tell_holds() == 1
    assert bot_messages(double, ANTON)[-1]["text"].endswith(
        f"Fix the step, then /resume {chain_id}."
    )
    await worker.bot.shutdown()
