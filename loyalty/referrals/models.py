from __future__ import annotations

import datetime as dt
import enum
import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from loyalty.db import Base, BigIntPK, StrEnumType, utcnow


class ReferralStatus(enum.StrEnum):
    LINKED = "linked"  # waiting for the friend's first order
    QUALIFYING = "qualifying"  # first order placed: rewarded once its return window passes
    REWARDED = "rewarded"
    CANCELLED = "cancelled"  # that order was refunded inside its return window
    OVER_LIMIT = "over_limit"  # linked past the referrer's limit for the period: never rewarded


# The referrals that take one of the referrer's places in a limit period.
COUNTED = (ReferralStatus.LINKED, ReferralStatus.QUALIFYING, ReferralStatus.REWARDED)


class Referral(Base):
    """One friend enrolled on a member's referral (one row per friend at most)."""

    __tablename__ = "referrals"
    __table_args__ = (
        sa.Index("ix_referrals_referrer_id_linked_at", "referrer_id", "linked_at"),
        sa.Index("ix_referrals_status_qualifies_at", "status", "qualifies_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    public_id: Mapped[uuid.UUID] = mapped_column(unique=True, default=uuid.uuid4)
    referrer_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id"))
    referred_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id"), unique=True)
    # The code the friend enrolled with; null when they named the referrer (`referred_by`).
    code: Mapped[str | None] = mapped_column(sa.String(32))
    status: Mapped[ReferralStatus] = mapped_column(StrEnumType(ReferralStatus))
    # The friend's first order (the shop's order_id), once placed.
    order_id: Mapped[str | None] = mapped_column(sa.String(128), sa.ForeignKey("orders.order_id"))
    linked_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    qualifies_at: Mapped[dt.datetime | None]
    rewarded_at: Mapped[dt.datetime | None]
    cancelled_at: Mapped[dt.datetime | None]
    referrer_points: Mapped[int] = mapped_column(default=0)
    friend_points: Mapped[int] = mapped_column(default=0)
