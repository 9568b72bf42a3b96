"""SpamAssassin (Debian's `spamassassin`, local tests only: `-L`, no network) scores a
message as a receiver would see it: composed and signed, sent through the loopback SMTP
server with the configured EHLO name, an external `Received:` hop prepended."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from tests.servers import SmtpTestServer
from tests.test_email_dkim import signed
from tests.test_email_smtp import configured_transport

# Longer than the pixel alone would make it (HTML_IMAGE_ONLY_*): a shop's usual letter.
HTML = (
    "<html><body><p>Здравствуйте, {{ first_name }}!</p>"
    "<p>Весенняя распродажа: скидки до 50% на всё в "
    "<a href='https://shop.example/sale'>нашем магазине</a>.</p></body></html>"
)
# A text-only step (the bot's default): its HTML part is made from this text.
TEXT = (
    "Здравствуйте, {{ first_name }}!\n\n"
    "Весенняя распродажа: скидки до 50% на всё в нашем магазине.\n"
    "Смотрите подборку: https://shop.example/sale\n\n"
    "До встречи,\nкоманда магазина"
)
MAX_SCORE = 1.0


def spamassassin() -> str:
    found = shutil.which("spamassassin")
    if found is None:
        if IN_CI:
            pytest.fail("spamassassin is missing (scripts/test installs it)")
        pytest.skip("spamassassin is not installed (apt-get install spamassassin)")
    return found


def external_hop(helo: str) -> bytes:
    """The line a receiving MX adds: the name our client gave in EHLO, a public address."""
    return (
        f"Received: from {helo} ({helo} [93.184.216.34])\r\n"
        f"\tby mx.example.com (Postfix) with ESMTPS id 4Q1x2y3z4\r\n"
        f"\tfor <ivan@example.com>; {format_datetime(datetime.now(UTC))}\r\n"
    ).encode()


@pytest.mark.parametrize(
    "step",
    [
        pytest.param({"html": HTML}, id="html"),
        pytest.param({"html": None, "text": TEXT}, id="html-made-from-text"),
    ],
)
async def test_a_generated_message_scores_at_most_one_point(
    smtp_server: SmtpTestServer, tmp_path: Path, step: dict[str, str | None]
) -> None:
    command = spamassassin()
    composed = signed(**step)
    pool = configured_transport(smtp_server, tmp_path, "mailer.shop.example")
    try:
        await pool.send("news@shop.example", "ivan@example.com", composed.message_id, composed.data)
    finally:
        await pool.aclose()
    [received] = smtp_server.messages

    scored = await asyncio.to_thread(
        subprocess.run,
        [command, "-L", "-t"],
        input=external_hop(received.helo) + received.data,
        capture_output=True,
        check=False,
        timeout=120,
    )

    # The report's own header, unfolded: "X-Spam-Status: No, score=0.6 required=5.0
    # tests=HTML_IMAGE_ONLY_08, HTML_MESSAGE autolearn=no …".
    report = re.sub(r"\r?\n[ \t]+", " ", scored.stdout.decode("utf-8", "replace"))
    status = re.search(
        r"^X-Spam-Status: \w+, score=(-?[\d.]+) required=\S+ tests=(.*?) autolearn=", report, re.M
    )
    assert status is not None, report[-2000:]
    score, rules = float(status.group(1)), status.group(2)
    print(f"SpamAssassin score {score}: {rules}")
    assert score <= MAX_SCORE, rules
