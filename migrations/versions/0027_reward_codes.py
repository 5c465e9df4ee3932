"""reward codes the checkout can trust: a redemption's code status (active, used,
cancelled) with when and on which order it was used, its cancellation and the ledger
transaction that gave its points back, a code index for the checkout's look-ups, the lots
each redemption took its points from (reward_allocations), and a reward's percent-off value
and valid_days

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-02 07:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None

BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("rewards", schema=None) as batch_op:
        batch_op.add_column(sa.Column("percent_off_bps", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("valid_days", sa.Integer(), nullable=True))
    with op.batch_alter_table("reward_redemptions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("status", sa.String(length=16), server_default="active", nullable=False)
        )
        batch_op.add_column(sa.Column("used_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("used_order_id", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("restore_transaction_id", BIGINT_PK, nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_reward_redemptions_restore_transaction_id_ledger_transactions"),
            "ledger_transactions",
            ["restore_transaction_id"],
            ["id"],
        )
        batch_op.create_index("ix_reward_redemptions_code", ["code"], unique=False)
    op.create_table(
        "reward_allocations",
        sa.Column("id", BIGINT_PK, nullable=False),
        sa.Column("reward_redemption_id", BIGINT_PK, nullable=False),
        sa.Column("lot_id", BIGINT_PK, nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["lot_id"], ["point_lots.id"], name=op.f("fk_reward_allocations_lot_id_point_lots")
        ),
        sa.ForeignKeyConstraint(
            ["reward_redemption_id"],
            ["reward_redemptions.id"],
            name=op.f("fk_reward_allocations_reward_redemption_id_reward_redemptions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reward_allocations")),
    )
    with op.batch_alter_table("reward_allocations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_reward_allocations_reward_redemption_id"),
            ["reward_redemption_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("reward_allocations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reward_allocations_reward_redemption_id"))
    op.drop_table("reward_allocations")
    with op.batch_alter_table("reward_redemptions", schema=None) as batch_op:
        batch_op.drop_index("ix_reward_redemptions_code")
        batch_op.drop_constraint(
            batch_op.f("fk_reward_redemptions_restore_transaction_id_ledger_transactions"),
            type_="foreignkey",
        )
        batch_op.drop_column("restore_transaction_id")
        batch_op.drop_column("cancelled_at")
        batch_op.drop_column("used_order_id")
        batch_op.drop_column("used_at")
        batch_op.drop_column("status")
    with op.batch_alter_table("rewards", schema=None) as batch_op:
        batch_op.drop_column("valid_days")
        batch_op.drop_column("percent_off_bps")
