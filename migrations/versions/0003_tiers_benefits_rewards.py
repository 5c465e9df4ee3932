"""tiers benefits rewards

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 06:31:06.531329
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "rewards",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("public_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=2000), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("cost_points", sa.BigInteger(), nullable=False),
        sa.Column("value_amount", sa.BigInteger(), nullable=True),
        sa.Column("stock", sa.BigInteger(), nullable=True),
        sa.Column("min_tier_rank", sa.Integer(), nullable=True),
        sa.Column("per_member_limit", sa.Integer(), nullable=True),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("stock IS NULL OR stock >= 0", name=op.f("ck_rewards_stock")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rewards")),
        sa.UniqueConstraint("public_id", name=op.f("uq_rewards_public_id")),
    )
    op.create_table(
        "tiers",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("threshold", sa.BigInteger(), nullable=False),
        sa.Column("retention_months", sa.Integer(), nullable=False),
        sa.Column("benefits", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tiers")),
        sa.UniqueConstraint("code", name=op.f("uq_tiers_code")),
        sa.UniqueConstraint("rank", name=op.f("uq_tiers_rank")),
    )
    op.create_table(
        "benefit_grants",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "member_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("actor", sa.String(length=100), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_benefit_grants_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_benefit_grants")),
    )
    with op.batch_alter_table("benefit_grants", schema=None) as batch_op:
        batch_op.create_index("ix_benefit_grants_member_id", ["member_id"], unique=False)

    op.create_table(
        "tier_changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "member_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("from_tier", sa.String(length=32), nullable=True),
        sa.Column("to_tier", sa.String(length=32), nullable=True),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("qualifying_points", sa.BigInteger(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_tier_changes_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tier_changes")),
    )
    with op.batch_alter_table("tier_changes", schema=None) as batch_op:
        batch_op.create_index("ix_tier_changes_member_id_id", ["member_id", "id"], unique=False)

    op.create_table(
        "reward_redemptions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("public_id", sa.Uuid(), nullable=False),
        sa.Column(
            "reward_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "member_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("code", sa.String(length=100), nullable=False),
        sa.Column(
            "transaction_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_reward_redemptions_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["reward_id"], ["rewards.id"], name=op.f("fk_reward_redemptions_reward_id_rewards")
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_reward_redemptions_transaction_id_ledger_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reward_redemptions")),
        sa.UniqueConstraint("public_id", name=op.f("uq_reward_redemptions_public_id")),
    )
    with op.batch_alter_table("reward_redemptions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_reward_redemptions_member_id_reward_id", ["member_id", "reward_id"], unique=False
        )

    op.create_table(
        "reward_codes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "reward_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("code", sa.String(length=100), nullable=False),
        sa.Column(
            "redemption_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["redemption_id"],
            ["reward_redemptions.id"],
            name=op.f("fk_reward_codes_redemption_id_reward_redemptions"),
        ),
        sa.ForeignKeyConstraint(
            ["reward_id"], ["rewards.id"], name=op.f("fk_reward_codes_reward_id_rewards")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reward_codes")),
        sa.UniqueConstraint("reward_id", "code", name=op.f("uq_reward_codes_reward_id")),
    )
    with op.batch_alter_table("reward_codes", schema=None) as batch_op:
        batch_op.create_index(
            "ix_reward_codes_reward_id_redemption_id", ["reward_id", "redemption_id"], unique=False
        )

    with op.batch_alter_table("ledger_transactions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("qualifying", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch_op.create_index(
            "ix_ledger_transactions_member_id_effective_at",
            ["member_id", "effective_at"],
            unique=False,
        )

    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "tier_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column("tier_retained_until", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.create_index(batch_op.f("ix_members_tier_id"), ["tier_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_members_tier_id_tiers"), "tiers", ["tier_id"], ["id"]
        )


def downgrade() -> None:

    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_members_tier_id_tiers"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_members_tier_id"))
        batch_op.drop_column("tier_retained_until")
        batch_op.drop_column("tier_id")

    with op.batch_alter_table("ledger_transactions", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_transactions_member_id_effective_at")
        batch_op.drop_column("qualifying")

    with op.batch_alter_table("reward_codes", schema=None) as batch_op:
        batch_op.drop_index("ix_reward_codes_reward_id_redemption_id")

    op.drop_table("reward_codes")
    with op.batch_alter_table("reward_redemptions", schema=None) as batch_op:
        batch_op.drop_index("ix_reward_redemptions_member_id_reward_id")

    op.drop_table("reward_redemptions")
    with op.batch_alter_table("tier_changes", schema=None) as batch_op:
        batch_op.drop_index("ix_tier_changes_member_id_id")

    op.drop_table("tier_changes")
    with op.batch_alter_table("benefit_grants", schema=None) as batch_op:
        batch_op.drop_index("ix_benefit_grants_member_id")

    op.drop_table("benefit_grants")
    op.drop_table("tiers")
    op.drop_table("rewards")
