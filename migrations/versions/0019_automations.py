"""lifecycle automations: automations (a row per automation, pointing at its current
version), automation_versions (trigger, conditions, actions, dedup window) and
automation_firings (one per automation, member and window start: the dedup key)

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-03 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "automations",
        sa.Column("id", BIGINT_PK, nullable=False),
        sa.Column("public_id", sa.Uuid(), nullable=False),
        sa.Column("current_version", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_automations")),
        sa.UniqueConstraint("public_id", name=op.f("uq_automations_public_id")),
    )
    with op.batch_alter_table("automations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_automations_active"), ["active"], unique=False)
    op.create_table(
        "automation_versions",
        sa.Column("id", BIGINT_PK, nullable=False),
        sa.Column("automation_id", BIGINT_PK, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("trigger", sa.JSON(), nullable=False),
        sa.Column("conditions", sa.JSON(), nullable=False),
        sa.Column("actions", sa.JSON(), nullable=False),
        sa.Column("dedup_days", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(
            ["automation_id"],
            ["automations.id"],
            name=op.f("fk_automation_versions_automation_id_automations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_automation_versions")),
        sa.UniqueConstraint(
            "automation_id", "version", name=op.f("uq_automation_versions_automation_id")
        ),
    )
    op.create_table(
        "automation_firings",
        sa.Column("id", BIGINT_PK, nullable=False),
        sa.Column("public_id", sa.Uuid(), nullable=False),
        sa.Column("automation_id", BIGINT_PK, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("member_id", BIGINT_PK, nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("points_granted", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["automation_id"],
            ["automations.id"],
            name=op.f("fk_automation_firings_automation_id_automations"),
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_automation_firings_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_automation_firings")),
        sa.UniqueConstraint("public_id", name=op.f("uq_automation_firings_public_id")),
        sa.UniqueConstraint(
            "automation_id",
            "member_id",
            "window_start",
            name=op.f("uq_automation_firings_automation_id"),
        ),
    )
    with op.batch_alter_table("automation_firings", schema=None) as batch_op:
        batch_op.create_index(
            "ix_automation_firings_automation_id_member_id_fired_at",
            ["automation_id", "member_id", "fired_at"],
            unique=False,
        )


def downgrade() -> None:
    op.drop_table("automation_firings")
    op.drop_table("automation_versions")
    with op.batch_alter_table("automations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_automations_active"))
    op.drop_table("automations")
