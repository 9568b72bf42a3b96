"""events.type takes 'complained': a spam complaint from a feedback-loop report

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

BEFORE = "type IN ('delivered', 'opened', 'clicked', 'unsubscribed', 'bounced')"
AFTER = "type IN ('delivered', 'opened', 'clicked', 'unsubscribed', 'bounced', 'complained')"


def _check(condition: str) -> None:
    # SQLite changes a CHECK only by copying the table, which batch mode does.
    with op.batch_alter_table("events") as batch:
        batch.drop_constraint(op.f("ck_events_type"), type_="check")
        batch.create_check_constraint(op.f("ck_events_type"), condition)


def upgrade() -> None:
    _check(AFTER)


def downgrade() -> None:
    op.execute("DELETE FROM events WHERE type = 'complained'")
    _check(BEFORE)
