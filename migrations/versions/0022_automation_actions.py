"""automation actions: coupons and benefits granted by a firing (reward_redemptions and
benefit_grants name the firing, uniquely; a granted coupon has an expiry and no ledger
transaction), and an automation version's budget (automation_versions.budget) with its
usage counter per automation and period (automation_budget_usage)

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-02 02:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "automation_budget_usage",
        sa.Column("id", BIGINT_PK, nullable=False),
        sa.Column("automation_id", BIGINT_PK, nullable=False),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.Column("exhausted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("used >= 0", name=op.f("ck_automation_budget_usage_used")),
        sa.ForeignKeyConstraint(
            ["automation_id"],
            ["automations.id"],
            name=op.f("fk_automation_budget_usage_automation_id_automations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_automation_budget_usage")),
        sa.UniqueConstraint(
            "automation_id",
            "period",
            "period_start",
            name=op.f("uq_automation_budget_usage_automation_id"),
        ),
    )
    with op.batch_alter_table("automation_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("budget", sa.JSON(), nullable=True))
    with op.batch_alter_table("reward_redemptions", schema=None) as batch_op:
        batch_op.alter_column("transaction_id", existing_type=BIGINT_PK, nullable=True)
        batch_op.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("firing_id", BIGINT_PK, nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_reward_redemptions_firing_id_automation_firings"),
            "automation_firings",
            ["firing_id"],
            ["id"],
        )
        batch_op.create_unique_constraint(
            batch_op.f("uq_reward_redemptions_firing_id"), ["firing_id"]
        )
    with op.batch_alter_table("benefit_grants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("firing_id", BIGINT_PK, nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_benefit_grants_firing_id_automation_firings"),
            "automation_firings",
            ["firing_id"],
            ["id"],
        )
        batch_op.create_unique_constraint(batch_op.f("uq_benefit_grants_firing_id"), ["firing_id"])


def downgrade() -> None:
    with op.batch_alter_table("benefit_grants", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_benefit_grants_firing_id"), type_="unique")
        batch_op.drop_constraint(
            batch_op.f("fk_benefit_grants_firing_id_automation_firings"), type_="foreignkey"
        )
        batch_op.drop_column("firing_id")
    # Granted coupons have no ledger transaction: they go (their pooled codes back to the
    # pool) before the column is NOT NULL again.
    op.execute(
        "UPDATE reward_codes SET redemption_id = NULL WHERE redemption_id IN "
        "(SELECT id FROM reward_redemptions WHERE transaction_id IS NULL)"
    )
    op.execute("DELETE FROM reward_redemptions WHERE transaction_id IS NULL")
    with op.batch_alter_table("reward_redemptions", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_reward_redemptions_firing_id"), type_="unique")
        batch_op.drop_constraint(
            batch_op.f("fk_reward_redemptions_firing_id_automation_firings"), type_="foreignkey"
        )
        batch_op.drop_column("firing_id")
        batch_op.drop_column("expires_at")
        batch_op.alter_column("transaction_id", existing_type=BIGINT_PK, nullable=False)
    with op.batch_alter_table("automation_versions", schema=None) as batch_op:
        batch_op.drop_column("budget")
    op.drop_table("automation_budget_usage")
