"""`chainmail stats ID [--json] [--since DAY] [--until DAY]`."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.runtime import open_database
from bot.settings import Settings
from models.lift import Group
from models.stats import ChainStats, HoldoutStats, StepStats, chain_stats, stats_document

NAME_WIDTH = 24


def _shorten(name: str) -> str:
    return name if len(name) <= NAME_WIDTH else name[: NAME_WIDTH - 1] + "…"


# (header, value of a step) in the order shown; numbers are right-aligned.
COLUMNS: list[tuple[str, Callable[[StepStats], str]]] = [
    ("#", lambda s: str(s.position)),
    ("step", lambda s: _shorten(s.name)),
    ("channel", lambda s: s.channel or "-"),
    ("coverage", lambda s: str(s.coverage)),
    ("planned", lambda s: str(s.planned)),
    ("sent", lambda s: str(s.sent)),
    ("failed", lambda s: str(s.failed)),
    ("skipped", lambda s: str(s.skipped)),
    ("uncertain", lambda s: str(s.uncertain)),
    ("delivered", lambda s: str(s.delivered)),
    ("opened", lambda s: str(s.opened)),
    ("clicked", lambda s: str(s.clicked)),
    ("unsub", lambda s: str(s.unsubscribed)),
    ("bounced", lambda s: str(s.bounced)),
    ("spam", lambda s: str(s.complained)),
    ("orders", lambda s: str(s.orders)),
    ("revenue", lambda s: f"{s.revenue:.2f}"),
    ("conversion", lambda s: f"{s.conversion_rate:.2%}"),
]
LEFT_ALIGNED = {"step", "channel"}


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    stats = commands.add_parser("stats", help="a chain's numbers per step")
    stats.add_argument("chain_id", type=int, metavar="ID")
    stats.add_argument("--json", action="store_true", help="the JSON document of SPEC §7")
    stats.add_argument(
        "--since", type=_day, metavar="YYYY-MM-DD", help="from this day on (DEFAULT_TIMEZONE)"
    )
    stats.add_argument(
        "--until", type=_day, metavar="YYYY-MM-DD", help="up to and including this day"
    )
    stats.set_defaults(handler=_stats)


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a day like 2026-03-01") from None


def _start_of(day: date, zone: str) -> datetime:
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(zone))


async def _stats(settings: Settings, args: argparse.Namespace) -> int:
    zone = settings.default_timezone
    since = _start_of(args.since, zone) if args.since else None
    until = _start_of(args.until + timedelta(days=1), zone) if args.until else None
    db = await open_database(settings)
    try:
        stats = await chain_stats(db, args.chain_id, since=since, until=until)
    finally:
        await db.dispose()
    if args.json:
        print(json.dumps(stats_document(stats), ensure_ascii=False))
    else:
        print(render_table(stats))
    return 0


def render_table(stats: ChainStats) -> str:
    """The chain's steps as rows of an aligned table, for a terminal."""
    title = f"chain {stats.chain_id} “{stats.name}” ({stats.status})"
    if not stats.steps:
        return f"{title}\nno steps yet"
    rows = [[header for header, _ in COLUMNS]]
    rows += [[value(step) for _, value in COLUMNS] for step in stats.steps]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = [title]
    for row in rows:
        cells = [
            cell.ljust(width) if header in LEFT_ALIGNED else cell.rjust(width)
            for (header, _), cell, width in zip(COLUMNS, row, widths, strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    if stats.holdout is not None:
        lines += ["", *holdout_lines(stats.holdout)]
    return "\n".join(lines)


def _group_line(label: str, group: Group) -> str:
    return (
        f"{label}: {group.customers} customers, {group.conversion_rate:.2%} ordered,"
        f" {group.orders} orders, {group.revenue:.2f}"
    )


def holdout_lines(holdout: HoldoutStats) -> list[str]:
    """The holdout's comparison under the table (docs/attribution.md)."""
    lines = [
        f"holdout {holdout.percent}% of step 1, orders within {holdout.window_days} days"
        f" of at least {holdout.min_amount}",
        _group_line("treated", holdout.treated),
        _group_line("held out", holdout.held_out),
    ]
    found = holdout.lift
    if found is None or not holdout.enough_data:
        lines.append("lift: not enough data yet")
    else:
        low, high = found.ci95
        lines.append(
            f"lift: {found.conversion_rate_delta * 100:+.2f} pp"
            f" (95% CI {low * 100:+.2f} to {high * 100:+.2f} pp),"
            f" {found.incremental_orders:+.1f} orders, {found.incremental_revenue:+.2f} revenue"
        )
    return lines
