"""Several `chainmail worker` processes on one PostgreSQL database, as an operator runs them.

Real processes, a real SMTP server on loopback (tests/servers.py, in a thread of
this process), one chain. What SPEC §4 promises: any number of workers share the
sending with no message sent twice, and a worker killed at any moment costs at
most the messages it had in flight, which end `uncertain`, never resent.

PostgreSQL only: SQLite is the one-process embedded default.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from bot.settings import Settings
from models.chains import import_chain
from models.db import Database
from models.segments import add_segment
from models.tables import Customer, Delivery, DeliveryStatus
from services.lifecycle import activate_chain
from tests.servers import ReceivedMessage, SmtpFaults, SmtpTestServer

pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)

ROOT = Path(__file__).resolve().parents[1]
UNFINISHED = (DeliveryStatus.PLANNED.value, DeliveryStatus.SENDING.value)
# What a worker may have in flight at once: two of Sender's groups of
# max(EMAIL_CONCURRENCY * 4, 16).
GROUP_SIZE = 64

CHAIN = """
format: chainmail/1
name: Распродажа
steps:
  - name: Main
    audience: {segments: [everyone]}
    action:
      channel: email
      subject: "Привет, {{ first_name }}"
      text: "Скидки до 50%: https://shop.example/sale"
      html: "<p>Скидки до 50%: <a href='https://shop.example/sale'>распродажа</a></p>"
    schedule: {send: now}
"""


async def add_audience(db: Database, count: int) -> None:
    """`count` customers tagged `all`, set-based: two statements, not `count` round trips."""
    async with db.writer() as session:
        await session.execute(
            text(
                "INSERT INTO customers (external_id, email, first_name, timezone,"
                " timezone_source, email_status, sms_status, attributes, created_at, updated_at)"
                " SELECT 'c' || n, 'c' || n || '@example.com', 'Имя' || n, 'Europe/Moscow',"
                " 'explicit', 'subscribed', 'subscribed', '{}', now(), now()"
                " FROM generate_series(1, :count) AS n"
            ),
            {"count": count},
        )
        await session.execute(
            text("INSERT INTO customer_tags (customer_id, tag) SELECT id, 'all' FROM customers")
        )


async def activated_chain(db: Database, customers: int) -> int:
    await add_audience(db, customers)
    await add_segment(db, "everyone", ["all"], "any", actor="test")
    chain_id = (await import_chain(db, CHAIN, actor="test")).chain_id
    assert (await activate_chain(db, chain_id, actor="test")).enrolled == customers
    return chain_id


async def statuses(db: Database) -> dict[str, int]:
    async with db.session() as session:
        rows = await session.execute(
            select(Delivery.status, func.count()).group_by(Delivery.status)
        )
        return dict(rows.all())


async def unfinished(db: Database) -> int:
    async with db.session() as session:
        return await session.scalar(
            select(func.count()).select_from(Delivery).where(Delivery.status.in_(UNFINISHED))
        )


_MESSAGE_ID = re.compile(rb"^Message-ID: (\S+)\r?$", re.MULTILINE | re.IGNORECASE)


def message_id(message: ReceivedMessage) -> str:
    # A regex, not the email parser: 20,000 parses would take longer than the sending.
    found = _MESSAGE_ID.search(message.data)
    assert found, message.data[:500]
    return found.group(1).decode()


def envelope_recipient(message: ReceivedMessage) -> str:
    (recipient,) = message.rcpt_tos
    return recipient


class Workers:
    """`chainmail worker` subprocesses; each one's stderr in a file (a pipe could fill up)."""

    def __init__(self, db_url: str, smtp_port: int, directory: Path) -> None:
        self._db_url = db_url
        self._smtp_port = smtp_port
        self._directory = directory
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> subprocess.Popen[bytes]:
        # Nothing of the test runner's own environment may reach the settings.
        environment = {
            k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields
        }
        environment |= {
            "PYTHONPATH": str(ROOT),
            "DATABASE_URL": self._db_url,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(self._smtp_port),
            "ENGINE_TICK_SECONDS": "0.2",
            "EMAIL_CONCURRENCY": "8",
            "LOG_LEVEL": "WARNING",
            "OUTBOX_DIR": str(self._directory / "outbox"),
            # The server cannot tell connections apart; the envelope sender tells
            # which worker sent a message. Same domain, so the same Message-IDs.
            "MAIL_FROM": f"Магазин <{name}@shop.example>",
        }
        with (self._directory / f"{name}.stderr").open("wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "bot", "worker"],
                cwd=self._directory,
                env=environment,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        self.processes[name] = process
        return process

    def stderr(self, name: str) -> str:
        return (self._directory / f"{name}.stderr").read_text(errors="replace")

    def kill(self, name: str) -> None:
        """SIGKILL: no clean-up of any kind, as when a machine dies."""
        process = self.processes.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def pause(self, name: str) -> None:
        """SIGSTOP: frozen as by a long GC pause, a VM migration or a stuck SMTP reply."""
        process = self.processes[name]
        process.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + 5
        # The third field of /proc/PID/stat is the state; T once stopped.
        while Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "T":
            assert time.monotonic() < deadline, f"{name} did not stop"
            time.sleep(0.001)

    def resume(self, name: str) -> None:
        self.processes[name].send_signal(signal.SIGCONT)

    def assert_healthy(self) -> None:
        """Every worker still runs, and no tick of any has failed."""
        for name, process in self.processes.items():
            assert process.poll() is None, f"{name} exited: {self.stderr(name)[-3000:]}"
            assert "Traceback" not in self.stderr(name), self.stderr(name)[-3000:]

    def stop_all(self) -> None:
        """SIGTERM, as an operator stops them; each must exit 0.

        Only the exit code is checked here: a tick in progress is cancelled by the
        stop and APScheduler logs that with a traceback (reported to the lead).
        """
        self.assert_healthy()
        for process in self.processes.values():
            process.send_signal(signal.SIGTERM)
        for name, process in self.processes.items():
            assert process.wait(timeout=20) == 0, self.stderr(name)[-3000:]

    def kill_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.kill()
            process.wait(timeout=10)


@contextmanager
def workers(db_url: str, smtp_port: int, directory: Path) -> Iterator[Workers]:
    group = Workers(db_url, smtp_port, directory)
    try:
        yield group
    finally:
        group.kill_all()


async def wait_until(
    done: Callable[[], Awaitable[bool]], *, seconds: float, workers: Workers, what: str
) -> None:
    """Poll `done` until true, failing at once if a worker died."""
    deadline = time.monotonic() + seconds
    while not await done():
        workers.assert_healthy()
        assert time.monotonic() < deadline, f"not done within {seconds} s: {what}"
        await asyncio.sleep(0.2)


async def pause_outside_transactions(group: Workers, name: str, db: Database) -> None:
    """Freeze a worker at a moment it holds no transaction open.

    Frozen inside one, it would keep its row locks, and the others would wait for
    it as PostgreSQL makes them (that is what idle_in_transaction_session_timeout
    is for); not what this is about.
    """
    for _ in range(500):
        group.pause(name)
        async with db.session() as session:
            busy = await session.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND pid <> pg_backend_pid() AND state <> 'idle'"
                )
            )
        if not busy:
            return
        group.resume(name)
        await asyncio.sleep(0.002)
    raise AssertionError(f"{name} was never found outside a transaction")


