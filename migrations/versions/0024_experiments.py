"""experiments: experiments (definition and status), experiment_arms (ordered, weighted, one
control) and experiment_assignments (one per experiment and member: the first exposure wins)

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-02 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", BIGINT_PK, nullable=False),
        sa.Column("public_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("hypothesis", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("target", sa.JSON(), nullable=False),
        sa.Column("eligibility", sa.JSON(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("margin", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiments")),
        sa.UniqueConstraint("key", name=op.f("uq_experiments_key")),
        sa.UniqueConstraint("public_id", name=op.f("uq_experiments_public_id")),
    )
    with op.batch_alter_table("experiments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_experiments_status"), ["status"], unique=False)
    op.create_table(
        "experiment_arms",
        sa.Column("id", BIGINT_PK, nullable=False),
        sa.Column("experiment_id", BIGINT_PK, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=32), nullable=False),
        sa.Column("weight", sa.Integer(), nullable=False),
        sa.Column("control", sa.Boolean(), nullable=False),
        sa.Column("rule_ids", sa.JSON(), nullable=True),
        sa.Column("applies", sa.Boolean(), nullable=True),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_experiment_arms_experiment_id_experiments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiment_arms")),
        sa.UniqueConstraint("experiment_id", "key", name=op.f("uq_experiment_arms_experiment_id")),
    )
    op.create_table(
        "experiment_assignments",
        sa.Column("id", BIGINT_PK, nullable=False),
        sa.Column("experiment_id", BIGINT_PK, nullable=False),
        sa.Column("member_id", BIGINT_PK, nullable=False),
        sa.Column("arm_id", BIGINT_PK, nullable=False),
        sa.Column("first_exposed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("exposure_source", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["arm_id"],
            ["experiment_arms.id"],
            name=op.f("fk_experiment_assignments_arm_id_experiment_arms"),
        ),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_experiment_assignments_experiment_id_experiments"),
        ),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["members.id"],
            name=op.f("fk_experiment_assignments_member_id_members"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiment_assignments")),
        sa.UniqueConstraint(
            "experiment_id", "member_id", name=op.f("uq_experiment_assignments_experiment_id")
        ),
    )


def downgrade() -> None:
    op.drop_table("experiment_assignments")
    op.drop_table("experiment_arms")
    with op.batch_alter_table("experiments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_experiments_status"))
    op.drop_table("experiments")
