"""engine as one queue: workers with heartbeats, claims fenced by worker, planning requests,
the customer change queue, and the indexes the claim and the wake-ups read

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.tables

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CLAIMED = sa.text("claimed_by IS NOT NULL")


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("started_at", models.tables.UtcDateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", models.tables.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workers")),
    )
    op.create_table(
        "customer_changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_customer_changes_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_changes")),
    )
    with op.batch_alter_table("steps") as batch:
        batch.add_column(
            sa.Column("plan_requested", sa.Integer(), server_default="1", nullable=False)
        )
        batch.add_column(
            sa.Column("planned_version", sa.Integer(), server_default="0", nullable=False)
        )
    # Steps planned by the old engine are planned: only later saves ask again.
    op.execute("UPDATE steps SET planned_version = plan_requested")
    # Rows a worker of the old engine was sending when it stopped: their outcome is
    # lost (the operator migrates with the workers stopped); never sent again.
    op.execute(
        "UPDATE deliveries SET status = 'uncertain', reason = 'outcome lost',"
        " triggered_at = COALESCE(triggered_at, lease_until)"
        " WHERE status = 'sending'"
    )
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(
            sa.Column(
                "claimed_by", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
            )
        )
        batch.drop_column("lease_until")
        batch.drop_index("ix_deliveries_status_due_at")
        batch.create_index(
            "ix_deliveries_step_id_status_due_at", ["step_id", "status", "due_at"], unique=False
        )
        batch.create_index(
            "ix_deliveries_previous_delivery_id", ["previous_delivery_id"], unique=False
        )
        batch.create_index(
            "ix_deliveries_claimed_by",
            ["claimed_by"],
            unique=False,
            sqlite_where=_CLAIMED,
            postgresql_where=_CLAIMED,
        )
    op.create_index("ix_customers_timezone", "customers", ["timezone"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_customers_timezone", table_name="customers")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_index("ix_deliveries_claimed_by")
        batch.drop_index("ix_deliveries_previous_delivery_id")
        batch.drop_index("ix_deliveries_step_id_status_due_at")
        batch.create_index("ix_deliveries_status_due_at", ["status", "due_at"], unique=False)
        batch.add_column(
            sa.Column("lease_until", models.tables.UtcDateTime(timezone=True), nullable=True)
        )
        batch.drop_column("claimed_by")
    with op.batch_alter_table("steps") as batch:
        batch.drop_column("planned_version")
        batch.drop_column("plan_requested")
    op.drop_table("customer_changes")
    op.drop_table("workers")
