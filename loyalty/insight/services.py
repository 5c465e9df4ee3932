"""Member insight, refreshed into tables: per-member figures as of a moment, RFM scores and
segments, and the lifetime-value model's inputs and predictions.

``refresh`` replaces every row of ``member_insight`` in one transaction, step by step, each
step one set-based statement over all members (no loop over members in Python):

1. **figures**: one ``INSERT ... SELECT`` with CTEs: each order placed by `as_of` net of the
   refunds made by `as_of`; the purchases among them (net above zero) by member and UTC day;
   per member first and last purchase, orders, purchase days, net revenue, the model's inputs;
   points earned and redeemed from the ledger entries that took effect by `as_of`. Every
   member gets a row, buyers or not (``loyalty.insight.figures``).
2. **scores**: one ``UPDATE ... FROM`` a select of ``NTILE(5)`` windows over the buyers.
3. **model**: the buyers' model inputs as arrays, handed to ``predict_lifetime_value`` (BG/NBD
   and Gamma-Gamma, ``loyalty.insight.clv``), its predictions written back
   (``loyalty.insight.prediction``).
4. **segments**: one ``UPDATE`` setting each buyer's segment from a ``CASE`` built from the
   table in ``loyalty.insight.segments``.
5. **saved_segments**: the admins' saved segments' members, per segment one ``INSERT ...
   SELECT`` of those who entered and one ``DELETE`` of those who left, each change announced
   as ``member.segment_changed`` (``loyalty.insight.saved_segments``).

The same SQLAlchemy Core statements run on PostgreSQL (production) and SQLite (the demo);
only the day of a timestamp in the program's time zone is spelled per dialect
(``loyalty.db.day_number``). Readers keep
seeing the previous refresh until this one commits.

Only one refresh runs at a time: on PostgreSQL it holds a transaction-scoped advisory lock
(``pg_advisory_xact_lock``), which ``refresh`` waits for and the daily refresh of ``jobs
run`` only tries (a worker that finds it taken leaves the refresh to the one holding it); on
SQLite every transaction takes the database's write lock at its start (``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import datetime as dt
import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.db import transaction, utcnow
from loyalty.insight import figures, prediction, saved_segments
from loyalty.insight.models import InsightModel, InsightRefresh, MemberInsight, ModelStatus
from loyalty.insight.segments import GRID, SCORES, Segment
from loyalty.program.services import get_settings

STEPS = ("figures", "scores", "model", "segments", "saved_segments")
# The daily refresh of `jobs run` runs when the last refresh describes a moment older than
# this.
DAILY = dt.timedelta(hours=24)
# pg_advisory_xact_lock key of the refresh (migrations/env.py takes 7319).
REFRESH_LOCK_KEY = 7320


# --- the refresh ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RefreshSummary:
    """What a refresh did: the moment it describes, the members and buyers it saw, buyers
    per segment, the model step's status, and seconds per step."""

    as_of: dt.datetime
    members: int
    buyers: int
    segments: dict[Segment, int]
    model_status: ModelStatus
    model_detail: str | None
    steps: dict[str, float] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return sum(self.steps.values())


def refresh(
    session: Session,
    as_of: dt.datetime | None = None,
    progress: Callable[[str], None] | None = None,
) -> RefreshSummary:
    """Recompute every member's insight as of `as_of` (default: now) into ``member_insight``,
    replacing the previous refresh's rows, and record the refresh and its model step. One
    transaction: readers see the old rows until it commits; a failure keeps nothing. Waits
    for a refresh running elsewhere to finish. `progress` is told each step's name as it
    finishes. Returns the summary."""
    with transaction(session):
        _lock(session, wait=True)
        return _refresh(session, as_of or utcnow(), progress)


class DailyState(enum.StrEnum):
    REFRESHED = "refreshed"
    UP_TO_DATE = "up to date"
    ELSEWHERE = "refreshing elsewhere"


@dataclass(frozen=True)
class DailyRefresh:
    state: DailyState
    summary: RefreshSummary | None = None


def refresh_if_due(
    session: Session, now: dt.datetime | None = None, every: dt.timedelta = DAILY
) -> DailyRefresh:
    """The daily refresh of `jobs run`: refresh as of `now` when the latest refresh describes
    a moment more than `every` before `now` (or there is none). Several workers may call it
    at once: on PostgreSQL one refreshes, the others return ELSEWHERE without waiting.
    Returns what happened and, when it refreshed, the summary."""
    now = now or utcnow()
    # A look of its own, ended at once: on SQLite any transaction holds the write lock.
    with transaction(session):
        due = _due(session, now, every)
    if not due:
        return DailyRefresh(DailyState.UP_TO_DATE)
    with transaction(session):
        if not _lock(session, wait=False):
            return DailyRefresh(DailyState.ELSEWHERE)
        # Another worker may have refreshed between the first look and the lock.
        if not _due(session, now, every):
            return DailyRefresh(DailyState.UP_TO_DATE)
        return DailyRefresh(DailyState.REFRESHED, _refresh(session, now, None))


def latest_refresh(session: Session) -> InsightRefresh | None:
    """The refresh whose rows ``member_insight`` holds (the last one committed), or None."""
    return session.scalars(
        sa.select(InsightRefresh).order_by(InsightRefresh.id.desc()).limit(1)
    ).first()


