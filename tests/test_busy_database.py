"""A database locked by someone else: writes wait a bounded time, then answer 503 with
Retry-After; the health says so; unsubscribes, opens and clicks are kept on disk and
stored once it answers (issue 11, item 7). On SQLite another connection holds the
write lock, as another process would; on PostgreSQL another connection holds a
lock on the deliveries table that every tracking write needs."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy import make_url, select

from models.db import Database, bounded_writes
from models.errors import DatabaseBusy
from models.tables import AppState, Customer, Delivery, Event, Order
from models.tokens import TokenKind, make_token
from tests.test_tracking import LINKS, SECRET, seed_delivery
from web.app import RETRY_AFTER_SECONDS, WebConfig, create_app
from web.spool import Fact, Spool

WAIT = 0.3
API_TOKEN = "busy-test-token"


@asynccontextmanager
async def locked(db: Database) -> AsyncIterator[None]:
    """The database's writes blocked by a connection outside the Database object."""
    url = make_url(db.url)
    if db.is_sqlite:
        other = sqlite3.connect(url.database, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            other.execute("ROLLBACK")
            other.close()
        return
    other = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(False))
    transaction = other.transaction()
    await transaction.start()
    # EXCLUSIVE lets plain reads through and blocks every row lock and write.
    await other.execute("LOCK TABLE deliveries IN EXCLUSIVE MODE")
    try:
        yield
    finally:
        await transaction.rollback()
        await other.close()


def config(spool_dir: Path) -> WebConfig:
    return WebConfig(
        api_token=API_TOKEN,
        secret_key=SECRET,
        public_base_url="http://test",
        default_timezone="Europe/Moscow",
        default_phone_region="RU",
        spool_dir=spool_dir,
        write_wait_seconds=WAIT,
    )


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
async def client(db: Database, spool_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(db, config(spool_dir)))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def email_status(db: Database) -> str:
    async with db.session() as session:
        return (await session.scalars(select(Customer.email_status))).one()


async def event_types(db: Database) -> list[str]:
    async with db.session() as session:
        return list(await session.scalars(select(Event.type).order_by(Event.id)))


def token(kind: TokenKind, delivery_id: int, link: int = 0) -> str:
    return make_token(SECRET, kind, delivery_id, link)


async def test_a_one_click_unsubscribe_meeting_a_lock_is_kept_and_stored_when_it_goes(
    db: Database, client: httpx.AsyncClient, spool_dir: Path
) -> None:
    delivery = await seed_delivery(db)
    url = f"/u/{token(TokenKind.UNSUBSCRIBE, delivery.id)}"

    async with locked(db):
        started = time.monotonic()
        response = await client.post(url, data={"List-Unsubscribe": "One-Click"})
        waited = time.monotonic() - started

        assert response.status_code == 200
        assert "You are unsubscribed" in response.text
        assert "by email" in response.text
        assert waited < WAIT + 2
        assert len(Spool(spool_dir).pending()) == 1
        assert await email_status(db) == "subscribed"

        health = await client.get("/healthz")
        assert health.status_code == 503
        assert health.json() == {
            "status": "database busy: writes are waiting for a lock",
            "kept_tracking_facts": 1,
        }

    assert await Spool(spool_dir).replay(db) == 1
    assert await email_status(db) == "unsubscribed"
    assert await event_types(db) == ["unsubscribed"]
    assert Spool(spool_dir).pending() == []
    assert (await client.get("/healthz")).json() == {"status": "ok"}


async def test_opens_and_clicks_meeting_a_lock_still_answer_and_are_stored_later(
    db: Database, client: httpx.AsyncClient, spool_dir: Path
) -> None:
    delivery = await seed_delivery(db)

    async with locked(db):
        pixel = await client.get(f"/t/o/{token(TokenKind.OPEN, delivery.id)}")
        click = await client.get(f"/t/c/{token(TokenKind.CLICK, delivery.id, 1)}")
        unknown_link = await client.get(f"/t/c/{token(TokenKind.CLICK, delivery.id, 9)}")

    assert pixel.status_code == 200
    assert pixel.headers["content-type"] == "image/gif"
    assert click.status_code == 302
    assert click.headers["location"] == LINKS[1]
    assert unknown_link.status_code == 404
    assert len(Spool(spool_dir).pending()) == 2

    assert await Spool(spool_dir).replay(db) == 2
    assert sorted(await event_types(db)) == ["clicked", "opened"]


