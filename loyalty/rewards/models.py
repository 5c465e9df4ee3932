from __future__ import annotations

import datetime as dt
import enum
import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from loyalty.db import Base, BigIntPK, StrEnumType, utcnow


class RewardKind(enum.StrEnum):
    COUPON = "coupon"  # a code from a loaded pool, or generated when there is no pool
    PRODUCT = "product"
    FIXED_DISCOUNT = "fixed_discount"
    PERCENT_DISCOUNT = "percent_discount"


class RewardRedemptionStatus(enum.StrEnum):
    """Where a redemption's code stands. Expiry is not a status: a code past its
    `expires_at` is expired at that moment, whether or not anything has run since."""

    ACTIVE = "active"
    USED = "used"  # consumed by the checkout, once
    CANCELLED = "cancelled"  # its points and unit of stock given back


class Reward(Base):
    __tablename__ = "rewards"
    __table_args__ = (sa.CheckConstraint("stock IS NULL OR stock >= 0", name="stock"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    public_id: Mapped[uuid.UUID] = mapped_column(unique=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str | None] = mapped_column(sa.String(2000))
    kind: Mapped[RewardKind] = mapped_column(StrEnumType(RewardKind))
    cost_points: Mapped[int] = mapped_column(sa.BigInteger)
    # fixed_discount: its value in minor units of the program currency.
    value_amount: Mapped[int | None] = mapped_column(sa.BigInteger)
    # A percent-off value in hundredths of a percent (1250 = 12.5%): exact, never a float.
    percent_off_bps: Mapped[int | None]
    # Days a redemption's code is honoured from when it is redeemed (NULL: no expiry).
    valid_days: Mapped[int | None]
    # NULL: unlimited. Decremented atomically, so it is never oversold.
    stock: Mapped[int | None] = mapped_column(sa.BigInteger)
    min_tier_rank: Mapped[int | None]
    # Saved segment keys the member must be in one of to redeem (NULL: anyone).
    segments: Mapped[list[str] | None] = mapped_column(sa.JSON)
    per_member_limit: Mapped[int | None]
    starts_at: Mapped[dt.datetime | None]
    ends_at: Mapped[dt.datetime | None]
    active: Mapped[bool]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class RewardCode(Base):
    """A pre-loaded coupon code, handed out once."""

    __tablename__ = "reward_codes"
    __table_args__ = (
        sa.UniqueConstraint("reward_id", "code"),
        sa.Index("ix_reward_codes_reward_id_redemption_id", "reward_id", "redemption_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    reward_id: Mapped[int] = mapped_column(sa.ForeignKey("rewards.id"))
    code: Mapped[str] = mapped_column(sa.String(100))
    redemption_id: Mapped[int | None] = mapped_column(sa.ForeignKey("reward_redemptions.id"))


class RewardRedemption(Base):
    """A reward a member holds, with its code: redeemed for points, or granted as a coupon
    by an automation's firing (points 0, no ledger transaction, an expiry)."""

    __tablename__ = "reward_redemptions"
    __table_args__ = (
        sa.Index("ix_reward_redemptions_member_id_reward_id", "member_id", "reward_id"),
        # The checkout looks codes up by their text.
        sa.Index("ix_reward_redemptions_code", "code"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    public_id: Mapped[uuid.UUID] = mapped_column(unique=True, default=uuid.uuid4)
    reward_id: Mapped[int] = mapped_column(sa.ForeignKey("rewards.id"))
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id"))
    points: Mapped[int] = mapped_column(sa.BigInteger)
    code: Mapped[str] = mapped_column(sa.String(100))
    # The points' debit; None for a granted coupon, which moved no points.
    transaction_id: Mapped[int | None] = mapped_column(sa.ForeignKey("ledger_transactions.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # When the shop stops honouring the code (None: never): a granted coupon's from its
    # automation, a redeemed reward's from the reward's valid_days.
    expires_at: Mapped[dt.datetime | None]
    status: Mapped[RewardRedemptionStatus] = mapped_column(
        StrEnumType(RewardRedemptionStatus),
        default=RewardRedemptionStatus.ACTIVE,
        server_default=RewardRedemptionStatus.ACTIVE.value,
    )
    used_at: Mapped[dt.datetime | None]
    # The shop's order the code was used on, when the checkout named one: a retry of the
    # same consume for the same order gets the same answer.
    used_order_id: Mapped[str | None] = mapped_column(sa.String(128))
    cancelled_at: Mapped[dt.datetime | None]
    # The ledger transaction that gave the points back (None: no points to give back).
    restore_transaction_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("ledger_transactions.id")
    )
    # The automation firing that granted the coupon: unique, so a firing grants one at most.
    firing_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("automation_firings.id"), unique=True
    )


class RewardAllocation(Base):
    """Which lots a reward redemption took its points from, so a cancellation puts them
    back where they were, with their own expiry dates (not a fresh lot that would outlive
    them)."""

    __tablename__ = "reward_allocations"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    reward_redemption_id: Mapped[int] = mapped_column(
        sa.ForeignKey("reward_redemptions.id"), index=True
    )
    lot_id: Mapped[int] = mapped_column(sa.ForeignKey("point_lots.id"))
    points: Mapped[int] = mapped_column(sa.BigInteger)
