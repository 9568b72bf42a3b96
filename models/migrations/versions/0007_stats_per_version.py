"""Stats per step version: attributions.version; the indexes stats read deliveries by carry it

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The message's version beside each attributed order, so that stats group the
    # table alone (a join per order to its delivery made that read four times slower
    # on PostgreSQL).
    with op.batch_alter_table("attributions") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), server_default="1", nullable=False))
    op.execute(
        "UPDATE attributions SET version = (SELECT d.version FROM deliveries d"
        " WHERE d.id = attributions.delivery_id)"
        " WHERE delivery_id IN (SELECT id FROM deliveries WHERE version > 1)"
    )
    # Without `version` in them, the grouped reads of models.stats would leave the index
    # for the table once per delivery of the chain (SQLite), or stop being index-only.
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_index("ix_deliveries_chain_id_step_id_status")
        batch.create_index(
            "ix_deliveries_chain_id_step_id_status_version",
            ["chain_id", "step_id", "status", "version"],
        )
        batch.drop_index("ix_deliveries_chain_id_id")
        batch.create_index(
            "ix_deliveries_chain_id_id", ["chain_id", "id", "step_id", "status", "version"]
        )


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_index("ix_deliveries_chain_id_id")
        batch.create_index("ix_deliveries_chain_id_id", ["chain_id", "id", "step_id", "status"])
        batch.drop_index("ix_deliveries_chain_id_step_id_status_version")
        batch.create_index(
            "ix_deliveries_chain_id_step_id_status", ["chain_id", "step_id", "status"]
        )
    with op.batch_alter_table("attributions") as batch:
        batch.drop_column("version")
