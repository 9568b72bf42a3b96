"""Soak: minutes of mixed API traffic with 1 % hostile bodies against a real `chainmail web`.

    .venv/bin/python bench/soak.py [--minutes 1] [--database sqlite|postgresql]
                                   [--concurrency 8] [--hostile-percent 1] [--json FILE]

A scratch database (SQLite: a file under bench/out/; PostgreSQL: `bench_soak`,
dropped afterwards) and `chainmail web` in a process of its own on a free
loopback port. `--concurrency` clients send, back to back: batches of orders
(some repeated), batches of customers, SMS reports, open pixels with bad tokens
and /healthz; a request is hostile with the given chance: the red-team bodies of
tests/corpus/http/, JSON 100,000 deep, an integer of 5,000 digits, bodies over
the bounds, and bodies without the token. The server's RSS is sampled every
second. Printed: requests by status, 5xx (must be 0: the exit status says so),
latency p50/p99/max, RSS after the first tenth of the run and at the end.
Results go to docs/benchmarks.md, "## Soak".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from bench.common import (
    ROOT,
    answers,
    peak_rss_mb,
    rss_mb,
    scratch_postgres,
    scratch_sqlite,
    stop,
)
from bot.settings import Settings

API_TOKEN = "soak-token"
AUTH = {"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"}
CUSTOMERS = 2_000
CORPUS = ROOT / "tests" / "corpus" / "http"


def _hostile_requests() -> list[tuple[str, bytes, dict[str, str]]]:
    """(path, body, headers) of each hostile request."""
    orders = (CORPUS / "orders_hostile_items.json").read_bytes()
    customers = (CORPUS / "customers_hostile_items.json").read_bytes()
    deep = b"[" * 100_000 + b"]" * 100_000
    long_integer = b'[{"external_id": ' + b"7" * 5000 + b"}]"
    return [
        ("/api/v1/orders", orders, AUTH),
        ("/api/v1/customers", customers, AUTH),
        ("/api/v1/orders", deep, AUTH),
        ("/api/v1/customers", long_integer, AUTH),
        ("/api/v1/sms/status", deep, AUTH),
        ("/api/v1/orders", b"[" + b" " * (2 * 1024 * 1024) + b"]", AUTH),
        ("/api/v1/sms/status", b'{"id": "1", "status": "delivered"}' + b" " * 8192, AUTH),
        ("/api/v1/sms/status", b" " * (1024 * 1024), {"Content-Type": "application/json"}),
        ("/api/v1/customers", customers, {"Content-Type": "application/json"}),
    ]


def _ordinary_request(rng: random.Random, counter: Iterator[int]) -> tuple[str, bytes, str]:
    """(path, body, method) of an ordinary request."""
    pick = rng.random()
    if pick < 0.4:
        orders = []
        for _ in range(rng.randint(1, 20)):
            # One in ten repeats an earlier order: a duplicate.
            number = next(counter) if rng.random() > 0.1 else rng.randint(0, 1000)
            orders.append(
                {
                    "external_id": f"o{number}",
                    "customer_external_id": f"c{rng.randrange(CUSTOMERS)}",
                    "amount": f"{rng.randint(100, 99_999)}.{rng.randint(0, 99):02}",
                    "created_at": "2026-03-01T14:00:00+03:00",
                }
            )
        return "/api/v1/orders", json.dumps(orders).encode(), "POST"
    if pick < 0.7:
        customers = [
            {
                "external_id": f"c{rng.randrange(CUSTOMERS)}",
                "email": f"soak{rng.randrange(CUSTOMERS)}@example.com",
                "tags": ["soak"],
                "attributes": {"visits": rng.randint(0, 100)},
            }
            for _ in range(rng.randint(1, 50))
        ]
        return "/api/v1/customers", json.dumps(customers).encode(), "POST"
    if pick < 0.9:
        report = {"id": str(rng.randint(1, 10**6)), "status": rng.choice(["delivered", "failed"])}
        return "/api/v1/sms/status", json.dumps(report).encode(), "POST"
    if pick < 0.95:
        return f"/t/o/not-a-token-{rng.randint(0, 10**6)}", b"", "GET"
    return "/healthz", b"", "GET"


@dataclass
class Tally:
    statuses: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    hostile: int = 0
    rss: list[tuple[float, float]] = field(default_factory=list)


async def _client(
    base_url: str, deadline: float, hostile_share: float, seed: int, tally: Tally
) -> None:
    rng = random.Random(seed)
    counter = iter(range(seed * 10**9, (seed + 1) * 10**9))
    hostile = _hostile_requests()
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        while time.monotonic() < deadline:
            if rng.random() < hostile_share:
                path, body, headers = rng.choice(hostile)
                method = "POST"
                tally.hostile += 1
            else:
                path, body, method = _ordinary_request(rng, counter)
                headers = AUTH
            started = time.perf_counter()
            try:
                response = await http.request(method, path, content=body, headers=headers)
                outcome = str(response.status_code)
            except httpx.TransportError as exc:
                # A refused body the server stopped reading: the connection closes under it.
                outcome = f"closed ({type(exc).__name__})"
            tally.latencies.append(time.perf_counter() - started)
            tally.statuses[outcome] += 1


async def _sample_memory(pid: int, deadline: float, tally: Tally) -> None:
    start = time.monotonic()
    while time.monotonic() < deadline:
        tally.rss.append((time.monotonic() - start, rss_mb(pid)))
        await asyncio.sleep(1)


async def _seed(base_url: str) -> None:
    customers = [{"external_id": f"c{n}", "email": f"c{n}@example.com"} for n in range(CUSTOMERS)]
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        response = await http.post("/api/v1/customers", json=customers, headers=AUTH)
        response.raise_for_status()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def _web(url: str, port: int, cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    settings = {name.lower() for name in Settings.model_fields}
    environment = {k: v for k, v in os.environ.items() if k.lower() not in settings} | {
        "DATABASE_URL": url,
        "API_TOKEN": API_TOKEN,
        "WEB_HOST": "127.0.0.1",
        "WEB_PORT": str(port),
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "web"],
        env=environment,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=(cwd / "web.stderr").open("wb"),
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if answers(f"http://127.0.0.1:{port}/healthz"):
                break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError((cwd / "web.stderr").read_text())
            time.sleep(0.1)
        yield process
    finally:
        stop(process)


async def _soak(base_url: str, pid: int, args: argparse.Namespace) -> Tally:
    await _seed(base_url)
    tally = Tally()
    deadline = time.monotonic() + args.minutes * 60
    await asyncio.gather(
        _sample_memory(pid, deadline, tally),
        *(
            _client(base_url, deadline, args.hostile_percent / 100, seed, tally)
            for seed in range(args.concurrency)
        ),
    )
    return tally


def _percentile(values: list[float], share: float) -> float:
    return statistics.quantiles(values, n=1000)[round(share * 1000) - 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--hostile-percent", type=float, default=1.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    if args.database == "sqlite":
        scratch = scratch_sqlite("soak")
    else:
        scratch = scratch_postgres("bench_soak")
    with scratch as url, tempfile.TemporaryDirectory(prefix="bench-soak-") as directory:
        port = _free_port()
        with _web(url, port, Path(directory)) as web:
            tally = asyncio.run(_soak(f"http://127.0.0.1:{port}", web.pid, args))
            peak = peak_rss_mb(web.pid)
        log = (Path(directory) / "web.stderr").read_text()
        errors_logged = log.count("Traceback")
        if errors_logged:
            kept = ROOT / "bench" / "out" / f"soak-{args.database}-web.stderr"
            kept.parent.mkdir(parents=True, exist_ok=True)
            kept.write_text(log)
            print(f"the server logged {errors_logged} tracebacks: {kept}", file=sys.stderr)

    total = sum(tally.statuses.values())
    server_errors = sum(n for status, n in tally.statuses.items() if status.startswith("5"))
    warm = [mb for at, mb in tally.rss if at >= args.minutes * 6] or [tally.rss[-1][1]]
    figures = {
        "database": args.database,
        "minutes": args.minutes,
        "concurrency": args.concurrency,
        "requests": total,
        "per_second": round(total / (args.minutes * 60), 1),
        "hostile": tally.hostile,
        "statuses": dict(sorted(tally.statuses.items())),
        "server_errors": server_errors,
        "tracebacks_logged": errors_logged,
        "latency_ms": {
            "p50": round(_percentile(tally.latencies, 0.5) * 1000, 1),
            "p99": round(_percentile(tally.latencies, 0.99) * 1000, 1),
            "max": round(max(tally.latencies) * 1000, 1),
        },
        "rss_mb": {"after_warm_up": round(warm[0], 1), "end": round(tally.rss[-1][1], 1)},
        "peak_rss_mb": round(peak, 1),
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 1 if server_errors or errors_logged else 0


if __name__ == "__main__":
    sys.exit(main())
