"""ledger: drop ix_ledger_transactions_member_id_id, which no query uses any more

A member's history is read by (member_id, effective_at) since it is ordered by when things
took effect, and tier progress by the covering qualifying-window index. The index only cost
every ledger write a random page (settling 100,000 lots wrote 100,000 entries into it).

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-02 16:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0031"
down_revision = "0030"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ledger_transactions") as batch_op:
        batch_op.drop_index("ix_ledger_transactions_member_id_id")


def downgrade() -> None:
    with op.batch_alter_table("ledger_transactions") as batch_op:
        batch_op.create_index(
            "ix_ledger_transactions_member_id_id", ["member_id", "id"], unique=False
        )
