"""member tokens: short-lived tokens the shop's backend mints for one member's customer app

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-02 08:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "member_tokens",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("public_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("member_id", BIGINT, nullable=False),
        sa.Column("api_key_id", BIGINT, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["api_key_id"], ["api_keys.id"], name=op.f("fk_member_tokens_api_key_id_api_keys")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_member_tokens_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_member_tokens")),
        sa.UniqueConstraint("public_id", name=op.f("uq_member_tokens_public_id")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_member_tokens_token_hash")),
    )
    with op.batch_alter_table("member_tokens", schema=None) as batch_op:
        batch_op.create_index("ix_member_tokens_member_id", ["member_id"], unique=False)
        batch_op.create_index("ix_member_tokens_api_key_id", ["api_key_id"], unique=False)
        batch_op.create_index("ix_member_tokens_expires_at", ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("member_tokens", schema=None) as batch_op:
        batch_op.drop_index("ix_member_tokens_expires_at")
        batch_op.drop_index("ix_member_tokens_api_key_id")
        batch_op.drop_index("ix_member_tokens_member_id")
    op.drop_table("member_tokens")
