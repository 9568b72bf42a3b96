"""`chainmail playground`: the whole product on demo data, with a Telegram chat in the browser."""

from __future__ import annotations

import argparse
from pathlib import Path

from bot.settings import Settings
from playground import texts
from playground.server import PlaygroundOptions, run_playground

DEFAULT_PORT = 8080
DEFAULT_DATA_DIR = Path("playground-data")


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("playground", help=texts.HELP)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=texts.HELP_PORT)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help=texts.HELP_DATA_DIR)
    parser.add_argument("--no-demo-shop", action="store_true", help=texts.HELP_NO_SHOP)
    parser.set_defaults(handler=_playground)


async def _playground(settings: Settings, args: argparse.Namespace) -> int:
    options = PlaygroundOptions(args.port, args.data_dir, demo_shop=not args.no_demo_shop)

    def ready(url: str) -> None:
        print(texts.READY.format(url=url), flush=True)

    return await run_playground(settings, options, ready)
