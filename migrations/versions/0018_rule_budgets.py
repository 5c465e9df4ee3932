"""rule budgets: an earning rule version's total across all members per period
(earning_rule_versions.budget), the usage counter per rule and period (rule_budget_usage),
and the period each award was counted in (rule_awards.budget_usage_id)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "rule_budget_usage",
        sa.Column("id", BIGINT_PK, nullable=False),
        sa.Column("rule_id", BIGINT_PK, nullable=False),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.Column("exhausted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("used >= 0", name=op.f("ck_rule_budget_usage_used")),
        sa.ForeignKeyConstraint(
            ["rule_id"],
            ["earning_rules.id"],
            name=op.f("fk_rule_budget_usage_rule_id_earning_rules"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rule_budget_usage")),
        sa.UniqueConstraint(
            "rule_id", "period", "period_start", name=op.f("uq_rule_budget_usage_rule_id")
        ),
    )
    with op.batch_alter_table("earning_rule_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("budget", sa.JSON(), nullable=True))
    with op.batch_alter_table("rule_awards", schema=None) as batch_op:
        batch_op.add_column(sa.Column("budget_usage_id", BIGINT_PK, nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_rule_awards_budget_usage_id_rule_budget_usage"),
            "rule_budget_usage",
            ["budget_usage_id"],
            ["id"],
        )


def downgrade() -> None:
    with op.batch_alter_table("rule_awards", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_rule_awards_budget_usage_id_rule_budget_usage"), type_="foreignkey"
        )
        batch_op.drop_column("budget_usage_id")
    with op.batch_alter_table("earning_rule_versions", schema=None) as batch_op:
        batch_op.drop_column("budget")
    op.drop_table("rule_budget_usage")
