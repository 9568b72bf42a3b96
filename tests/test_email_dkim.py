"""DKIM: messages signed by the composer verify with an independent implementation
(dkimpy, the key served by a stub DNS), also after a pass through an SMTP server; a
changed body or signed header does not; a key that cannot sign stops start-up."""

from __future__ import annotations

import base64
import email
import re
from pathlib import Path
from typing import Any

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from bot.settings import Settings, SettingsError, load_settings
from bot.transports import dkim_key
from channels.dkim import DkimKey
from channels.email_compose import ComposedEmail, EmailComposer, Recipient
from channels.smtp import SmtpPool
from tests.cli import chainmail
from tests.servers import SmtpTestServer
from tests.test_email_compose import make_step

SELECTOR = "cm2026"
DOMAIN = "shop.example"
PRIVATE_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
KEY = DkimKey(DOMAIN, SELECTOR, PRIVATE_KEY)


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def dns_record(name: bytes, timeout: int = 5) -> bytes:
    """The TXT record a receiver would look up: only the selector of our domain has one."""
    if name != f"{SELECTOR}._domainkey.{DOMAIN}.".encode():
        return b""
    public = PRIVATE_KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def verifies(data: bytes) -> bool:
    return bool(dkim.verify(data, dnsfunc=dns_record))


def signed(
    html: str | None = "<html><body><p>Привет, {{ first_name }}!</p></body></html>",
    **changes: Any,
) -> ComposedEmail:
    composer = EmailComposer(
        make_step(html=html, **changes),
        public_base_url="https://t.shop.example",
        secret_key="k",
        installation_id="0a1b2c3d4e5f",
        dkim=KEY,
    )
    return composer.compose(
        Recipient(
            9,
            45,
            "ivan@example.com",
            {"first_name": "Иван", "last_name": "Петров", "language": "ru"},
        )
    )


def signature_tags(data: bytes) -> dict[str, str]:
    value = str(email.message_from_bytes(data)["DKIM-Signature"])
    tags = (part.split("=", 1) for part in re.sub(r"\s+", "", value).split(";") if part)
    return {name: tag for name, tag in tags}


@pytest.mark.parametrize("html", ["<p>Скидка <a href='https://shop.example/'>здесь</a></p>", None])
def test_a_signed_message_verifies_straight_from_the_composer(html: str | None) -> None:
    composed = signed(html)

    assert composed.data.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;")
    assert verifies(composed.data)


def test_the_signature_covers_every_header_but_the_feedback_id() -> None:
    data = signed().data
    tags = signature_tags(data)
    present = {name.lower() for name in email.message_from_bytes(data)}

    assert (tags["d"], tags["s"], tags["a"], tags["c"]) == (
        DOMAIN,
        SELECTOR,
        "rsa-sha256",
        "relaxed/relaxed",
    )
    assert set(tags["h"].split(":")) == present - {"dkim-signature", "feedback-id"}
    assert {"list-unsubscribe", "list-unsubscribe-post", "list-id"} <= present
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))


async def test_a_signed_message_verifies_after_a_pass_through_an_smtp_server(
    smtp_server: SmtpTestServer,
) -> None:
    composed = signed()
    pool = SmtpPool(smtp_server.host, smtp_server.port, timeout=5.0, local_hostname="test")
    try:
        await pool.send("news@shop.example", "ivan@example.com", composed.message_id, composed.data)
    finally:
        await pool.aclose()

    [received] = smtp_server.messages
    assert verifies(received.data)


