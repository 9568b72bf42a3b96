"""The `chainmail` command (also `python -m bot`).

Each area registers its subcommands from its own module; every subcommand is a
thin door onto a service in `models/` (STYLE.md: one core, several doors).
Exit codes: 0 success, 1 a refusal or failure (one line on stderr), 2 bad
settings or bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from importlib.metadata import version

import phonenumbers

from bot import (
    cli_admin,
    cli_bot,
    cli_chains,
    cli_customers,
    cli_inbound,
    cli_orders,
    cli_playground,
    cli_serve,
    cli_stats,
)
from bot.runtime import configure_logging
from bot.settings import Settings, SettingsError, load_settings
from models.errors import ChainmailError
from models.timezones import phone_zones_sources, tzdata_version

Handler = Callable[[Settings, argparse.Namespace], Awaitable[int] | int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chainmail",
        description="Chains of marketing mailings, run from Telegram.",
        # Keeps the lines of --version as they are.
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=version_text())
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (
        cli_serve,
        cli_playground,
        cli_bot,
        cli_customers,
        cli_orders,
        cli_chains,
        cli_stats,
        cli_admin,
        cli_inbound,
    ):
        module.register(commands)
    return parser


def version_text() -> str:
    """Chainmail's version and the age of what tells customers' time zones."""
    plan = phone_zones_sources()["numbering-plan"]
    return (
        f"chainmail {version('chainmail')}\n"
        f"time zones from phones: Russian numbering plan of {plan};\n"
        f"  phonenumbers {phonenumbers.__version__}, tzdata {tzdata_version()}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"chainmail: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings)
    handler: Handler = args.handler
    try:
        result = handler(settings, args)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        return int(result)  # type: ignore[arg-type]
    except ChainmailError as exc:
        print(f"chainmail: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
