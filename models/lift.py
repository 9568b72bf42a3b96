"""The lift of a chain over its holdout, as plain arithmetic: no database, no clock.

Two groups of a chain's main-step customers are compared over the conversion
window (docs/attribution.md, "Holdout and lift"): the treated (messages went, or
were due and decided) and the held out (never sent). The lift is the difference of
their conversion rates, with a 95 % interval by Newcombe's hybrid score method
(method 10 of Newcombe 1998, "Interval estimation for the difference between
independent proportions: comparison of eleven methods", Statistics in Medicine 17,
873–890), built from each group's Wilson score interval (Wilson 1927). It keeps
close to its nominal coverage for small groups and for rates near 0, where the
textbook Wald interval collapses to a point or leaves [-1, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

# The 97.5th percentile of the standard normal distribution: a two-sided 95 % interval.
Z95 = 1.959963984540054
CENT = Decimal("0.01")
# Below these the lift is shown as "not enough data yet" (docs/attribution.md says why):
# customers in each group, and customers who ordered in the two groups together.
MIN_GROUP_CUSTOMERS = 100
MIN_CONVERTED = 10


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of the proportion `successes / trials`."""
    if trials <= 0:
        raise ValueError("a proportion needs at least one trial")
    if not 0 <= successes <= trials:
        raise ValueError(f"{successes} successes out of {trials} trials")
    p = successes / trials
    z2 = z * z
    centre = p + z2 / (2 * trials)
    spread = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials))
    scale = 1 + z2 / trials
    # Exact at the ends: rounding must not put 0/n above 0 or n/n below 1.
    lower = 0.0 if successes == 0 else (centre - spread) / scale
    upper = 1.0 if successes == trials else (centre + spread) / scale
    return lower, upper


def newcombe_interval(
    successes_1: int, trials_1: int, successes_2: int, trials_2: int, z: float = Z95
) -> tuple[float, float]:
    """Newcombe's hybrid score interval (method 10) of p1 - p2."""
    p1, p2 = successes_1 / trials_1, successes_2 / trials_2
    l1, u1 = wilson_interval(successes_1, trials_1, z)
    l2, u2 = wilson_interval(successes_2, trials_2, z)
    difference = p1 - p2
    below = math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    above = math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return difference - below, difference + above


@dataclass(frozen=True)
class Group:
    """One side of the comparison, over each customer's conversion window."""

    customers: int
    # Customers with at least one order in their window.
    converted: int
    orders: int
    revenue: Decimal

    @property
    def conversion_rate(self) -> float:
        return self.converted / self.customers if self.customers else 0.0


@dataclass(frozen=True)
class Lift:
    # Treated minus held out, as fractions (0.012: 1.2 percentage points).
    conversion_rate_delta: float
    ci95: tuple[float, float]
    # Orders and revenue the treated group has beyond what it would have had at the
    # held-out group's rate per customer: (per customer treated - held out) × treated.
    incremental_orders: float
    incremental_revenue: Decimal


def lift(treated: Group, held_out: Group) -> Lift | None:
    """The treated group against the held-out one; None while either is empty."""
    if not treated.customers or not held_out.customers:
        return None
    per_customer = treated.orders / treated.customers - held_out.orders / held_out.customers
    revenue_per_customer = (
        treated.revenue / treated.customers - held_out.revenue / held_out.customers
    )
    return Lift(
        conversion_rate_delta=treated.conversion_rate - held_out.conversion_rate,
        ci95=newcombe_interval(
            treated.converted, treated.customers, held_out.converted, held_out.customers
        ),
        incremental_orders=per_customer * treated.customers,
        incremental_revenue=(revenue_per_customer * treated.customers).quantize(CENT),
    )


def enough_data(treated: Group, held_out: Group) -> bool:
    """Whether the lift means something yet (docs/attribution.md, "Enough data")."""
    return (
        min(treated.customers, held_out.customers) >= MIN_GROUP_CUSTOMERS
        and treated.converted + held_out.converted >= MIN_CONVERTED
    )
