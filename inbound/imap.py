"""A hosted bounce mailbox read over IMAP (INBOUND_IMAP_URL), for shops that cannot run
an MX for BOUNCE_DOMAIN: what arrived since the last look is read with the same parser
as the SMTP receiver and marked `\\Seen` once applied. A message whose findings could
not be written (the database busy) stays unseen and is read again at the next look;
the same report twice changes nothing. Nothing is deleted: the mailbox stays the
shop's record. Python's `imaplib` (in a thread: it blocks) over TLS only.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import logging
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import unquote, urlsplit

from inbound.parse import ReturnPaths, read_returned
from models.db import Database, bounded_writes
from models.errors import DatabaseBusy
from models.inbound import record_findings
from models.protection import HoldPolicy

log = logging.getLogger(__name__)

POLL_SECONDS = 60.0
# Messages read per look; more wait for the next one.
BATCH = 200
TIMEOUT_SECONDS = 30.0
WRITE_WAIT_SECONDS = 10.0
_FETCHED_UID = re.compile(rb"UID (\d+)")


@dataclass(frozen=True)
class ImapMailbox:
    host: str
    port: int
    user: str
    password: str
    mailbox: str


def imap_mailbox(url: str) -> ImapMailbox:
    """INBOUND_IMAP_URL read, or ValueError saying what is wrong with it."""
    parts = urlsplit(url)
    if parts.scheme != "imaps":
        raise ValueError("must be an imaps:// URL: the mailbox is read over TLS only")
    if not parts.hostname or not parts.username or parts.password is None:
        raise ValueError("must name a user, a password and a host: imaps://user:pw@host")
    try:
        port = parts.port or 993
    except ValueError:
        raise ValueError("has a port that is not a number from 1 to 65535") from None
    return ImapMailbox(
        host=parts.hostname,
        port=port,
        user=unquote(parts.username),
        password=unquote(parts.password),
        mailbox=unquote(parts.path.strip("/")) or "INBOX",
    )


class MailboxPoller:
    def __init__(
        self,
        db: Database,
        paths: ReturnPaths,
        mailbox: ImapMailbox,
        policy: HoldPolicy,
        clock: Callable[[], datetime],
        *,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._db = db
        self._paths = paths
        self._mailbox = mailbox
        self._policy = policy
        self._clock = clock
        # The system's trusted CAs (SSL_CERT_FILE, if set, is among them).
        self._tls = tls or ssl.create_default_context()

    async def run(self, stop: asyncio.Event) -> None:
        """Look every POLL_SECONDS until `stop`; a failed look is logged and retried."""
        while not stop.is_set():
            try:
                await self.poll_once()
            except (OSError, imaplib.IMAP4.error) as exc:
                log.warning("IMAP %s: %s", self._mailbox.host, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL_SECONDS)

    async def poll_once(self) -> int:
        """Read what is unseen (up to BATCH); the number of messages applied."""
        connection = await asyncio.to_thread(self._open)
        try:
            fetched = await asyncio.to_thread(self._fetch_unseen, connection)
            applied: list[bytes] = []
            for uid, data in fetched:
                if await self._apply(data):
                    applied.append(uid)
            if applied:
                await asyncio.to_thread(self._mark_seen, connection, applied)
            return len(applied)
        finally:
            await asyncio.to_thread(self._close, connection)

    async def _apply(self, data: bytes) -> bool:
        findings = await asyncio.to_thread(read_returned, data, None, self._paths)
        try:
            with bounded_writes(WRITE_WAIT_SECONDS):
                await record_findings(
                    self._db, findings, self._clock(), via="imap", policy=self._policy
                )
        except DatabaseBusy:
            return False
        for finding in findings:
            log.info("inbound %s for delivery %d (imap)", finding.kind.value, finding.delivery_id)
        return True

    def _open(self) -> imaplib.IMAP4_SSL:
        box = self._mailbox
        connection = imaplib.IMAP4_SSL(
            box.host, box.port, ssl_context=self._tls, timeout=TIMEOUT_SECONDS
        )
        try:
            connection.login(box.user, box.password)
            status, detail = connection.select(_quoted(box.mailbox))
            if status != "OK":
                raise imaplib.IMAP4.error(f"cannot open mailbox {box.mailbox!r}: {detail!r}")
        except BaseException:
            connection.shutdown()
            raise
        return connection

    @staticmethod
    def _fetch_unseen(connection: imaplib.IMAP4_SSL) -> list[tuple[bytes, bytes]]:
        _, found = connection.uid("SEARCH", None, "UNSEEN")
        uids = (found[0] or b"").split()[:BATCH]
        if not uids:
            return []
        # BODY.PEEK leaves \Seen alone: only what is applied gets it.
        _, parts = connection.uid("FETCH", b",".join(uids).decode(), "(UID BODY.PEEK[])")
        messages = []
        for part in parts:
            if isinstance(part, tuple) and (uid := _FETCHED_UID.search(part[0])):
                messages.append((uid.group(1), part[1]))
        return messages

    @staticmethod
    def _mark_seen(connection: imaplib.IMAP4_SSL, uids: list[bytes]) -> None:
        connection.uid("STORE", b",".join(uids).decode(), "+FLAGS.SILENT", r"(\Seen)")

    @staticmethod
    def _close(connection: imaplib.IMAP4_SSL) -> None:
        try:
            connection.logout()
        except (OSError, imaplib.IMAP4.error):
            connection.shutdown()


def _quoted(mailbox: str) -> str:
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'
