"""The holdout in the bot: set on a draft's map with Save / Discard, refused values asked
again, fixed once active; its comparison in /stats, the chart and the daily summary.
Through the Telegram double, on both databases."""

from __future__ import annotations

import io
from datetime import time, timedelta
from decimal import Decimal

from PIL import Image
from sqlalchemy import update

from bot.summaries import Photo, compose_summary
from bot.telegram_app import build_application
from handlers import texts
from handlers.charts import chain_chart_png, chart_size
from i18n import use_language
from models.admins import add_admin
from models.chains import get_chain, list_chains
from models.db import Database
from models.lift import Group, enough_data, lift
from models.stats import HoldoutStats, chain_stats
from models.tables import Chain, Role
from telegram_double import TelegramDouble
from tests.editor_driver import Phone
from tests.test_bot_editor import bot as bot  # the fixture
from tests.test_bot_editor import open_first_step
from tests.test_bot_support import ADMIN, VIEWER, BotUnderTest, bot_settings
from tests.test_holdout import holdout_chain
from tests.test_reporting import SUMMARY_DAY, ZONE

# --- The editor ---------------------------------------------------------------------------


async def open_holdout(phone: Phone) -> None:
    """A new draft's holdout block, from its map."""
    await open_first_step(phone)
    await phone.tap("🗺 Map")
    await phone.tap("🧪 Holdout: none")


async def test_a_drafts_holdout_is_picked_typed_refused_and_saved(
    bot: BotUnderTest, db: Database
) -> None:
    phone = Phone(bot, ADMIN)
    await open_holdout(phone)
    assert "Held out: nobody" in phone.text
    await phone.tap("10%")
    assert "🧪 Holdout · Spring sale ● unsaved" in phone.text
    assert "Held out: 10% of the main step's audience." in phone.text
    assert "● 10%" in phone.labels()
    # Refused values are said and asked for again; the draft stays as it was.
    for typed in ("70", "ten", "-5", "12.5"):
        await phone.send(typed)
        assert f"«{typed}» is not a whole number of percent from 0 to 50." in phone.text
        assert "Held out: 10% of the main step's audience." in phone.text
    await phone.send("15 %")
    assert "Held out: 15% of the main step's audience." in phone.text
    await phone.tap("💾 Save")
    assert phone.answered() == ["Holdout saved"]
    assert "🧪 holdout 15% of the main step" in phone.text
    assert "🧪 Holdout: 15%" in phone.labels()
    [chain] = await list_chains(db)
    assert (await get_chain(db, chain.id)).holdout_percent == 15


async def test_leaving_an_unsaved_holdout_asks_and_discard_keeps_the_saved_one(
    bot: BotUnderTest, db: Database
) -> None:
    phone = Phone(bot, ADMIN)
    await open_holdout(phone)
    await phone.tap("20%")
    await phone.send("/chains")
    assert "You have unsaved changes to the holdout of Spring sale." in phone.text
    await phone.tap("✏️ Keep editing")
    assert "Held out: 20%" in phone.text
    await phone.tap("🗑 Discard")
    assert phone.answered() == ["Changes discarded"]
    assert "🧪 Holdout: none" in phone.labels()
    [chain] = await list_chains(db)
    assert (await get_chain(db, chain.id)).holdout_percent == 0
    # Save as the answer to the question saves, then goes where the command went.
    await phone.tap("🧪 Holdout: none")
    await phone.tap("5%")
    await phone.send("/chains")
    await phone.tap("💾 Save")
    assert phone.text.startswith("📋 Chains")
    assert (await get_chain(db, chain.id)).holdout_percent == 5


async def test_an_active_chains_holdout_is_shown_fixed_and_a_stale_button_is_refused(
    bot: BotUnderTest, db: Database
) -> None:
    phone = Phone(bot, ADMIN)
    await open_first_step(phone)
    await phone.tap("🗺 Map")
    stale = phone.data_of("🧪 Holdout: none")
    [chain] = await list_chains(db)
    chain_id = chain.id
    async with db.writer() as session:
        await session.execute(
            update(Chain).where(Chain.id == chain_id).values(holdout_percent=10, status="active")
        )
    assert phone.shown is not None
    phone._took(await bot.press(ADMIN, phone.shown.message_id, stale))  # type: ignore[arg-type]
    assert phone.text.startswith(f"⚠️ The holdout of chain {chain_id} (10%) is fixed since")
    await phone.tap("🗺 Map")
    assert "🧪 holdout 10% of the main step, fixed since activation" in phone.text
    assert not [label for label in phone.labels() if label.startswith("🧪")]


