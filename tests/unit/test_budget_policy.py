"""The pure side of rule budgets: periods in UTC, money budgets at the point value, and a
budget clipping a rule's contribution."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loyalty.rules import policy
from loyalty.rules.policy import Budget, BudgetPeriod, budget_period

UTC = dt.UTC


@pytest.mark.parametrize(
    ("period", "when", "start", "end"),
    [
        (
            BudgetPeriod.DAY,
            dt.datetime(2031, 12, 31, 23, 59, tzinfo=UTC),
            dt.datetime(2031, 12, 31, tzinfo=UTC),
            dt.datetime(2032, 1, 1, tzinfo=UTC),
        ),
        (
            BudgetPeriod.WEEK,
            dt.datetime(2031, 3, 16, 23, tzinfo=UTC),
            dt.datetime(2031, 3, 10, tzinfo=UTC),
            dt.datetime(2031, 3, 17, tzinfo=UTC),
        ),
        (
            BudgetPeriod.MONTH,
            dt.datetime(2031, 12, 15, tzinfo=UTC),
            dt.datetime(2031, 12, 1, tzinfo=UTC),
            dt.datetime(2032, 1, 1, tzinfo=UTC),
        ),
        (BudgetPeriod.LIFETIME, dt.datetime(2031, 12, 15, tzinfo=UTC), policy.LIFETIME_START, None),
    ],
    ids=["day", "week-from-monday", "month-over-new-year", "lifetime"],
)
def test_a_budget_period_is_the_utc_day_week_or_month_it_falls_in(period, when, start, end):
    assert budget_period(period, when) == (start, end)


def test_a_period_is_taken_in_utc_whatever_the_offset():
    late_in_new_york = dt.datetime(2031, 3, 12, 21, tzinfo=dt.timezone(dt.timedelta(hours=-5)))

    start, _ = budget_period(BudgetPeriod.DAY, late_in_new_york)

    assert start == dt.datetime(2031, 3, 13, tzinfo=UTC)


def test_a_money_budget_buys_points_at_the_point_value_rounded_down():
    # 100 points are worth 3.00: 10.00 buys 333 points, never 334.
    assert Budget(BudgetPeriod.DAY, amount=1000).limit(100, 300) == 333
    assert Budget(BudgetPeriod.DAY, points=70).limit(100, 300) == 70


@given(
    spent=st.integers(min_value=0, max_value=100_000),
    remaining=st.integers(min_value=-10, max_value=100_000),
)
def test_a_budget_clips_a_contribution_to_what_is_left_and_says_how_much(spent, remaining):
    rule = policy.Rule("r", 1, "spend", "spend", 1, policy.Conditions(), points=1, per_amount=1)
    line = policy.Line("tee", None, 1, spent)
    context = policy.MemberContext(remaining_budgets={"r": remaining})

    points, breakdown = policy.order_points([rule], [line], 0, context, dt.datetime.now(UTC))

    assert points == min(spent, max(remaining, 0))
    # A contribution clipped to 0 is left out of the breakdown, like any other of 0.
    assert sum(c.budget_withheld for c in breakdown) == (spent - points if points else 0)
    assert all(c.points + c.budget_withheld == spent for c in breakdown)
