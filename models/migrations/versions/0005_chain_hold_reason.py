"""chains.hold_reason: why the engine paused a chain it could not plan or claim

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("chains") as batch:
        batch.add_column(sa.Column("hold_reason", sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("chains") as batch:
        batch.drop_column("hold_reason")
