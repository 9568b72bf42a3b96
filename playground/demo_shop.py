"""The demo customers and their shop: opens, clicks, unsubscribes and orders, over time.

Everything goes through the doors a real customer and a real shop use: the
customers' "mail clients" read the outbox and fetch the open pixel, follow a
tracking link or press one-click unsubscribe; the shop posts orders to
`/api/v1/orders`. Nothing is written into the tables directly, so the stats and
summaries show exactly what the product made of it. The shop's page (`/shop/…`,
where the demo email's link leads) lets a person place an order the same way.

What each customer does with an email is decided by its Message-ID, so a restart
does not make anyone change their mind; what was done is kept in a small file.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import html
import json
import logging
import random
import secrets
import time
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path

import httpx
from sqlalchemy import func, select

from models.db import Database
from models.tables import Customer
from playground import texts
from playground.outbox import Outbox, OutboxEmail

log = logging.getLogger(__name__)

TICK_SECONDS = 2.0
# An email is "read" this many seconds after it arrived, at the earliest and latest.
READ_DELAY = (3.0, 40.0)
OPEN_SHARE = 0.55
CLICK_SHARE_OF_OPENERS = 0.35
UNSUBSCRIBE_SHARE = 0.05
ORDER_SHARE_OF_CLICKERS = 0.4
ORDER_SHARE_OF_OPENERS = 0.05
# Orders that come from no email at all, now and then.
WALK_IN_ORDER_SECONDS = 45.0
# The customers the shop page suggests; any other id may be typed.
SUGGESTED_CUSTOMERS = 1000


@dataclass(frozen=True)
class Reaction:
    delay: float
    opens: bool
    clicks: bool
    unsubscribes: bool
    orders: bool
    amount: int


def reaction_to(message_name: str) -> Reaction:
    """What the recipient of this email does with it: the same on every run."""
    rng = random.Random(hashlib.sha256(message_name.encode()).digest())
    opens = rng.random() < OPEN_SHARE
    clicks = opens and rng.random() < CLICK_SHARE_OF_OPENERS
    order_share = ORDER_SHARE_OF_CLICKERS if clicks else ORDER_SHARE_OF_OPENERS
    return Reaction(
        delay=rng.uniform(*READ_DELAY),
        opens=opens,
        clicks=clicks,
        unsubscribes=rng.random() < UNSUBSCRIBE_SHARE,
        orders=opens and rng.random() < order_share,
        amount=rng.randrange(150, 1200) * 10,
    )


class DemoShop:
    def __init__(
        self, db: Database, outbox: Outbox, *, base_url: str, api_token: str, state_path: Path
    ) -> None:
        self._db = db
        self._outbox = outbox
        self._base_url = base_url
        self._api_token = api_token
        self._state_path = state_path
        self._handled: set[str] = set()
        if state_path.exists():
            self._handled = set(json.loads(state_path.read_text())["handled"])
        self._next_walk_in = time.time() + WALK_IN_ORDER_SECONDS

    async def run(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(base_url=self._base_url, timeout=10) as client:
            while not stop.is_set():
                try:
                    await self.tick(client, time.time())
                except (httpx.HTTPError, OSError) as exc:
                    log.warning("demo shop: %s; trying again", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), TICK_SECONDS)

    async def tick(self, client: httpx.AsyncClient, now: float) -> None:
        due = [
            email
            for email in await asyncio.to_thread(self._outbox.emails)
            if email.name not in self._handled
            and email.sent_at + reaction_to(email.name).delay <= now
        ]
        if due:
            customers = await self._customers([email.recipient for email in due])
            for email in due:
                await self._react(client, email, customers)
                self._handled.add(email.name)
            self._save()
        if now >= self._next_walk_in:
            self._next_walk_in = now + WALK_IN_ORDER_SECONDS
            await self._walk_in_order(client)

    async def _react(
        self, client: httpx.AsyncClient, email: OutboxEmail, customers: dict[str, str]
    ) -> None:
        reaction = reaction_to(email.name)
        if reaction.opens:
            for url in email.open_urls:
                await client.get(url)
        if reaction.clicks:
            for url in email.click_urls[:1]:
                await client.get(url)
        if reaction.unsubscribes and email.unsubscribe_url:
            await client.post(email.unsubscribe_url, data={"List-Unsubscribe": "One-Click"})
        customer = customers.get(parseaddr(email.recipient)[1])
        if reaction.orders and customer is not None:
            await self._order(client, customer, reaction.amount)

    async def _walk_in_order(self, client: httpx.AsyncClient) -> None:
        async with self._db.session() as session:
            customer = await session.scalar(
                select(Customer.external_id).order_by(func.random()).limit(1)
            )
        if customer is not None:
            await self._order(client, customer, random.randrange(150, 1200) * 10)

    async def _order(self, client: httpx.AsyncClient, customer: str, amount: int) -> None:
        order = {
            "external_id": f"demo-order-{secrets.token_hex(6)}",
            "customer_external_id": customer,
            "amount": amount,
            "currency": "RUB",
        }
        response = await client.post(
            "/api/v1/orders", json=[order], headers={"Authorization": f"Bearer {self._api_token}"}
        )
        response.raise_for_status()

    async def _customers(self, recipients: list[str]) -> dict[str, str]:
        """external_id by email address (the shop knows its own customers)."""
        addresses = [parseaddr(recipient)[1] for recipient in recipients]
        async with self._db.session() as session:
            rows = await session.execute(
                select(Customer.email, Customer.external_id).where(Customer.email.in_(addresses))
            )
            return {str(email): external_id for email, external_id in rows.all()}

    def _save(self) -> None:
        temporary = self._state_path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"handled": sorted(self._handled)}))
        temporary.replace(self._state_path)


async def shop_page(db: Database, path: str, *, api_token: str) -> str:
    """The shop's page at `path`, with a form whose script (static/shop.js) places an
    order through `POST /api/v1/orders` with the shop's API token, as the shop's own
    systems would: the token is the playground's, on loopback only."""
    async with db.session() as session:
        rows = await session.execute(
            select(Customer.external_id, Customer.first_name, Customer.last_name, Customer.email)
            .order_by(Customer.external_id)
            .limit(SUGGESTED_CUSTOMERS)
        )
        customers = rows.all()
    options = "".join(
        f'<option value="{html.escape(external_id)}">'
        f"{html.escape(_customer_label(first_name, last_name, email))}</option>"
        for external_id, first_name, last_name, email in customers
    )
    followed = "" if path == "/shop/" else texts.SHOP_FOLLOWED.format(path=html.escape(path))
    return texts.SHOP_PAGE.format(
        api_token=html.escape(api_token), followed=followed, customers=options
    )


def _customer_label(first_name: str | None, last_name: str | None, email: str | None) -> str:
    name = " ".join(part for part in (first_name, last_name) if part)
    return " · ".join(part for part in (name, email) if part)
