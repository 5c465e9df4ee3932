"""Member insight (`loyalty insight refresh`): per-member figures as of a moment from orders
net of refunds and from the ledger, RFM quintiles and named segments, the lifetime-value
model's inputs, the daily refresh of `jobs run`. On SQLite and PostgreSQL.

Time is the test's: orders are placed at fixed moments and every refresh names its as_of.
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from flask import Flask
from sqlalchemy.orm import Session

from loyalty.db import utcnow
from loyalty.extensions import db
from loyalty.insight import prediction
from loyalty.insight import services as insight
from loyalty.insight.models import InsightModel, InsightRefresh, MemberInsight, ModelStatus
from loyalty.insight.segments import SCORES, segment_for
from loyalty.membership import adjustments
from loyalty.orders import refunds
from loyalty.redemptions import services as redemptions
from tests.commands import refund_command
from tests.concurrency import race, raised
from tests.factories import MemberFactory, OrderFactory, RuleFactory

DAY = dt.timedelta(days=1)
T0 = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)  # a Monday, 10:00 UTC


def order(order_id: str, member: str, dollars: int, at: dt.datetime) -> None:
    OrderFactory(order_id=order_id, member_id=member, worth=dollars, now=at)


def refund(order_id: str, refund_id: str, cents: int, at: dt.datetime) -> None:
    refunds.refund_order(
        db.session, order_id, refund_command({"refund_id": refund_id, "amount": cents}), now=at
    )


def row(session: Session, external_id: str) -> MemberInsight:
    from loyalty.members.lookup import find_member

    member = find_member(session, external_id)
    found = session.get(MemberInsight, member.id, populate_existing=True)
    assert found is not None
    return found


def all_rows(session: Session) -> list[tuple[Any, ...]]:
    return [
        tuple(r)
        for r in session.execute(
            sa.select(*MemberInsight.__table__.columns).order_by(MemberInsight.member_id)
        )
    ]


# --- figures --------------------------------------------------------------------------------------


@pytest.fixture
def history(session: Session) -> None:
    """c1: two orders on day 0 (50 + 30), one on day 4 refunded in full, one on day 9 (40)
    refunded by 10 on day 10, one on day 20 (after the as_of of day 12)."""
    MemberFactory(c1=True)
    order("a", "c1", 50, T0)
    order("b", "c1", 30, T0 + dt.timedelta(hours=5))
    order("c", "c1", 20, T0 + 4 * DAY)
    refund("c", "rc", 2000, T0 + 5 * DAY)
    order("d", "c1", 40, T0 + 9 * DAY)
    refund("d", "rd", 1000, T0 + 10 * DAY)
    order("e", "c1", 100, T0 + 20 * DAY)


@pytest.mark.usefixtures("history")
def test_figures_are_orders_net_of_refunds_as_of_the_moment(session):
    insight.refresh(session, as_of=T0 + 12 * DAY)

    c1 = row(session, "c1")
    assert c1.as_of == T0 + 12 * DAY
    assert (c1.first_order_at, c1.last_order_at) == (T0, T0 + 9 * DAY)
    # The fully refunded order is no purchase; the partly refunded one counts for 30.00.
    assert c1.orders == 3
    assert c1.net_revenue == 5000 + 3000 + 3000
    assert c1.currency == "USD"
    assert c1.average_order_value == 3667  # 110.00 / 3, rounded half up
    assert c1.days_since_last_order == 3


@pytest.mark.usefixtures("history")
def test_two_orders_on_one_day_are_one_purchase_day(session):
    insight.refresh(session, as_of=T0 + 12 * DAY)

    c1 = row(session, "c1")
    assert c1.purchase_days == 2
    # The model's inputs: one repeat purchase day, 9 days after the first, 12 days observed;
    # the repeat day's net value is 30.00.
    assert (c1.frequency, c1.recency_days, c1.t_days, c1.monetary_value) == (1, 9, 12, 3000)


@pytest.mark.usefixtures("history")
def test_a_refund_made_after_as_of_does_not_count_yet(session):
    insight.refresh(session, as_of=T0 + 9 * DAY + dt.timedelta(hours=1))

    c1 = row(session, "c1")
    # Order c was refunded on day 5 (before), order d only on day 10 (after).
    assert c1.orders == 3
    assert c1.net_revenue == 5000 + 3000 + 4000
    assert c1.days_since_last_order == 0


@pytest.mark.usefixtures("history")
def test_an_as_of_in_the_past_sees_only_what_had_happened(session):
    insight.refresh(session, as_of=T0 + 30 * DAY)
    assert row(session, "c1").orders == 4

    insight.refresh(session, as_of=T0 + 4 * DAY + dt.timedelta(hours=1))

    c1 = row(session, "c1")
    # Order c counts in full: its refund came the next day.
    assert (c1.orders, c1.purchase_days, c1.net_revenue) == (3, 2, 10000)
    assert c1.last_order_at == T0 + 4 * DAY
    assert (c1.frequency, c1.recency_days, c1.t_days, c1.monetary_value) == (1, 4, 4, 2000)


def test_orders_after_as_of_are_ignored_and_a_member_without_purchases_gets_no_scores(session):
    MemberFactory(c1=True)
    MemberFactory(external_id="c2")
    order("late", "c1", 70, T0 + 2 * DAY)

    insight.refresh(session, as_of=T0)

    for external_id in ("c1", "c2"):
        member = row(session, external_id)
        assert (member.orders, member.purchase_days, member.net_revenue) == (0, 0, 0)
        assert member.first_order_at is None
        assert member.last_order_at is None
        assert member.average_order_value is None
        assert member.days_since_last_order is None
        assert (member.recency_score, member.frequency_score, member.monetary_score) == (
            None,
            None,
            None,
        )
        assert member.segment is None
        assert (member.frequency, member.recency_days, member.t_days) == (None, None, None)
        assert member.monetary_value is None


def test_a_single_purchase_has_no_repeat_value(session):
    MemberFactory(c1=True)
    order("o1", "c1", 25, T0)

    insight.refresh(session, as_of=T0 + 7 * DAY)

    c1 = row(session, "c1")
    assert (c1.frequency, c1.recency_days, c1.t_days, c1.monetary_value) == (0, 0, 7, None)


def test_points_earned_net_of_reversals_and_redeemed_net_of_restorations(session):
    RuleFactory()  # 1 point per 1.00
    MemberFactory(c1=True, now=T0 - DAY)
    order("o1", "c1", 200, T0)  # earns 200, pending for the 14-day return window
    refund("o1", "r1", 5000, T0 + DAY)  # reverses 50
    adjustments.adjust(session, "c1", 300, "goodwill", actor="test", now=T0 + 2 * DAY)
    hold = redemptions.hold(session, "c1", 120, now=T0 + 3 * DAY)
    redemptions.capture(session, hold.public_id, now=T0 + 3 * DAY)
    order("o2", "c1", 10, T0 + 40 * DAY)  # after the as_of

    insight.refresh(session, as_of=T0 + 10 * DAY)

    c1 = row(session, "c1")
    # Adjustments are not earnings; the order after as_of is not counted.
    assert (c1.points_earned, c1.points_redeemed) == (150, 120)
    assert c1.net_revenue == 15000


# --- RFM ------------------------------------------------------------------------------------------


def test_quintiles_over_100_buyers_give_20_buyers_each_score(session):
    """Buyer k (0..99): k % 5 + 1 purchase days (F is exactly that), net revenue (k + 1) *
    10.00 (M: k // 20 + 1), last purchase on day 10 + (37 k mod 100) (R: its rank's fifth)."""
    for k in range(100):
        member = f"b{k:03d}"
        MemberFactory(external_id=member)
        days = k % 5 + 1
        last_day = 10 + (37 * k) % 100
        for n in range(days - 1):
            order(f"{member}-{n}", member, 1, T0 + n * DAY)
        order(f"{member}-last", member, (k + 1) * 10 - (days - 1), T0 + last_day * DAY)

    summary = insight.refresh(session, as_of=T0 + 200 * DAY)

    assert summary.buyers == 100
    rows = session.execute(
        sa.select(
            MemberInsight.purchase_days,
            MemberInsight.net_revenue,
            MemberInsight.last_order_at,
            MemberInsight.recency_score,
            MemberInsight.frequency_score,
            MemberInsight.monetary_score,
        )
    ).all()
    for score_column in (3, 4, 5):
        assert sorted(r[score_column] for r in rows) == sorted(list(SCORES) * 20)
    for purchase_days, net, last, r, f, m in rows:
        assert f == purchase_days
        assert m == (net // 1000 - 1) // 20 + 1
        assert r == ((last - T0).days - 10) // 20 + 1


def test_ties_are_broken_the_same_way_every_time(session):
    for k in range(12):
        MemberFactory(external_id=f"t{k:02d}")
        order(f"t{k:02d}", f"t{k:02d}", 10, T0)

    insight.refresh(session, as_of=T0 + DAY)
    first = all_rows(session)
    insight.refresh(session, as_of=T0 + DAY)

    assert all_rows(session) == first
    # Twelve equal buyers spread over the five scores (ties straddle the edges).
    scores = [r.monetary_score for r in session.scalars(sa.select(MemberInsight))]
    assert sorted(set(scores)) == list(SCORES)


def test_the_segment_sql_is_the_segment_table(session):
    """The CASE the refresh runs gives segment_for's answer for all 125 score triples."""
    triples = list(itertools.product(SCORES, SCORES, SCORES))
    scores = sa.union_all(
        *[
            sa.select(
                sa.literal(r, sa.Integer).label("r"),
                sa.literal(f, sa.Integer).label("f"),
                sa.literal(m, sa.Integer).label("m"),
            )
            for r, f, m in triples
        ]
    ).subquery("scores")
    answers = session.execute(
        sa.select(
            scores.c.r,
            scores.c.f,
            scores.c.m,
            insight.segment_case(scores.c.r, scores.c.f, scores.c.m),
        )
    ).all()

    assert {(r, f, m): segment for r, f, m, segment in answers} == {
        (r, f, m): segment_for(r, f, m).value for r, f, m in triples
    }


def test_every_buyer_gets_the_segment_of_their_scores(session):
    for k in range(30):
        member = f"s{k:02d}"
        MemberFactory(external_id=member)
        for n in range(k % 4 + 1):
            order(f"{member}-{n}", member, 5 + (k * 7) % 40, T0 + ((k * 11) % 60 + n) * DAY)

    summary = insight.refresh(session, as_of=T0 + 90 * DAY)

    members = list(session.scalars(sa.select(MemberInsight)))
    for member in members:
        assert member.segment == segment_for(
            member.recency_score, member.frequency_score, member.monetary_score
        )
    assert sum(summary.segments.values()) == 30
    assert summary.segments == {
        segment: sum(1 for m in members if m.segment == segment)
        for segment in {m.segment for m in members}
    }


# --- the refresh ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("history")
def test_a_refresh_run_twice_gives_the_same_rows(session):
    MemberFactory(external_id="c2")
    order("x", "c2", 15, T0 + DAY)

    insight.refresh(session, as_of=T0 + 12 * DAY)
    first = all_rows(session)
    insight.refresh(session, as_of=T0 + 12 * DAY)

    assert all_rows(session) == first
    assert session.scalar(sa.select(sa.func.count()).select_from(InsightRefresh)) == 2


@pytest.mark.usefixtures("history")
def test_a_refresh_is_recorded_with_its_model_step(session):
    steps = []

    summary = insight.refresh(session, as_of=T0 + 12 * DAY, progress=steps.append)

    assert steps == list(insight.STEPS)
    assert (summary.members, summary.buyers) == (1, 1)
    refresh_row = insight.latest_refresh(session)
    assert refresh_row is not None
    assert refresh_row.as_of == T0 + 12 * DAY
    assert (refresh_row.members, refresh_row.buyers, refresh_row.currency) == (1, 1, "USD")
    assert set(refresh_row.steps) == set(insight.STEPS)
    assert refresh_row.started_at <= refresh_row.finished_at
    model = session.scalars(sa.select(InsightModel)).one()
    assert model.refresh_id == refresh_row.id
    # One buyer with one repeat purchase pins no parameter down: no model, and why.
    assert model.status == ModelStatus.NOT_FITTED
    assert model.detail is not None
    assert model.detail.startswith("the model could not be fitted: ")
    assert model.params is None
    assert model.time_unit == "days"
    c1 = row(session, "c1")
    assert (c1.probability_alive, c1.expected_purchases, c1.predicted_value) == (None, None, None)


def test_a_fitted_model_stores_its_predictions(session, monkeypatch):
    MemberFactory(c1=True)
    MemberFactory(external_id="c2")
    MemberFactory(external_id="c3")  # no purchases: no prediction
    order("o1", "c1", 20, T0)
    order("o2", "c1", 30, T0 + 3 * DAY)
    order("o3", "c2", 40, T0 + DAY)
    seen: list[prediction.ModelInputs] = []

    def fitted(inputs: prediction.ModelInputs) -> prediction.ModelOutcome:
        seen.append(inputs)
        count = len(inputs)
        return prediction.ModelOutcome(
            status=ModelStatus.FITTED,
            params={"bg_nbd": {"r": 0.24}},
            log_likelihood=-12.5,
            customers=count,
            horizon_days=365,
            fitted_at=T0 + 10 * DAY,
            probability_alive=np.linspace(0.5, 0.9, count),
            expected_purchases=np.full(count, 1.25),
            predicted_value=np.array([1234.4, 99.6])[:count],
        )

    monkeypatch.setattr(prediction, "predict_lifetime_value", fitted)

    insight.refresh(session, as_of=T0 + 10 * DAY)

    [inputs] = seen
    assert inputs.frequency.tolist() == [1.0, 0.0]
    assert inputs.recency.tolist() == [3.0, 0.0]
    assert inputs.T.tolist() == [10.0, 9.0]
    assert inputs.monetary.tolist() == [3000.0, 0.0]
    c1, c2, c3 = (row(session, m) for m in ("c1", "c2", "c3"))
    assert (c1.probability_alive, c1.expected_purchases, c1.predicted_value) == (0.5, 1.25, 1234)
    assert (c2.probability_alive, c2.predicted_value) == (0.9, 100)
    assert (c3.probability_alive, c3.expected_purchases, c3.predicted_value) == (None, None, None)
    model = session.scalars(sa.select(InsightModel)).one()
    assert (model.status, model.customers, model.horizon_days) == (ModelStatus.FITTED, 2, 365)
    assert model.params == {"bg_nbd": {"r": 0.24}}
    assert model.log_likelihood == -12.5


def test_a_refresh_with_no_members_records_an_empty_refresh(session):
    summary = insight.refresh(session, as_of=T0)

    assert (summary.members, summary.buyers, summary.segments) == (0, 0, {})


# --- the daily refresh of `jobs run` --------------------------------------------------------------


def test_the_daily_refresh_runs_once_a_day(session):
    MemberFactory(c1=True)
    order("o1", "c1", 20, T0)

    first = insight.refresh_if_due(session, now=T0 + DAY)
    again = insight.refresh_if_due(session, now=T0 + DAY + dt.timedelta(hours=23))
    next_day = insight.refresh_if_due(session, now=T0 + 2 * DAY + dt.timedelta(hours=1))

    assert first.state == insight.DailyState.REFRESHED
    assert first.summary is not None
    assert first.summary.buyers == 1
    assert again.state == insight.DailyState.UP_TO_DATE
    assert next_day.state == insight.DailyState.REFRESHED
    latest = insight.latest_refresh(session)
    assert latest is not None
    assert latest.as_of == T0 + 2 * DAY + dt.timedelta(hours=1)


def test_a_refresh_as_of_an_old_moment_leaves_the_daily_refresh_due(session):
    insight.refresh(session, as_of=T0)

    assert insight.refresh_if_due(session, now=T0 + 3 * DAY).state == (insight.DailyState.REFRESHED)


def test_jobs_run_refreshes_insight_when_due_and_not_again(app):
    with app.app_context():
        MemberFactory(c1=True)
        order("o1", "c1", 20, utcnow() - DAY)
    runner = app.test_cli_runner()

    first = runner.invoke(args=["jobs", "run"])
    second = runner.invoke(args=["jobs", "run"])

    assert first.exit_code == 0, first.output
    assert first.stdout.rstrip().endswith("insight refreshed")
    assert second.stdout.rstrip().endswith("insight up to date")
    with app.app_context():
        assert row(db.session, "c1").orders == 1


@pytest.mark.committed  # threads, each on its own connection
@pytest.mark.postgresql_only
def test_two_workers_at_once_refresh_once(app: Flask):
    with app.app_context():
        MemberFactory(c1=True)
        order("o1", "c1", 20, T0)
    moment = T0 + DAY

    outcomes = race(app, 2, lambda _: insight.refresh_if_due(db.session, now=moment))

    assert raised(outcomes) == []
    states = sorted(outcome.state for outcome in outcomes)
    assert states[0] == insight.DailyState.REFRESHED
    assert states[1] in (insight.DailyState.ELSEWHERE, insight.DailyState.UP_TO_DATE)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(InsightRefresh)) == 1


# --- the command ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("history")
def test_insight_refresh_prints_its_steps_and_a_summary(app):
    result = app.test_cli_runner().invoke(
        args=["insight", "refresh", "--as-of", "2026-03-14T10:00:00Z"]
    )

    assert result.exit_code == 0, result.output
    assert result.exception is None
    assert "refreshing insight" in result.output
    assert "insight as of 2026-03-14T10:00:00+00:00: 1 members, 1 buyers" in result.output
    assert "lifetime-value model: not_fitted" in result.output
    with app.app_context():
        assert row(db.session, "c1").as_of == T0 + 12 * DAY


@pytest.mark.parametrize("as_of", ["yesterday", "2026-03-14T10:00:00"])
def test_insight_refresh_refuses_a_time_it_cannot_place(app, as_of):
    result = app.test_cli_runner().invoke(args=["insight", "refresh", "--as-of", as_of])

    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "--as-of" in result.output
