"""Start time of `chainmail playground`: its first start and a restart, each against a bare
uvicorn page started by the same interpreter in the same run.

    .venv/bin/python bench/playground_start.py [--repeat 5] [--no-demo-shop] [--json PATH]

Each start is timed from launching the process to the first 200 answer on `/`, asked
every 10 ms:

- **baseline**: this interpreter running uvicorn with a one-route ASGI app that serves
  the chat page's HTML (playground/static/index.html): starting Python and uvicorn and
  answering one page, nothing of Chainmail's imported;
- **first**: `chainmail playground` (`python -m bot playground`) on an empty data
  directory: migrations, the demo data (300 customers, segments, the chain), the page;
- **restart**: the same command on the directory the first start left, after a SIGTERM
  stop: the database and the chat history read back.

Beside the wall time: the CPU the process had used when the page answered (user +
system, the steady figure on a shared machine), the seconds from the launch until the
bot answered the demo admin's /start sent at that moment, and how long the SIGTERM
stop took (each playground is stopped only once its bot has answered). A round is
baseline, first, restart, on a data directory of its own; ratios are of the medians
over the rounds. Results go to docs/benchmarks.md, "## Playground start".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, answers, cpu_seconds
from bot.settings import Settings
from playground.demo_data import ADMIN

PAGE = ROOT / "playground" / "static" / "index.html"
POLL_SECONDS = 0.01
START_TIMEOUT = 60
STARTS = ("first", "restart")

# The baseline server: uvicorn and a page, as `python -c BASELINE PAGE PORT`.
BASELINE = """
import sys
import uvicorn

page = open(sys.argv[1], "rb").read()
headers = [(b"content-type", b"text/html; charset=utf-8")]


async def app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": page})


uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", lifespan="off")
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _environment() -> dict[str, str]:
    """This process's environment without Chainmail's settings, as a fresh shell has it."""
    settings = Settings.model_fields
    environment = {k: v for k, v in os.environ.items() if k.lower() not in settings}
    return environment | {"PYTHONPATH": str(ROOT), "LOG_LEVEL": "WARNING"}


def _started(
    command: list[str], port: int, cwd: Path
) -> tuple[subprocess.Popen[bytes], float, float]:
    """Once `/` answers 200: the process, the moment (perf_counter) it was launched, and the
    CPU seconds it had used by then."""
    url = f"http://127.0.0.1:{port}/"
    stderr = (cwd / "stderr.log").open("ab")
    launched = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=cwd, env=_environment(), stdout=subprocess.DEVNULL, stderr=stderr
    )
    stderr.close()
    while True:
        if answers(url):
            return process, launched, cpu_seconds(process.pid)
        if process.poll() is not None or time.perf_counter() - launched > START_TIMEOUT:
            process.kill()
            process.wait()
            raise RuntimeError(f"{command[1:4]} did not start: {_log(cwd)}")
        time.sleep(POLL_SECONDS)


def _bot_answers(port: int, launched: float) -> float:
    """Seconds from the launch until the bot answers the admin's /start, sent now."""
    with httpx.Client(base_url=f"http://127.0.0.1:{port}/api/chat", timeout=10) as chat:
        written = chat.post(f"/{ADMIN.id}/messages", json={"user_id": ADMIN.id, "text": "/start"})
        written.raise_for_status()
        asked = written.json()["message_id"]
        while time.perf_counter() - launched < START_TIMEOUT:
            messages = chat.get(f"/{ADMIN.id}", params={"wait": 0}).json()["messages"]
            if any(m["message_id"] > asked and m["from"]["is_bot"] for m in messages):
                return time.perf_counter() - launched
            time.sleep(POLL_SECONDS)
    raise RuntimeError("the bot did not answer /start")


def _stopped(process: subprocess.Popen[bytes], cwd: Path, *clean_exits: int) -> float:
    """SIGTERM, as Ctrl+C or a service manager would; the seconds until the process ended
    with one of `clean_exits` (0 when none are given)."""
    started = time.perf_counter()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.returncode not in (clean_exits or (0,)):
        raise RuntimeError(f"exit code {process.returncode}: {_log(cwd)}")
    return time.perf_counter() - started


