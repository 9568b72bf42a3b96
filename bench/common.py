"""What the engine benchmarks share: scratch databases, a million customers in one
statement, a chain to plan and send, and a process's memory and CPU.

Imported by bench/plan_main_step.py, bench/send_email.py (variant d),
bench/worker_memory.py, bench/bot_latency.py, bench/playground_start.py and
bench/soak.py; not a benchmark itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import make_url, text  # noqa: E402

from models.chains import import_chain  # noqa: E402
from models.db import Database  # noqa: E402
from models.migrate import upgrade  # noqa: E402
from models.segments import add_segment  # noqa: E402

# The server of the test suite; benchmarks make databases of their own beside `test`.
POSTGRES_URL = os.environ.get(
    "CHAINMAIL_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
SEGMENT = "bench-audience"
TAG = "bench"
MAIL_FROM = "Магазин «Ромашка» <news@shop.example>"

# The main step of every benchmark chain (to SEGMENT): a two-part Cyrillic email, sent now.
CHAIN_FILE = """
format: chainmail/1
name: Весенняя распродажа
steps:
  - name: Распродажа
    audience: {segments: [bench-audience]}
    action:
      channel: email
      subject: "Привет, {{ first_name }}! Весенняя распродажа: скидки до 50% только до воскресенья"
      text: |
        Здравствуйте, {{ first_name }}!

        Весенняя распродажа уже началась: скидки до 50% на всё, что вы любите.
        Смотрите подборку: https://shop.example/sale?from=mail

        До встречи,
        команда магазина «Ромашка»
      html: >-
        <html><body><p>Здравствуйте, <b>{{ first_name }}</b>!</p>
        <p>Весенняя распродажа уже началась: скидки до 50% на всё, что вы любите.</p>
        <p><a href="https://shop.example/sale?from=mail">Смотреть подборку</a></p>
        <p><a href="https://shop.example/new">Новинки</a> ·
        <a href="https://shop.example/account/{{ external_id }}">Личный кабинет</a></p>
        <p>До встречи,<br>команда магазина «Ромашка»</p></body></html>
    schedule: {send: now}
"""

_ZONES = "CASE {n} % 3 WHEN 0 THEN 'Europe/Moscow' WHEN 1 THEN 'Asia/Novosibirsk' ELSE 'Asia/Vladivostok' END"  # noqa: E501
_CUSTOMER_COLUMNS = (
    "external_id, email, phone, first_name, last_name, timezone, timezone_source,"
    " email_status, sms_status, attributes, created_at, updated_at"
)


def _customer_values(n: str, stamp: str, concat: str, attributes: str | None = None) -> str:
    def cat(*parts: str) -> str:
        return f" {concat} ".join(parts)

    attributes = attributes.format(n=n) if attributes else '\'{"city": "Москва"}\''
    return (
        f"{cat(repr('c'), n)}, {cat(repr('customer'), n, repr('@example.com'))},"
        f" {cat(repr('+7913'), n)}, {cat(repr('Покупатель'), n)}, 'Иванов', {_ZONES.format(n=n)},"
        f" 'explicit', 'subscribed', 'subscribed', {attributes}, {stamp}, {stamp}"
    )


async def add_customers(
    db: Database, count: int, *, first: int = 1, attributes: str | None = None
) -> None:
    """`count` subscribed customers with emails, tagged TAG, in two set-based statements.

    `attributes`: an SQL expression of the customer's number `{n}` giving the JSON
    attributes (default: every customer in Moscow)."""
    last = first + count - 1
    if db.is_sqlite:
        numbers = f"WITH RECURSIVE g(n) AS (SELECT {first} UNION ALL SELECT n + 1 FROM g"
        numbers += f" WHERE n < {last})"
        values = _customer_values("n", "'2026-01-01 00:00:00.000000'", "||", attributes)
        insert = f"{numbers} INSERT INTO customers ({_CUSTOMER_COLUMNS}) SELECT {values} FROM g"
    else:
        insert = (
            f"INSERT INTO customers ({_CUSTOMER_COLUMNS}) "
            f"SELECT {_customer_values('g', 'now()', '||', attributes)} "
            f"FROM generate_series({first}, {last}) AS g"
        )
    async with db.writer() as session:
        await session.execute(text(insert))
        await session.execute(
            text(
                f"INSERT INTO customer_tags (customer_id, tag) SELECT id, '{TAG}' FROM customers"
                f" WHERE id NOT IN (SELECT customer_id FROM customer_tags WHERE tag = '{TAG}')"
            )
        )
    if not db.is_sqlite:
        # What autovacuum would do within a minute; SQLite has no statistics unless
        # someone runs ANALYZE, and Chainmail does not, so neither does this.
        async with db.engine.connect() as conn:
            await conn.execute(text("ANALYZE"))
            await conn.commit()


async def add_chain(db: Database, *, with_segment: bool = True) -> int:
    """The benchmark chain, a draft; its id."""
    if with_segment:
        await add_segment(db, SEGMENT, [TAG], "any", actor="bench")
    return (await import_chain(db, CHAIN_FILE, actor="bench")).chain_id


def migrate(url: str) -> None:
    upgrade(url)


async def _admin(statement: str) -> None:
    db = Database(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        async with db.engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await db.dispose()


@contextmanager
def scratch_postgres(name: str) -> Iterator[str]:
    """A migrated PostgreSQL database of the benchmark's own, dropped afterwards."""
    if name == make_url(POSTGRES_URL).database:
        raise ValueError(f"refusing to use {name!r}: it is the test suite's database")
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    try:
        migrate(url)
        yield url
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def scratch_sqlite(name: str) -> Iterator[str]:
    """A migrated SQLite file under bench/out/, removed afterwards."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.db"
    _remove_sqlite(path)
    url = f"sqlite+aiosqlite:///{path}"
    try:
        migrate(url)
        yield url
    finally:
        _remove_sqlite(path)


def _remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def peak_rss_mb(pid: int | str = "self") -> float:
    """The process's peak resident memory (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/status")


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far."""
    fields_ = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields_[11]) + int(fields_[12])) / os.sysconf("SC_CLK_TCK")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, as a supervisor stops a service; killed if it has not ended in 30 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/status")


def answers(url: str) -> bool:
    """Whether `url` answers 200 now; False while nothing listens there yet."""
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def sized_parser(doc: str, *, customers: int = 1_000_000) -> argparse.ArgumentParser:
    """The options of a benchmark over N customers, repeated, on each database."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--customers", type=int, default=customers)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--databases", default="sqlite,postgresql")
    return parser
