"""Customer CSV import against the bare insert speed of the same database.

    .venv/bin/python bench/import_customers.py [--rows 1000000] [--database-url URL]

Generates a CSV of realistic customers (Russian mobiles in mixed domestic forms, emails,
Cyrillic names, tags, a `city` column, about 0.1 % bad lines), then measures each phase
in a child process of its own, on a fresh schema, so that the peak memory is that
phase's alone:

  baseline  the driver's executemany of the already parsed rows into the customers
            table, a transaction per batch: no validation, no upsert, no tags; only the
            executemany calls are timed
  import    import_customers_csv on the file, everything included, read and checked in
            the process that writes (workers=0, the default)
  parallel  the same with workers=1: a child process reads and checks the file while
            the parent writes (what `chainmail customers import` does)

SQLite by default (a file under bench/out/). With --database-url, a PostgreSQL database
whose public schema is DROPPED and rebuilt for each phase: give it a scratch database.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import random
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402

from models.customers import DEFAULT_BATCH_SIZE, import_customers_csv  # noqa: E402
from models.db import Database  # noqa: E402
from models.migrate import upgrade  # noqa: E402

OUT = ROOT / "bench" / "out"
DEFAULT_TIMEZONE = "Europe/Moscow"

FIRST_NAMES = ["Александр", "Алексей", "Анастасия", "Анна", "Андрей", "Дарья", "Дмитрий",
               "Екатерина", "Елена", "Иван", "Ирина", "Мария", "Максим", "Михаил", "Наталья",
               "Никита", "Ольга", "Павел", "Сергей", "Светлана", "Татьяна", "Юлия"]  # fmt: skip
LAST_NAMES = ["Иванов", "Смирнов", "Кузнецов", "Попов", "Васильев", "Петров", "Соколов",
              "Михайлов", "Новиков", "Фёдоров", "Морозов", "Волков", "Алексеев", "Лебедев",
              "Семёнов", "Егоров", "Павлов", "Козлов", "Степанов", "Николаев"]  # fmt: skip
LATIN = dict(zip("абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
                 ["a", "b", "v", "g", "d", "e", "e", "zh", "z", "i", "y", "k", "l", "m", "n",
                  "o", "p", "r", "s", "t", "u", "f", "kh", "ts", "ch", "sh", "shch", "", "y",
                  "", "e", "yu", "ya"], strict=True))  # fmt: skip
DOMAINS = ("mail.ru", "yandex.ru", "gmail.com", "bk.ru", "inbox.ru", "list.ru", "rambler.ru")
MOBILE_CODES = [*range(903, 907), 909, *range(910, 930), *range(950, 954), *range(960, 970),
                977, *range(980, 990), *range(991, 1000)]  # fmt: skip
PHONE_FORMATS = ("8 ({c}) {a}-{b}-{d}", "+7 {c} {a}-{b}-{d}", "8{c}{a}{b}{d}", "+7{c}{a}{b}{d}")
TAGS = ("vip", "new", "loyal", "опт", "sale-2025", "newsletter")
CITIES = ("Москва", "Новосибирск", "Екатеринбург", "Казань", "Омск", "Владивосток", "")
ZONES = ("Asia/Omsk", "Europe/Samara", "Asia/Yekaterinburg")
HEADER = ["external_id", "email", "phone", "first_name", "last_name", "timezone", "tags", "city"]


def _latin(name: str) -> str:
    return "".join(LATIN.get(ch, ch) for ch in name.lower())


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
                c=rng.choice(MOBILE_CODES),
                a=f"{line // 10_000:03}",
                b=f"{line // 100 % 100:02}",
                d=f"{line % 100:02}",
            )
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
    """This process's peak RSS plus its largest ended child's: with workers=1, both the
    writer and the reader are held at once."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            return (int(line.split()[1]) + child_kb) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


async def _drop_postgres_schema(url: str) -> None:
    db = Database(url)
    async with db.engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await db.dispose()


def fresh_database(url: str) -> None:
    if url.startswith("postgresql"):
        asyncio.run(_drop_postgres_schema(url))
    else:
        path = Path(url.split("///", 1)[1])
        for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            leftover.unlink(missing_ok=True)
    upgrade(url)


def _parsed_batches(path: Path, batch: int, postgres: bool) -> Iterator[list[tuple[Any, ...]]]:
    now: Any = datetime.now(UTC)
    # As SQLAlchemy hands them to each driver: aware for asyncpg, text for SQLite.
    now = now if postgres else now.strftime("%Y-%m-%d %H:%M:%S.%f")
    with path.open(encoding="utf-8", newline="") as file:
        reader = csv.reader(file)
        next(reader)
        chunk: list[tuple[Any, ...]] = []
        for ext, email, phone, first, last, zone, _tags, city in reader:
            attributes = json.dumps({"city": city}, ensure_ascii=False)
            chunk.append((ext, email or None, phone or None, first, last,
                          zone or DEFAULT_TIMEZONE, "explicit" if zone else "default",
                          "subscribed", "subscribed", attributes, now, now))  # fmt: skip
            if len(chunk) == batch:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


