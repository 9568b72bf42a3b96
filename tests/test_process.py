"""`chainmail run` as an operator starts it: embedded defaults, one process, clean stop."""

from __future__ import annotations

import os
import signal
import smtplib
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _chainmail(tmp_path: Path, *args: str, **settings: str) -> subprocess.Popen[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SMTP_", "SMS_", "DATABASE_", "OUTBOX_", "INBOUND_", "BOUNCE_"))
    }
    env |= {"PYTHONPATH": str(ROOT), "ENGINE_TICK_SECONDS": "0.2", **settings}
    return subprocess.Popen(
        [sys.executable, "-m", "bot", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stops_cleanly(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr


def test_run_serves_health_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    process = _chainmail(tmp_path, "run", WEB_PORT=str(port))
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.communicate()[1]
                assert time.monotonic() < deadline, "chainmail run did not start"
                time.sleep(0.1)
        assert response.json() == {"status": "ok"}
        assert (tmp_path / "chainmail.db").exists()
        _stops_cleanly(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_run_with_an_inbound_port_receives_mail_for_the_bounce_domain_only(
    tmp_path: Path,
) -> None:
    port = _free_port()
    process = _chainmail(
        tmp_path,
        "run",
        WEB_PORT=str(_free_port()),
        BOUNCE_DOMAIN="bounce.shop.example",
        INBOUND_SMTP_PORT=str(port),
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                client = smtplib.SMTP("127.0.0.1", port, timeout=5)
                break
            except OSError:
                assert process.poll() is None, process.communicate()[1]
                assert time.monotonic() < deadline, "the inbound receiver did not start"
                time.sleep(0.1)
        with client:
            client.ehlo("mx.example.com")
            client.mail("<>")
            assert client.rcpt("someone@example.org")[0] == 550
            assert client.rcpt("postmaster@bounce.shop.example")[0] == 250
        _stops_cleanly(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


@pytest.mark.parametrize(
    ("settings", "said"),
    [
        ({}, "nothing to receive: set INBOUND_SMTP_PORT"),
        ({"INBOUND_SMTP_PORT": "2525"}, "setting INBOUND_SMTP_PORT: needs BOUNCE_DOMAIN too"),
        ({"INBOUND_IMAP_URL": "imap://u:p@h"}, "setting INBOUND_IMAP_URL: must be an imaps://"),
    ],
)
def test_inbound_without_what_it_needs_says_so_in_one_line(
    tmp_path: Path, settings: dict[str, str], said: str
) -> None:
    process = _chainmail(tmp_path, "inbound", **settings)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode != 0
    assert said in stderr
    assert "Traceback" not in stderr
