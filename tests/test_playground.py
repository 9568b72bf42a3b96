"""`chainmail playground` without a browser: demo data, the chat history kept across a
restart, the demo shop acting through the real doors. How fast it starts is
bench/playground_start.py's to say, not a test's."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

import httpx
from sqlalchemy import func, select

from models.chains import list_chains
from models.customers import save_customers
from models.db import Database
from models.segments import list_segments
from models.tables import ChainStatus, Customer
from playground.demo_data import CUSTOMER_COUNT, demo_customers, seed_demo_data
from playground.demo_shop import reaction_to, shop_page
from telegram_double import TelegramDouble, Upload
from tests.cli import chainmail
from tests.playground import Playground

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


def _messages(api: httpx.Client, chat_id: int, count: int) -> list[dict[str, Any]]:
    """The chat once it holds at least `count` messages."""
    deadline = time.monotonic() + 10
    while True:
        messages = api.get(f"/api/chat/{chat_id}", params={"wait": 0}).json()["messages"]
        if len(messages) >= count:
            return messages
        assert time.monotonic() < deadline, messages
        time.sleep(0.05)


def _count(playground: Playground, query: str) -> int:
    with sqlite3.connect(playground.data_dir / "chainmail.db") as connection:
        [(count,)] = connection.execute(query)
    return int(count)


async def test_demo_data_is_stored_once_across_zones(db: Database) -> None:
    options = {
        "public_base_url": "http://127.0.0.1:8080",
        "default_timezone": "Europe/Moscow",
        "default_phone_region": "RU",
    }
    assert await seed_demo_data(db, **options)
    assert not await seed_demo_data(db, **options)

    [chain] = await list_chains(db)
    assert (chain.name, chain.status, chain.steps) == ("Spring sale", ChainStatus.DRAFT, 2)
    assert {segment.name for segment in await list_segments(db)} == {"newsletter", "vip"}
    async with db.session() as session:
        count = await session.scalar(select(func.count()).select_from(Customer))
        zones = set(await session.scalars(select(Customer.timezone).distinct()))
    assert count == CUSTOMER_COUNT
    assert {"Europe/Kaliningrad", "Europe/Moscow", "Asia/Novosibirsk", "Asia/Kamchatka"} <= zones


def test_demo_customers_are_the_same_everywhere_and_subscribers_have_both_contacts() -> None:
    customers = demo_customers()
    assert customers == demo_customers()
    subscribers = [c for c in customers if "newsletter" in c["tags"]]
    assert subscribers
    assert all("email" in c and "phone" in c for c in subscribers)


async def test_the_shop_page_suggests_the_customers_as_text_and_knows_the_link_followed(
    db: Database,
) -> None:
    customer = {"external_id": "c-1", "first_name": "<b>Ann</b>", "email": "ann@example.com"}
    report = await save_customers(
        db, [customer], default_timezone="Europe/Moscow", default_phone_region="RU", actor="t"
    )
    assert report.errors == []
    front = await shop_page(db, "/shop/", api_token="to&ken")
    assert '<option value="c-1">&lt;b&gt;Ann&lt;/b&gt; · ann@example.com</option>' in front
    assert 'data-api-token="to&amp;ken"' in front
    assert "followed a link" not in front
    sale = await shop_page(db, "/shop/<sale>", api_token="token")
    assert "followed a link from a demo email: <code>/shop/&lt;sale&gt;</code>" in sale


def test_a_customer_does_the_same_with_an_email_every_time() -> None:
    reactions = [reaction_to(f"cm.1.{n}@localhost") for n in range(400)]
    assert reactions == [reaction_to(f"cm.1.{n}@localhost") for n in range(400)]
    assert 0.4 < sum(r.opens for r in reactions) / 400 < 0.7
    assert all(r.opens for r in reactions if r.clicks or r.orders)


async def test_a_restored_double_shows_the_same_chats_and_their_buttons_still_work() -> None:
    before = TelegramDouble("1:A")
    before.user(7, "Ann")
    before.send_text(7, "hi")
    keyboard = {"inline_keyboard": [[{"text": "Go", "callback_data": "go"}]]}
    _, sent = await before.call(
        "sendMessage", {"chat_id": 7, "text": "menu", "reply_markup": keyboard}
    )
    _, photo = await before.call(
        "sendPhoto", {"chat_id": 7}, {"photo": Upload("chart.png", "image/png", PNG)}
    )
    photo_id = photo["result"]["photo"][0]["file_id"]

    after = TelegramDouble("1:A")
    after.restore(json.loads(json.dumps(before.snapshot())))
    assert after.chat_messages(7) == before.chat_messages(7)
    assert after.file_content(photo_id) == PNG
    assert after.press(7, sent["result"]["message_id"], "go")["data"] == "go"
    assert after.send_text(7, "again")["message_id"] == 4
    _, another = await after.call(
        "sendPhoto", {"chat_id": 7}, {"photo": Upload("next.png", "image/png", PNG)}
    )
    _, files = await after.call("getFile", {"file_id": another["result"]["photo"][0]["file_id"]})
    _, old_file = await after.call("getFile", {"file_id": photo_id})
    assert files["result"]["file_path"] != old_file["result"]["file_path"]


def test_a_restart_keeps_chats_data_and_what_the_demo_shop_did(tmp_path: Any) -> None:
    with Playground(tmp_path / "data", demo_shop=True) as playground:
        playground.start()
        with playground.api() as api:
            api.post("/api/chat/1002/messages", json={"user_id": 1002, "text": "/start"})
            menu = _messages(api, 1002, 2)[-1]
            assert menu["reply_markup"]["inline_keyboard"]
        activated = chainmail(playground.database_url, "chains", "activate", "1", cwd=tmp_path)
        assert activated.returncode == 0, activated.stderr
        deadline = time.monotonic() + 20
        while _count(playground, "SELECT count(*) FROM events WHERE type = 'opened'") == 0:
            assert time.monotonic() < deadline, "no demo customer opened an email"
            time.sleep(0.5)
        playground.stop()

        playground.start()
        with playground.api() as api:
            restored = _messages(api, 1002, 2)
            assert restored[-1] == menu
            # The restored menu's buttons reach the bot as before.
            api.post(
                "/api/chat/1002/press",
                json={
                    "user_id": 1002,
                    "message_id": menu["message_id"],
                    "callback_data": "chains:0",
                },
            ).raise_for_status()
            deadline = time.monotonic() + 10
            while "Spring sale" not in _messages(api, 1002, 2)[-1]["text"]:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        playground.stop()

        with sqlite3.connect(playground.data_dir / "chainmail.db") as connection:
            chains = connection.execute("SELECT name, status FROM chains").fetchall()
        customers = _count(playground, "SELECT count(*) FROM customers")
        assert customers == CUSTOMER_COUNT
        assert chains == [("Spring sale", "active")]
