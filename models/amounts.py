"""Amounts as a manager types them on a phone: `1500`, `1 500`, `999,90`, `999.90`.

Strict, so that what is saved is what was meant: digits, spaces only as thousands
separators (`1 500 000`), a decimal comma or point with at most two digits after it.
No signs, exponents (`1e9`), `inf` or `nan`, and nothing above `MAX_AMOUNT`.
"""

from __future__ import annotations

import re
from decimal import Decimal
from enum import StrEnum

# A minimum order amount beyond this is a typo, not a goal.
MAX_AMOUNT = Decimal(100_000_000)
# Spaces a phone keyboard or a copied number may put between the thousands.
_SPACES = " \u00a0\u202f"
_AMOUNT = re.compile(
    rf"(?P<whole>[0-9]{{1,3}}(?:[{_SPACES}][0-9]{{3}})+|[0-9]+)(?:[.,](?P<cents>[0-9]{{1,2}}))?"
)


class AmountProblem(StrEnum):
    """Why a typed amount is refused; the door words it."""

    NOT_DIGITS = "not-digits"
    TOO_BIG = "too-big"


class NotAnAmount(ValueError):
    def __init__(self, problem: AmountProblem) -> None:
        super().__init__(problem.value)
        self.problem = problem


def parse_amount(text: str) -> Decimal:
    """The amount typed, or NotAnAmount saying why not."""
    found = _AMOUNT.fullmatch(text.strip())
    if found is None:
        raise NotAnAmount(AmountProblem.NOT_DIGITS)
    whole = re.sub(f"[{_SPACES}]", "", found["whole"])
    amount = Decimal(f"{whole}.{found['cents'] or 0}")
    if amount > MAX_AMOUNT:
        raise NotAnAmount(AmountProblem.TOO_BIG)
    return amount
