"""summary sends: one daily summary per chat and day

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.tables

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "summary_sends",
        sa.Column("chat_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("claim", sa.Integer(), nullable=False),
        sa.Column("lease_until", models.tables.UtcDateTime(timezone=True), nullable=True),
        sa.Column("parts_sent", sa.Integer(), nullable=False),
        sa.Column("claimed_at", models.tables.UtcDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", models.tables.UtcDateTime(timezone=True), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.CheckConstraint(
            "status IN ('sending', 'sent', 'failed')", name=op.f("ck_summary_sends_status")
        ),
        sa.PrimaryKeyConstraint("chat_id", "day", name=op.f("pk_summary_sends")),
    )


def downgrade() -> None:
    op.drop_table("summary_sends")
