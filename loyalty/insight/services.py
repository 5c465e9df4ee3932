"""Member insight, refreshed into tables: per-member figures as of a moment, RFM scores and
segments, and the lifetime-value model's inputs and predictions.

``refresh`` replaces every row of ``member_insight`` in one transaction, step by step, each
step one set-based statement over all members (no loop over members in Python):

1. **figures**: one ``INSERT ... SELECT`` with CTEs: each order placed by `as_of` net of the
   refunds made by `as_of`; the purchases among them (net above zero) by member and UTC day;
   per member first and last purchase, orders, purchase days, net revenue, the model's inputs;
   points earned and redeemed from the ledger entries that took effect by `as_of`. Every
   member gets a row, buyers or not.
2. **scores**: one ``UPDATE ... FROM`` a select of ``NTILE(5)`` windows over the buyers.
3. **model**: the buyers' model inputs as arrays, handed to ``predict_lifetime_value`` (BG/NBD
   and Gamma-Gamma, ``loyalty.insight.clv``), its predictions written back.
4. **segments**: one ``UPDATE`` setting each buyer's segment from a ``CASE`` built from the
   table in ``loyalty.insight.segments``.
5. **saved_segments**: the admins' saved segments' members, per segment one ``INSERT ...
   SELECT`` of those who entered and one ``DELETE`` of those who left, each change announced
   as ``member.segment_changed`` (``loyalty.insight.saved_segments``).

The same SQLAlchemy Core statements run on PostgreSQL (production) and SQLite (the demo);
only the UTC day of a timestamp is spelled per dialect (``utc_day``). Readers keep seeing the
previous refresh until this one commits.

Only one refresh runs at a time: on PostgreSQL it holds a transaction-scoped advisory lock
(``pg_advisory_xact_lock``), which ``refresh`` waits for and the daily refresh of ``jobs
run`` only tries (a worker that finds it taken leaves the refresh to the one holding it); on
SQLite every transaction takes the database's write lock at its start (``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler

from loyalty.db import transaction, utcnow
from loyalty.insight import clv, saved_segments
from loyalty.insight.models import InsightModel, InsightRefresh, MemberInsight, ModelStatus
from loyalty.insight.segments import GRID, SCORES, Segment
from loyalty.ledger.models import Account, LedgerEntry, LedgerTransaction, TransactionKind
from loyalty.members.models import Member
from loyalty.orders.models import Order, Refund
from loyalty.program.services import get_settings

STEPS = ("figures", "scores", "model", "segments", "saved_segments")
# The member_insight columns the figures step fills, in the order of figures_select.
FIGURE_COLUMNS = (
    "member_id",
    "as_of",
    "first_order_at",
    "last_order_at",
    "orders",
    "purchase_days",
    "net_revenue",
    "currency",
    "average_order_value",
    "days_since_last_order",
    "points_earned",
    "points_redeemed",
    "frequency",
    "recency_days",
    "t_days",
    "monetary_value",
)
# The daily refresh of `jobs run` runs when the last refresh describes a moment older than
# this.
DAILY = dt.timedelta(hours=24)
# pg_advisory_xact_lock key of the refresh (migrations/env.py takes 7319).
REFRESH_LOCK_KEY = 7320
EPOCH = dt.date(1970, 1, 1)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class utc_day(sa.sql.functions.FunctionElement[int]):
    """The UTC calendar day of a timestamp, as days since 1970-01-01 (an integer, so day
    differences are plain subtraction on every database)."""

    type = sa.Integer()
    inherit_cache = True
    name = "utc_day"


@compiles(utc_day, "postgresql")
def _utc_day_postgresql(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    moment = compiler.process(next(iter(element.clauses)), **kw)
    return f"(({moment} AT TIME ZONE 'UTC')::date - DATE '1970-01-01')"


@compiles(utc_day)
def _utc_day_sqlite(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite stores the UTC time as text; julianday of a date is N.5 exactly.
    moment = compiler.process(next(iter(element.clauses)), **kw)
    return f"CAST(julianday(date({moment})) - 2440587.5 AS INTEGER)"


# --- the lifetime-value model step ----------------------------------------------------------


@dataclass(frozen=True)
class ModelInputs:
    """The buyers of a refresh, one array element each, in the units the BG/NBD and
    Gamma-Gamma models take (time in days).

    - `frequency`: repeat purchase days (purchase days - 1);
    - `recency`: days from the first to the last purchase day;
    - `T`: days from the first purchase day to the day of `as_of`;
    - `monetary`: mean net value of a repeat purchase day, in minor units; 0 where there is
      no repeat purchase (the usual convention: Gamma-Gamma weighs it by frequency, so such
      a buyer gets the population's mean).
    """

    as_of: dt.datetime
    member_ids: IntArray
    frequency: FloatArray
    recency: FloatArray
    T: FloatArray  # the models' own name for it
    monetary: FloatArray

    def __len__(self) -> int:
        return len(self.member_ids)


@dataclass(frozen=True)
class ModelOutcome:
    """What the model step gives back. With status FITTED: the fitted parameters (JSON-able),
    the log-likelihood, the buyers it was fitted on, and per buyer (in the order of the
    inputs) the probability of being alive, the purchases expected over `horizon_days` and
    their discounted value in minor units. Otherwise `detail` says why there is no model and
    the predictions stay NULL."""

    status: ModelStatus
    detail: str | None = None
    params: dict[str, Any] | None = None
    log_likelihood: float | None = None
    customers: int = 0
    horizon_days: int | None = None
    fitted_at: dt.datetime | None = None
    probability_alive: FloatArray | None = None
    expected_purchases: FloatArray | None = None
    predicted_value: FloatArray | None = None


# Predicted value covers the next 12 months, discounted at 10% a year (compounded monthly, each
# month's value discounted from its end: loyalty.insight.clv.predicted_value).
HORIZON_DAYS = 365
ANNUAL_DISCOUNT_RATE = 0.10


def predict_lifetime_value(inputs: ModelInputs) -> ModelOutcome:
    """The model step of the refresh: fit BG/NBD on every buyer's repeat purchase days and
    Gamma-Gamma on the repeat buyers' spend (``loyalty.insight.clv``), then predict per buyer,
    in the inputs' order, the probability of being alive, the purchases expected over
    HORIZON_DAYS and their discounted value. A history the models cannot be fitted on (no
    repeat purchases yet, or too few to pin a parameter down) is no model, with the reason,
    not a failed refresh: the figures and segments stand without it."""
    if not len(inputs):
        return ModelOutcome(status=ModelStatus.NOT_FITTED, detail="no buyers yet")
    history = (inputs.frequency, inputs.recency, inputs.T)
    try:
        bg = clv.fit_bg_nbd(*history)
        gg = clv.fit_gamma_gamma(inputs.frequency, inputs.monetary)
    except clv.FitFailed as failure:
        return ModelOutcome(
            status=ModelStatus.NOT_FITTED, detail=f"the model could not be fitted: {failure}"
        )
    # A fit at the edge of the parameter space (a and b in the hundreds of thousands: a
    # history where nobody seems to stop buying) makes the closed forms overflow. Such a model
    # predicts nothing worth storing: no model, and why, rather than NaNs in member rows.
    with np.errstate(all="ignore"):
        alive = clv.probability_alive(bg.params, *history)
        expected = clv.expected_purchases(bg.params, HORIZON_DAYS, *history)
        value = clv.predicted_value(
            bg.params,
            gg.params,
            *history,
            inputs.monetary,
            horizon_days=HORIZON_DAYS,
            annual_discount_rate=ANNUAL_DISCOUNT_RATE,
        )
    if not all(np.isfinite(a).all() for a in (alive, expected, value)):
        return ModelOutcome(
            status=ModelStatus.NOT_FITTED,
            detail=f"the fitted model is degenerate ({bg.params}): its predictions overflow",
        )
    return ModelOutcome(
        status=ModelStatus.FITTED,
        params={
            "bg_nbd": dataclasses.asdict(bg.params),
            "gamma_gamma": dataclasses.asdict(gg.params),
            "gamma_gamma_customers": gg.customers,
            "gamma_gamma_log_likelihood": gg.log_likelihood,
            "annual_discount_rate": ANNUAL_DISCOUNT_RATE,
        },
        log_likelihood=bg.log_likelihood,
        customers=bg.customers,
        horizon_days=HORIZON_DAYS,
        fitted_at=utcnow(),
        probability_alive=alive,
        expected_purchases=expected,
        predicted_value=value,
    )


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
    currency = get_settings(session).currency
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

    members = step("figures", lambda: _figures(session, as_of, currency))
    if session.get_bind().dialect.name == "postgresql":
        # Fresh statistics for the joins of the next steps (allowed inside a transaction).
        session.execute(sa.text("ANALYZE member_insight"))
    buyers = step("scores", lambda: _scores(session))
    outcome = step("model", lambda: _model(session, as_of))
    step("segments", lambda: _segments(session))
    step("saved_segments", lambda: saved_segments.recompute_members(session, as_of))

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


def _sum(value: Any) -> sa.Cast[int]:
    # sum() of a bigint is numeric on PostgreSQL: back to integers for integer division.
    return sa.cast(sa.func.sum(value), sa.BigInteger)


def _rounded_mean(total: Any, count: Any) -> Any:
    """total / count rounded half up, in integers (both non-negative, count above zero)."""
    return (2 * total + count) // (2 * count)


def figures_select(as_of: dt.datetime, currency: str) -> sa.Select[Any]:
    """Every member's figures as of `as_of`, one row per member, its columns labelled with
    the names of ``member_insight``'s (FIGURE_COLUMNS, in that order; no scores, segment or
    predictions). The refresh inserts it; the model's evaluation reads it as of a split."""
    as_of_day = (as_of.astimezone(dt.UTC).date() - EPOCH).days
    refunded = (
        sa.select(Refund.order_pk, _sum(Refund.amount).label("amount"))
        .where(Refund.created_at <= as_of)
        .group_by(Refund.order_pk)
        .cte("refunded")
    )
    net = Order.total - sa.func.coalesce(refunded.c.amount, 0)
    purchases = (
        sa.select(
            Order.member_id,
            Order.placed_at,
            utc_day(Order.placed_at).label("day"),
            net.label("net"),
        )
        .select_from(Order)
        .outerjoin(refunded, refunded.c.order_pk == Order.id)
        .where(Order.placed_at <= as_of, Order.currency == currency, net > 0)
        .cte("purchases")
    )
    days = (
        sa.select(
            purchases.c.member_id,
            purchases.c.day,
            _sum(purchases.c.net).label("net"),
            sa.func.count().label("orders"),
            sa.func.min(purchases.c.placed_at).label("first_at"),
            sa.func.max(purchases.c.placed_at).label("last_at"),
            sa.func.row_number()
            .over(partition_by=purchases.c.member_id, order_by=purchases.c.day)
            .label("nth"),
        )
        .group_by(purchases.c.member_id, purchases.c.day)
        .cte("days")
    )
    buyers = (
        sa.select(
            days.c.member_id,
            sa.func.min(days.c.first_at).label("first_at"),
            sa.func.max(days.c.last_at).label("last_at"),
            _sum(days.c.orders).label("orders"),
            sa.func.count().label("days"),
            _sum(days.c.net).label("net"),
            _sum(sa.case((days.c.nth > 1, days.c.net), else_=0)).label("repeat_net"),
            sa.func.min(days.c.day).label("first_day"),
            sa.func.max(days.c.day).label("last_day"),
        )
        .group_by(days.c.member_id)
        .cte("buyers")
    )
    issued = sa.and_(
        LedgerEntry.account == Account.ISSUED.value,
        LedgerTransaction.kind.in_([TransactionKind.EARN.value, TransactionKind.REVERSE.value]),
    )
    points = (
        sa.select(
            LedgerEntry.member_id,
            _sum(sa.case((issued, -LedgerEntry.amount), else_=0)).label("earned"),
            _sum(
                sa.case(
                    (LedgerEntry.account == Account.REDEEMED.value, LedgerEntry.amount), else_=0
                )
            ).label("redeemed"),
        )
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(
            LedgerEntry.account.in_([Account.ISSUED.value, Account.REDEEMED.value]),
            LedgerTransaction.effective_at <= as_of,
        )
        .group_by(LedgerEntry.member_id)
        .cte("points")
    )
    bought = buyers.c.member_id.is_not(None)
    repeat_days = buyers.c.days - 1
    values = (
        Member.id,
        sa.literal(as_of, MemberInsight.as_of.type),
        buyers.c.first_at,
        buyers.c.last_at,
        sa.func.coalesce(buyers.c.orders, 0),
        sa.func.coalesce(buyers.c.days, 0),
        sa.func.coalesce(buyers.c.net, 0),
        sa.literal(currency, sa.String),
        sa.case((bought, _rounded_mean(buyers.c.net, buyers.c.orders))),
        sa.case((bought, as_of_day - buyers.c.last_day)),
        sa.func.coalesce(points.c.earned, 0),
        sa.func.coalesce(points.c.redeemed, 0),
        sa.case((bought, repeat_days)),
        sa.case((bought, buyers.c.last_day - buyers.c.first_day)),
        sa.case((bought, as_of_day - buyers.c.first_day)),
        sa.case((repeat_days > 0, _rounded_mean(buyers.c.repeat_net, repeat_days))),
    )
    labelled: list[Any] = [
        value.label(name) for value, name in zip(values, FIGURE_COLUMNS, strict=True)
    ]
    return (
        sa.select(*labelled)
        .select_from(Member)
        .outerjoin(buyers, buyers.c.member_id == Member.id)
        .outerjoin(points, points.c.member_id == Member.id)
    )