async def quiet(smtp: SmtpTestServer, seconds: float) -> bool:
    """No message arrived for `seconds`."""
    before = len(smtp.messages)
    await asyncio.sleep(seconds)
    return len(smtp.messages) == before


async def _at_least(smtp: SmtpTestServer, count: int) -> bool:
    return len(smtp.messages) >= count


async def test_three_workers_share_20000_emails_and_send_each_once(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    audience = 20_000
    await activated_chain(db, audience)
    with SmtpTestServer() as smtp, workers(db_url, smtp.port, tmp_path) as group:
        started = time.monotonic()
        for name in ("w1", "w2", "w3"):
            group.start(name)

        async def all_sent() -> bool:
            return len(smtp.messages) >= audience and await unfinished(db) == 0

        await wait_until(all_sent, seconds=120, workers=group, what="20,000 emails sent")
        elapsed = time.monotonic() - started
        group.stop_all()
        received = smtp.messages

    assert len(received) == audience, f"the server got {len(received)} messages"
    ids = Counter(message_id(m) for m in received)
    assert [i for i, n in ids.items() if n > 1] == []
    assert len({envelope_recipient(m) for m in received}) == audience
    assert await statuses(db) == {"sent": audience}
    async with db.session() as session:
        recorded = set(await session.scalars(select(Delivery.message_id)))
    assert recorded == set(ids)
    by_worker = Counter(m.mail_from for m in received)
    assert set(by_worker) == {"w1@shop.example", "w2@shop.example", "w3@shop.example"}, by_worker
    print(f"\n20,000 emails by three workers in {elapsed:.1f} s: {dict(by_worker)}")


async def test_worker_killed_mid_wave_leaves_uncertain_never_duplicates(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    audience = 5_000
    await activated_chain(db, audience)
    with SmtpTestServer() as smtp, workers(db_url, smtp.port, tmp_path) as group:
        group.start("w1")
        await wait_until(
            lambda: _at_least(smtp, 1_000), seconds=60, workers=group, what="the first 1,000"
        )
        # From now on the server records each message and never answers: the worker
        # is caught with a group in flight, some messages on the server, some not yet
        # handed over, and none of them known to be sent.
        smtp.faults = SmtpFaults(slow_reply=120)

        async def stuck() -> bool:
            return await quiet(smtp, 0.3) and (await statuses(db)).get("sending", 0) > 0

        await wait_until(stuck, seconds=30, workers=group, what="a group in flight")
        group.kill("w1")
        smtp.faults = SmtpFaults()
        at_kill = len(smtp.messages)
        left = await statuses(db)
        assert left.get("planned", 0) > 0, left

        # w2 finds w1's heartbeat stopped (workers.DEAD_AFTER), takes back its claim
        # and sends the rest: within a minute of the kill, with nothing expired by hand.
        group.start("w2")

        async def nothing_left() -> bool:
            return await unfinished(db) == 0

        await wait_until(nothing_left, seconds=60, workers=group, what="the second worker's part")
        group.stop_all()
        received = smtp.messages

    ids = Counter(message_id(m) for m in received)
    assert [i for i, n in ids.items() if n > 1] == []
    recipients = Counter(envelope_recipient(m) for m in received)
    assert [r for r, n in recipients.items() if n > 1] == []

    async with db.session() as session:
        rows = (
            await session.execute(
                select(Delivery.status, Customer.email).join(
                    Customer, Customer.id == Delivery.customer_id
                )
            )
        ).all()
    by_status: dict[str, set[str]] = {}
    for status, address in rows:
        by_status.setdefault(status, set()).add(address)
    assert set(by_status) <= {"sent", "uncertain"}, {s: len(a) for s, a in by_status.items()}
    sent, uncertain = by_status.get("sent", set()), by_status.get("uncertain", set())
    assert len(sent) + len(uncertain) == audience
    # Every `sent` arrived; whatever else arrived was in flight when the worker died.
    assert sent <= set(recipients)
    assert set(recipients) - sent <= uncertain
    assert len(received) == len(sent) + len(uncertain & set(recipients))
    # A crash costs at most the group in flight, never more. Of that group, the
    # messages waiting for their reply had reached the server (the others may
    # have or not, depending on where the group was): none is sent again.
    assert len(uncertain) <= GROUP_SIZE, len(uncertain)
    assert uncertain & set(recipients), "none of the uncertain had arrived"
    print(
        f"\nkilled after {at_kill} messages: {len(sent)} sent, {len(uncertain)} uncertain"
        f" ({len(uncertain & set(recipients))} of them had arrived)"
    )


async def test_worker_frozen_past_its_lease_does_not_resend_what_another_sent(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    audience = 5_000
    await activated_chain(db, audience)
    with SmtpTestServer() as smtp, workers(db_url, smtp.port, tmp_path) as group:
        group.start("w1")
        # Mid-batch: a claim is 500 rows, so w1 holds some not yet sent.
        await wait_until(
            lambda: _at_least(smtp, 700), seconds=60, workers=group, what="the first 700"
        )
        await pause_outside_transactions(group, "w1", db)
        group.start("w2")

        async def nothing_left() -> bool:
            return await unfinished(db) == 0

        await wait_until(nothing_left, seconds=60, workers=group, what="w2 sending the rest")
        decided = await outcomes(db)
        # w1 wakes up with the rest of its batch in hand, its heartbeat long stopped.
        group.resume("w1")
        await wait_until(lambda: quiet(smtp, 1.0), seconds=30, workers=group, what="w1 settling")
        group.stop_all()
        received = smtp.messages
        after = await outcomes(db)

    ids = Counter(message_id(m) for m in received)
    assert [i for i, n in ids.items() if n > 1] == []
    # Whatever w2 decided about a row stands: w1's late writes were refused.
    assert after == decided
    by_status = Counter(decided.values())
    assert set(by_status) <= {"sent", "uncertain"}, by_status
    assert by_status.get("uncertain", 0) <= GROUP_SIZE, by_status


async def outcomes(db: Database) -> dict[int, str]:
    async with db.session() as session:
        return dict((await session.execute(select(Delivery.id, Delivery.status))).all())
