"""drop the (member_id, qualifying_at) index: the covering qualifying-window index of 0011
serves both of its queries, and every ledger transaction written paid for both

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-26 11:40:00
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ledger_transactions", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_transactions_member_id_qualifying_at")


def downgrade() -> None:
    with op.batch_alter_table("ledger_transactions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_ledger_transactions_member_id_qualifying_at",
            ["member_id", "qualifying_at"],
            unique=False,
        )