def _log(cwd: Path) -> str:
    return (cwd / "stderr.log").read_text(errors="replace")[-2000:]


def one_round(directory: Path, demo_shop: bool) -> dict[str, float]:
    """Seconds from each launch to the page answering (baseline, first, restart) and to the
    bot answering; how long each playground took to stop."""
    port = _free_port()
    baseline, launched, cpu = _started(
        [sys.executable, "-c", BASELINE, str(PAGE), str(port)], port, directory
    )
    result = {"baseline": time.perf_counter() - launched, "cpu_baseline": cpu}
    # uvicorn ends by raising the signal it caught again: -SIGTERM is its clean exit.
    _stopped(baseline, directory, -signal.SIGTERM)
    command = [sys.executable, "-m", "bot", "playground", "--port", str(port)]
    command += ["--data-dir", str(directory / "playground-data")]
    if not demo_shop:
        command.append("--no-demo-shop")
    for start in STARTS:
        process, launched, cpu = _started(command, port, directory)
        result[start] = time.perf_counter() - launched
        result[f"cpu_{start}"] = cpu
        # Stopped only once the bot is up: a stop during its start-up is another matter.
        result[f"bot_{start}"] = _bot_answers(port, launched)
        result[f"stop_{start}"] = _stopped(process, directory)
    return result


def summary(rounds: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    medians = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    return {
        "median": medians,
        "min": {key: min(r[key] for r in rounds) for key in rounds[0]},
        "max": {key: max(r[key] for r in rounds) for key in rounds[0]},
        "ratio": {start: medians[start] / medians["baseline"] for start in STARTS},
        "cpu_ratio": {start: medians[f"cpu_{start}"] / medians["cpu_baseline"] for start in STARTS},
    }


def print_table(figures: dict[str, dict[str, float]], repeat: int) -> None:
    low, median, high = (figures[k] for k in ("min", "median", "max"))
    print(
        f"| start | page answers, s (median of {repeat}; range) | / baseline"
        " | CPU until then, s | / baseline | bot answers /start, s | stop, s |"
    )
    print("|---|---|---|---|---|---|---|")
    for start in ("baseline", *STARTS):
        seconds = f"{median[start]:.2f} ({low[start]:.2f}–{high[start]:.2f})"
        cpu = f"{median[f'cpu_{start}']:.2f}"
        if start == "baseline":
            print(f"| {start} | {seconds} | | {cpu} | | | |")
            continue
        print(
            f"| {start} | {seconds} | **{figures['ratio'][start]:.1f}** | {cpu}"
            f" | **{figures['cpu_ratio'][start]:.1f}** | {median[f'bot_{start}']:.2f}"
            f" | {median[f'stop_{start}']:.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="rounds")
    parser.add_argument("--no-demo-shop", action="store_true", help="as the command's flag")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()
    print(
        f"{args.repeat} rounds, demo shop {'off' if args.no_demo_shop else 'on'},"
        f" Python {platform.python_version()}, {os.cpu_count()} CPUs,"
        f" load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    rounds = []
    for number in range(1, args.repeat + 1):
        with tempfile.TemporaryDirectory(prefix="bench-playground-") as directory:
            result = one_round(Path(directory), demo_shop=not args.no_demo_shop)
        print(
            f"round {number}: baseline {result['baseline']:.2f} s, first {result['first']:.2f} s,"
            f" restart {result['restart']:.2f} s (the bot: {result['bot_first']:.2f} s,"
            f" {result['bot_restart']:.2f} s)",
            flush=True,
        )
        rounds.append(result)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    figures = summary(rounds)
    print_table(figures, args.repeat)
    if args.json:
        args.json.write_text(json.dumps({"rounds": rounds, **figures}, indent=1))


if __name__ == "__main__":
    main()
