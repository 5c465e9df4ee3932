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


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
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
