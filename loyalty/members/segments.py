"""Saved segments and who is in them: the records every feature reads.

- ``saved_segments``: an admin's named filter over the member insight figures, tier and
  member attributes (its ``filter`` is ``loyalty.insight.segment_filter.SegmentFilter`` as
  JSON). Deleting one keeps the row (``deleted_at``) so its key is never reused for another
  meaning by a webhook consumer or an earning rule that still names it.
- ``segment_members``: who was in each segment at the last insight refresh, since when. Only
  ``loyalty.insight`` writes it; earning rules and rewards read it at earn and redeem time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column

from loyalty.db import Base, BigIntPK, utcnow

# Keys travel in URLs, rule conditions and webhooks: lowercase slugs.
SEGMENT_KEY_PATTERN = r"^[a-z0-9][a-z0-9_\-]{0,63}$"


class SavedSegment(Base):
    __tablename__ = "saved_segments"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(64), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str | None] = mapped_column(sa.String(2000))
    filter: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[dt.datetime | None]


class SegmentMember(Base):
    __tablename__ = "segment_members"
    # Earn and redeem time ask "which segments is this member in": member first.
    __table_args__ = (sa.Index("ix_segment_members_member_id", "member_id", "segment_id"),)

    segment_id: Mapped[int] = mapped_column(sa.ForeignKey("saved_segments.id"), primary_key=True)
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id"), primary_key=True)
    entered_at: Mapped[dt.datetime]


def member_segment_keys(session: Session, member_id: int) -> frozenset[str]:
    """The keys of the live segments the member was in at the last insight refresh."""
    return frozenset(
        session.scalars(
            sa.select(SavedSegment.key)
            .join(SegmentMember, SegmentMember.segment_id == SavedSegment.id)
            .where(SegmentMember.member_id == member_id, SavedSegment.deleted_at.is_(None))
        )
    )


def in_any_segment(session: Session, member_id: int, keys: Iterable[str]) -> bool:
    """Whether the member is in at least one of the live segments named by `keys`."""
    wanted = list(keys)
    if not wanted:
        return False
    return bool(
        session.scalar(
            sa.select(
                sa.exists()
                .where(SegmentMember.member_id == member_id)
                .where(SegmentMember.segment_id == SavedSegment.id)
                .where(SavedSegment.key.in_(wanted), SavedSegment.deleted_at.is_(None))
            )
        )
    )
