"""Bot latency: many admins at the chain editor at once, against a bare bot in the same run.

    .venv/bin/python bench/bot_latency.py [--admins 200] [--seed 1] [--think-ms 50-300]
                                          [--database-url URL] [--variants ...] [--json PATH]

The Telegram double (telegram_double/) serves the Bot API on 127.0.0.1 from a
thread of this process; the bot runs in a process of its own, as `chainmail bot` does:
the production Application (`bot.telegram_app.run_bot`: `build_application`, long
polling through TELEGRAM_API_BASE_URL, updates of different people handled
concurrently, one person's in order: `PerUserUpdates`). Each admin runs one session at
the chain editor (SESSION below: /start, a new chain, its main step's audience and
message saved, the minimap, /chains, a chain card) with a seeded think time between
actions, all admins at once.

An update's latency is from the moment the driver hands the user's action to the double
(`send_text` / `press`) to the moment the double takes the bot's reply: a new message, or
for a tap the edit of the tapped message (`BotEvent.at`). Both ends are read from this
process's monotonic clock.

Variants, each with a fresh bot process (and a fresh database for Chainmail):

  bare+limiter       a minimal PTB Application: one handler answers every message with a
                     new message and every tap with an edit and a callback answer (what
                     Chainmail's `show` does), nothing else; AIORateLimiter as in production
  chainmail+limiter  Chainmail's bot exactly as in production (AIORateLimiter: 30 calls a
                     second with a chat id, in all)
  bare, chainmail    the same without a rate limiter: the handlers' own latency

SQLite by default (a file in a temporary directory, WAL, as `chainmail run` uses it). With
--database-url, a PostgreSQL database whose public schema is DROPPED and rebuilt for each
Chainmail variant: give it a scratch database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import cpu_seconds  # noqa: E402
from bench.import_customers import fresh_database  # noqa: E402
from models.admins import add_admin  # noqa: E402
from models.db import Database  # noqa: E402
from models.segments import add_segment  # noqa: E402
from models.tables import Role  # noqa: E402
from telegram_double import BotEvent, TelegramDouble  # noqa: E402

TOKEN = "4242:BENCH"
FIRST_ADMIN = 500_001
SEGMENTS = ("vip", "new-customers", "sleeping", "moscow")
VARIANTS = ("bare+limiter", "chainmail+limiter", "bare", "chainmail")
# A reply may queue behind 200 others' at 30 calls a second with the rate limiter.
REPLY_TIMEOUT = 120.0
BARE_BUTTON = "Next"
PROFILES = ROOT / "bench" / "out"
# BOT_LATENCY_PROFILE=1: each bot process runs under cProfile, into PROFILES/<variant>.prof.
PROFILE = os.environ.get("BOT_LATENCY_PROFILE") == "1"


@dataclass(frozen=True)
class Action:
    """A user's move: `text` to write, or the label (or its start) of a button to tap."""

    text: str | None = None
    tap: str | None = None


def session(admin: int, rng: random.Random) -> list[Action]:
    """One admin's session at the chain editor, as on a phone."""
    number = admin - FIRST_ADMIN + 1
    return [
        Action(text="/start"),
        Action(tap="➕ New chain"),
        Action(text=f"Spring sale {number}"),
        Action(text="Main"),
        Action(tap="👥 Who"),
        Action(tap=f"☐ {rng.choice(SEGMENTS)}"),
        Action(tap="💾 Save"),
        Action(tap="✉️ Message"),
        Action(tap="✏️ Subject"),
        Action(text="Hi {{ first_name }}, spring is here"),
        Action(tap="✏️ Text"),
        Action(text=f"Flowers -{rng.randint(5, 50)}% until Sunday: https://shop.example/sale"),
        Action(tap="💾 Save"),
        Action(tap="🗺 Map"),
        Action(text="/chains"),
        Action(tap="📝 "),
    ]


# ------------------------------------------------------------------ the bot's process


