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


AT = "'2026-03-01 09:00:00.000000'"
LATER = "'2026-03-02 09:00:00.000000'"


def customers_and_a_chain(count: int) -> list[str]:
    """Customers c1…c`count` (ids 1…) and chain 1, as any revision has them."""
    customers = ", ".join(
        f"({n}, 'c{n}', 'Europe/Moscow', 'default', 'subscribed', 'subscribed', '{{}}', {AT}, {AT})"
        for n in range(1, count + 1)
    )
    return [
        "INSERT INTO customers (id, external_id, timezone, timezone_source, email_status,"
        f" sms_status, attributes, created_at, updated_at) VALUES {customers}",
        "INSERT INTO chains (id, name, status, enrollment, campaign_tag, utm_enabled,"
        f" created_at, updated_at) VALUES (1, 'Sale', 'active', 'once', 'sale', 1, {AT}, {AT})",
    ]


async def upgraded_with(tmp_path: Path, revision: str, statements: list[str]) -> Database:
    """A SQLite database at `revision` with the rows of `statements`, then upgraded to
    the head."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'chainmail.db'}"
    with ThreadPoolExecutor(1) as pool:
        pool.submit(upgrade, url, revision).result()
    db = Database(url)
    async with db.writer() as session:
        for statement in statements:
            await session.execute(text(statement))
    await db.dispose()
    with ThreadPoolExecutor(1) as pool:
        pool.submit(upgrade, url).result()
    return Database(url)


async def test_migration_to_the_attributions_table_attributes_the_orders_stored(
    tmp_path: Path,
) -> None:
    rows = [
        *customers_and_a_chain(1),
        "INSERT INTO steps (id, chain_id, position, name, action, created_at, updated_at)"
        f""" VALUES (1, 1, 1, 'Sale', '{{"channel": "sms"}}', {AT}, {AT})""",
        "INSERT INTO deliveries (id, chain_id, step_id, customer_id, channel, status,"
        " eligible_at, due_at, attempts, created_at, sent_at, triggered_at)"
        f" VALUES (7, 1, 1, 1, 'sms', 'sent', {AT}, {AT}, 1, {AT}, {AT}, {AT})",
        "INSERT INTO orders (id, external_id, customer_id, amount, currency, created_at,"
        f" received_at) VALUES (3, 'o1', 1, 100, 'RUB', {LATER}, {LATER})",
    ]
    db = await upgraded_with(tmp_path, "0002", rows)
    assert await attributed_orders(db) == {3: 7}
    await db.dispose()


async def test_migration_to_stats_per_version_gives_attributed_orders_their_messages_version(
    tmp_path: Path,
) -> None:
    rows = [
        *customers_and_a_chain(2),
        "INSERT INTO steps (id, chain_id, position, name, action, version, created_at,"
        f""" updated_at) VALUES (1, 1, 1, 'Sale', '{{"channel": "sms"}}', 2, {AT}, {AT})""",
        "INSERT INTO deliveries (id, chain_id, step_id, customer_id, channel, status,"
        " eligible_at, due_at, attempts, created_at, sent_at, triggered_at, version) VALUES"
        f" (7, 1, 1, 1, 'sms', 'sent', {AT}, {AT}, 1, {AT}, {AT}, {AT}, 1),"
        f" (8, 1, 1, 2, 'sms', 'sent', {AT}, {AT}, 1, {AT}, {AT}, {AT}, 2)",
        "INSERT INTO orders (id, external_id, customer_id, amount, currency, created_at,"
        f" received_at) VALUES (3, 'o1', 1, 100, 'RUB', {LATER}, {LATER}),"
        f" (4, 'o2', 2, 50, 'RUB', {LATER}, {LATER})",
        "INSERT INTO attributions (order_id, customer_id, delivery_id, chain_id, step_id,"
        f" amount, ordered_at) VALUES (3, 1, 7, 1, 1, 100, {LATER}), (4, 2, 8, 1, 1, 50, {LATER})",
    ]
    db = await upgraded_with(tmp_path, "0006", rows)
    async with db.session() as session:
        stored = await session.execute(text("SELECT order_id, version FROM attributions"))
        assert sorted(stored) == [(3, 1), (4, 2)]
    await db.dispose()


async def test_migration_to_order_updates_gives_each_order_its_placement_as_history(
    tmp_path: Path,
) -> None:
    rows = [
        *customers_and_a_chain(1),
        "INSERT INTO steps (id, chain_id, position, name, action, created_at, updated_at)"
        f""" VALUES (1, 1, 1, 'Sale', '{{"channel": "sms"}}', {AT}, {AT})""",
        "INSERT INTO deliveries (id, chain_id, step_id, customer_id, channel, status,"
        " eligible_at, due_at, attempts, created_at, sent_at, triggered_at, version)"
        f" VALUES (7, 1, 1, 1, 'sms', 'sent', {AT}, {AT}, 1, {AT}, {AT}, {AT}, 1)",
        "INSERT INTO orders (id, external_id, customer_id, amount, currency, created_at,"
        f" received_at) VALUES (3, 'o1', 1, 100, 'RUB', {LATER}, {LATER}),"
        # Before the message: attributed to nothing.
        f" (4, 'o2', 1, 50, 'RUB', '2026-02-28 09:00:00.000000', {LATER})",
        "INSERT INTO attributions (order_id, customer_id, delivery_id, chain_id, step_id,"
        f" version, amount, ordered_at) VALUES (3, 1, 7, 1, 1, 1, 100, {LATER})",
    ]
    db = await upgraded_with(tmp_path, "0011", rows)
    async with db.session() as session:
        orders = await session.execute(
            text("SELECT id, status, updated_at = created_at FROM orders ORDER BY id")
        )
        assert list(orders) == [(3, "new", 1), (4, "new", 1)]
        changes = await session.execute(
            text(
                "SELECT c.order_id, c.amount, c.status, c.changed_at = o.created_at"
                " FROM order_changes c JOIN orders o ON o.id = c.order_id ORDER BY c.order_id"
            )
        )
        assert list(changes) == [(3, 100, "new", 1), (4, 50, "new", 1)]
        attributed = await session.execute(text("SELECT order_id, mechanic FROM attributions"))
        assert list(attributed) == [(3, "new_order")]
    await db.dispose()
