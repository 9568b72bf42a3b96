"""The receiving half of `chainmail inbound` (and of `run`, when configured)."""

from __future__ import annotations

import asyncio
import logging
import socket

from bot.settings import Settings
from inbound.imap import MailboxPoller, imap_mailbox
from inbound.parse import ReturnPaths
from inbound.receiver import start_receiver
from models.db import Database, secret_key
from models.errors import ChainmailError
from models.tables import utcnow

log = logging.getLogger(__name__)


def inbound_configured(settings: Settings) -> bool:
    return settings.inbound_smtp_port is not None or bool(settings.inbound_imap_url)


async def serve_inbound(settings: Settings, db: Database, stop: asyncio.Event) -> None:
    """The SMTP receiver when INBOUND_SMTP_PORT is set, the IMAP poller when
    INBOUND_IMAP_URL is; until `stop`."""
    paths = ReturnPaths(
        secret_key=await secret_key(db, settings.secret_key),
        bounce_domain=settings.bounce_domain.lower() or None,
        public_base_url=settings.public_base_url,
    )
    tasks = []
    server = None
    if settings.inbound_smtp_port is not None:
        try:
            server = await start_receiver(
                db,
                paths,
                settings.hold_policy(),
                host=settings.inbound_smtp_host,
                port=settings.inbound_smtp_port,
                hostname=settings.smtp_helo_name or socket.getfqdn(),
                clock=utcnow,
            )
        except OSError as exc:
            raise ChainmailError(
                f"cannot listen on {settings.inbound_smtp_host}:{settings.inbound_smtp_port}"
                f" (INBOUND_SMTP_HOST, INBOUND_SMTP_PORT): {exc.strerror or exc}"
            ) from None
    if settings.inbound_imap_url:
        mailbox = imap_mailbox(settings.inbound_imap_url)
        log.info("inbound IMAP mailbox %s on %s", mailbox.mailbox, mailbox.host)
        tasks.append(MailboxPoller(db, paths, mailbox, settings.hold_policy(), utcnow).run(stop))
    try:
        await asyncio.gather(stop.wait(), *tasks)
    finally:
        if server is not None:
            server.close()
            await server.wait_closed()