async def test_api_writes_meeting_a_lock_answer_503_with_retry_after_and_store_nothing(
    db: Database, client: httpx.AsyncClient
) -> None:
    await seed_delivery(db)
    order = {"external_id": "o-1", "customer_external_id": "c1", "amount": "10.00"}
    headers = {"Authorization": f"Bearer {API_TOKEN}"}

    # Orders lock the customer's deliveries (attribution) on PostgreSQL and take the
    # write lock on SQLite: both wait for the lock held outside.
    async with locked(db):
        started = time.monotonic()
        response = await client.post("/api/v1/orders", json=[order], headers=headers)
        waited = time.monotonic() - started

    assert response.status_code == 503
    assert response.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
    assert "busy" in response.json()["detail"]
    assert waited < WAIT + 2
    async with db.session() as session:
        assert (await session.scalars(select(Order))).all() == []

    again = await client.post("/api/v1/orders", json=[order], headers=headers)
    assert again.status_code == 200
    assert again.json()["created"] == 1


async def test_the_web_app_replays_kept_facts_by_itself_once_the_database_answers(
    db: Database, spool_dir: Path
) -> None:
    delivery = await seed_delivery(db)
    app = create_app(db, config(spool_dir))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as http,
    ):
        async with locked(db):
            await http.post(f"/u/{token(TokenKind.UNSUBSCRIBE, delivery.id)}")
            await asyncio.sleep(1.5)  # replays meanwhile meet the lock and keep the fact
            assert await email_status(db) == "subscribed"
            assert len(Spool(spool_dir).pending()) == 1
        for _ in range(50):
            if await email_status(db) == "unsubscribed":
                break
            await asyncio.sleep(0.1)
    assert await email_status(db) == "unsubscribed"
    assert Spool(spool_dir).pending() == []


async def test_a_kept_fact_survives_a_restart_and_is_stored_by_the_next_process(
    db: Database, spool_dir: Path
) -> None:
    delivery = await seed_delivery(db)
    at = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    await Spool(spool_dir).keep(Fact("unsubscribe", delivery.id, at))
    # A fact of a delivery since deleted is dropped, not retried for ever.
    await Spool(spool_dir).keep(Fact("open", 999_999, at))
    (spool_dir / "00000000000000000000-junk.json").write_text("{not json")

    assert await Spool(spool_dir).replay(db) == 2
    assert await email_status(db) == "unsubscribed"
    assert Spool(spool_dir).pending() == []
    assert _suffixes_and_mode(spool_dir) == ([".unreadable"], 0o700)


def _suffixes_and_mode(directory: Path) -> tuple[list[str], int]:
    return [p.suffix for p in directory.iterdir()], directory.stat().st_mode & 0o777


async def test_a_bounded_writer_gives_up_in_time_an_unbounded_one_waits(db: Database) -> None:
    async def write() -> None:
        async with db.writer() as session:
            # A row lock on deliveries: what the lock held outside blocks on both.
            await session.execute(select(Delivery.id).with_for_update())
            session.add(AppState(key=f"w-{time.monotonic_ns()}", value="x"))

    async with locked(db):
        started = time.monotonic()
        with bounded_writes(0.2), pytest.raises(DatabaseBusy):
            await write()
        assert time.monotonic() - started < 2
        assert db.writes_waiting

        unbounded = asyncio.ensure_future(write())
        await asyncio.sleep(0.5)
        assert not unbounded.done()
    await asyncio.wait_for(unbounded, 10)
    assert not db.writes_waiting


async def test_a_bounded_writer_waits_behind_this_processes_writers_only_within_its_bound(
    sqlite_template: Path, tmp_path: Path
) -> None:
    # SQLite only: there the writers of one process queue for the one write lock.
    path = tmp_path / "queue.db"
    shutil.copy(sqlite_template, path)
    db = Database(f"sqlite+aiosqlite:///{path}")

    async def hold() -> None:
        async with db.writer():
            await asyncio.sleep(1.0)

    try:
        holder = asyncio.ensure_future(hold())
        await asyncio.sleep(0.05)
        started = time.monotonic()
        with bounded_writes(0.2), pytest.raises(DatabaseBusy):
            async with db.writer() as session:
                session.add(AppState(key="never", value="written"))
        assert time.monotonic() - started < 0.8
        await holder
    finally:
        await db.dispose()
