"""The chain editor's dead ends of issue 14 (item 3), each as a manager met it on a
phone, through the Telegram double: template errors and unknown placeholders, the SMS
counter over real customers, the leave question's Discard, refused typed values."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from models.chains import get_chain, import_chain, list_chains
from models.customers import save_customers
from models.db import Database
from telegram_double import TelegramDouble
from tests.editor_driver import Phone
from tests.test_bot_editor import THREE_STEPS, open_first_step, open_in_editor
from tests.test_bot_support import ADMIN, BotUnderTest
from tests.test_sms_opt_out import admin_bot, new_sms_chain


@pytest.fixture
async def bot(db: Database, double: TelegramDouble) -> AsyncIterator[BotUnderTest]:
    async with admin_bot(db, double) as running:
        yield running


async def customer(db: Database, external_id: str, first_name: str, **extra: object) -> None:
    row = {"external_id": external_id, "phone": "+79161234567", "first_name": first_name}
    await save_customers(
        db,
        [{**row, "tags": ["new"], **extra}],
        default_timezone="Europe/Moscow",
        default_phone_region="RU",
        actor="test",
    )


# --- 1. Templates: the line and the placeholder, in plain words ---------------------------


async def email_saved(bot: BotUnderTest, subject: str, text: str) -> Phone:
    """A new chain's main step with this email, Save pressed."""
    phone = Phone(bot, ADMIN)
    await open_first_step(phone)
    await phone.tap("✉️ Message")
    await phone.tap("✏️ Subject")
    await phone.send(subject)
    await phone.tap("✏️ Text")
    await phone.send(text)
    await phone.tap("💾 Save")
    return phone


async def test_a_broken_template_names_the_line_and_what_to_write(bot: BotUnderTest) -> None:
    phone = await email_saved(bot, "Black Friday", "Hello!\nSee you {{ first_name , on Friday")
    assert "Not saved:" in phone.text
    assert "line 2: a placeholder is not closed: write {{ first_name }}" in phone.text
    assert "expected token" not in phone.text
    await phone.tap("✏️ Text")
    await phone.send("{{ Black Friday }} starts now")
    await phone.tap("💾 Save")
    assert (
        "line 1: «{{ Black Friday }}» is not a placeholder: between the braces goes one"
        " name without spaces, like {{ first_name }}" in phone.text
    )
    await phone.tap("✏️ Text")
    await phone.send("{% if city %}Hi, {{ city }}!\n\nSale")
    await phone.tap("💾 Save")
    assert "line 1: «{% if %}» is not closed: end it with {% endif %}" in phone.text
    await phone.tap("✏️ Text")
    await phone.send("Hi {{ first_name|uper }}")
    await phone.tap("💾 Save")
    assert "line 1: there is no filter «uper»: did you mean «upper»?" in phone.text


async def test_an_unknown_placeholder_warns_offers_the_known_ones_and_saves_anyway(
    bot: BotUnderTest, db: Database
) -> None:
    await customer(db, "c1", "Анна", attributes={"city": "Пермь"})
    phone = await email_saved(
        bot, "Sale", "Hi {{ first_name }}!\nSee you in {{ citi }}, {{ unknown_field }}"
    )
    assert "These placeholders would come out empty:" in phone.text
    assert (
        "text, line 2: {{ citi }} is neither a customer field nor an attribute any customer"
        " has. Did you mean {{ city }}?" in phone.text
    )
    assert "text, line 2: {{ unknown_field }} is neither" in phone.text
    assert "Placeholders you can use: {{ email }}, {{ external_id }}, {{ first_name }}" in (
        phone.text
    )
    assert "{{ city }}" in phone.text.split("Placeholders you can use:")[1]
    [chain] = await list_chains(db)
    assert (await get_chain(db, chain.id)).steps[0].action is None
    # Once warned, the block saves as it is.
    await phone.tap("💾 Save anyway")
    assert any(answer.startswith("Saved") for answer in phone.answered())
    action = (await get_chain(db, chain.id)).steps[0].action
    assert action is not None
    assert "{{ citi }}" in action.to_block()["text"]


# --- 2. When: what is valid for terms known only later --------------------------------------


async def test_switching_to_sms_before_a_not_opened_step_is_refused_in_the_bots_words(
    bot: BotUnderTest, db: Database
) -> None:
    await import_chain(db, THREE_STEPS, actor="test")
    phone = Phone(bot, ADMIN)
    await open_in_editor(phone, "📝 Welcome series")
    await phone.tap("1 · Welcome")
    await phone.tap("✉️ Message")
    await phone.tap("📱 SMS")
    await phone.tap("💾 Save")
    assert (
        "Step 2 waits to see whether this message was opened («not opened»), which an SMS"
        " never tells: change the 👥 Who of step 2 first." in phone.text
    )
    assert "not_opened" not in phone.text


# --- 4. The SMS counter: the longest rendering over the customers ------------------------------


