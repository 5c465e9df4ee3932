"""Saved segments and who is in them: the records every feature reads.

- ``saved_segments``: an admin's named filter over the member insight figures, tier and
  member attributes (its ``filter`` is ``loyalty.insight.segment_filter.SegmentFilter`` as
  JSON). Deleting one keeps the row (``deleted_at``) so its key is never reused for another
  meaning by a webhook consumer or an earning rule that still names it.
- ``segment_members``: who was in each segment at the last insight refresh, since when. Only
  ``loyalty.insight`` writes it; earning rules and rewards read it at earn and redeem time.
- ``segment_changes``: a log of each member entering or leaving a segment at a refresh
  (leaving deletes the ``segment_members`` row, so this is where it is remembered); written
  set-based by ``loyalty.insight`` beside the ``member.segment_changed`` events, read by the
  ``segment_left`` automation trigger.

Earning rules (``conditions.segments``) and rewards (``segments``) name live saved segments
only: membership is looked up in ``segment_members`` alone, so any other key (a typo, a
deleted segment, an RFM segment name such as ``champions``) would limit them to nobody.
``check_segment_keys`` refuses such keys when they are written, and a segment something
still names cannot be deleted (``loyalty.insight.saved_segments.delete_segment``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column

from loyalty.db import Base, BigIntPK, utcnow
from loyalty.errors import ValidationFailed

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


class SegmentChange(Base):
    """A member entered or left a segment at an insight refresh (`changed_at`, its as-of)."""

    __tablename__ = "segment_changes"
    # Automations ask "who left this segment since": segment, change, then time.
    __table_args__ = (
        sa.Index(
            "ix_segment_changes_segment_id_change_changed_at",
            "segment_id",
            "change",
            "changed_at",
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    segment_id: Mapped[int] = mapped_column(sa.ForeignKey("saved_segments.id"))
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id"))
    change: Mapped[str] = mapped_column(sa.String(8))  # "entered" or "left"
    changed_at: Mapped[dt.datetime]


class UnknownSegment(ValidationFailed):
    """A rule or reward names a key that is no live saved segment's."""

    code = "unknown_segment"
    title = "Unknown segment"


@dataclass(frozen=True, slots=True)
class SegmentUse:
    """A rule or reward (its current definition) that names a saved segment."""

    kind: str  # "rule" or "reward"
    id: uuid.UUID  # its public id
    name: str


def check_segment_keys(session: Session, keys: Iterable[str], field: str) -> None:
    """Return if every key in `keys` names a live saved segment; raise UnknownSegment, with
    a message per unknown key under `field`, if not.

    The segments named stay locked (FOR SHARE) until the caller's transaction ends:
    ``delete_segment`` locks its segment FOR UPDATE before it looks for what names it, so a
    segment cannot be deleted between this check and the commit of a rule or reward naming
    it. (SQLite has no row locks; its writers are serialized by BEGIN IMMEDIATE.)
    """
    wanted = list(dict.fromkeys(keys))
    if not wanted:
        return
    live = set(
        session.scalars(
            sa.select(SavedSegment.key)
            .where(SavedSegment.key.in_(wanted), SavedSegment.deleted_at.is_(None))
            .order_by(SavedSegment.key)  # one lock order for every writer
            .with_for_update(read=True)
        )
    )
    unknown = [key for key in wanted if key not in live]
    if unknown:
        raise UnknownSegment(
            {field: [f"No saved segment with key {key!r}." for key in unknown]},
            "Segments are named by the keys of live saved segments (GET /v1/admin/segments). "
            "To limit to an RFM segment such as 'champions', save a segment whose filter "
            "names it in rfm_segments and use that segment's key.",
        )


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