async def serve_chainmail(rate_limiter: bool) -> None:
    """`chainmail bot`: settings from the environment, the database opened, run_bot."""
    from bot import telegram_app
    from bot.runtime import open_database
    from bot.settings import load_settings

    if not rate_limiter:
        # The production Application with only its limiter taken out.
        telegram_app.AIORateLimiter = lambda **_: None  # type: ignore[assignment,misc]
    settings = load_settings()
    db = await open_database(settings)
    try:
        await telegram_app.run_bot(settings, db, _stop_on_sigterm())
    finally:
        await db.dispose()


async def serve_bare(rate_limiter: bool) -> None:
    """A minimal PTB bot on the same double, polling the same way; no database."""
    from telegram import InlineKeyboardButton, InlineKeyboardMarkup, LinkPreviewOptions, Update
    from telegram.constants import ParseMode
    from telegram.ext import (
        AIORateLimiter,
        ApplicationBuilder,
        CallbackQueryHandler,
        ContextTypes,
        Defaults,
        MessageHandler,
        filters,
    )

    from bot.settings import load_settings
    from bot.telegram_app import (
        ALLOWED_UPDATES,
        CONCURRENT_UPDATES,
        RATE_LIMIT_RETRIES,
        PerUserUpdates,
        file_url_for,
    )

    settings = load_settings()
    markup = InlineKeyboardMarkup([[InlineKeyboardButton(BARE_BUTTON, callback_data="next")]])

    async def on_message(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_text("Got it", reply_markup=markup)

    async def on_tap(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        await query.edit_message_text(f"Tap {update.update_id}", reply_markup=markup)
        await query.answer()

    builder = (
        ApplicationBuilder()
        .token(settings.telegram_bot_token)
        .base_url(settings.telegram_api_base_url)
        .base_file_url(file_url_for(settings.telegram_api_base_url))
        .defaults(
            Defaults(
                parse_mode=ParseMode.HTML,
                link_preview_options=LinkPreviewOptions(is_disabled=True),
            )
        )
        .job_queue(None)
        # Updates handled as Chainmail's bot handles them: people concurrently, one
        # person's in order.
        .concurrent_updates(PerUserUpdates(CONCURRENT_UPDATES))
    )
    if rate_limiter:
        builder = builder.rate_limiter(AIORateLimiter(max_retries=RATE_LIMIT_RETRIES))
    application = builder.build()
    application.add_handler(MessageHandler(filters.ALL, on_message))
    application.add_handler(CallbackQueryHandler(on_tap))
    stop = _stop_on_sigterm()
    async with application:
        await application.start()
        assert application.updater is not None
        await application.updater.start_polling(allowed_updates=ALLOWED_UPDATES)
        await stop.wait()
        await application.updater.stop()
        await application.stop()


def _stop_on_sigterm() -> asyncio.Event:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    return stop


@contextmanager
def bot_process(
    variant: str, double: TelegramDouble, database_url: str, workdir: Path
) -> Iterator[subprocess.Popen[bytes]]:
    kind, _, limiter = variant.partition("+")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SMTP_", "SMS_", "DATABASE_", "OUTBOX_", "TELEGRAM_", "ADMIN_"))
    }
    env |= {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_BASE_URL": double.api_base_url,
        "DATABASE_URL": database_url,
        "LOG_LEVEL": "WARNING",
    }
    profile = ["-m", "cProfile", "-o", str(PROFILES / f"{variant}.prof")] if PROFILE else []
    command = [sys.executable, *profile, str(Path(__file__).resolve()), "--serve-bot", kind]
    if not limiter:
        command.append("--no-rate-limiter")
    log = workdir / f"{variant}.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(command, cwd=workdir, env=env, stderr=stderr)
    try:
        deadline = time.monotonic() + 60
        # Polling starts with deleteWebhook (a getUpdates is logged only once answered).
        while not any(r.method.lower() == "deletewebhook" for r in double.requests):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the {variant} bot did not start:\n{log.read_text()}")
            time.sleep(0.05)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    errors = [line for line in log.read_text().splitlines() if "ERROR" in line]
    if errors:
        raise RuntimeError(f"the {variant} bot logged errors:\n{log.read_text()[-4000:]}")


# ------------------------------------------------------------------ the admins' side


@dataclass
class Chat:
    """The bot's events in one admin's private chat, as they arrive."""

    events: list[BotEvent] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class Router:
    """Follows the double's events and hands each to its chat: one waiter for all admins."""

    def __init__(self, double: TelegramDouble) -> None:
        self.double = double
        self.chats: defaultdict[int, Chat] = defaultdict(Chat)
        self.seen = 0

    async def run(self) -> None:
        while True:
            try:
                await self.double.wait_for(None, 3600, after=self.seen)
            except TimeoutError:
                continue
            for event in self.double.events[self.seen :]:
                chat = self.chats[event.chat_id]
                chat.events.append(event)
                chat.changed.set()
                self.seen = event.seq


def is_reply(action: Action, pressed: int | None) -> Callable[[BotEvent], bool]:
    """A new message; for a tap also the edit of the tapped message (a callback answer alone
    or an edit of an older screen, left from the update before, is not the reply)."""

    def matches(event: BotEvent) -> bool:
        if event.kind == "sent":
            return True
        return action.tap is not None and event.kind == "edited" and event.message_id == pressed

    return matches


def button_data(screen: BotEvent, label: str) -> list[str]:
    """The callback data of the button labelled `label`, or else of those starting with it."""
    found = [(b["text"], b["callback_data"]) for row in screen.buttons() for b in row]
    exact = [data for text, data in found if text == label]
    return exact or [data for text, data in found if text.startswith(label)]


class Admin:
    def __init__(self, user_id: int, double: TelegramDouble, chat: Chat, bare: bool, seed: int):
        self.user_id = user_id
        self.double = double
        self.chat = chat
        self.bare = bare
        self.rng = random.Random(f"{seed}:{user_id}")
        self.actions = session(user_id, self.rng)
        self.latencies: list[float] = []

    async def _next(self, predicate: Callable[[BotEvent], bool], since: float) -> BotEvent:
        """The first event in the chat after `since` matching `predicate`."""
        deadline = time.monotonic() + REPLY_TIMEOUT
        while True:
            self.chat.changed.clear()
            for event in self.chat.events:
                if event.at >= since and predicate(event):
                    return event
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                recent = [(e.kind, e.text) for e in self.chat.events if e.at >= since]
                raise TimeoutError(f"admin {self.user_id}: no reply since {since}: {recent}")
            await asyncio.wait_for(self.chat.changed.wait(), remaining)

    async def _screen_with(self, label: str, since: float) -> tuple[int, str]:
        """The newest message shown since `since` with the button: (message id, its data)."""
        label = BARE_BUTTON if self.bare else label

        def shows_button(event: BotEvent) -> bool:
            return event.kind in ("sent", "edited") and bool(button_data(event, label))

        shown = [event for event in self.chat.events if event.at >= since and shows_button(event)]
        screen = shown[-1] if shown else await self._next(shows_button, since)
        assert screen.message_id is not None
        # Several buttons start with it (a chain card in /chains): any of them.
        return screen.message_id, self.rng.choice(button_data(screen, label))

    async def run(self, think: tuple[float, float]) -> None:
        screen_since = 0.0
        for action in self.actions:
            await asyncio.sleep(self.rng.uniform(*think))
            pressed: int | None = None
            if action.tap is not None:
                pressed, data = await self._screen_with(action.tap, screen_since)
                started = time.monotonic()
                self.double.press(self.user_id, pressed, data)
            else:
                assert action.text is not None
                started = time.monotonic()
                self.double.send_text(self.user_id, action.text)
            reply = await self._next(is_reply(action, pressed), started)
            self.latencies.append(reply.at - started)
            screen_since = started


# ------------------------------------------------------------------ one variant


async def prepare_database(url: str, admins: list[int]) -> None:
    db = Database(url)
    try:
        for segment in SEGMENTS:
            await add_segment(db, segment, [segment], actor="bench")
        for user_id in admins:
            await add_admin(db, user_id, Role.ADMIN, name=f"Admin {user_id}", actor="bench")
    finally:
        await db.dispose()


async def drive(
    double: TelegramDouble, admins: list[int], bare: bool, seed: int, think: tuple[float, float]
) -> tuple[list[Admin], float]:
    router = Router(double)
    routing = asyncio.create_task(router.run())
    people = [Admin(a, double, router.chats[a], bare, seed) for a in admins]
    started = time.monotonic()
    try:
        await asyncio.gather(*(person.run(think) for person in people))
    finally:
        routing.cancel()
    return people, time.monotonic() - started


def percentile(sorted_values: list[float], share: float) -> float:
    """Nearest-rank percentile."""
    rank = max(1, round(share * len(sorted_values) + 0.5 - 1e-9))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def run_variant(
    variant: str,
    admins: list[int],
    database_url: str,
    workdir: Path,
    seed: int,
    think: tuple[float, float],
) -> dict[str, Any]:
    bare = variant.startswith("bare")
    if not bare:
        fresh_database(database_url)
        asyncio.run(prepare_database(database_url, [*admins, admins[0] - 1]))
    with TelegramDouble(TOKEN) as double:
        for user_id in [admins[0] - 1, *admins]:
            double.user(user_id, f"Admin{user_id}")
        with bot_process(variant, double, database_url, workdir) as process:
            # Warm-up, not measured: one admin's session, so first-use costs are paid.
            asyncio.run(drive(double, [admins[0] - 1], bare, seed, think))
            cpu_before = cpu_seconds(process.pid)
            people, seconds = asyncio.run(drive(double, admins, bare, seed, think))
            cpu = cpu_seconds(process.pid) - cpu_before
    latencies = sorted(latency for person in people for latency in person.latencies)
    expected = sum(len(person.actions) for person in people)
    return {
        "variant": variant,
        "updates": len(latencies),
        "expected_updates": expected,
        "seconds": seconds,
        "updates_per_second": len(latencies) / seconds,
        "bot_cpu_ms_per_update": cpu / len(latencies) * 1000,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p95_ms": percentile(latencies, 0.95) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": latencies[-1] * 1000,
        "mean_ms": statistics.fmean(latencies) * 1000,
        "latencies_ms": [round(latency * 1000, 3) for latency in latencies],
    }


def print_table(results: list[dict[str, Any]]) -> None:
    print(
        "| variant | updates | p50 ms | p95 ms | p99 ms | max ms | updates/s | bot CPU ms/update |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['variant']} | {r['updates']} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f}"
            f" | {r['p99_ms']:.1f} | {r['max_ms']:.1f} | {r['updates_per_second']:.1f}"
            f" | {r['bot_cpu_ms_per_update']:.2f} |"
        )
    by_name = {r["variant"]: r for r in results}
    for limiter in ("+limiter", ""):
        ours, bare = by_name.get(f"chainmail{limiter}"), by_name.get(f"bare{limiter}")
        if ours and bare:
            print(
                f"chainmail{limiter} / bare{limiter}: p50 {ours['p50_ms'] / bare['p50_ms']:.2f}×,"
                f" p95 {ours['p95_ms'] / bare['p95_ms']:.2f}×, bot CPU per update"
                f" {ours['bot_cpu_ms_per_update'] / bare['bot_cpu_ms_per_update']:.2f}×"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--admins", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--think-ms", default="50-300", help="think time between actions")
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temp dir")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--serve-bot", choices=("chainmail", "bare"), help=argparse.SUPPRESS)
    parser.add_argument("--no-rate-limiter", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve_bot:
        serve = serve_chainmail if args.serve_bot == "chainmail" else serve_bare
        asyncio.run(serve(not args.no_rate_limiter))
        return

    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; choose from {VARIANTS}")
    low, _, high = args.think_ms.partition("-")
    think = (float(low) / 1000, float(high or low) / 1000)
    admins = list(range(FIRST_ADMIN, FIRST_ADMIN + args.admins))
    with tempfile.TemporaryDirectory(prefix="bot-latency-") as tmp:
        workdir = Path(tmp)
        url = args.database_url or f"sqlite+aiosqlite:///{workdir / 'chainmail.db'}"
        print(
            f"{args.admins} admins, think {args.think_ms} ms, seed {args.seed},"
            f" {url.split('://')[0]}, Python {platform.python_version()},"
            f" {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        results = []
        for variant in variants:
            result = run_variant(variant, admins, url, workdir, args.seed, think)
            print(
                f"{variant}: {result['updates']} updates in {result['seconds']:.1f} s,"
                f" p95 {result['p95_ms']:.1f} ms",
                flush=True,
            )
            results.append(result)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