def _figures(session: Session, as_of: dt.datetime, currency: str) -> int:
    """Replace every member's row with their figures as of `as_of`; the number of rows."""
    session.execute(sa.delete(MemberInsight))
    session.execute(
        sa.insert(MemberInsight).from_select(list(FIGURE_COLUMNS), figures_select(as_of, currency))
    )
    # (pysqlite reports no rowcount for an INSERT that starts with its CTEs.)
    return int(session.scalar(sa.select(sa.func.count()).select_from(MemberInsight)) or 0)


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


def _model(session: Session, as_of: dt.datetime) -> ModelOutcome:
    mi = MemberInsight
    rows = session.execute(
        sa.select(
            mi.member_id,
            mi.frequency,
            mi.recency_days,
            mi.t_days,
            sa.func.coalesce(mi.monetary_value, 0),
        )
        .where(mi.orders > 0)
        .order_by(mi.member_id)
    ).all()
    table = np.array(rows, dtype=np.float64).reshape(len(rows), 5)
    inputs = ModelInputs(
        as_of=as_of,
        member_ids=np.array([row[0] for row in rows], dtype=np.int64),
        frequency=table[:, 1],
        recency=table[:, 2],
        T=table[:, 3],
        monetary=table[:, 4],
    )
    outcome = predict_lifetime_value(inputs)
    if outcome.status == ModelStatus.FITTED:
        _store_predictions(session, inputs, outcome)
    return outcome


