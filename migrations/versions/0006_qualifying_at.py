"""qualifying_at

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 07:25:29.290439
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:

    with op.batch_alter_table("ledger_transactions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("qualifying_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(
            "ix_ledger_transactions_member_id_qualifying_at",
            ["member_id", "qualifying_at"],
            unique=False,
        )

    # Until now every qualifying movement counted at its own effective time.
    op.execute("UPDATE ledger_transactions SET qualifying_at = effective_at WHERE qualifying <> 0")


def downgrade() -> None:

    with op.batch_alter_table("ledger_transactions", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_transactions_member_id_qualifying_at")
        batch_op.drop_column("qualifying_at")
