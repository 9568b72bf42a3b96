"""Frequency caps across chains (SPEC §2): at most N messages of a channel to one customer
in a period, whatever chains they come from.

`FREQUENCY_CAP_EMAIL` and `FREQUENCY_CAP_SMS` are written `N/period` (`1/1d`, `3/7d`,
`2/12h`); the engine applies them in the claim (scheduler/claims.py), the activation
forecast counts who they would hold back (services/forecast.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from models.chainfile import format_duration, parse_duration
from models.tables import Channel


@dataclass(frozen=True)
class FrequencyCap:
    """At most `limit` messages in any `period`."""

    limit: int
    period: timedelta

    def __str__(self) -> str:
        return f"{self.limit}/{format_duration(self.period)}"


def parse_frequency_cap(text: str) -> FrequencyCap | None:
    """`1/1d` → FrequencyCap(1, 1 day); empty → None (no cap)."""
    text = text.strip()
    if not text:
        return None
    limit, slash, period = text.partition("/")
    limit = limit.strip()
    wrong = ValueError(f"{text!r} is not a cap like 1/1d or 3/7d: messages (1 or more)/period")
    if not slash or not limit.isascii() or not limit.isdigit() or int(limit) < 1:
        raise wrong
    try:
        duration = parse_duration(period.strip())
    except ValueError:
        raise wrong from None
    return FrequencyCap(int(limit), duration)


@dataclass(frozen=True)
class FrequencyCaps:
    """The cap of each channel; None: that channel has none."""

    email: FrequencyCap | None = None
    sms: FrequencyCap | None = None

    def of(self, channel: str) -> FrequencyCap | None:
        return self.email if channel == Channel.EMAIL else self.sms
