"""config version: bumped by every change to the settings, a tier or a rule

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26 09:58:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("program_settings", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("config_version", sa.BigInteger(), server_default="1", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("program_settings", schema=None) as batch_op:
        batch_op.drop_column("config_version")
