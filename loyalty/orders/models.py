from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from loyalty.db import Base, BigIntPK, utcnow

# The most money one order carries (minor units: ten billion in a two-decimal currency), so
# every sum of them fits a money column; the API and the imports both hold orders to it.
MAX_AMOUNT = 10**12
# /v1/orders/quote is the quote endpoint's path, never an order's.
RESERVED_ORDER_IDS = frozenset({"quote"})
# The longest cart id the shop may send with a quote or an order.
CART_ID_LENGTH = 100
# Orders tied to a cart: most orders carry none, so the index holds only those that do.
WITH_CART = "cart_id IS NOT NULL"


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        # cart_abandoned asks, per quoted cart, whether an order came for it.
        sa.Index(
            "ix_orders_cart_id",
            "cart_id",
            postgresql_where=sa.text(WITH_CART),
            sqlite_where=sa.text(WITH_CART),
        ),
        # A member's orders by time: a campaign report's window after each touch, and (its
        # prefix) every lookup by member.
        sa.Index("ix_orders_member_id_placed_at", "member_id", "placed_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    order_id: Mapped[str] = mapped_column(sa.String(128), unique=True)
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id"))
    currency: Mapped[str] = mapped_column(sa.String(3))
    subtotal: Mapped[int] = mapped_column(sa.BigInteger)
    discount: Mapped[int] = mapped_column(sa.BigInteger)
    # subtotal - discount: the base refunds are measured against.
    total: Mapped[int] = mapped_column(sa.BigInteger)
    redeemed_points: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    redeemed_value: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    points_earned: Mapped[int] = mapped_column(sa.BigInteger)
    breakdown: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON)
    # [{sku, category, quantity, unit_price, net_amount, refunded_quantity}]
    lines: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON)
    request_hash: Mapped[str] = mapped_column(sa.String(64))
    redemption_id: Mapped[int | None] = mapped_column(sa.ForeignKey("redemptions.id"), unique=True)
    lot_id: Mapped[int | None] = mapped_column(sa.ForeignKey("point_lots.id"))
    placed_at: Mapped[dt.datetime]
    available_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    refunded_amount: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    points_reversed: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    points_restored: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    # The shop's id of the cart the order came from (a quoted cart's), if it said.
    cart_id: Mapped[str | None] = mapped_column(sa.String(CART_ID_LENGTH))


class QuotedCart(Base):
    """A cart the checkout quoted for a member under the shop's cart id: when it was first
    and last quoted, and the last quote's figures. One row per (member, cart id), upserted
    by every quote naming it; read by the cart_abandoned automation trigger."""

    __tablename__ = "quoted_carts"
    __table_args__ = (sa.UniqueConstraint("member_id", "cart_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id"))
    cart_id: Mapped[str] = mapped_column(sa.String(CART_ID_LENGTH))
    # Kept from the first quote: the cart's dedup key (it fires once, however re-quoted).
    first_quoted_at: Mapped[dt.datetime]
    # The last quote: an abandoned cart's timer runs from here. Indexed for the trigger's
    # scan of carts last quoted long enough ago.
    quoted_at: Mapped[dt.datetime] = mapped_column(index=True)
    # The last quote's total (lines less discount, before any points) in minor units.
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    points_to_earn: Mapped[int] = mapped_column(sa.BigInteger)
    # The last quote's lines: [{sku, category, quantity, unit_price}].
    items: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON)


class Refund(Base):
    __tablename__ = "refunds"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    refund_id: Mapped[str] = mapped_column(sa.String(128), unique=True)
    order_pk: Mapped[int] = mapped_column(sa.ForeignKey("orders.id"), index=True)
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    lines: Mapped[list[dict[str, Any]] | None] = mapped_column(sa.JSON)
    points_reversed: Mapped[int] = mapped_column(sa.BigInteger)
    points_restored: Mapped[int] = mapped_column(sa.BigInteger)
    request_hash: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    order: Mapped[Order] = relationship()
