"""program time zone: the IANA zone whose days and months the program speaks of

Revision ID: 0032
Revises: 0031
Create Date: 2026-12-02 15:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0032"
down_revision = "0031"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("program_settings") as batch:
        batch.add_column(
            sa.Column("time_zone", sa.String(length=64), server_default="UTC", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("program_settings") as batch:
        batch.drop_column("time_zone")
