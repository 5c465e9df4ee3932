"""Reading member insight: one member's row, and the member list with its filters (the
program's summary is loyalty.insight.summary). Read-only Core SQL over the tables the latest
refresh wrote; no Flask.

Every answer names the refresh it describes (its ``as_of`` and when it finished). Without any
refresh, or for a member enrolled after the latest one, ``InsightNotRefreshed`` (409
``insight_not_refreshed``): an answer of zeros would read as "this member never bought".
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.insight.exceptions import InsightNotRefreshed
from loyalty.insight.models import InsightRefresh, MemberInsight
from loyalty.insight.segments import Segment
from loyalty.members.exceptions import MemberNotFound
from loyalty.members.models import Member, MemberStatus
from loyalty.tiers.models import Tier

# The member insight columns every answer shows, in the order the API shows them.
FIGURES = (
    "as_of",
    "segment",
    "recency_score",
    "frequency_score",
    "monetary_score",
    "first_order_at",
    "last_order_at",
    "days_since_last_order",
    "orders",
    "purchase_days",
    "net_revenue",
    "average_order_value",
    "currency",
    "points_earned",
    "points_redeemed",
    "frequency",
    "recency_days",
    "t_days",
    "monetary_value",
    "probability_alive",
    "expected_purchases",
    "predicted_value",
)
_FIGURE_COLUMNS = [MemberInsight.__table__.c[name] for name in FIGURES]


@dataclass(frozen=True)
class RefreshInfo:
    as_of: dt.datetime
    finished_at: dt.datetime
    members: int
    buyers: int
    currency: str


def latest_refresh(session: Session) -> tuple[int, RefreshInfo]:
    """The latest refresh's id and what it describes. Raises InsightNotRefreshed."""
    row = session.execute(
        sa.select(
            InsightRefresh.id,
            InsightRefresh.as_of,
            InsightRefresh.finished_at,
            InsightRefresh.members,
            InsightRefresh.buyers,
            InsightRefresh.currency,
        )
        .order_by(InsightRefresh.id.desc())
        .limit(1)
    ).first()
    if row is None:
        raise InsightNotRefreshed("No insight refresh has run yet.")
    return row.id, RefreshInfo(*row[1:])


# --- one member -----------------------------------------------------------------------------


@dataclass(frozen=True)
class MemberInsightView:
    """A member's insight row as of `refresh`: `figures` by the names of FIGURES."""

    external_id: str
    refresh: RefreshInfo
    figures: dict[str, Any]


def member_insight(session: Session, external_id: str) -> MemberInsightView:
    """The member's figures, scores, segment and predictions from the latest refresh. Raises
    MemberNotFound, and InsightNotRefreshed when no refresh has run or the member enrolled
    after the latest one."""
    member_id = session.scalar(sa.select(Member.id).where(Member.external_id == external_id))
    if member_id is None:
        raise MemberNotFound(f"No member with external_id {external_id!r}.")
    _, refresh = latest_refresh(session)
    row = session.execute(
        sa.select(*_FIGURE_COLUMNS).where(MemberInsight.member_id == member_id)
    ).first()
    if row is None:
        raise InsightNotRefreshed(
            f"Member {external_id!r} enrolled after the latest insight refresh "
            f"(as of {refresh.as_of.isoformat()})."
        )
    return MemberInsightView(external_id, refresh, dict(row._mapping))


# --- the member list ------------------------------------------------------------------------


@dataclass(frozen=True)
class MemberFilters:
    """What the member list keeps: every filter given must hold (None: no filter). Filters
    on insight figures leave out members without an insight row."""

    segments: Sequence[Segment] = ()
    recency_score: int | None = None
    frequency_score: int | None = None
    monetary_score: int | None = None
    tier: str | None = None
    status: MemberStatus | None = None
    predicted_value_min: int | None = None
    predicted_value_max: int | None = None
    days_since_last_order_min: int | None = None
    days_since_last_order_max: int | None = None
    # Case-insensitive substring of external_id, email or name (LIKE wildcards taken
    # literally).
    q: str | None = None


