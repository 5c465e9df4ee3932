"""Reading the program's summary from member insight: buyers and net revenue per segment,
the R x FM grid, the predicted value's deciles and the lifetime-value model's outcome.
Read-only Core SQL over the tables the latest refresh wrote; no Flask.

Every answer names the refresh it describes; without any refresh, ``InsightNotRefreshed``
(409 ``insight_not_refreshed``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.insight.models import InsightModel, MemberInsight
from loyalty.insight.queries import RefreshInfo, latest_refresh
from loyalty.insight.segments import GRID, LABELS, SCORES, Segment

BASIS_POINTS = 10_000
DECILES = 10


@dataclass(frozen=True)
class SegmentShare:
    segment: Segment
    label: str
    members: int
    revenue: int
    # Share of the buyers: members and net revenue, in basis points (1/100 of a percent).
    members_share_bp: int
    revenue_share_bp: int


@dataclass(frozen=True)
class GridCell:
    recency_score: int
    fm_score: int
    segment: Segment
    members: int
    revenue: int


@dataclass(frozen=True)
class ValueDecile:
    decile: int
    members: int
    min: int
    max: int
    total: int


@dataclass(frozen=True)
class ModelView:
    status: str
    detail: str | None
    fitted_at: dt.datetime | None
    time_unit: str
    horizon_days: int | None
    customers: int
    log_likelihood: float | None
    params: dict[str, Any] | None


@dataclass(frozen=True)
class Summary:
    refresh: RefreshInfo
    revenue: int
    segments: list[SegmentShare]
    rfm_grid: list[GridCell]
    predicted_value: list[ValueDecile]
    predicted_total: int
    model: ModelView | None


def share_bp(part: int, whole: int) -> int:
    """part / whole in basis points, rounded half up, in integers; 0 when whole is 0."""
    if whole <= 0:
        return 0
    return (2 * part * BASIS_POINTS + whole) // (2 * whole)


def summary(session: Session) -> Summary:
    """The latest refresh at a glance: buyers and net revenue per segment (with their shares
    in basis points), the R x FM grid, the predicted value's deciles over the buyers the model
    predicted, and the model step's outcome. Raises InsightNotRefreshed."""
    refresh_id, refresh = latest_refresh(session)
    mi = MemberInsight
    revenue_total = int(
        session.scalar(
            sa.select(sa.func.coalesce(sa.func.sum(mi.net_revenue), 0)).where(mi.orders > 0)
        )
        or 0
    )
    per_segment = {
        Segment(str(segment)): (int(members), int(revenue))
        for segment, members, revenue in session.execute(
            sa.select(mi.segment, sa.func.count(), sa.func.coalesce(sa.func.sum(mi.net_revenue), 0))
            .where(mi.segment.is_not(None))
            .group_by(mi.segment)
        )
    }
    segments = [
        SegmentShare(
            segment,
            LABELS[segment],
            members,
            revenue,
            share_bp(members, refresh.buyers),
            share_bp(revenue, revenue_total),
        )
        for segment in Segment
        for members, revenue in [per_segment.get(segment, (0, 0))]
    ]
    # Not NULL where it is read (buyers only).
    fm = sa.type_coerce((mi.frequency_score + mi.monetary_score + 1) // 2, sa.Integer)
    cells = {
        (r, f): (int(members), int(revenue))
        for r, f, members, revenue in session.execute(
            sa.select(
                mi.recency_score,
                fm.label("fm"),
                sa.func.count(),
                sa.func.coalesce(sa.func.sum(mi.net_revenue), 0),
            )
            .where(mi.recency_score.is_not(None))
            .group_by(mi.recency_score, fm)
        )
    }
    grid = [
        GridCell(r, f, GRID[r][f - 1], *cells.get((r, f), (0, 0)))
        for r in reversed(SCORES)
        for f in SCORES
    ]
    ranked = (
        sa.select(
            mi.predicted_value.label("value"),
            sa.func.ntile(DECILES).over(order_by=(mi.predicted_value, mi.member_id)).label("d"),
        )
        .where(mi.predicted_value.is_not(None))
        .subquery("ranked")
    )
    deciles = [
        ValueDecile(int(d), int(members), int(low), int(high), int(total))
        for d, members, low, high, total in session.execute(
            sa.select(
                ranked.c.d,
                sa.func.count(),
                sa.func.min(ranked.c.value),
                sa.func.max(ranked.c.value),
                sa.func.sum(ranked.c.value),
            )
            .group_by(ranked.c.d)
            .order_by(ranked.c.d)
        )
    ]
    model_row = session.execute(
        sa.select(InsightModel).where(InsightModel.refresh_id == refresh_id)
    ).scalar_one_or_none()
    model = (
        None
        if model_row is None
        else ModelView(
            status=model_row.status.value,
            detail=model_row.detail,
            fitted_at=model_row.fitted_at,
            time_unit=model_row.time_unit,
            horizon_days=model_row.horizon_days,
            customers=model_row.customers,
            log_likelihood=model_row.log_likelihood,
            params=model_row.params,
        )
    )
    return Summary(
        refresh=refresh,
        revenue=revenue_total,
        segments=segments,
        rfm_grid=grid,
        predicted_value=deciles,
        predicted_total=sum(d.total for d in deciles),
        model=model,
    )
