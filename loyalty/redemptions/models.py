from __future__ import annotations

import datetime as dt
import enum
import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from loyalty.db import BigIntPK, utcnow
from loyalty.extensions import db


class RedemptionStatus(enum.StrEnum):
    HELD = "held"
    CAPTURED = "captured"
    RELEASED = "released"
    EXPIRED = "expired"


class Redemption(db.Model):  # type: ignore[name-defined]
    __tablename__ = "redemptions"
    __table_args__ = (sa.Index("ix_redemptions_member_id_status", "member_id", "status"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    public_id: Mapped[uuid.UUID] = mapped_column(unique=True, default=uuid.uuid4)
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id"))
    points: Mapped[int] = mapped_column(sa.BigInteger)
    value: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    status: Mapped[str] = mapped_column(sa.String(16))
    order_ref: Mapped[str | None] = mapped_column(sa.String(128))
    expires_at: Mapped[dt.datetime]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    captured_at: Mapped[dt.datetime | None]
    released_at: Mapped[dt.datetime | None]
    # Points given back by refunds of the order that used this redemption.
    restored_points: Mapped[int] = mapped_column(sa.BigInteger, default=0)

    allocations: Mapped[list[RedemptionAllocation]] = relationship(lazy="select")


class RedemptionAllocation(db.Model):  # type: ignore[name-defined]
    """Which lots a hold took its points from, so a release puts them back where they were
    (with their own expiry dates)."""

    __tablename__ = "redemption_allocations"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    redemption_id: Mapped[int] = mapped_column(sa.ForeignKey("redemptions.id"), index=True)
    lot_id: Mapped[int] = mapped_column(sa.ForeignKey("point_lots.id"))
    points: Mapped[int] = mapped_column(sa.BigInteger)
