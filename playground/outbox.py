"""Reading what the outbox transports wrote: `.eml` files and `sms.jsonl` lines."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

_LINK = re.compile(r"""https?://[^\s"'<>]+""")
# Outbox file names are Message-IDs made safe (channels/smtp.py); nothing else is served.
_EMAIL_NAME = re.compile(r"[A-Za-z0-9._@+=-]+")


@dataclass(frozen=True)
class OutboxEmail:
    name: str
    sent_at: float
    recipient: str
    subject: str
    text: str
    html: str | None
    unsubscribe_url: str | None

    @property
    def open_urls(self) -> list[str]:
        return [url for url in _LINK.findall(self.html or "") if "/t/o/" in url]

    @property
    def click_urls(self) -> list[str]:
        return [url for url in _LINK.findall(self.html or "") if "/t/c/" in url]

    def summary(self) -> dict[str, object]:
        return {
            "name": self.name,
            "sent_at": self.sent_at,
            "to": self.recipient,
            "subject": self.subject,
            "unsubscribe_url": self.unsubscribe_url,
        }


def _part(message: EmailMessage, subtype: str) -> str | None:
    body = message.get_body((subtype,))
    return None if body is None else str(body.get_content())  # type: ignore[attr-defined]


def _parse(name: str, data: bytes, sent_at: float) -> OutboxEmail:
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    unsubscribe = _LINK.search(str(message.get("List-Unsubscribe", "")))
    return OutboxEmail(
        name=name,
        sent_at=sent_at,
        recipient=str(message.get("To", "")),
        subject=str(message.get("Subject", "")),
        text=_part(message, "plain") or "",
        html=_part(message, "html"),
        unsubscribe_url=unsubscribe[0] if unsubscribe else None,
    )


class Outbox:
    """The outbox directory, read on demand; a parsed email is kept until its file changes."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._parsed: dict[str, tuple[float, OutboxEmail]] = {}

    def emails(self) -> list[OutboxEmail]:
        """Every email, newest first."""
        found = []
        for path in self.directory.glob("*.eml"):
            try:
                modified = path.stat().st_mtime
            except FileNotFoundError:
                continue
            cached = self._parsed.get(path.stem)
            if cached is None or cached[0] != modified:
                cached = (modified, _parse(path.stem, path.read_bytes(), modified))
                self._parsed[path.stem] = cached
            found.append(cached[1])
        found.sort(key=lambda email: (email.sent_at, email.name), reverse=True)
        return found

    def email(self, name: str) -> OutboxEmail | None:
        if not _EMAIL_NAME.fullmatch(name):
            return None
        path = self.directory / f"{name}.eml"
        if not path.is_file():
            return None
        return _parse(name, path.read_bytes(), path.stat().st_mtime)

    def sms(self) -> list[dict[str, str]]:
        """Every SMS line, newest first."""
        path = self.directory / "sms.jsonl"
        if not path.exists():
            return []
        lines = path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in reversed(lines) if line.strip()]
