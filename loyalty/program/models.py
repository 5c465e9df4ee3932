from __future__ import annotations

import datetime as dt
import enum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from loyalty import days
from loyalty.db import Base, StrEnumType, utcnow


class ExpiryPolicy(enum.StrEnum):
    FIXED = "fixed"  # a lot expires `expiry_months` after it was earned
    INACTIVITY = "inactivity"  # all lots expire `expiry_months` after the member's last activity
    NEVER = "never"


class ProgramSettings(Base):
    """The single row (id 1) of program-wide settings."""

    __tablename__ = "program_settings"
    __table_args__ = (
        sa.CheckConstraint("id = 1", name="single_row"),
        sa.CheckConstraint("point_value_points > 0 AND point_value_amount > 0", name="point_value"),
        sa.CheckConstraint("pending_days >= 0", name="pending_days"),
        sa.CheckConstraint("hold_ttl_seconds > 0", name="hold_ttl"),
        sa.CheckConstraint(
            "referral_referrer_points >= 0 AND referral_friend_points >= 0",
            name="referral_points",
        ),
        sa.CheckConstraint(
            "(referral_max_per_period IS NULL OR referral_max_per_period >= 0)"
            " AND referral_period_days > 0",
            name="referral_limit",
        ),
        sa.CheckConstraint(
            "max_redemption_percent >= 0 AND max_redemption_percent <= 100",
            name="max_redemption_percent",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    currency: Mapped[str] = mapped_column(sa.String(3))
    point_value_points: Mapped[int]
    point_value_amount: Mapped[int]
    pending_days: Mapped[int]
    expiry_policy: Mapped[ExpiryPolicy] = mapped_column(StrEnumType(ExpiryPolicy))
    expiry_months: Mapped[int | None]
    hold_ttl_seconds: Mapped[int]
    max_redemption_percent: Mapped[int]
    min_redemption_points: Mapped[int]
    tier_window_months: Mapped[int]
    # Referral rewards, paid once the friend's first order is past its return window (0: none).
    referral_referrer_points: Mapped[int] = mapped_column(default=0, server_default="0")
    referral_friend_points: Mapped[int] = mapped_column(default=0, server_default="0")
    # At most this many rewardable referrals per referrer in any referral_period_days (None:
    # no limit).
    referral_max_per_period: Mapped[int | None]
    referral_period_days: Mapped[int] = mapped_column(default=30, server_default="30")
    # The IANA zone whose days, weeks and months the program speaks of (loyalty.days).
    time_zone: Mapped[str] = mapped_column(
        sa.String(64), default=days.DEFAULT_ZONE, server_default=days.DEFAULT_ZONE
    )
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # Bumped by every change to the settings, a tier or a rule (see loyalty.program.config).
    config_version: Mapped[int] = mapped_column(sa.BigInteger, default=1, server_default="1")

    @property
    def zone(self) -> dt.tzinfo:
        """The program's time zone (looked up once per process and name)."""
        return days.zone(self.time_zone)

    def points_value(self, points: int) -> int:
        """The money value, in minor units, of `points` (rounded down: never overpay)."""
        return points * self.point_value_amount // self.point_value_points