def test_a_test_sends_own_message_id_is_signed_too() -> None:
    composer = EmailComposer(
        make_step(),
        public_base_url="https://t.shop.example",
        secret_key="k",
        installation_id="0a1b2c3d4e5f",
        dkim=KEY,
    )
    composed = composer.compose(
        Recipient(0, 45, "me@example.com", {}), "<cm.test.7.1@shop.example>"
    )

    assert b"Message-ID: <cm.test.7.1@shop.example>\r\n" in composed.data
    assert verifies(composed.data)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (
            b"Content-Transfer-Encoding: base64\r\n\r\n0",
            b"Content-Transfer-Encoding: base64\r\n\r\n1",
        ),
        (b"List-Unsubscribe-Post: List-Unsubscribe=One-Click", b"List-Unsubscribe-Post: No"),
        (b"<ivan@example.com>", b"<ivan@example.org>"),
        (
            b"List-Unsubscribe: <https://t.shop.example/u/",
            b"List-Unsubscribe: <https://evil.example/u/",
        ),
    ],
)
def test_a_changed_body_or_signed_header_fails_verification(old: bytes, new: bytes) -> None:
    data = signed().data
    assert old in data

    assert not verifies(data.replace(old, new, 1))


def test_an_unsigned_message_carries_no_signature() -> None:
    composer = EmailComposer(
        make_step(), public_base_url="https://t", secret_key="k", installation_id="0a1b2c3d4e5f"
    )

    assert b"DKIM-Signature" not in composer.compose(Recipient(1, 2, "a@example.com", {})).data


def test_the_settings_give_a_key_for_the_mail_from_domain(tmp_path: Path) -> None:
    path = tmp_path / "dkim.pem"
    path.write_bytes(pem(PRIVATE_KEY))
    path.chmod(0o600)

    key = dkim_key(
        Settings(
            mail_from="Shop <news@Shop.Example>",
            dkim_selector=SELECTOR,
            dkim_private_key_file=path,
        )
    )

    assert key is not None
    assert (key.domain, key.selector) == ("shop.example", SELECTOR)
    assert PRIVATE_KEY.private_numbers() == key.private_key.private_numbers()
    assert "PRIVATE" not in repr(key)
    assert dkim_key(Settings()) is None


@pytest.mark.parametrize(
    ("contents", "message"),
    [
        (None, "cannot read"),
        (b"not a key", "is not a PEM private key"),
        (pem(ec.generate_private_key(ec.SECP256R1())), "is not an RSA key"),
        (
            pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)),
            "holds a 1024-bit RSA key; at least 2048 bits are needed",
        ),
    ],
)
def test_a_key_that_cannot_sign_stops_start_up_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, contents: bytes | None, message: str
) -> None:
    path = tmp_path / "dkim.pem"
    if contents is not None:
        path.write_bytes(contents)
    monkeypatch.setenv("DKIM_SELECTOR", SELECTOR)
    monkeypatch.setenv("DKIM_PRIVATE_KEY_FILE", str(path))

    with pytest.raises(SettingsError) as refused:
        load_settings()

    line = str(refused.value)
    assert line.startswith("setting DKIM_PRIVATE_KEY_FILE: ")
    assert str(path) in line
    assert message in line
    assert "\n" not in line
    assert "BEGIN" not in line


def test_a_key_without_a_selector_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "dkim.pem"
    path.write_bytes(pem(PRIVATE_KEY))
    monkeypatch.delenv("DKIM_SELECTOR", raising=False)
    monkeypatch.setenv("DKIM_PRIVATE_KEY_FILE", str(path))

    with pytest.raises(SettingsError, match=r"^setting DKIM_PRIVATE_KEY_FILE: needs DKIM_SELECTOR"):
        load_settings()


def test_the_cli_refuses_a_short_key_in_one_line_without_showing_it(tmp_path: Path) -> None:
    short = pem(rsa.generate_private_key(public_exponent=65537, key_size=1024))
    path = tmp_path / "dkim.pem"
    path.write_bytes(short)
    result = chainmail(
        f"sqlite+aiosqlite:///{tmp_path / 'chainmail.db'}",
        "chains",
        "list",
        cwd=tmp_path,
        env={"DKIM_SELECTOR": SELECTOR, "DKIM_PRIVATE_KEY_FILE": str(path)},
    )

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"chainmail: setting DKIM_PRIVATE_KEY_FILE: {path} holds a 1024-bit RSA key;"
        " at least 2048 bits are needed"
    ]
    key_lines = short.decode().splitlines()[1:-1]
    assert not any(line in result.stdout + result.stderr for line in key_lines)