# --- The numbers ---------------------------------------------------------------------------


async def _stats_through_the_double(
    db: Database, double: TelegramDouble, chain_id: int
) -> tuple[str, bytes]:
    """/stats as a viewer reads it over HTTP (photos go as multipart): the page, the chart."""
    await add_admin(db, VIEWER, Role.VIEWER, name="Vera", actor="test")
    with double:
        app = build_application(bot_settings(telegram_api_base_url=double.api_base_url), db)
        async with app:
            photo, page = await BotUnderTest(app, double).send(VIEWER, f"/stats {chain_id}")
    assert photo.message is not None
    return page.text or "", double.file_content(photo.message["photo"][-1]["file_id"])


async def test_stats_show_the_groups_and_not_enough_data_yet(
    db: Database, double: TelegramDouble
) -> None:
    chain_id = await holdout_chain(db, 60, 8, ordered=2)
    page, png = await _stats_through_the_double(db, double, chain_id)
    assert "🧪 Holdout 10% · every order within 7 days" in page
    assert "treated 60: conv. 3.3% · 2 orders · RUB200.00" in page
    assert "held out 8: conv. 25.0% · 2 orders · RUB200.00" in page
    assert (
        "📈 lift: not enough data yet (it takes 100 customers in each group and 10 who ordered)"
        in page
    )
    assert Image.open(io.BytesIO(png)).size == chart_size(1, holdout=True)


async def test_stats_show_the_lift_with_its_interval_once_there_is_enough(
    db: Database, double: TelegramDouble
) -> None:
    chain_id = await holdout_chain(db, 300, 100, ordered=10)
    stats = await chain_stats(db, chain_id)
    assert stats.holdout is not None
    assert stats.holdout.enough_data
    found = stats.holdout.lift
    assert found is not None
    # 10/300 - 10/100 = -6.7 points. Wilson: 10/300 → 1.82–6.03 %, 10/100 → 5.52–17.44 %;
    # Newcombe: -6.67 - √(1.51² + 7.44²) = -14.3, -6.67 + √(2.70² + 4.48²) = -1.4.
    low, high = found.ci95
    assert (round(low * 100, 1), round(high * 100, 1)) == (-14.3, -1.4)
    page, _png = await _stats_through_the_double(db, double, chain_id)
    assert "📈 lift -6.7 pp (95% CI -14.3 pp to -1.4 pp) · -20.0 orders · -RUB2,000.00" in page


async def test_the_chart_and_the_daily_summary_carry_the_holdout(db: Database) -> None:
    chain_id = await holdout_chain(db, 60, 8, ordered=2)
    stats = await chain_stats(db, chain_id)
    png = await chain_chart_png(db, stats, last_day=SUMMARY_DAY, zone=ZONE)
    assert png is not None
    assert Image.open(io.BytesIO(png)).size == chart_size(1, holdout=True)
    # Sent at midnight after SUMMARY_DAY: the 24 hours it covers are that day.
    parts = await compose_summary(
        db, SUMMARY_DAY + timedelta(days=1), ZONE, at=time(0, 0), currency="RUB"
    )
    assert isinstance(parts[0], Photo)
    summary = "\n".join(part for part in parts[1:] if isinstance(part, str))
    assert "🧪 <b>Holdout 10%</b> · every order within 7 days" in summary
    assert "treated 60: conv. 3.3% · 2 orders · RUB200.00" in summary
    assert texts.not_enough_data() in summary


def test_the_holdout_lines_read_in_russian_with_roubles() -> None:
    treated = Group(900, 45, 50, Decimal("50000.00"))
    held_out = Group(100, 3, 3, Decimal("3000.00"))
    holdout = HoldoutStats(10, 7, Decimal("500"), treated, held_out, lift(treated, held_out), True)
    assert enough_data(treated, held_out)
    with use_language("ru"):
        lines = texts.holdout_lines(holdout, "RUB")
    assert lines[0].startswith("🧪 <b>Контрольная группа 10 %</b>")
    assert "500,00\xa0₽" in lines[0]
    assert "п. п." in lines[3]
