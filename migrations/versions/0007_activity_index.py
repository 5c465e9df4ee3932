"""activity index

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 07:54:00.063917
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:

    with op.batch_alter_table("ledger_transactions", schema=None) as batch_op:
        batch_op.create_index("ix_ledger_transactions_effective_at", ["effective_at"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("ledger_transactions", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_transactions_effective_at")
