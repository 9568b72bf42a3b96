"""Identity of the messages: Message-IDs unique across installations, the same for every
attempt within one."""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

from channels.email_compose import EmailComposer, Recipient
from models.db import Database, installation_id
from tests.test_email_compose import make_step


async def message_id_in(db: Database) -> str:
    """The Message-ID a worker on `db` gives step 7's message to customer 45."""
    composer = EmailComposer(
        make_step(),
        public_base_url="https://t.example",
        secret_key="k",
        installation_id=await installation_id(db),
    )
    return composer.compose(Recipient(1, 45, "ivan@example.com", {})).message_id


async def test_message_ids_differ_between_databases_and_repeat_within_one(
    db: Database, sqlite_template: Path, tmp_path: Path
) -> None:
    other_path = tmp_path / "other.db"
    shutil.copy(sqlite_template, other_path)
    other = Database(f"sqlite+aiosqlite:///{other_path}")
    try:
        first = await message_id_in(db)
        again = await message_id_in(db)
        elsewhere = await message_id_in(other)
    finally:
        await other.dispose()

    assert first == again
    assert first != elsewhere
    assert re.fullmatch(r"<cm\.[0-9a-f]{12}\.7\.45@shop\.example>", first)


async def test_processes_starting_at_once_agree_on_one_installation_id(db_url: str) -> None:
    workers = [Database(db_url) for _ in range(4)]
    try:
        ids = await asyncio.gather(*(installation_id(worker) for worker in workers))
    finally:
        for worker in workers:
            await worker.dispose()

    assert len(set(ids)) == 1
