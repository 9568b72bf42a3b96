"""Frequency caps: indexes on a customer's messages that went out or are claimed to go

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Read in every claim of a capped channel (scheduler/claims.py): how many messages
    # of the channel each due customer had in the cap's period. Partial: the rows never
    # sent (planned, skipped) are left out, so planning writes nothing more.
    op.create_index(
        "ix_deliveries_customer_id_channel_sent_at",
        "deliveries",
        ["customer_id", "channel", "sent_at", "status"],
        sqlite_where=sa.text("sent_at IS NOT NULL"),
        postgresql_where=sa.text("sent_at IS NOT NULL"),
    )
    # The rows claimed to go now, by customer: looked up for each candidate of a claim.
    # ix_deliveries_claimed_by (by worker) would be walked whole for each of them.
    op.create_index(
        "ix_deliveries_customer_id_channel_claimed",
        "deliveries",
        ["customer_id", "channel", "status"],
        sqlite_where=sa.text("claimed_by IS NOT NULL"),
        postgresql_where=sa.text("claimed_by IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_customer_id_channel_claimed", table_name="deliveries")
    op.drop_index("ix_deliveries_customer_id_channel_sent_at", table_name="deliveries")
