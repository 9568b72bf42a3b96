"""`chainmail inbound`: bounces, complaints and mailto unsubscribes coming back."""

from __future__ import annotations

import argparse

from bot.cli_serve import until_stopped
from bot.inbound_process import inbound_configured
from bot.settings import Settings
from models.errors import ChainmailError


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    inbound = commands.add_parser(
        "inbound",
        help="receive bounces, complaints and mailto unsubscribes (SMTP for BOUNCE_DOMAIN, "
        "or an IMAP mailbox)",
    )
    inbound.set_defaults(handler=_inbound)


async def _inbound(settings: Settings, _args: argparse.Namespace) -> int:
    if not inbound_configured(settings):
        raise ChainmailError(
            "nothing to receive: set INBOUND_SMTP_PORT (with BOUNCE_DOMAIN) or INBOUND_IMAP_URL"
        )
    return await until_stopped(settings, "inbound")
