"""SMS_OPT_OUT_TEXT (issue 13, item 4): one line appended to every SMS, counted in its
parts wherever parts are counted — the chain file, the bot's composer, the preview and
what the engine hands to the gateway (models/sms_parts.py `sms_as_sent`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from channels.sms import OutboxSmsTransport
from channels.smtp import OutboxEmailTransport
from models.admins import add_admin
from models.chainfile import InvalidChainFile, load_yaml, validate_chain
from models.chains import import_chain
from models.db import Database
from models.preview import made_up_customer
from models.segments import add_segment
from models.sms_parts import BARE_SMS, SmsFrame, sms_as_sent, sms_parts
from models.tables import Role
from scheduler.engine import Engine
from services.lifecycle import activate_chain
from services.preview import MessageSetup, StepMessage, render_preview
from telegram_double import TelegramDouble
from tests.editor_driver import Phone
from tests.test_bot_support import ADMIN, BotUnderTest, bot_settings, running_bot
from tests.test_engine import Harness, add_customers, import_seed
from tests.test_engine import harness as harness  # the fixture
from tests.test_queue import engine_config
from tests.test_sms_gateway import render_sms

OPT_OUT = "STOP: 0000"
WITH_LINE = SmsFrame(OPT_OUT)


def sms_chain(text: str) -> str:
    return f"""
format: chainmail/1
name: Sale
steps:
  - name: Offer
    audience: {{segments: [new-customers]}}
    action: {{channel: sms, text: "{text}"}}
    schedule: {{send: now}}
"""


def test_the_opt_out_line_follows_the_text_and_counts_in_its_parts() -> None:
    assert sms_as_sent("Sale today", WITH_LINE) == "Sale today\nSTOP: 0000"
    assert sms_as_sent("Sale today", BARE_SMS) == "Sale today"
    # 150 GSM-7 characters fit one SMS; with the line (11 more) they take two.
    assert sms_parts(sms_as_sent("a" * 150, BARE_SMS)).parts == 1
    assert sms_parts(sms_as_sent("a" * 150, WITH_LINE)).parts == 2
    # A Cyrillic text makes the whole SMS UCS-2, the opt-out line too.
    assert sms_parts(sms_as_sent("б" * 59, WITH_LINE)) == sms_parts("б" * 59 + "\n" + OPT_OUT)
    assert render_sms("  Скидка {{ n }}% ", {"n": 10}, WITH_LINE) == "Скидка 10%\nSTOP: 0000"


def test_a_chain_file_sms_that_fits_ten_parts_only_without_the_line_is_refused_with_it() -> None:
    text = "a" * (10 * 153 - 5)
    doc = load_yaml(sms_chain(text))
    known = {"known_segments": ["new-customers"], "known_attributes": []}

    assert validate_chain(doc, **known).value is not None
    checked = validate_chain(doc, **known, sms_frame=WITH_LINE)

    assert checked.value is None
    [problem] = checked.problems
    assert str(problem) == (
        "steps[0].action.text: 11 SMS parts (1536 GSM-7 characters as written, "
        "with the opt-out line 'STOP: 0000'): at most 10"
    )


async def test_importing_such_a_file_with_the_setting_is_refused(db: Database) -> None:
    await add_segment(db, "new-customers", ["new"], actor="test")
    with pytest.raises(InvalidChainFile, match="with the opt-out line"):
        await import_chain(db, sms_chain("a" * 1525), actor="test", sms_frame=WITH_LINE)


def outbox_engine(harness: Harness, **config: object) -> Engine:
    """An engine with these settings writing to the harness's outbox, on its clock."""
    return Engine(
        harness.db,
        engine_config(**config),
        email=OutboxEmailTransport(harness.outbox),
        sms=OutboxSmsTransport(harness.outbox, "Shop"),
        clock=harness.clock,
    )


async def test_the_engine_sends_every_sms_with_the_line(harness: Harness) -> None:
    await add_customers(harness.db, {}, {})
    chain_id = await import_seed(harness.db, sms_chain("Скидка, {{ first_name }}"))
    await activate_chain(harness.db, chain_id, actor="test", now=harness.clock())
    engine = outbox_engine(harness, sms_opt_out_text=OPT_OUT)

    await engine.tick()

    assert sorted(sms["text"] for sms in harness.sms()) == [
        "Скидка, Имя0\nSTOP: 0000",
        "Скидка, Имя1\nSTOP: 0000",
    ]


