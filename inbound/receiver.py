"""`chainmail inbound`: an SMTP server for the mail that comes back to BOUNCE_DOMAIN.

It is the MX (or the relay's transport) for BOUNCE_DOMAIN only: a recipient at any
other domain is refused at RCPT (no open relay), and at BOUNCE_DOMAIN only the
per-delivery addresses whose signature holds and the service mailboxes (postmaster,
abuse, and fbl, the address to register with feedback loops) are taken. Each message
is read and applied before it is answered: 250 once its findings are in the database,
451 while the database is busy, so the sending server keeps it and tries again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from aiosmtpd.smtp import SMTP, Envelope, Session

from inbound.parse import ReturnPaths, read_returned
from models.db import Database, bounded_writes
from models.errors import DatabaseBusy
from models.inbound import record_findings
from models.protection import HoldPolicy
from models.tokens import read_return_local_part

log = logging.getLogger(__name__)

# Bounces quote at most the original message; 10 MiB leaves room for one with attachments.
MAX_MESSAGE_BYTES = 10 * 1024 * 1024
# A report has one recipient; more is someone using us as a mail drop.
MAX_RECIPIENTS = 10
# How long a message waits for the database before the sender is told to try later.
WRITE_WAIT_SECONDS = 10.0
SERVICE_MAILBOXES = frozenset({"postmaster", "abuse", "fbl"})


class InboundHandler:
    """aiosmtpd's handler: RCPT decides what is taken, DATA applies it."""

    def __init__(
        self,
        db: Database,
        paths: ReturnPaths,
        policy: HoldPolicy,
        clock: Callable[[], datetime],
    ) -> None:
        if paths.bounce_domain is None:
            raise ValueError("the inbound receiver needs BOUNCE_DOMAIN")
        self._db = db
        self._paths = paths
        self._domain = paths.bounce_domain
        self._policy = policy
        self._clock = clock

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        local, at, domain = address.rpartition("@")
        if not at or domain.lower() != self._domain:
            return "550 5.7.1 Relaying denied: this server takes mail for its own domain only"
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        if local.lower() not in SERVICE_MAILBOXES and (
            read_return_local_part(self._paths.secret_key, local) is None
        ):
            return "550 5.1.1 No such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or envelope.content or b""
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        findings = await asyncio.to_thread(
            read_returned, data, list(envelope.rcpt_tos), self._paths
        )
        try:
            with bounded_writes(WRITE_WAIT_SECONDS):
                recorded = await record_findings(
                    self._db, findings, self._clock(), via="smtp", policy=self._policy
                )
        except DatabaseBusy:
            return "451 4.3.0 Busy: please try again later"
        for item in recorded:
            log.info(
                "inbound %s for delivery %d%s",
                item.finding.kind.value,
                item.finding.delivery_id,
                "" if item.changed else " (nothing new)",
            )
        if not findings:
            log.info(
                "inbound message from %s to %s: nothing to record",
                envelope.mail_from,
                ", ".join(envelope.rcpt_tos),
            )
        return "250 2.0.0 OK"


async def start_receiver(
    db: Database,
    paths: ReturnPaths,
    policy: HoldPolicy,
    *,
    host: str,
    port: int,
    hostname: str,
    clock: Callable[[], datetime],
) -> asyncio.Server:
    """Listening at once; close it with `server.close()` and `await server.wait_closed()`."""
    handler = InboundHandler(db, paths, policy, clock)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            handler,
            hostname=hostname,
            ident="Chainmail inbound",
            data_size_limit=MAX_MESSAGE_BYTES,
            enable_SMTPUTF8=True,
            decode_data=False,
        ),
        host=host,
        port=port,
    )
    log.info("inbound SMTP for %s on %s:%d", paths.bounce_domain, host, port)
    return server
