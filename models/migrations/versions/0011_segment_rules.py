"""Segments by attributes and behaviour: segments.attributes and segments.behaviour

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing segments are tags only: no attribute or behaviour conditions.
    with op.batch_alter_table("segments") as batch:
        batch.add_column(sa.Column("attributes", sa.JSON(), server_default="[]", nullable=False))
        batch.add_column(sa.Column("behaviour", sa.JSON(), server_default="[]", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("segments") as batch:
        batch.drop_column("behaviour")
        batch.drop_column("attributes")
