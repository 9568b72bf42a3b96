"""The playground in headless Chromium: the chat page as a manager uses it, the outbox.

One playground process and one browser page for the module; the tests run in
order and build on each other, as a person trying the playground would: first at
a desktop's 1200 × 800, then on a phone's 390 × 844 (the outbox holding the emails
sent before). `CHAINMAIL_SCREENSHOTS=docs` also saves the screenshots of README and
docs/playground.md.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from handlers import texts as bot_texts
from tests.playground import (  # noqa: F401
    PHONE,
    WAIT_MS,
    ChatPage,
    OutboxPage,
    Playground,
    ShopPage,
    browser,
    on_screen,
    scrolls_sideways,
)

SPRING_SALE = "the spring sale starts today"
THANKS_HTML = b"""<h2>A gift for you</h2>
<p>Thank you for reading our news: <a href="http://127.0.0.1/shop/gift">take your gift</a>.</p>
"""


@pytest.fixture(scope="module")
def playground(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Playground]:
    with Playground(tmp_path_factory.mktemp("playground") / "data") as running:
        running.start()
        yield running
        running.stop()


@pytest.fixture(scope="module")
def chat(browser: Any, playground: Playground) -> Iterator[ChatPage]:  # noqa: F811
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    yield ChatPage(context.new_page(), playground.url)
    context.close()


@pytest.fixture(scope="module")
def phone(browser: Any, playground: Playground) -> Iterator[Any]:  # noqa: F811
    context = browser.new_context(**PHONE)
    yield context
    context.close()


def test_start_shows_the_menu_and_a_tap_edits_it_in_place(chat: ChatPage) -> None:
    chat.switch_user("Olga")
    assert "What would you like" in chat.send("/start")
    assert "Chains" in " ".join(chat.buttons())
    shown = chat.message_count()
    assert "Spring sale" in chat.press("Chains")
    assert chat.message_count() == shown
    assert "edited" in chat.last_message()


def test_a_stranger_is_refused(chat: ChatPage) -> None:
    chat.switch_user("Stas")
    assert bot_texts.NOT_AUTHORISED in chat.send("/start")
    assert chat.buttons() == []


def test_a_customer_csv_is_imported_through_the_page(chat: ChatPage, tmp_path: Path) -> None:
    chat.switch_user("Anton")
    chat.send("/import")
    csv = tmp_path / "new-customers.csv"
    csv.write_text(
        "external_id,email,phone,first_name,tags\n"
        "web-1,lena@example.com,+79161234567,Лена,newsletter\n"
        "web-2,not-an-address,,Олег,\n",
        encoding="utf-8",
    )
    chat.send_file(csv)
    report = chat.wait_for_text("imported 1 customer")
    assert "1 line refused" in report


def test_the_demo_chain_activated_from_its_card_emails_then_texts_who_unsubscribes(
    chat: ChatPage,
) -> None:
    chat.switch_user("Olga")
    chat.send("/chains")
    chat.press("Spring sale")
    chat.press("Edit")
    assert "customers" in chat.press("Activate")
    # "Spring sale is active", edited into the sending wave's progress.
    assert "Spring sale" in chat.press("Activate now")

    outbox = chat.open_outbox()
    emails = outbox.emails(count=200)
    assert "the spring sale starts today" in emails[0]
    headers = outbox.open_item(0)
    recipient = headers.split("To: ")[1].splitlines()[0]
    body = outbox.email_body()
    body.get_by_role("link", name="Open the sale").wait_for(timeout=WAIT_MS)
    outbox.screenshot("playground-outbox.png")

    unsubscribe = outbox.follow_unsubscribe_link()
    # In the customer's language, as the footer was (a Russian phone).
    unsubscribe.get_by_role("button", name="Отписаться").click()
    unsubscribe.get_by_text("Вы отписались").wait_for(timeout=WAIT_MS)

    # The chain's second step: an SMS to whoever unsubscribed from its email.
    [sms] = outbox.sms(count=1)
    first_name = recipient.split()[0]
    assert f"{first_name}, no more emails from us" in sms

    chat.page.bring_to_front()
    chat.send("/stats Spring sale")
    assert "Sale announcement" in chat.wait_for_text("unsub 1")
    # The chain's chart comes as a photo.
    chat.wait_for_photo()
    chat.screenshot("playground-chat.png")


def test_a_two_step_chain_built_by_taps_sends_its_email(chat: ChatPage, tmp_path: Path) -> None:
    chat.switch_user("Anton")
    chat.send("/start")
    assert "What is it called?" in chat.press("New chain")
    chat.send("Thank you")
    assert "Step 1 of 1" in chat.send("Thanks")

    chat.press("Who")
    chat.press("newsletter")
    chat.press("Save")
    chat.press("Message")
    chat.press("Subject")
    chat.send("A gift for you, {{ first_name }}")
    chat.press("Text")
    chat.send("Thank you for reading our news.")
    chat.press("HTML")
    html = tmp_path / "thanks.html"
    html.write_bytes(THANKS_HTML)
    chat.send_file(html)
    chat.press("Save")
    chat.press("When")
    chat.press("Save")

    chat.press("Add step")
    assert "Step 2 of 2" in chat.send("Sorry")
    chat.press("Who")
    chat.press("Only if…")
    chat.press("unsubscribed email")
    chat.press("Save")
    chat.press("Message")
    chat.press("SMS")
    chat.press("Text")
    chat.send("Sorry to see you go, {{ first_name }}.")
    chat.press("Save")
    chat.press("When")
    chat.press("Save")

    chat.press("Map")
    assert "2 · Sorry" in " ".join(chat.buttons())
    chat.press("Activate")
    assert "Thank you" in chat.press("Activate now")

    outbox = chat.open_outbox()
    outbox.page.wait_for_function(
        "() => [...document.querySelectorAll('#items .subject')]"
        ".some((s) => s.textContent.startsWith('A gift for you'))",
        timeout=WAIT_MS,
    )


def _opened(database: Path, customer: str) -> bool:
    with sqlite3.connect(database) as connection:
        [(count,)] = connection.execute(
            "SELECT count(*) FROM events e JOIN customers c ON c.id = e.customer_id"
            " WHERE c.external_id = ? AND e.type = 'opened'",
            (customer,),
        )
    return bool(count)


def test_on_a_phone_the_chat_fills_the_screen_and_the_chats_are_in_the_menu(
    phone: Any, playground: Playground
) -> None:
    chat = ChatPage(phone.new_page(), playground.url)
    page = chat.page
    assert not page.locator("#chats").is_visible()
    assert on_screen(page.locator("#text"))
    assert on_screen(page.locator("#send"))
    assert not scrolls_sideways(page)

    chat.switch_user("Anton")
    assert not page.locator("#chats").is_visible()
    for command in ("/help", "/stats"):
        chat.send(command)
    assert "What would you like" in chat.send("/start")
    assert "Spring sale" in chat.press("Chains")
    assert "Spring sale" in chat.press("Spring sale")
    # The history scrolls, under a message box that stays where it is.
    assert page.evaluate("document.documentElement.scrollHeight <= window.innerHeight")
    messages = page.locator("#messages")
    assert messages.evaluate("(list) => list.scrollHeight > list.clientHeight")
    assert on_screen(page.locator("#text"))
    assert on_screen(page.locator("#send"))
    assert on_screen(page.locator("#messages .from-bot").last)
    card_buttons = page.locator("#messages .keyboard button").all()[-6:]
    assert all(on_screen(button) for button in card_buttons)
    assert not scrolls_sideways(page)
    page.locator("#toast").wait_for(state="hidden", timeout=WAIT_MS)
    chat.screenshot("playground-phone-chat.png")

    chat.switch_user("Marketing team")
    assert on_screen(page.locator("#speaker"))
    assert not scrolls_sideways(page)


def test_on_a_phone_an_email_opens_full_screen_and_back_returns_to_the_list(
    phone: Any, playground: Playground
) -> None:
    outbox = OutboxPage(phone.new_page(), f"{playground.url}/outbox")
    page = outbox.page
    assert any(SPRING_SALE in email for email in outbox.emails())
    assert not scrolls_sideways(page)

    headers = outbox.open_item(1, has_text=SPRING_SALE)
    first_name = headers.split("To: ")[1].split()[0]
    assert f"Subject: {first_name}, {SPRING_SALE}" in headers
    # Over the list (kept where it was scrolled to), the whole screen.
    assert page.evaluate("document.elementFromPoint(195, 600).closest('#preview') !== null")
    preview = page.locator("#preview").bounding_box()
    assert preview is not None
    assert (preview["width"], preview["height"]) == (390, 844)
    assert on_screen(page.locator("#back"))
    outbox.email_body().get_by_text(f"Hello, {first_name}!").wait_for(timeout=WAIT_MS)
    assert not scrolls_sideways(page)
    outbox.screenshot("playground-phone-outbox.png")

    outbox.back()
    assert not page.locator("#preview").is_visible()
    assert page.evaluate("location.hash") == ""
    # The browser's own Back closes an email too (another one: its frame is new, and
    # Back does not merely show the one before in it).
    outbox.open_item(2, has_text=SPRING_SALE)
    page.go_back()
    page.locator("#preview").wait_for(state="hidden", timeout=WAIT_MS)
    assert page.evaluate("location.hash") == ""


def test_on_a_phone_an_order_placed_in_the_shop_counts_for_the_email_read_before(
    phone: Any, playground: Playground
) -> None:
    outbox = OutboxPage(phone.new_page(), f"{playground.url}/outbox")
    outbox.emails()
    # Showing the email loads its open pixel: the customer opened it.
    address = re.search(r"<(.+)>", outbox.open_item(3, has_text=SPRING_SALE).split("To: ")[1])
    assert address is not None
    outbox.email_body().get_by_role("link", name="Open the sale").wait_for(timeout=WAIT_MS)
    database = playground.data_dir / "chainmail.db"
    with sqlite3.connect(database) as connection:
        [(customer,)] = connection.execute(
            "SELECT external_id FROM customers WHERE email = ?", (address[1],)
        )
    deadline = time.monotonic() + WAIT_MS / 1000
    while not _opened(database, customer):
        assert time.monotonic() < deadline, "the open pixel was not fetched"
        time.sleep(0.1)

    shop = ShopPage(phone.new_page(), f"{playground.url}/shop/sale")
    assert not scrolls_sideways(shop.page)
    answer = shop.place_order(customer, "4321")
    placed = re.fullmatch(rf"Order (\S+) placed: 4321 RUB from {customer}\.", answer)
    assert placed is not None, answer
    assert not scrolls_sideways(shop.page)
    shop.screenshot("playground-phone-shop.png")
    assert "unknown customer 'nobody'" in shop.place_order("nobody", "100")

    # Stored by the shop's API, as any order: and it counts for the email.
    with sqlite3.connect(database) as connection:
        [(amount, owner)] = connection.execute(
            "SELECT o.amount, c.external_id FROM orders o JOIN customers c"
            " ON c.id = o.customer_id WHERE o.external_id = ?",
            (placed[1],),
        )
    assert (float(amount), owner) == (4321, customer)
    chat = ChatPage(phone.new_page(), playground.url)
    chat.switch_user("Olga")
    chat.send("/stats Spring sale")
    # In the shop's currency (SHOP_CURRENCY, RUB by default), as an English user reads it.
    assert "Sale announcement" in chat.wait_for_text("🛒 1 order · RUB4,321.00")


def test_at_360_pixels_wide_no_page_scrolls_sideways(phone: Any, playground: Playground) -> None:
    page = phone.new_page()
    page.set_viewport_size({"width": 360, "height": 640})
    chat = ChatPage(page, playground.url)
    # The group's header is the widest: "Writing as" and its menu.
    chat.switch_user("Marketing team")
    assert "What would you like" in chat.send("/start@chainmail_playground_bot")
    assert not scrolls_sideways(page)
    assert on_screen(page.locator("#text"))
    assert on_screen(page.locator("#send"))
    outbox = OutboxPage(page, f"{playground.url}/outbox")
    outbox.emails()
    assert not scrolls_sideways(page)
    outbox.open_item(0)
    assert not scrolls_sideways(page)
    ShopPage(page, f"{playground.url}/shop/sale?utm_source=chainmail&utm_medium=email")
    assert not scrolls_sideways(page)
