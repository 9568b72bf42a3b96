"""Holdout: chains.holdout_percent and the delivery status `held_out`

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BEFORE = "'planned', 'sending', 'sent', 'failed', 'skipped', 'uncertain'"
_AFTER = f"{_BEFORE}, 'held_out'"
_CONSTRAINT = "ck_deliveries_status"


def _allow_statuses(old: str, new: str) -> None:
    """The CHECK on deliveries.status, from the list `old` to the list `new`.

    PostgreSQL: dropped and added again, NOT VALID and then validated, so the check of
    the existing rows takes no lock that stops writes. SQLite: the table's stored
    definition is edited in place, the procedure SQLite documents for changing a CHECK
    constraint (sqlite.org/lang_altertable.html, "otherwise unrecognized ALTER TABLE
    operations"): rebuilding the table, as batch mode does, would copy every delivery,
    and dropping the old table with foreign keys on would cascade into events and
    attributions.
    """
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(f"ALTER TABLE deliveries DROP CONSTRAINT {_CONSTRAINT}")
        op.execute(
            f"ALTER TABLE deliveries ADD CONSTRAINT {_CONSTRAINT}"
            f" CHECK (status IN ({new})) NOT VALID"
        )
        op.execute(f"ALTER TABLE deliveries VALIDATE CONSTRAINT {_CONSTRAINT}")
        return
    definition = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'deliveries'"
    ).scalar_one()
    before = f"CONSTRAINT {_CONSTRAINT} CHECK (status IN ({old}))"
    if definition.count(before) != 1:
        raise RuntimeError(f"deliveries has no constraint {before!r} to change")
    after = before.replace(f"({old})", f"({new})")
    version = bind.exec_driver_sql("PRAGMA schema_version").scalar_one()
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    bind.exec_driver_sql(
        "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = 'deliveries'",
        (definition.replace(before, after),),
    )
    bind.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    bind.exec_driver_sql("PRAGMA writable_schema = OFF")


def upgrade() -> None:
    with op.batch_alter_table("chains") as batch:
        batch.add_column(
            sa.Column("holdout_percent", sa.Integer(), server_default="0", nullable=False)
        )
    _allow_statuses(_BEFORE, _AFTER)


def downgrade() -> None:
    # Never sent either way: a held-out message becomes one skipped, with the reason.
    op.execute("UPDATE deliveries SET status = 'skipped', reason = 'held out' WHERE status = 'held_out'")
    _allow_statuses(_AFTER, _BEFORE)
    # Not batch mode: rebuilding `chains` on SQLite would cascade into its steps.
    op.execute("ALTER TABLE chains DROP COLUMN holdout_percent")
