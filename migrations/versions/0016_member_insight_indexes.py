"""member insight indexes for the admin member list's filters: segment, days since the last
order, predicted value

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 05:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

COLUMNS = ("segment", "days_since_last_order", "predicted_value")


def upgrade() -> None:
    with op.batch_alter_table("member_insight", schema=None) as batch_op:
        for column in COLUMNS:
            batch_op.create_index(f"ix_member_insight_{column}", [column], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("member_insight", schema=None) as batch_op:
        for column in reversed(COLUMNS):
            batch_op.drop_index(f"ix_member_insight_{column}")
