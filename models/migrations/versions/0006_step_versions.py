"""Step versions: steps.version and stopped_at, step_versions, deliveries.version

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from models.tables import UtcDateTime

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("steps") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), server_default="1", nullable=False))
        batch.add_column(sa.Column("stopped_at", UtcDateTime(), nullable=True))
    # Messages sent before versions existed were composed with version 1.
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), nullable=True))
    op.execute("UPDATE deliveries SET version = 1 WHERE status <> 'planned'")
    op.create_table(
        "step_versions",
        sa.Column("id", Id, nullable=False),
        sa.Column("step_id", Id, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("audience", sa.JSON(), nullable=True),
        sa.Column("action", sa.JSON(), nullable=True),
        sa.Column("schedule", sa.JSON(), nullable=True),
        sa.Column("conversion", sa.JSON(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["step_id"], ["steps.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("step_id", "version"),
    )


def downgrade() -> None:
    op.drop_table("step_versions")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("version")
    with op.batch_alter_table("steps") as batch:
        batch.drop_column("stopped_at")
        batch.drop_column("version")
