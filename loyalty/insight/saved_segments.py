"""Saved segments: an admin's named filters over the member insight (create, read, change,
delete, each audited), and their membership, recomputed set-based at every insight refresh
with a ``member.segment_changed`` event for each member who entered or left."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.audit import services as audit
from loyalty.db import insert_ignoring_conflicts, transaction, utcnow
from loyalty.errors import Conflict, NotFound, ValidationFailed
from loyalty.insight.models import MemberInsight
from loyalty.insight.segment_filter import SegmentFilter, matching_members
from loyalty.members.models import Member
from loyalty.members.segments import SavedSegment, SegmentChange, SegmentMember, SegmentUse
from loyalty.rewards.definitions import rewards_naming_segment
from loyalty.rules.services import rules_naming_segment
from loyalty.tiers.models import Tier
from loyalty.webhooks import outbox


class SegmentNotFound(NotFound):
    title = "Segment not found"


class SegmentKeyTaken(Conflict):
    code = "segment_key_taken"
    title = "A segment with this key exists (or existed)"


class SegmentInUse(Conflict):
    """Rules or rewards still name the segment; its problem document lists them in
    ``used_by``."""

    code = "segment_in_use"
    title = "The segment is in use"


@dataclass(frozen=True, slots=True)
class SegmentDefinition:
    key: str
    name: str
    filter: SegmentFilter
    description: str | None = None


@dataclass(frozen=True, slots=True)
class SegmentChanges:
    """What a PATCH names (None: unchanged; the key never changes)."""

    name: str | None = None
    description: str | None = None
    description_given: bool = False
    filter: SegmentFilter | None = None


@dataclass(frozen=True, slots=True)
class SegmentView:
    key: str
    name: str
    description: str | None
    filter: dict[str, Any]
    members: int
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True, slots=True)
class MembershipChanges:
    """What one refresh changed: members who entered and left, per segment key."""

    entered: dict[str, int]
    left: dict[str, int]


def _view(session: Session, segment: SavedSegment) -> SegmentView:
    count = session.scalar(sa.select(sa.func.count()).where(SegmentMember.segment_id == segment.id))
    return SegmentView(
        key=segment.key,
        name=segment.name,
        description=segment.description,
        filter=dict(segment.filter),
        members=int(count or 0),
        created_at=segment.created_at,
        updated_at=segment.updated_at,
    )


def _find(session: Session, key: str, *, lock: bool = False) -> SavedSegment:
    stmt = sa.select(SavedSegment).where(SavedSegment.key == key, SavedSegment.deleted_at.is_(None))
    if lock:
        stmt = stmt.with_for_update()
    segment = session.scalars(stmt).one_or_none()
    if segment is None:
        raise SegmentNotFound(f"No segment with key {key!r}.")
    return segment


def _check_tiers(session: Session, segment_filter: SegmentFilter) -> None:
    if not segment_filter.tiers:
        return
    known = set(session.scalars(sa.select(Tier.code).where(Tier.code.in_(segment_filter.tiers))))
    unknown = sorted(segment_filter.tiers - known)
    if unknown:
        raise ValidationFailed({"filter.tiers": [f"No tier with code {c!r}." for c in unknown]})


def create_segment(
    session: Session, definition: SegmentDefinition, actor: str | None = None
) -> SegmentView:
    """Save a segment; it has no members until the next insight refresh. Raises
    ValidationFailed (an unknown tier), SegmentKeyTaken (the key is or was in use)."""
    with transaction(session):
        _check_tiers(session, definition.filter)
        taken = session.scalar(sa.select(SavedSegment.id).where(SavedSegment.key == definition.key))
        if taken is not None:
            raise SegmentKeyTaken(f"The key {definition.key!r} is taken.")
        segment = SavedSegment(
            key=definition.key,
            name=definition.name,
            description=definition.description,
            filter=definition.filter.as_json(),
        )
        session.add(segment)
        session.flush()
        audit.record(
            session, actor, "segment.create", "segment", segment.key, None, audit.snapshot(segment)
        )
        return _view(session, segment)


def get_segment(session: Session, key: str) -> SegmentView:
    """The live segment with this key and its member count. Raises SegmentNotFound."""
    return _view(session, _find(session, key))


def list_segments(
    session: Session, *, limit: int, after: int | None
) -> tuple[list[SegmentView], int | None]:
    """Live segments newest first, one page (those older than position `after`); returns
    (segments, position of the next page or None)."""
    stmt = (
        sa.select(SavedSegment)
        .where(SavedSegment.deleted_at.is_(None))
        .order_by(SavedSegment.id.desc())
        .limit(limit + 1)
    )
    if after is not None:
        stmt = stmt.where(SavedSegment.id < after)
    found = list(session.scalars(stmt))
    next_position = found[limit - 1].id if len(found) > limit else None
    return [_view(session, segment) for segment in found[:limit]], next_position


def update_segment(
    session: Session, key: str, changes: SegmentChanges, actor: str | None = None
) -> SegmentView:
    """Change a segment's name, description or filter; a new filter applies from the next
    refresh. Raises SegmentNotFound, ValidationFailed."""
    with transaction(session):
        segment = _find(session, key)
        before = audit.snapshot(segment)
        if changes.name is not None:
            segment.name = changes.name
        if changes.description_given:
            segment.description = changes.description
        if changes.filter is not None:
            _check_tiers(session, changes.filter)
            segment.filter = changes.filter.as_json()
        session.flush()
        audit.record(
            session, actor, "segment.update", "segment", key, before, audit.snapshot(segment)
        )
        return _view(session, segment)


def delete_segment(
    session: Session, key: str, actor: str | None = None, now: dt.datetime | None = None
) -> None:
    """Delete a segment: its members leave it (announced), its key stays reserved.

    Refused while an earning rule (its current version, active or not) or a reward (active
    or not) names the segment: deleting it would silently limit them to nobody, so the
    admin first changes them (the refusal names each). Raises SegmentNotFound,
    SegmentInUse.
    """
    now = now or utcnow()
    with transaction(session):
        # Locked before looking for users: a rule or reward naming the segment locks it FOR
        # SHARE when it checks the key (check_segment_keys), so one committing meanwhile is
        # waited for and then seen, and one checking after this commits finds it deleted.
        segment = _find(session, key, lock=True)
        _refuse_if_used(session, key)
        before = audit.snapshot(segment)
        leaving = (
            sa.select(Member.external_id)
            .join(SegmentMember, SegmentMember.member_id == Member.id)
            .where(SegmentMember.segment_id == segment.id)
        )
        _announce(session, leaving, segment.key, "left", now)
        session.execute(sa.delete(SegmentMember).where(SegmentMember.segment_id == segment.id))
        segment.deleted_at = now
        session.flush()
        audit.record(
            session, actor, "segment.delete", "segment", key, before, audit.snapshot(segment)
        )


def _refuse_if_used(session: Session, key: str) -> None:
    users: list[SegmentUse] = [
        *rules_naming_segment(session, key),
        *rewards_naming_segment(session, key),
    ]
    if not users:
        return
    named = ", ".join(f"{use.kind} {use.name!r} ({use.id})" for use in users)
    raise SegmentInUse(
        f"The segment {key!r} is named by {named}; remove it from them first.",
        used_by=[{"type": use.kind, "id": str(use.id), "name": use.name} for use in users],
    )


def _announce(
    session: Session, members: sa.Select[str], key: str, change: str, as_of: dt.datetime
) -> int:
    """A ``member.segment_changed`` event for each member `members` selects (one column, the
    members' external ids), written set-based."""
    payloads = members.with_only_columns(
        Member.external_id.label("member_id"),
        sa.literal(key).label("segment"),
        sa.literal(change).label("change"),
        sa.literal(as_of.isoformat()).label("as_of"),
    )
    return outbox.emit_selected(session, "member.segment_changed", payloads)


def _log(
    session: Session, members: sa.Select[Any], segment_id: int, change: str, as_of: dt.datetime
) -> None:
    """A ``segment_changes`` row for each member `members` selects (one column, the members'
    ids), written set-based: leaving deletes the membership, so the log remembers it (the
    ``segment_left`` automation trigger reads it)."""
    session.execute(
        sa.insert(SegmentChange).from_select(
            ["segment_id", "member_id", "change", "changed_at"],
            members.with_only_columns(
                sa.literal(segment_id, sa.BigInteger),
                Member.id,
                sa.literal(change, SegmentChange.change.type),
                sa.literal(as_of, SegmentChange.changed_at.type),
            ),
        )
    )


def recompute_members(
    session: Session, as_of: dt.datetime, *, analyze: bool = False
) -> MembershipChanges:
    """Recompute every live segment's members from the member insight just refreshed: one
    INSERT ... SELECT of those who entered and one DELETE of those who left per segment, and
    a ``member.segment_changed`` event for each. Runs inside the refresh's transaction.

    With `analyze` (PostgreSQL), segment_members' statistics are taken afresh before each
    segment: planned on statistics from before the previous segment's rows (an empty table
    at the first refresh), its anti-joins become nested loops over every row, minutes at a
    million members. ANALYZE inside the transaction counts the rows it wrote."""
    entered: dict[str, int] = {}
    left: dict[str, int] = {}
    segments = session.execute(
        sa.select(SavedSegment.id, SavedSegment.key, SavedSegment.filter)
        .where(SavedSegment.deleted_at.is_(None))
        .order_by(SavedSegment.id)
    ).all()
    sm = SegmentMember
    for segment_id, key, stored in segments:
        if analyze:
            session.execute(sa.text("ANALYZE segment_members"))
        matching = matching_members(SegmentFilter.from_json(stored))
        already = sa.exists().where(sm.segment_id == segment_id, sm.member_id == Member.id)
        entering = matching.where(~already)
        # Who enters, named before the insert (the same statement's condition, one snapshot:
        # the refresh holds its lock and nothing else writes segment_members).
        entered[key] = _announce(session, entering, key, "entered", as_of)
        _log(session, entering, segment_id, "entered", as_of)
        # Every member matching, those already in skipped by the key: a NOT EXISTS on
        # segment_members here would read the table this statement writes, and planned as a
        # nested loop (the table looked empty) it rescans the rows written so far for each
        # row: hours at a million members.
        insert = insert_ignoring_conflicts(session, SegmentMember, ("segment_id", "member_id"))
        session.execute(
            insert.from_select(
                ["segment_id", "member_id", "entered_at"],
                matching.with_only_columns(
                    sa.literal(segment_id, sa.BigInteger),
                    Member.id,
                    sa.literal(as_of, sm.entered_at.type),
                ),
            )
        )
        # An anti-join (NOT EXISTS), not NOT IN (the matching ids): PostgreSQL hashes a NOT IN
        # list only while it fits in work_mem, and rescans it for every row past that (76 s
        # for three segments at a million members). The subquery's own members row is
        # another FROM than the outer statement's (correlate_except), tied by the id.
        still_matches = (
            matching.where(Member.id == sm.member_id)
            .correlate_except(Member, MemberInsight, Tier)
            .exists()
        )
        gone = (
            sa.select(Member.external_id)
            .join(sm, sm.member_id == Member.id)
            .where(sm.segment_id == segment_id, ~still_matches)
        )
        left[key] = _announce(session, gone, key, "left", as_of)
        _log(session, gone, segment_id, "left", as_of)
        session.execute(sa.delete(sm).where(sm.segment_id == segment_id, ~still_matches))
    return MembershipChanges(entered=entered, left=left)