def _store_predictions(session: Session, inputs: ModelInputs, outcome: ModelOutcome) -> None:
    """Write the model's predictions into the buyers' rows: through a temporary table filled
    with COPY and one UPDATE ... FROM on PostgreSQL, an executemany UPDATE on SQLite."""
    arrays = (outcome.probability_alive, outcome.expected_purchases, outcome.predicted_value)
    if any(a is None or len(a) != len(inputs) for a in arrays):
        raise ValueError("the model must predict every buyer of its inputs")
    alive, expected, value = (np.asarray(a, dtype=np.float64) for a in arrays)
    minor = np.rint(value)
    rows = [
        (int(member), _finite(p), _finite(e), None if not np.isfinite(v) else int(v))
        for member, p, e, v in zip(inputs.member_ids, alive, expected, minor, strict=True)
    ]
    if session.get_bind().dialect.name != "postgresql":
        table = MemberInsight.__table__
        session.connection().execute(
            sa.update(table)
            .where(table.c.member_id == sa.bindparam("m"))
            .values(
                probability_alive=sa.bindparam("p"),
                expected_purchases=sa.bindparam("e"),
                predicted_value=sa.bindparam("v"),
            ),
            [{"m": m, "p": p, "e": e, "v": v} for m, p, e, v in rows],
        )
        return
    session.execute(
        sa.text(
            "CREATE TEMPORARY TABLE IF NOT EXISTS insight_predictions (member_id bigint, "
            "probability_alive float8, expected_purchases float8, predicted_value bigint) "
            "ON COMMIT DROP"
        )
    )
    session.execute(sa.text("DELETE FROM insight_predictions"))
    cursor = session.connection().connection.cursor()
    with cursor.copy("COPY insight_predictions FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    session.execute(
        sa.text(
            "UPDATE member_insight AS mi SET probability_alive = p.probability_alive, "
            "expected_purchases = p.expected_purchases, predicted_value = p.predicted_value "
            "FROM insight_predictions AS p WHERE mi.member_id = p.member_id"
        )
    )


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
