"""`chainmail bot`: the Telegram bot alone (SPEC §8: one per database, polling)."""

from __future__ import annotations

import argparse

from bot.cli_serve import until_stopped
from bot.settings import Settings
from models.errors import ChainmailError


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    bot = commands.add_parser("bot", help="the Telegram bot (needs TELEGRAM_BOT_TOKEN)")
    bot.set_defaults(handler=_bot)


async def _bot(settings: Settings, _args: argparse.Namespace) -> int:
    if not settings.telegram_bot_token:
        raise ChainmailError("TELEGRAM_BOT_TOKEN is not set: the bot cannot start")
    return await until_stopped(settings, "bot")
