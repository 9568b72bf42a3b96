"""Orders with a life: orders.status and updated_at, order_changes, attributions.mechanic

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.tables
from models import attribution_table

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(
            sa.Column("status", sa.String(length=64), server_default="new", nullable=False)
        )
        batch.add_column(
            sa.Column("updated_at", models.tables.UtcDateTime(timezone=True), nullable=True)
        )
    # Every order stored so far was placed as it is and never changed.
    op.execute("UPDATE orders SET updated_at = created_at")
    with op.batch_alter_table("orders") as batch:
        batch.alter_column(
            "updated_at", existing_type=models.tables.UtcDateTime(timezone=True), nullable=False
        )
    op.create_table(
        "order_changes",
        sa.Column("id", _ID, nullable=False),
        sa.Column("order_id", _ID, nullable=False),
        sa.Column("amount", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("status", sa.String(length=64), nullable=False),
        sa.Column("changed_at", models.tables.UtcDateTime(timezone=True), nullable=False),
        sa.Column("received_at", models.tables.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
            name=op.f("fk_order_changes_order_id_orders"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_changes")),
    )
    with op.batch_alter_table("order_changes") as batch:
        batch.create_index(
            "ix_order_changes_order_id_changed_at_id", ["order_id", "changed_at", "id"]
        )
    # One state each, from when it was placed.
    op.execute(
        "INSERT INTO order_changes (order_id, amount, status, changed_at, received_at)"
        " SELECT id, amount, status, created_at, received_at FROM orders ORDER BY id"
    )
    with op.batch_alter_table("attributions") as batch:
        batch.add_column(
            sa.Column(
                "mechanic", sa.String(length=16), server_default="new_order", nullable=False
            )
        )
    # Attributed again by the rule with mechanics, which reads the orders' states (and
    # also fills the table for databases that came through 0004 with orders: see there).
    bind = op.get_bind()
    for statement in attribution_table.rebuild_statements(bind.dialect.name):
        op.execute(sa.text(statement))


def downgrade() -> None:
    # Attributions by other mechanics than new_order had no place before.
    op.execute("DELETE FROM attributions WHERE mechanic <> 'new_order'")
    with op.batch_alter_table("attributions") as batch:
        batch.drop_column("mechanic")
    with op.batch_alter_table("order_changes") as batch:
        batch.drop_index("ix_order_changes_order_id_changed_at_id")
    op.drop_table("order_changes")
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("updated_at")
        batch.drop_column("status")