def _due(session: Session, now: dt.datetime, every: dt.timedelta) -> bool:
    latest = latest_refresh(session)
    return latest is None or latest.as_of < now - every


def _lock(session: Session, *, wait: bool) -> bool:
    if session.get_bind().dialect.name != "postgresql":
        return True  # SQLite: this transaction began with BEGIN IMMEDIATE, the write lock
    if wait:
        session.execute(sa.select(sa.func.pg_advisory_xact_lock(REFRESH_LOCK_KEY)))
        return True
    return bool(session.scalar(sa.select(sa.func.pg_try_advisory_xact_lock(REFRESH_LOCK_KEY))))


def _refresh(
    session: Session, as_of: dt.datetime, progress: Callable[[str], None] | None
) -> RefreshSummary:
    started = utcnow()
    settings = get_settings(session)
    currency = settings.currency
    if session.get_bind().dialect.name == "postgresql":
        # Sorts for the windows and hashes per member stay in memory (this transaction only).
        session.execute(sa.text("SET LOCAL work_mem = '256MB'"))
    steps: dict[str, float] = {}

    def step(name: str, work: Callable[[], Any]) -> Any:
        clock = time.perf_counter()
        result = work()
        steps[name] = round(time.perf_counter() - clock, 3)
        if progress:
            progress(name)
        return result

    analyze = session.get_bind().dialect.name == "postgresql"
    members = step("figures", lambda: figures.replace_rows(session, as_of, currency, settings.zone))
    if analyze:
        # Fresh statistics for the joins of the next steps (allowed inside a transaction).
        session.execute(sa.text("ANALYZE member_insight"))
    buyers = step("scores", lambda: _scores(session))
    outcome = step("model", lambda: prediction.predict_and_store(session, as_of))
    step("segments", lambda: _segments(session))
    if analyze:
        # Again, now that segments and predictions are set: statistics from before them say
        # no member has a segment, and the saved segments' anti-joins, planned as nested
        # loops over "one row", took 25 s a segment at 100,000 members.
        session.execute(sa.text("ANALYZE member_insight"))
    step(
        "saved_segments",
        lambda: saved_segments.recompute_members(session, as_of, analyze=analyze),
    )

    refresh_row = InsightRefresh(
        as_of=as_of,
        started_at=started,
        finished_at=utcnow(),
        members=members,
        buyers=buyers,
        currency=currency,
        steps=steps,
    )
    session.add(refresh_row)
    session.flush()
    session.add(
        InsightModel(
            refresh_id=refresh_row.id,
            as_of=as_of,
            status=outcome.status,
            detail=outcome.detail,
            fitted_at=outcome.fitted_at,
            time_unit="days",
            horizon_days=outcome.horizon_days,
            customers=outcome.customers,
            log_likelihood=outcome.log_likelihood,
            params=outcome.params,
        )
    )
    session.flush()
    counts = session.execute(
        sa.select(MemberInsight.segment, sa.func.count())
        .where(MemberInsight.segment.is_not(None))
        .group_by(MemberInsight.segment)
    ).all()
    return RefreshSummary(
        as_of=as_of,
        members=members,
        buyers=buyers,
        segments={segment: int(count) for segment, count in counts if segment is not None},
        model_status=outcome.status,
        model_detail=outcome.detail,
        steps=steps,
    )


def _scores(session: Session) -> int:
    """R, F and M quintiles over the buyers; the number of buyers.

    NTILE(5) over a total order: rows that tie on the measure are ordered by the next key and
    finally by member id, so equal buyers may land on both sides of a quintile's edge (many
    buyers with one purchase day straddle F 1, 2 and 3), and the same data always gives the
    same scores."""
    mi = MemberInsight
    ranked = (
        sa.select(
            mi.member_id,
            sa.func.ntile(5)
            .over(order_by=(mi.days_since_last_order.desc(), mi.last_order_at, mi.member_id))
            .label("r"),
            sa.func.ntile(5)
            .over(order_by=(mi.purchase_days, mi.orders, mi.net_revenue, mi.member_id))
            .label("f"),
            sa.func.ntile(5).over(order_by=(mi.net_revenue, mi.member_id)).label("m"),
        )
        .where(mi.orders > 0)
        .subquery("ranked")
    )
    updated = session.execute(
        sa.update(mi)
        .where(mi.member_id == ranked.c.member_id)
        .values(recency_score=ranked.c.r, frequency_score=ranked.c.f, monetary_score=ranked.c.m)
    )
    return int(updated.rowcount)  # type: ignore[attr-defined]


def segment_case(recency: Any, frequency: Any, monetary: Any) -> sa.Case[Any]:
    """The segment table of ``loyalty.insight.segments`` as a SQL CASE over three score
    columns (FM: their average rounded half up, in integers)."""
    fm = (frequency + monetary + 1) // 2
    return sa.case(
        *[
            (sa.and_(recency == r, fm == index + 1), sa.literal(segment.value, sa.String))
            for r in SCORES
            for index, segment in enumerate(GRID[r])
        ]
    )


def _segments(session: Session) -> None:
    mi = MemberInsight
    session.execute(
        sa.update(mi)
        .where(mi.recency_score.is_not(None))
        .values(segment=segment_case(mi.recency_score, mi.frequency_score, mi.monetary_score))
    )