_COLUMNS = (
    "external_id, email, phone, first_name, last_name, timezone, timezone_source, "
    "email_status, sms_status, attributes, created_at, updated_at"
)


async def baseline(url: str, path: Path, batch: int) -> dict[str, Any]:
    spent, cpu, rows = 0.0, 0.0, 0
    if url.startswith("postgresql"):
        import asyncpg

        conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
        placeholders = ", ".join(f"${i}" for i in range(1, 13))
        sql = f"INSERT INTO customers ({_COLUMNS}) VALUES ({placeholders})"
        for chunk in _parsed_batches(path, batch, postgres=True):
            started, started_cpu = time.perf_counter(), time.process_time()
            async with conn.transaction():
                await conn.executemany(sql, chunk)
            spent += time.perf_counter() - started
            cpu += time.process_time() - started_cpu
            rows += len(chunk)
        await conn.close()
    else:
        import aiosqlite

        async with aiosqlite.connect(url.split("///", 1)[1], isolation_level=None) as conn:
            # As models.db sets up every SQLite connection.
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute("PRAGMA synchronous=NORMAL")
            sql = f"INSERT INTO customers ({_COLUMNS}) VALUES ({', '.join('?' * 12)})"
            for chunk in _parsed_batches(path, batch, postgres=False):
                started, started_cpu = time.perf_counter(), time.process_time()
                await conn.execute("BEGIN IMMEDIATE")
                await conn.executemany(sql, chunk)
                await conn.execute("COMMIT")
                spent += time.perf_counter() - started
                cpu += time.process_time() - started_cpu
                rows += len(chunk)
    return {"rows": rows, "seconds": spent, "cpu": cpu, "peak_rss_mb": peak_rss_mb()}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def full_import(url: str, path: Path, batch: int, workers: int = 0) -> dict[str, Any]:
    db = Database(url)
    started, started_cpu = time.perf_counter(), time.process_time() + _children_cpu()
    report = await import_customers_csv(
        db,
        path,
        default_timezone=DEFAULT_TIMEZONE,
        default_phone_region="RU",
        actor="bench",
        batch_size=batch,
        workers=workers,
    )
    # The reading child's CPU counts too: it has ended (and been waited for) by now.
    cpu = time.process_time() + _children_cpu() - started_cpu
    spent = time.perf_counter() - started
    await db.dispose()
    return {
        "rows": report.imported,
        "refused": report.refused,
        "seconds": spent,
        "cpu": cpu,
        "peak_rss_mb": peak_rss_mb(),
    }


async def parallel_import(url: str, path: Path, batch: int) -> dict[str, Any]:
    return await full_import(url, path, batch, workers=1)


PHASES = {"baseline": baseline, "import": full_import, "parallel": parallel_import}


def run_phase(phase: str, url: str, path: Path, batch: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--phase", phase, "--database-url", url]
    command += ["--csv", str(path), "--batch-size", str(batch)]
    child = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(child.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--database-url", default=f"sqlite+aiosqlite:///{OUT / 'bench.db'}")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--csv", type=Path, default=None, help="an existing file instead")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each phase, alternated")
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.phase:
        fresh_database(args.database_url)
        run = PHASES[args.phase](args.database_url, args.csv, args.batch_size)
        print(json.dumps(asyncio.run(run)))
        return

    path = args.csv or OUT / f"customers-{args.rows}.csv"
    if args.csv is None:
        started = time.perf_counter()
        generate(path, args.rows)
        size = path.stat().st_size / 1e6
        print(f"generated {path} ({size:.0f} MB) in {time.perf_counter() - started:.1f} s")
    runs: dict[str, list[dict[str, Any]]] = {phase: [] for phase in PHASES}
    for _ in range(args.repeat):
        for phase in PHASES:
            runs[phase].append(run_phase(phase, args.database_url, path, args.batch_size))
    rates = {}
    for phase, results in runs.items():
        rate = sorted(r["rows"] / r["seconds"] for r in results)
        cpu = sorted(r["cpu"] / r["rows"] * 1e6 for r in results)
        peak = max(r["peak_rss_mb"] for r in results)
        rates[phase] = statistics.median(rate)
        print(
            f"{phase:9} {results[0]['rows']:>9} rows: {rates[phase]:>8,.0f} rows/s median"
            f" ({rate[0]:,.0f}–{rate[-1]:,.0f}), CPU {statistics.median(cpu):.1f} µs/row"
            f" ({cpu[0]:.1f}–{cpu[-1]:.1f}), peak RSS {peak:.0f} MB"
        )
    for phase in ("import", "parallel"):
        refused = runs[phase][0]["refused"]
        ratio = rates[phase] / rates["baseline"]
        print(f"{phase} / baseline = {ratio:.2f} by median rows/s ({refused} lines refused)")


if __name__ == "__main__":
    main()
