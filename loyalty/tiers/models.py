from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from loyalty.db import Base, BigIntPK, utcnow


class Tier(Base):
    __tablename__ = "tiers"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(32), unique=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    rank: Mapped[int] = mapped_column(unique=True)
    # Qualifying points over the program's rolling window needed to reach the tier.
    threshold: Mapped[int] = mapped_column(sa.BigInteger)
    # A member keeps the tier at least this long after they last qualified for it.
    retention_months: Mapped[int]
    # [{"code": "free_shipping", "params": {...}}]
    benefits: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class TierChange(Base):
    """Every tier change of a member: from, to, why, when."""

    __tablename__ = "tier_changes"
    __table_args__ = (sa.Index("ix_tier_changes_member_id_id", "member_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id"))
    from_tier: Mapped[str | None] = mapped_column(sa.String(32))
    to_tier: Mapped[str | None] = mapped_column(sa.String(32))
    reason: Mapped[str] = mapped_column(sa.String(32))
    qualifying_points: Mapped[int] = mapped_column(sa.BigInteger)
    changed_at: Mapped[dt.datetime]


class BenefitGrant(Base):
    """A benefit given to one member directly, outside their tier."""

    __tablename__ = "benefit_grants"
    __table_args__ = (sa.Index("ix_benefit_grants_member_id", "member_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id"))
    code: Mapped[str] = mapped_column(sa.String(64))
    params: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    reason: Mapped[str | None] = mapped_column(sa.String(500))
    starts_at: Mapped[dt.datetime]
    ends_at: Mapped[dt.datetime | None]
    actor: Mapped[str | None] = mapped_column(sa.String(100))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # The automation firing that granted it (None: an admin did): unique, one per firing.
    firing_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("automation_firings.id"), unique=True
    )
