"""Automatic hold (SPEC §4): a step whose mail bounces or draws spam complaints past
the limits pauses its chain, before the rest of its wave harms the sender's reputation.

`hold_reason` is the rule, over counts. `hold_unhealthy_steps` applies it where a
bounce or a complaint is recorded — the sender for refusals at SMTP time
(scheduler/sending.py), the inbound receiver for DSNs and feedback-loop reports —
in that transaction, for the steps concerned only: no tick rescans every step.
The engine re-reads a chain's status before each group goes on the wire
(`scheduler.claims.recheck`), so a hold reaches every message not yet sent.

The rates are of the messages handed to the channel: those that left (`sent`,
`uncertain`) and those refused at once with a bounce (`failed`, with a `bounced`
event). A DSN that turns a `sent` message `failed` so keeps it in the
denominator, and a sync refusal counts as what it is, a message that bounced.
They are over the step's whole life: a chain resumed while its step is still
over a limit is held again at its next bounce or complaint.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from models.attribution_table import LEFT_SQL
from models.holds import HoldKind, hold_chain

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HoldPolicy:
    """HOLD_COMPLAINT_RATE, HOLD_BOUNCE_RATE and HOLD_MIN_SENT; rates as exact fractions
    of the messages sent, so that "reaches" is exact at the boundary."""

    complaint_rate: Decimal = Decimal("0.003")
    bounce_rate: Decimal = Decimal("0.05")
    min_sent: int = 200


@dataclass(frozen=True)
class StepHealth:
    position: int
    name: str
    # Handed to the channel: left, or refused at once with a bounce.
    sent: int
    # Deliveries with a `bounced` event, and with a `complained` event.
    bounced: int
    complained: int


def hold_reason(step: StepHealth, policy: HoldPolicy) -> str | None:
    """Why the step's chain must be held, in a manager's words; None while it is healthy
    or has sent fewer than `policy.min_sent` messages."""
    if step.sent < policy.min_sent or step.sent <= 0:
        return None
    crossed = [
        (f"{label} {_percent(Fraction(count, step.sent), limit)}", _limit(limit))
        for label, count, limit in (
            ("spam complaints", step.complained, policy.complaint_rate),
            ("hard bounces", step.bounced, policy.bounce_rate),
        )
        if Fraction(count, step.sent) >= Fraction(limit)
    ]
    if not crossed:
        return None
    rates = " and ".join(rate for rate, _ in crossed)
    limits = " and ".join(limit for _, limit in crossed)
    plural = "limits" if len(crossed) > 1 else "limit"
    return f"step {step.position} ({step.name}): {rates} of {step.sent} sent ({plural} {limits})"


def _places(limit: Decimal) -> int:
    exponent = (limit * 100).normalize().as_tuple().exponent
    return max(-exponent, 0) if isinstance(exponent, int) else 0


def _limit(limit: Decimal) -> str:
    return f"{(limit * 100).normalize():f} %"


def _percent(rate: Fraction, limit: Decimal) -> str:
    # At least the limit's decimals: rounding is monotonic, so a rate that reached
    # the limit never reads as below it.
    places = max(_places(limit), 1)
    value = Decimal(rate.numerator * 100) / Decimal(rate.denominator)
    shown = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP).normalize()
    return f"{shown:f} %"


@dataclass(frozen=True)
class ProtectionHold:
    chain_id: int
    step_id: int
    reason: str


# The steps of active chains only: a held chain's storm of bounces costs no more reads.
# A step's bounces and complaints are read from the events of its id range (the
# index on events (delivery_id, type) alone), then joined to their deliveries;
# what left is counted from the index on deliveries (step_id, status, …).
_STEP_HEALTH = f"""
WITH live AS (
    SELECT s.id FROM steps s JOIN chains c ON c.id = s.chain_id
    WHERE s.id IN :step_ids AND c.status = 'active'
),
span AS (
    SELECT MIN(d.id) AS first_id, MAX(d.id) AS last_id
    FROM deliveries d WHERE d.step_id IN (SELECT id FROM live)
),
trouble AS (
    SELECT e.delivery_id,
           MAX(CASE WHEN e.type = 'bounced' THEN 1 ELSE 0 END) AS bounced,
           MAX(CASE WHEN e.type = 'complained' THEN 1 ELSE 0 END) AS complained
    FROM events e
    WHERE e.type IN ('bounced', 'complained')
      AND e.delivery_id BETWEEN (SELECT first_id FROM span) AND (SELECT last_id FROM span)
    GROUP BY e.delivery_id
),
counts AS (
    SELECT d.step_id, COUNT(*) AS sent, 0 AS bounced, 0 AS complained
    FROM deliveries d
    WHERE d.step_id IN (SELECT id FROM live) AND d.status IN ({LEFT_SQL})
    GROUP BY d.step_id
    UNION ALL
    SELECT d.step_id,
           SUM(CASE WHEN d.status IN ({LEFT_SQL}) THEN 0 ELSE t.bounced END),
           SUM(t.bounced),
           SUM(t.complained)
    FROM trouble t JOIN deliveries d ON d.id = t.delivery_id
    WHERE d.step_id IN (SELECT id FROM live)
    GROUP BY d.step_id
)
SELECT s.id, s.chain_id, s.position, s.name,
       SUM(c.sent) AS sent, SUM(c.bounced) AS bounced, SUM(c.complained) AS complained
FROM counts c JOIN steps s ON s.id = c.step_id
GROUP BY s.id, s.chain_id, s.position, s.name
ORDER BY s.chain_id, s.position
"""


async def hold_unhealthy_steps(
    session: AsyncSession,
    step_ids: Collection[int],
    policy: HoldPolicy,
    now: datetime,
    *,
    actor: str = "engine",
) -> list[ProtectionHold]:
    """Hold the active chains of those of `step_ids` over a limit, in the caller's
    transaction (after it recorded its bounces or complaints); the holds made.

    A chain is held once, by its first step over a limit; the hold is told to the
    owners and admins by the worker that tells every hold (models/holds.py).
    """
    if not step_ids:
        return []
    # The caller's bounces and complaints may still be pending in the session.
    await session.flush()
    statement = text(_STEP_HEALTH).bindparams(bindparam("step_ids", expanding=True))
    rows = await session.execute(statement, {"step_ids": sorted(set(step_ids))})
    holds: list[ProtectionHold] = []
    for step_id, chain_id, position, name, sent, bounced, complained in rows:
        if any(hold.chain_id == chain_id for hold in holds):
            continue
        health = StepHealth(position, name, int(sent), int(bounced), int(complained))
        reason = hold_reason(health, policy)
        if reason is None:
            continue
        if await hold_chain(
            session, chain_id, reason, now, actor=actor, kind=HoldKind.DELIVERABILITY
        ):
            log.warning("chain %d held: %s", chain_id, reason)
            holds.append(ProtectionHold(chain_id, step_id, reason))
    return holds
