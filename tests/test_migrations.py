"""The migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import text

from models.db import Database
from models.migrate import check, upgrade
from models.stats import attributed_orders


def test_migrations_match_models(db_url: str) -> None:
    with ThreadPoolExecutor(1) as pool:
        pool.submit(check, db_url).result()


async def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'chainmail.db'}")
    async with db.session() as session:
        assert (await session.scalar(text("PRAGMA journal_mode"))) == "wal"
        assert (await session.scalar(text("PRAGMA foreign_keys"))) == 1
    await db.dispose()


async def test_migration_to_the_attributions_table_attributes_the_orders_stored(
    tmp_path: Path,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'chainmail.db'}"
    with ThreadPoolExecutor(1) as pool:
        pool.submit(upgrade, url, "0002").result()
    db = Database(url)
    at = "'2026-03-01 09:00:00.000000'"
    later = "'2026-03-02 09:00:00.000000'"
    async with db.writer() as session:
        for statement in (
            "INSERT INTO customers (id, external_id, timezone, timezone_source, email_status,"
            f" sms_status, attributes, created_at, updated_at) VALUES (1, 'c1', 'Europe/Moscow',"
            f" 'default', 'subscribed', 'subscribed', '{{}}', {at}, {at})",
            "INSERT INTO chains (id, name, status, enrollment, campaign_tag, utm_enabled,"
            f" created_at, updated_at) VALUES (1, 'Sale', 'active', 'once', 'sale', 1, {at}, {at})",
            "INSERT INTO steps (id, chain_id, position, name, action, created_at, updated_at)"
            f""" VALUES (1, 1, 1, 'Sale', '{{"channel": "sms"}}', {at}, {at})""",
            "INSERT INTO deliveries (id, chain_id, step_id, customer_id, channel, status,"
            " eligible_at, due_at, attempts, created_at, sent_at, triggered_at)"
            f" VALUES (7, 1, 1, 1, 'sms', 'sent', {at}, {at}, 1, {at}, {at}, {at})",
            "INSERT INTO orders (id, external_id, customer_id, amount, currency, created_at,"
            f" received_at) VALUES (3, 'o1', 1, 100, 'RUB', {later}, {later})",
        ):
            await session.execute(text(statement))
    await db.dispose()
    with ThreadPoolExecutor(1) as pool:
        pool.submit(upgrade, url).result()
    db = Database(url)
    assert await attributed_orders(db) == {3: 7}
    await db.dispose()
