"""scale indexes: qualifying points by member and time (covering), program accounts

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-26 10:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

QUALIFYING = "qualifying <> 0"
PROGRAM = "account IN ('issued', 'redeemed', 'expired', 'adjusted')"


def upgrade() -> None:

    with op.batch_alter_table("ledger_transactions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_ledger_transactions_qualifying_window",
            ["member_id", "qualifying_at"],
            unique=False,
            postgresql_include=["qualifying"],
            postgresql_where=sa.text(QUALIFYING),
            sqlite_where=sa.text(QUALIFYING),
        )

    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_ledger_entries_program_account_amount",
            ["account", "amount"],
            unique=False,
            postgresql_where=sa.text(PROGRAM),
            sqlite_where=sa.text(PROGRAM),
        )


def downgrade() -> None:

    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_entries_program_account_amount")

    with op.batch_alter_table("ledger_transactions", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_transactions_qualifying_window")
