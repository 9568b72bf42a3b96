"""Events of mail that came back: `complained` (a feedback-loop report) and `delayed`

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 19:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BEFORE = "'delivered', 'opened', 'clicked', 'unsubscribed', 'bounced'"
_AFTER = f"{_BEFORE}, 'complained', 'delayed'"


def _allow(types: str) -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_constraint("type", type_="check")
        batch.create_check_constraint("type", f"type IN ({types})")


def upgrade() -> None:
    _allow(_AFTER)


def downgrade() -> None:
    op.execute("DELETE FROM events WHERE type IN ('complained', 'delayed')")
    _allow(_BEFORE)
