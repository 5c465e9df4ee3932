"""member insight: per-member figures, RFM scores and segments, lifetime-value inputs and
predictions (member_insight), one row per refresh (insight_refreshes) and its model
(insight_models)

Revision ID: 0015
Revises: 0013
Create Date: 2026-12-01 04:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0013"
branch_labels = None
depends_on = None

BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "insight_refreshes",
        sa.Column("id", BIGINT_PK, nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("members", sa.BigInteger(), nullable=False),
        sa.Column("buyers", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_insight_refreshes")),
    )
    with op.batch_alter_table("insight_refreshes", schema=None) as batch_op:
        batch_op.create_index("ix_insight_refreshes_as_of", ["as_of"], unique=False)

    op.create_table(
        "insight_models",
        sa.Column("id", BIGINT_PK, nullable=False),
        sa.Column("refresh_id", BIGINT_PK, nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.String(length=500), nullable=True),
        sa.Column("fitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("time_unit", sa.String(length=16), nullable=False),
        sa.Column("horizon_days", sa.Integer(), nullable=True),
        sa.Column("customers", sa.BigInteger(), nullable=False),
        sa.Column("log_likelihood", sa.Float(), nullable=True),
        sa.Column("params", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["refresh_id"],
            ["insight_refreshes.id"],
            name=op.f("fk_insight_models_refresh_id_insight_refreshes"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_insight_models")),
        sa.UniqueConstraint("refresh_id", name=op.f("uq_insight_models_refresh_id")),
    )

    op.create_table(
        "member_insight",
        sa.Column("member_id", BIGINT_PK, nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_order_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_order_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.Column("purchase_days", sa.Integer(), nullable=False),
        sa.Column("net_revenue", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("average_order_value", sa.BigInteger(), nullable=True),
        sa.Column("days_since_last_order", sa.Integer(), nullable=True),
        sa.Column("points_earned", sa.BigInteger(), nullable=False),
        sa.Column("points_redeemed", sa.BigInteger(), nullable=False),
        sa.Column("recency_score", sa.SmallInteger(), nullable=True),
        sa.Column("frequency_score", sa.SmallInteger(), nullable=True),
        sa.Column("monetary_score", sa.SmallInteger(), nullable=True),
        sa.Column("segment", sa.String(length=32), nullable=True),
        sa.Column("frequency", sa.Integer(), nullable=True),
        sa.Column("recency_days", sa.Integer(), nullable=True),
        sa.Column("t_days", sa.Integer(), nullable=True),
        sa.Column("monetary_value", sa.BigInteger(), nullable=True),
        sa.Column("probability_alive", sa.Float(), nullable=True),
        sa.Column("expected_purchases", sa.Float(), nullable=True),
        sa.Column("predicted_value", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_member_insight_member_id_members")
        ),
        sa.PrimaryKeyConstraint("member_id", name=op.f("pk_member_insight")),
    )


def downgrade() -> None:
    op.drop_table("member_insight")
    op.drop_table("insight_models")
    with op.batch_alter_table("insight_refreshes", schema=None) as batch_op:
        batch_op.drop_index("ix_insight_refreshes_as_of")
    op.drop_table("insight_refreshes")
