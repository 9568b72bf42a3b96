"""Peak memory of `chainmail worker` sending to ever larger audiences.

    .venv/bin/python bench/worker_memory.py [--audiences 100000,300000,1000000]
                                            [--seconds 60] [--database sqlite|postgresql]

For each audience: a fresh database (SQLite: a file under bench/out/;
PostgreSQL: a scratch database `bench_memory`, dropped afterwards) holding that
many customers and one draft chain; `chainmail chains activate` plans the main
step (its own peak RSS is reported too); then a real `chainmail worker`
process sends to a counting aiosmtpd in a process of its own, for at most
`--seconds` (0: until every message is sent). The worker's RSS is sampled
every half second; its peak is the kernel's VmHWM read just before it is
stopped. What SPEC §4 asks: memory flat as audiences grow. Results go to
docs/benchmarks.md, "## Worker memory".
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    ROOT,
    add_chain,
    add_customers,
    peak_rss_mb,
    rss_mb,
    scratch_postgres,
    scratch_sqlite,
    stop,
)
from bench.send_email import SmtpSink
from bot.settings import Settings
from models.db import Database

# Prints the peak RSS of a `chainmail` command run in this interpreter, after it ends.
_MEASURED_COMMAND = (
    "import resource, sys; from bot.cli import main; code = main(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(code)"
)


@dataclass
class Sample:
    audience: int
    activate_seconds: float
    activate_peak_mb: float
    sent: int
    seconds: float
    rss_first_mb: float
    rss_last_mb: float
    peak_mb: float


def _environment(url: str, smtp_port: int, directory: Path) -> dict[str, str]:
    settings = Settings.model_fields
    environment = {k: v for k, v in os.environ.items() if k.lower() not in settings}
    return environment | {
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": url,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp_port),
        "EMAIL_CONCURRENCY": "8",
        "ENGINE_TICK_SECONDS": "1",
        "LOG_LEVEL": "ERROR",
        "OUTBOX_DIR": str(directory / "outbox"),
        "MAIL_FROM": "Магазин <news@shop.example>",
    }


async def _prepare(url: str, audience: int) -> int:
    db = Database(url)
    try:
        await add_customers(db, audience)
        return await add_chain(db)
    finally:
        await db.dispose()


def _activate(chain_id: int, environment: dict[str, str], cwd: Path) -> tuple[float, float]:
    """`chainmail chains activate`: seconds and peak RSS in MB."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _MEASURED_COMMAND, "chains", "activate", str(chain_id)],
        env=environment,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"activation failed: {done.stderr}")
    return elapsed, int(done.stderr.strip().splitlines()[-1]) / 1024


@contextmanager
def _worker(environment: dict[str, str], cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "worker"],
        env=environment,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=(cwd / "worker.stderr").open("wb"),
    )
    try:
        yield process
    finally:
        stop(process)


def measure(url: str, audience: int, seconds: float) -> Sample:
    chain_id = asyncio.run(_prepare(url, audience))
    sink = SmtpSink()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-worker-") as directory:
            cwd = Path(directory)
            environment = _environment(url, sink.port, cwd)
            activate_seconds, activate_peak = _activate(chain_id, environment, cwd)
            started = time.monotonic()
            first_rss = 0.0
            with _worker(environment, cwd) as worker:
                while True:
                    time.sleep(0.5)
                    if worker.poll() is not None:
                        raise RuntimeError((cwd / "worker.stderr").read_text()[-2000:])
                    current = rss_mb(worker.pid)
                    elapsed = time.monotonic() - started
                    if not first_rss and sink.received >= 10_000:
                        first_rss = current
                    if sink.received >= audience or (seconds and elapsed >= seconds):
                        break
                peak = peak_rss_mb(worker.pid)
                sent = sink.received
    finally:
        sink.stop()
    return Sample(
        audience, activate_seconds, activate_peak, sent, elapsed, first_rss, current, peak
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--audiences", default="100000,300000,1000000")
    parser.add_argument(
        "--seconds", type=float, default=60, help="sending time per audience (0: all of it)"
    )
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    options = parser.parse_args()
    scratch = scratch_sqlite if options.database == "sqlite" else scratch_postgres
    print(
        f"{options.database}; worker sending for at most {options.seconds:.0f} s per audience;"
        " RSS after the first 10,000 messages, at the end, and the peak (VmHWM)"
    )
    for audience in (int(a) for a in options.audiences.split(",")):
        with scratch("bench_memory") as url:
            s = measure(url, audience, options.seconds)
        print(
            f"audience {s.audience:>9,}: activate {s.activate_seconds:5.1f} s,"
            f" peak {s.activate_peak_mb:5.1f} MB | worker sent {s.sent:>9,} in"
            f" {s.seconds:5.0f} s ({s.sent / s.seconds:,.0f} msg/s), RSS {s.rss_first_mb:.1f}"
            f" → {s.rss_last_mb:.1f} MB, peak {s.peak_mb:.1f} MB",
            flush=True,
        )


if __name__ == "__main__":
    main()
