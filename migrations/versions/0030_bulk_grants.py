"""bulk grants: a job granting points or a benefit to many members, one target row each

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-02 08:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "bulk_grants",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("public_id", sa.Uuid(), nullable=False),
        sa.Column("grant_id", sa.String(length=100), nullable=True),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=True),
        sa.Column("benefit", sa.JSON(), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("segment_key", sa.String(length=64), nullable=True),
        sa.Column("budget_points", sa.BigInteger(), nullable=True),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("granted", sa.Integer(), nullable=False),
        sa.Column("refused", sa.Integer(), nullable=False),
        sa.Column("points_granted", sa.BigInteger(), nullable=False),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("actor", sa.String(length=100), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bulk_grants")),
        sa.UniqueConstraint("grant_id", name=op.f("uq_bulk_grants_grant_id")),
        sa.UniqueConstraint("public_id", name=op.f("uq_bulk_grants_public_id")),
    )
    with op.batch_alter_table("bulk_grants", schema=None) as batch_op:
        batch_op.create_index("ix_bulk_grants_state_id", ["state", "id"], unique=False)
    op.create_table(
        "bulk_grant_targets",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("job_id", BIGINT, nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=False),
        sa.Column("member_id", BIGINT, nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("refusal", sa.String(length=16), nullable=True),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("transaction_id", sa.Uuid(), nullable=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["bulk_grants.id"], name=op.f("fk_bulk_grant_targets_job_id_bulk_grants")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_bulk_grant_targets_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bulk_grant_targets")),
        sa.UniqueConstraint("job_id", "external_id", name=op.f("uq_bulk_grant_targets_job_id")),
    )
    with op.batch_alter_table("bulk_grant_targets", schema=None) as batch_op:
        batch_op.create_index(
            "ix_bulk_grant_targets_job_id_outcome_id", ["job_id", "outcome", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("bulk_grant_targets", schema=None) as batch_op:
        batch_op.drop_index("ix_bulk_grant_targets_job_id_outcome_id")
    op.drop_table("bulk_grant_targets")
    with op.batch_alter_table("bulk_grants", schema=None) as batch_op:
        batch_op.drop_index("ix_bulk_grants_state_id")
    op.drop_table("bulk_grants")