async def test_each_customer_gets_the_line_of_their_language(harness: Harness) -> None:
    await add_customers(harness.db, {"language": "en"}, {}, {"phone": "+995555123456"})
    chain_id = await import_seed(harness.db, sms_chain("Sale"))
    await activate_chain(harness.db, chain_id, actor="test", now=harness.clock())
    engine = outbox_engine(
        harness,
        sms_opt_out_text="СТОП: 0000",
        sms_opt_outs=(("en", "STOP to 0000"),),
    )

    await engine.tick()

    assert sorted(sms["text"] for sms in harness.sms()) == [
        "Sale\nSTOP to 0000",  # the customer's own language
        "Sale\nСТОП: 0000",  # a +7 phone: Russian, no line of its own: SMS_OPT_OUT_TEXT
        "Sale\nСТОП: 0000",  # Georgia: DEFAULT_LANGUAGE (ru)
    ]


def test_a_template_is_counted_with_the_longest_line_any_customer_gets() -> None:
    frame = SmsFrame("СТОП 0000", "", (("en", "Reply STOP to 0000 to opt out"),))
    assert sms_as_sent("Hi", frame) == "Hi\nReply STOP to 0000 to opt out"
    assert sms_as_sent("Hi", frame.for_language("ru")) == "Hi\nСТОП 0000"
    # A short line that switches a 100-character text to UCS-2 costs two parts, a long
    # one in GSM-7 one part.
    text = "Sale " * 20
    cyrillic = SmsFrame("STOP 0000 to opt out of these messages", "", (("ru", "СТОП"),))
    assert sms_as_sent(text, cyrillic) == f"{text}\nСТОП"


async def test_the_preview_shows_and_counts_the_sms_as_sent(db: Database, tmp_path: Path) -> None:
    setup = MessageSetup(
        mail_from="news@shop.example",
        public_base_url="https://mail.shop.example",
        secret_key="secret",
        open_email=lambda: OutboxEmailTransport(tmp_path),
        open_sms=lambda: OutboxSmsTransport(tmp_path, "Shop"),
        sms_opt_out_text=OPT_OUT,
    )
    message = StepMessage(
        chain_id=1,
        chain_name="Sale",
        step_id=1,
        position=1,
        campaign="sale",
        utm=True,
        action={"channel": "sms", "text": "a" * 150},
    )
    customer = made_up_customer("Europe/Moscow", "ru")

    preview = await render_preview(db, setup, message, customer)

    assert preview.text == "a" * 150 + "\nSTOP: 0000"
    assert preview.count.parts == 2


@asynccontextmanager
async def admin_bot(
    db: Database, double: TelegramDouble, **settings: str
) -> AsyncIterator[BotUnderTest]:
    """The bot under test, running; an admin and the `new-customers` segment exist."""
    await add_admin(db, ADMIN, Role.ADMIN, name="Anton", actor="test")
    await add_segment(db, "new-customers", ["new"], actor="test")
    async with running_bot(db, double, bot_settings(**settings)) as running:
        yield running


async def new_sms_chain(phone: Phone, text: str) -> None:
    """A new chain "Sale" whose main step's message is an SMS with `text`, not saved."""
    await phone.send("/start")
    await phone.tap("➕ New chain")
    await phone.send("Sale")
    await phone.send("Offer")
    await phone.tap("✉️ Message")
    await phone.tap("📱 SMS")
    await phone.tap("✏️ Text")
    await phone.send(text)


@pytest.fixture
async def bot_with_opt_out(db: Database, double: TelegramDouble) -> AsyncIterator[BotUnderTest]:
    async with admin_bot(db, double, sms_opt_out_text=OPT_OUT) as running:
        yield running


async def test_the_bot_composer_counts_the_line_and_save_refuses_eleven_parts(
    bot_with_opt_out: BotUnderTest,
) -> None:
    phone = Phone(bot_with_opt_out, ADMIN)
    await new_sms_chain(phone, "a" * 150)
    assert "«STOP: 0000»" in phone.text
    assert "161 characters · 2 SMS parts (GSM-7)" in phone.text

    await phone.tap("✏️ Text")
    await phone.send("a" * 1525)
    assert "11 SMS parts (GSM-7)" in phone.text
    await phone.tap("💾 Save")
    assert "with the opt-out line 'STOP: 0000'): at most 10" in phone.text

    await phone.tap("✏️ Text")
    await phone.send("a" * 150)
    await phone.tap("💾 Save")
    assert "SMS, 2 SMS parts" in phone.text
