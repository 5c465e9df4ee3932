"""quoted carts: the carts the checkout quoted for a member (quoted_carts, upserted by a
quote naming a cart_id) and the cart an order came from (orders.cart_id), read by the
cart_abandoned automation trigger

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-02 02:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WITH_CART = "cart_id IS NOT NULL"


def upgrade() -> None:
    op.create_table(
        "quoted_carts",
        sa.Column("id", BIGINT_PK, nullable=False),
        sa.Column("member_id", BIGINT_PK, nullable=False),
        sa.Column("cart_id", sa.String(length=100), nullable=False),
        sa.Column("first_quoted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("quoted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("points_to_earn", sa.BigInteger(), nullable=False),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_quoted_carts_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quoted_carts")),
        sa.UniqueConstraint("member_id", "cart_id", name=op.f("uq_quoted_carts_member_id")),
    )
    with op.batch_alter_table("quoted_carts", schema=None) as batch_op:
        batch_op.create_index("ix_quoted_carts_quoted_at", ["quoted_at"], unique=False)
    # A nullable column without a default: no rewrite of the orders table; the index holds
    # only orders with a cart, so it starts empty.
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cart_id", sa.String(length=100), nullable=True))
        batch_op.create_index(
            "ix_orders_cart_id",
            ["cart_id"],
            unique=False,
            postgresql_where=sa.text(WITH_CART),
            sqlite_where=sa.text(WITH_CART),
        )


def downgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index("ix_orders_cart_id")
        batch_op.drop_column("cart_id")
    with op.batch_alter_table("quoted_carts", schema=None) as batch_op:
        batch_op.drop_index("ix_quoted_carts_quoted_at")
    op.drop_table("quoted_carts")