@dataclass(frozen=True)
class MemberRow:
    position: int  # the member's row id: the list's order and the cursor's position
    external_id: str
    email: str | None
    name: str | None
    status: str
    tier_code: str | None
    tier_name: str | None
    enrolled_at: dt.datetime
    insight: dict[str, Any] | None


def _listing(filters: MemberFilters) -> sa.Select[Any]:
    mi = MemberInsight
    query = (
        sa.select(
            Member.id,
            Member.external_id,
            Member.email,
            Member.name,
            Member.status,
            Tier.code,
            Tier.name.label("tier_name"),
            Member.enrolled_at,
            mi.member_id.label("insight_member_id"),
            *_FIGURE_COLUMNS,
        )
        .select_from(Member)
        .outerjoin(Tier, Tier.id == Member.tier_id)
        .outerjoin(mi, mi.member_id == Member.id)
    )
    conditions: list[Any] = []
    if filters.segments:
        conditions.append(mi.segment.in_([s.value for s in filters.segments]))
    for column, value in (
        (mi.recency_score, filters.recency_score),
        (mi.frequency_score, filters.frequency_score),
        (mi.monetary_score, filters.monetary_score),
        (Tier.code, filters.tier),
    ):
        if value is not None:
            conditions.append(column == value)
    if filters.status is not None:
        conditions.append(Member.status == filters.status)
    for column, low, high in (
        (mi.predicted_value, filters.predicted_value_min, filters.predicted_value_max),
        (
            mi.days_since_last_order,
            filters.days_since_last_order_min,
            filters.days_since_last_order_max,
        ),
    ):
        if low is not None:
            conditions.append(column >= low)
        if high is not None:
            conditions.append(column <= high)
    if filters.q:
        conditions.append(
            sa.or_(
                *(
                    column.icontains(filters.q, autoescape=True)
                    for column in (Member.external_id, Member.email, Member.name)
                )
            )
        )
    return query.where(*conditions)


def _row(row: sa.Row[Any]) -> MemberRow:
    mapping = row._mapping
    return MemberRow(
        position=row.id,
        external_id=row.external_id,
        email=row.email,
        name=row.name,
        status=MemberStatus(row.status).value,
        tier_code=row.code,
        tier_name=row.tier_name,
        enrolled_at=row.enrolled_at,
        insight=(
            None
            if row.insight_member_id is None
            else {
                name: mapping[column] for name, column in zip(FIGURES, _FIGURE_COLUMNS, strict=True)
            }
        ),
    )


def list_members(
    session: Session, filters: MemberFilters, limit: int, before_position: int | None
) -> tuple[list[MemberRow], int | None]:
    """A page of members matching `filters`, newest enrolment first (by row id), with their
    insight from the latest refresh (None for members enrolled after it, or before any
    refresh). Returns the page and the position the next page starts before (None at the
    end)."""
    query = _listing(filters).order_by(Member.id.desc()).limit(limit + 1)
    if before_position is not None:
        query = query.where(Member.id < before_position)
    rows = [_row(row) for row in session.execute(query)]
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1].position
    return rows, None


def iter_members(
    session: Session, filters: MemberFilters, batch: int = 1000
) -> Iterator[MemberRow]:
    """Every member matching `filters`, newest enrolment first: the matching ids in one
    query, then their rows `batch` ids at a time by primary key. Each query runs in its own
    transaction, ended (nothing was written) before its rows are handed on, so a slow reader
    holds no transaction open (on SQLite, where every transaction takes the write lock, it
    would stop every write). Not a keyset over the filtered list: each page of that is a
    new filtered query, which the planner may answer by reading and sorting the whole
    match again (74 s for 69,000 members of one segment among a million)."""
    ids = session.scalars(
        _listing(filters).with_only_columns(Member.id).order_by(Member.id.desc())
    ).all()
    session.rollback()
    everyone = _listing(MemberFilters())
    for start in range(0, len(ids), batch):
        chunk = ids[start : start + batch]
        rows = session.execute(everyone.where(Member.id.in_(chunk)).order_by(Member.id.desc()))
        found = [_row(row) for row in rows]
        session.rollback()
        yield from found
