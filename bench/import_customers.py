"""Customer CSV import against the bare insert speed of the same database.

    .venv/bin/python bench/import_customers.py [--rows 1000000] [--database-url URL]

Generates a CSV of realistic customers (Russian mobiles in mixed domestic forms,
emails, Cyrillic names, tags, a `city` column, a few bad lines), then measures, each
phase in a child process of its own on a fresh schema so that the peak memory is that
phase's:

  baseline  `executemany` of the already parsed rows into the customers table, nothing
            else (no validation, no tags); only the executemany calls are timed
  import    `import_customers_csv` on the file, everything included

SQLite by default (a file under bench/out/); with --database-url a PostgreSQL database
whose public schema is DROPPED and rebuilt: give it a scratch database.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.customers import DEFAULT_BATCH_SIZE, import_customers_csv  # noqa: E402
from models.db import Database  # noqa: E402
from models.migrate import upgrade  # noqa: E402

OUT = ROOT / "bench" / "out"
DEFAULT_TIMEZONE = "Europe/Moscow"

FIRST_NAMES = (
    "Александр Алексей Анастасия Анна Андрей Дарья Дмитрий Екатерина Елена Иван Ирина "
    "Мария Максим Михаил Наталья Никита Ольга Павел Сергей Светлана Татьяна Юлия"
).split()
LAST_NAMES = (
    "Иванов Смирнов Кузнецов Попов Васильев Петров Соколов Михайлов Новиков Фёдоров "
    "Морозов Волков Алексеев Лебедев Семёнов Егоров Павлов Козлов Степанов Николаев"
).split()
LATIN = dict(
    zip(
        "абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
        ("a b v g d e e zh z i y k l m n o p r s t u f kh ts ch sh shch _ y _ e yu ya").split(),
        strict=True,
    )
)
DOMAINS = ("mail.ru", "yandex.ru", "gmail.com", "bk.ru", "inbox.ru", "list.ru", "rambler.ru")
MOBILE_CODES = [
    *range(903, 907), 909, *range(910, 930), *range(950, 954), *range(960, 970),
    977, *range(980, 990), *range(991, 1000),
]  # fmt: skip
PHONE_FORMATS = (
    "8 ({c}) {a}-{b}-{d}",
    "+7 {c} {a}-{b}-{d}",
    "8{c}{a}{b}{d}",
    "+7{c}{a}{b}{d}",
)
TAGS = ("vip", "new", "loyal", "опт", "sale-2025", "newsletter")
CITIES = ("Москва", "Новосибирск", "Екатеринбург", "Казань", "Омск", "Владивосток", "")
ZONES = ("Asia/Omsk", "Europe/Samara", "Asia/Yekaterinburg")
HEADER = ["external_id", "email", "phone", "first_name", "last_name", "timezone", "tags", "city"]


def _latin(name: str) -> str:
    return "".join(LATIN.get(ch, ch) for ch in name.lower()).replace("_", "")


def customers(rows: int, seed: int = 1) -> Iterator[list[str]]:
    rng = random.Random(seed)
    for n in range(rows):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        roll = rng.random()
        if roll < 0.0005:
            email = f"{_latin(first)}@"
        elif roll < 0.05:
            email = ""
        else:
            local = f"{_latin(first)}.{_latin(last)}{n}"
            email = f"{local.capitalize() if roll < 0.2 else local}@{rng.choice(DOMAINS)}"
        roll = rng.random()
        if roll < 0.0005:
            phone = "12345"
        elif roll < 0.03:
            phone = ""
        else:
            line = rng.randrange(10_000_000)
            phone = rng.choice(PHONE_FORMATS).format(
                c=rng.choice(MOBILE_CODES), a=f"{line // 10_000:03}",
                b=f"{line // 100 % 100:02}", d=f"{line % 100:02}",
            )  # fmt: skip
        zone = rng.choice(ZONES) if rng.random() < 0.03 else ""
        tags = ";".join(rng.sample(TAGS, rng.randrange(4)))
        yield [f"C{n:08}", email, phone, first, last, zone, tags, rng.choice(CITIES)]


def generate(path: Path, rows: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(HEADER)
        writer.writerows(customers(rows))


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


async def fresh_database(url: str) -> None:
    if url.startswith("postgresql"):
        from sqlalchemy import text

        db = Database(url)
        async with db.engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
        await db.dispose()
    else:
        Path(url.split("///", 1)[1]).unlink(missing_ok=True)
    await asyncio.to_thread(upgrade, url)


def _parsed_rows(path: Path, batch: int) -> Iterator[list[tuple[Any, ...]]]:
    now = datetime.now(UTC).replace(tzinfo=None)
    with path.open(encoding="utf-8", newline="") as file:
        reader = csv.reader(file)
        next(reader)
        chunk: list[tuple[Any, ...]] = []
        for ext, email, phone, first, last, zone, _tags, city in reader:
            chunk.append((
                ext, email or None, phone or None, first, last, zone or DEFAULT_TIMEZONE,
                "explicit" if zone else "default", "subscribed", "subscribed",
                json.dumps({"city": city}, ensure_ascii=False), now, now,
            ))  # fmt: skip
            if len(chunk) == batch:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


_BASELINE_COLUMNS = (
    "external_id, email, phone, first_name, last_name, timezone, timezone_source, "
    "email_status, sms_status, attributes, created_at, updated_at"
)


async def baseline(url: str, path: Path, batch: int) -> dict[str, Any]:
    """Bare driver executemany, one transaction per batch, as the import commits."""
    await fresh_database(url)
    spent, rows = 0.0, 0
    if url.startswith("postgresql"):
        import asyncpg

        conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
        sql = f"INSERT INTO customers ({_BASELINE_COLUMNS}) VALUES ({', '.join(f'${i}' for i in range(1, 13))})"
        for chunk in _parsed_rows(path, batch):
            chunk = [
                (*row[:10], row[10].replace(tzinfo=UTC), row[11].replace(tzinfo=UTC))
                for row in chunk
            ]
            started = time.perf_counter()
            async with conn.transaction():
                await conn.executemany(sql, chunk)
            spent += time.perf_counter() - started
            rows += len(chunk)
        await conn.close()
    else:
        import aiosqlite

        async with aiosqlite.connect(url.split("///", 1)[1], isolation_level=None) as conn:
            # As models.db configures every SQLite connection.
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute("PRAGMA synchronous=NORMAL")
            sql = f"INSERT INTO customers ({_BASELINE_COLUMNS}) VALUES ({', '.join('?' * 12)})"
            for chunk in _parsed_rows(path, batch):
                started = time.perf_counter()
                await conn.execute("BEGIN IMMEDIATE")
                await conn.executemany(sql, chunk)
                await conn.execute("COMMIT")
                spent += time.perf_counter() - started
                rows += len(chunk)
    return {"rows": rows, "seconds": spent, "peak_rss_mb": peak_rss_mb()}


async def full_import(url: str, path: Path, batch: int) -> dict[str, Any]:
    await fresh_database(url)
    db = Database(url)
    started = time.perf_counter()
    report = await import_customers_csv(
        db,
        path,
        default_timezone=DEFAULT_TIMEZONE,
        default_phone_region="RU",
        actor="bench",
        batch_size=batch,
    )
    spent = time.perf_counter() - started
    await db.dispose()
    return {
        "rows": report.imported,
        "refused": report.refused,
        "seconds": spent,
        "peak_rss_mb": peak_rss_mb(),
    }


PHASES = {"baseline": baseline, "import": full_import}


def run_phase(phase: str, url: str, path: Path, batch: int) -> dict[str, Any]:
    child = subprocess.run(
        [sys.executable, __file__, "--phase", phase, "--database-url", url,
         "--csv", str(path), "--batch-size", str(batch)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(child.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--database-url", default=f"sqlite+aiosqlite:///{OUT / 'bench.db'}")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--csv", type=Path, default=None, help="an existing file to import")
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.phase:
        result = asyncio.run(PHASES[args.phase](args.database_url, args.csv, args.batch_size))
        print(json.dumps(result))
        return

    path = args.csv or OUT / f"customers-{args.rows}.csv"
    if args.csv is None:
        started = time.perf_counter()
        generate(path, args.rows)
        print(f"generated {path} ({path.stat().st_size / 1e6:.0f} MB) "
              f"in {time.perf_counter() - started:.1f} s")  # fmt: skip
    results = {
        phase: run_phase(phase, args.database_url, path, args.batch_size) for phase in PHASES
    }
    for phase, result in results.items():
        rate = result["rows"] / result["seconds"]
        print(f"{phase:9} {result['rows']:>9} rows in {result['seconds']:7.1f} s "
              f"= {rate:>8,.0f} rows/s, peak RSS {result['peak_rss_mb']:.0f} MB")  # fmt: skip
    base, full = (results[p]["rows"] / results[p]["seconds"] for p in PHASES)
    print(
        f"ratio import / baseline = {full / base:.2f} ({results['import']['refused']} lines refused)"
    )


if __name__ == "__main__":
    main()