async def test_the_sms_counter_shows_the_longest_rendering_and_warns_of_ucs2(
    bot: BotUnderTest, db: Database
) -> None:
    await customer(db, "c1", "Ann")
    await customer(db, "c2", "Анастасия")
    phone = Phone(bot, ADMIN)
    text = "Hi {{ first_name }}! Our spring sale starts today: 20% off shoes, bags and hats."
    await new_sms_chain(phone, text + " Come and see what is new in the shop this week.")
    assert (
        "📏 Up to 121 characters · 2 SMS parts (UCS-2): Анастасия's, the longest of 3"
        " customers checked" in phone.text
    )
    assert (
        "⚠️ The text alone goes as GSM-7 (1 SMS part), but {{ first_name }} of some customers"
        " is not in the GSM-7 alphabet (Cyrillic, for instance), so their SMS goes as UCS-2,"
        " 70 characters a part: up to 2 SMS parts." in phone.text
    )
    await phone.tap("💾 Save")
    # The step says the same.
    assert "SMS, 2 SMS parts:" in phone.text


# --- 6. Discard goes where the manager was going --------------------------------------------


async def test_discard_after_a_command_goes_on_with_it_and_settles_the_old_screen(
    bot: BotUnderTest, db: Database, double: TelegramDouble
) -> None:
    await import_chain(db, THREE_STEPS, actor="test")
    phone = Phone(bot, ADMIN)
    await open_first_step(phone)
    await phone.tap("👥 Who")
    await phone.tap("☐ new-customers")
    assert phone.shown is not None
    block_screen = phone.shown.message_id
    assert "● unsaved" in phone.text
    await phone.send("/stats Welcome")
    assert "unsaved changes in step 1 (Main)" in phone.text
    await phone.tap("🗑 Discard")
    # /stats Welcome answered (its arguments kept), not "send it again".
    assert phone.text.startswith("📊 Welcome series")
    assert "again" not in phone.text
    [old] = [m for m in double.chat_messages(ADMIN) if m["message_id"] == block_screen]
    assert old["text"] == "🗑 Step 1 (Main), 👥 Who: changes discarded."
    assert "● unsaved" not in old["text"]


async def test_discard_on_an_older_screen_says_so_and_leaves_the_live_one_alone(
    bot: BotUnderTest, db: Database, double: TelegramDouble
) -> None:
    phone = Phone(bot, ADMIN)
    await open_first_step(phone)
    await phone.tap("🎯 Goal")
    assert phone.shown is not None
    old = phone.shown.message_id
    assert old is not None
    # The editor closed with /cancel: the block's screen still has its buttons.
    await phone.send("/cancel")
    assert phone.text == "Editor closed. /start shows the menu."
    phone._took(await bot.press(ADMIN, old, "ed"))
    assert phone.answered() == ["These changes were already saved or discarded."]
    [message] = [m for m in double.chat_messages(ADMIN) if m["message_id"] == old]
    assert not message.get("reply_markup", {}).get("inline_keyboard")
    assert "That button is out of date." not in message["text"]


# --- 7. A refused value is asked for again ---------------------------------------------------


async def test_a_refused_name_is_asked_for_again_and_the_next_one_is_taken(
    bot: BotUnderTest, db: Database
) -> None:
    phone = Phone(bot, ADMIN)
    await phone.send("/new")
    await phone.send("x" * 5000)
    assert "That name has 5,000 characters; a name fits in 200." in phone.text
    assert "What is it called?" in phone.text
    await phone.send("Spring sale")
    assert "What is the main step (step 1) called?" in phone.text
    await phone.send("y" * 300)
    assert "That name has 300 characters" in phone.text
    await phone.send("Main")
    assert "Step 1 of 1 · Main" in phone.text
    # Renaming too: the bot keeps listening.
    await phone.tap("✏️ Rename step")
    await phone.send("z" * 201)
    assert "That name has 201 characters" in phone.text
    await phone.send("Welcome")
    assert "Step 1 of 1 · Welcome" in phone.text
    [chain] = await list_chains(db)
    assert chain.name == "Spring sale"


async def test_amounts_are_read_strictly_and_asked_for_again(
    bot: BotUnderTest, db: Database
) -> None:
    phone = Phone(bot, ADMIN)
    await open_first_step(phone)
    await phone.tap("🎯 Goal")
    await phone.tap("✏️ Minimum amount")
    for typed in ("1e9", "inf", "NaN", "-5", "15ОО", "1,500"):
        await phone.send(typed)
        assert f"«{typed}» is not an amount: write it in digits" in phone.text
        assert "✏️ Send the minimum order amount (0 for any)." in phone.text
        assert "Any amount counts" in phone.text
    await phone.send("200 000 000")
    assert "«200 000 000» is more than 100,000,000" in phone.text
    await phone.send("1 500,50")
    assert "Minimum amount: RUB1,500.50" in phone.text  # SHOP_CURRENCY, RUB by default
    await phone.tap("💾 Save")
    [chain] = await list_chains(db)
    conversion = (await get_chain(db, chain.id)).steps[0].conversion
    assert conversion is not None
    assert conversion.to_block()["min_amount"] == 1500.5
