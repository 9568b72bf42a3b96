"""A chain's holdout: who is held out, and the query that compares them with the rest.

`holdout_percent` of a chain's main-step audience is held out: the claim marks their
main-step row `held_out` at the moment it would have been sent (scheduler/claims.py)
and nothing is ever sent to them, in that chain, nor planned after it. Who is held out
is a stable hash of (chain, customer), the same in every process and on either
database, so it never depends on the order customers are planned or claimed in:

    bucket = first 8 bytes of sha256("<chain id>:<customer id>"), big-endian, mod 10000
    held out  ⇔  bucket < holdout_percent × 100

(a uniform 0–9999: the modulo's bias over 2**64 is below 10**-15). The comparison of
the two groups (intent to treat) is one grouped query, `itt_sql`, read by
`models.stats`; docs/attribution.md, "Holdout and lift", defines every number.
"""

from __future__ import annotations

import hashlib

from models import reasons
from models.attribution_table import cancelled_sql, window_end_sql
from models.tables import DeliveryStatus

BUCKETS = 10_000


def holdout_bucket(chain_id: int, customer_id: int) -> int:
    """The customer's place, 0–9999, in the chain's holdout draw."""
    digest = hashlib.sha256(f"{chain_id}:{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def is_held_out(chain_id: int, customer_id: int, holdout_percent: int) -> bool:
    return holdout_bucket(chain_id, customer_id) < holdout_percent * (BUCKETS // 100)


# The main step's customers whose moment has come: assigned to a group. A row skipped
# because the step was stopped never came to its moment (the stop skipped it while
# planned, whichever group it would have been in), so it is in neither.
_ASSIGNED = ", ".join(
    f"'{status.value}'"
    for status in (
        DeliveryStatus.SENT,
        DeliveryStatus.FAILED,
        DeliveryStatus.SKIPPED,
        DeliveryStatus.UNCERTAIN,
        DeliveryStatus.HELD_OUT,
    )
)
# When the customer was assigned: the message handed over (`sent_at`), or finally
# failed (`triggered_at`); else decided at its due moment — skipped, or held out at
# the moment it would have gone (the claim writes that moment into `due_at`).
MOMENT = "COALESCE(d.sent_at, d.triggered_at, d.due_at)"

# Orders are every order of the customer created in [moment, moment + window) of at
# least the minimum amount, attributed to anything or not: what intent to treat counts.
# `{until}` cuts both the assignments and the orders at a moment.
#
# Each order as it stood at the window's end, as attribution reads a new order
# (docs/attribution.md, "Mechanics"): cancelled by then, or under the minimum, it is no
# conversion. An order whose last change came before the window's end (most: its
# `updated_at` is its latest state's moment) stands as it is now; only one changed
# since is read from `order_changes`.
_CURRENT = "o.updated_at < {window_end} {updated_until}"
_AMOUNT = f"CASE WHEN {_CURRENT} THEN o.amount ELSE st.amount END"
_COUNTS = (
    f"(o.id IS NOT NULL AND {_AMOUNT} >= :min_amount AND NOT (CASE WHEN {_CURRENT}"
    f" THEN {cancelled_sql('o')} ELSE st.id IS NULL OR {cancelled_sql('st')} END))"
)
_ITT = f"""
SELECT f.held_out,
       COUNT(*) AS customers,
       SUM(f.converted) AS converted,
       SUM(f.orders) AS orders,
       SUM(f.revenue_cents) AS revenue_cents
FROM (
    SELECT a.id, a.held_out,
           SUM(CASE WHEN {_COUNTS} THEN 1 ELSE 0 END) AS orders,
           MAX(CASE WHEN {_COUNTS} THEN 1 ELSE 0 END) AS converted,
           COALESCE(SUM(CASE WHEN {_COUNTS} THEN ROUND({_AMOUNT} * 100) END), 0)
               AS revenue_cents
    FROM (
        SELECT d.id, d.customer_id,
               CASE WHEN d.status = '{DeliveryStatus.HELD_OUT.value}' THEN 1 ELSE 0 END
                   AS held_out,
               {MOMENT} AS moment
        FROM {{deliveries}}
        WHERE d.chain_id = :chain_id AND d.step_id = :step_id AND d.status IN ({_ASSIGNED})
          AND NOT (d.status = '{DeliveryStatus.SKIPPED.value}'
                   AND d.reason = '{reasons.STEP_STOPPED}')
          {{assigned_until}}
    ) a
    LEFT JOIN orders o
      ON o.customer_id = a.customer_id
     AND o.created_at >= a.moment AND o.created_at < {{window_end}} {{ordered_until}}
    -- An order changed after the window's end: its state then, from its history.
    LEFT JOIN order_changes st
      ON st.id = CASE WHEN {_CURRENT} THEN NULL ELSE
                 (SELECT c.id FROM order_changes c
                  WHERE c.order_id = o.id AND c.changed_at < {{window_end}} {{changed_until}}
                  ORDER BY c.changed_at DESC, c.id DESC LIMIT 1) END
    GROUP BY a.id, a.held_out
) f
GROUP BY f.held_out
"""


# SQLite reads the chain's deliveries in id order, off the index stats read them from
# (models/tables.py): the per-delivery GROUP BY then streams instead of sorting, and the
# rows are read from the table in the order they lie. Left to itself it takes the
# step's index and sorts: 0.36 s against 0.90 s for 100,000 main-step customers
# (docs/benchmarks.md, "Stats"). PostgreSQL's planner is left free.
_DELIVERIES = {
    "sqlite": "deliveries d INDEXED BY ix_deliveries_chain_id_id",
    "postgresql": "deliveries d",
}


def itt_sql(dialect: str, window_days: int, *, until: bool) -> str:
    """The two groups of a chain's (`:chain_id`) main step (`:step_id`), one row each
    (`held_out` 0 or 1): customers, those with an order in their window (`:min_amount`
    or more), orders and revenue in cents. `until`: only what happened before `:until`."""
    return _ITT.format(
        deliveries=_DELIVERIES[dialect],
        window_end=window_end_sql(dialect, "a.moment", str(int(window_days))),
        assigned_until=f"AND {MOMENT} < :until" if until else "",
        ordered_until="AND o.created_at < :until" if until else "",
        changed_until="AND c.changed_at < :until" if until else "",
        updated_until="AND o.updated_at < :until" if until else "",
    )
