"""The lifetime-value models: parameters recovered from simulated members, the conditional
predictions against what simulated members go on to do, and the value's discounting.

Tolerances come from the spread of the estimates over 30 seeds (20,000 members, T uniform
over 180-730 days: relative standard deviation r 1.5%, alpha 2.8%, a 4.6%, b 6.9%; Gamma-Gamma
on about 9,500 repeat buyers: p 7%, q 2.4%, v 9%). The recovery tests use 100,000 members,
which divides those by about 2.2, and allow about four standard deviations: a pass means the
estimator is right, and a wrong formula (a term missing, a parameter in the wrong unit) moves
the estimates far beyond these bounds.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loyalty.insight import bgnbd, clv, gamma_gamma
from loyalty.insight.bgnbd import BgNbdParams
from loyalty.insight.fitting import FitFailed
from loyalty.insight.gamma_gamma import GammaGammaParams

# CDNOW's estimates (Fader, Hardie & Lee 2005), alpha turned from weeks into days.
CDNOW = BgNbdParams(r=0.243, alpha=4.414 * 7, a=0.793, b=2.426)
CDNOW_SPEND = GammaGammaParams(p=6.25, q=3.74, v=15.44)


def members(customers: int, seed: int, holdout_days: float = 0.0):
    """CDNOW-like members whose first order is 180 to 730 days before the as-of date, and
    their repeat purchases in the `holdout_days` after it."""
    rng = np.random.default_rng(seed)
    return bgnbd.simulate_bg_nbd_holdout(
        CDNOW, customers, rng.uniform(180, 730, customers), holdout_days, rng
    )


def relative_error(estimate: float, truth: float) -> float:
    return abs(estimate / truth - 1)


params_strategy = st.builds(
    BgNbdParams,
    r=st.floats(0.05, 5),
    alpha=st.floats(1, 300),
    a=st.floats(0.05, 5).filter(lambda a: abs(a - 1) > 1e-3),
    b=st.floats(0.05, 5),
)


# --- fitting -------------------------------------------------------------------------------


def test_bg_nbd_recovers_the_parameters_members_were_drawn_from():
    (frequency, recency, T), _ = members(100_000, seed=1)

    fit = bgnbd.fit_bg_nbd(frequency, recency, T)

    assert relative_error(fit.params.r, CDNOW.r) < 0.06
    assert relative_error(fit.params.alpha, CDNOW.alpha) < 0.06
    assert relative_error(fit.params.a, CDNOW.a) < 0.10
    assert relative_error(fit.params.b, CDNOW.b) < 0.13
    assert fit.customers == 100_000
    assert fit.time_unit == "days"


def test_bg_nbd_fit_reports_the_log_likelihood_at_its_maximum():
    (frequency, recency, T), _ = members(5_000, seed=2)

    fit = bgnbd.fit_bg_nbd(frequency, recency, T)

    assert fit.log_likelihood == pytest.approx(
        bgnbd.bg_nbd_log_likelihood(fit.params, frequency, recency, T)
    )
    for name in ("r", "alpha", "a", "b"):
        for factor in (0.98, 1.02):
            moved = dataclasses.replace(fit.params, **{name: getattr(fit.params, name) * factor})
            assert bgnbd.bg_nbd_log_likelihood(moved, frequency, recency, T) < fit.log_likelihood


def test_bg_nbd_fit_refuses_a_history_without_repeat_purchases():
    with pytest.raises(FitFailed):
        bgnbd.fit_bg_nbd(np.zeros(100), np.zeros(100), np.full(100, 200.0))


@pytest.mark.parametrize(
    ("frequency", "recency", "T"),
    [
        ([1], [201.0], [200.0]),  # the last purchase after the as-of date
        ([0], [10.0], [200.0]),  # a recency without repeat purchases
        ([1.5], [10.0], [200.0]),  # half a purchase day
        ([-1], [0.0], [200.0]),
        ([1, 2], [10.0], [200.0]),  # columns of different lengths
    ],
)
def test_bg_nbd_fit_refuses_rows_that_are_not_a_history(frequency, recency, T):
    with pytest.raises(ValueError, match=r"frequency|recency"):
        bgnbd.fit_bg_nbd(frequency, recency, T)


def test_gamma_gamma_recovers_the_parameters_spend_was_drawn_from():
    (frequency, _, _), _ = members(100_000, seed=3)
    monetary = gamma_gamma.simulate_gamma_gamma(CDNOW_SPEND, frequency, np.random.default_rng(3))

    fit = gamma_gamma.fit_gamma_gamma(frequency, monetary)

    assert relative_error(fit.params.p, CDNOW_SPEND.p) < 0.15
    assert relative_error(fit.params.q, CDNOW_SPEND.q) < 0.06
    assert relative_error(fit.params.v, CDNOW_SPEND.v) < 0.15
    assert fit.customers == int(np.sum(frequency > 0))
    assert fit.log_likelihood == pytest.approx(
        gamma_gamma.gamma_gamma_log_likelihood(fit.params, frequency, monetary)
    )


def test_gamma_gamma_estimates_v_in_the_unit_of_the_spend():
    (frequency, _, _), _ = members(20_000, seed=4)
    monetary = gamma_gamma.simulate_gamma_gamma(CDNOW_SPEND, frequency, np.random.default_rng(4))

    in_units = gamma_gamma.fit_gamma_gamma(frequency, monetary).params
    in_cents = gamma_gamma.fit_gamma_gamma(frequency, monetary * 100).params

    assert in_cents.p == pytest.approx(in_units.p, rel=1e-4)
    assert in_cents.q == pytest.approx(in_units.q, rel=1e-4)
    assert in_cents.v == pytest.approx(in_units.v * 100, rel=1e-4)


# --- predictions ---------------------------------------------------------------------------


@given(params=params_strategy, T=st.floats(0, 1000))
def test_a_member_without_repeat_purchases_is_alive(params, T):
    # BG/NBD lets a member drop out only right after a repeat purchase.
    assert bgnbd.probability_alive(params, [0], [0.0], [T])[0] == 1.0


@given(
    params=params_strategy,
    frequency=st.integers(1, 50),
    recency=st.floats(1, 300),
    gap=st.floats(1, 300),
)
def test_the_longer_since_the_last_purchase_the_less_likely_alive(params, frequency, recency, gap):
    alive = bgnbd.probability_alive(
        params, [frequency] * 2, [recency] * 2, [recency + gap, recency + 2 * gap]
    )
    assert 0 <= alive[1] <= alive[0] <= 1
    assert alive[1] < alive[0] or alive[0] < 1e-12


@given(params=params_strategy, frequency=st.integers(0, 50), t=st.floats(1, 730))
@settings(deadline=None)
def test_expected_purchases_grow_with_the_horizon(params, frequency, t):
    recency = 100.0 if frequency else 0.0
    shorter, longer = (
        bgnbd.expected_purchases(params, days, [frequency], [recency], [200.0])[0]
        for days in (t, 2 * t)
    )
    assert bgnbd.expected_purchases(params, 0, [frequency], [recency], [200.0])[0] == 0
    assert 0 < shorter <= longer


def test_expected_purchases_match_what_simulated_members_go_on_to_buy():
    # Under the true parameters the conditional expectation is exact, so per group of members
    # it must agree with their simulated holdout purchases up to sampling noise.
    (frequency, recency, T), holdout = members(100_000, seed=5, holdout_days=365)

    expected = bgnbd.expected_purchases(CDNOW, 365, frequency, recency, T)

    assert expected.sum() == pytest.approx(holdout.sum(), rel=0.03)
    for group in (frequency == 0, (frequency >= 1) & (frequency <= 3), frequency >= 4):
        assert expected[group].sum() == pytest.approx(holdout[group].sum(), rel=0.06)


def test_expected_spend_shrinks_a_members_mean_towards_the_population_mean():
    params = GammaGammaParams(p=6.25, q=3.74, v=1544.0)
    population = params.p * params.v / (params.q - 1)

    spend = gamma_gamma.expected_spend(params, [0, 1, 10, 100], [0.0, 9000.0, 9000.0, 9000.0])

    assert spend[0] == pytest.approx(population)
    assert population < spend[1] < spend[2] < spend[3] < 9000


def test_predicted_value_without_discount_is_purchases_times_spend():
    # Members with the same history but not the same spend: each keeps their own value.
    frequency, recency = [3, 0, 3, 1], [120.0, 0.0, 120.0, 30.0]
    T, monetary = [200.0, 200.0, 200.0, 90.0], [2500.0, 0.0, 900.0, 4000.0]

    value = clv.predicted_value(
        CDNOW, CDNOW_SPEND, frequency, recency, T, monetary, annual_discount_rate=0.0
    )

    expected = bgnbd.expected_purchases(
        CDNOW, 365, frequency, recency, T
    ) * gamma_gamma.expected_spend(CDNOW_SPEND, frequency, monetary)
    np.testing.assert_allclose(value, expected)


@given(
    rate=st.floats(0, 0.5),
    more=st.floats(0.01, 0.5),
    horizon=st.integers(1, 1095),
    frequency=st.integers(0, 30),
)
@settings(deadline=None)
def test_a_higher_discount_rate_gives_a_lower_value(rate, more, horizon, frequency):
    recency = 150.0 if frequency else 0.0
    low, high = (
        clv.predicted_value(
            CDNOW, CDNOW_SPEND, [frequency], [recency], [200.0], [30.0], horizon, r
        )[0]
        for r in (rate + more, rate)
    )
    assert 0 < low < high


def test_a_year_at_ten_percent_discounts_by_about_half_the_rate():
    # Purchases spread over the year are discounted by ~(1.1 ** -0.5) on average.
    args = (CDNOW, CDNOW_SPEND, [2], [150.0], [200.0], [3000.0])
    undiscounted = clv.predicted_value(*args, annual_discount_rate=0.0)[0]
    discounted = clv.predicted_value(*args)[0]
    assert discounted / undiscounted == pytest.approx(1.1**-0.5, abs=0.01)


def test_predicted_value_over_no_time_is_zero():
    value = clv.predicted_value(CDNOW, CDNOW_SPEND, [2], [150.0], [200.0], [30.0], 0)
    assert value[0] == 0


# --- evaluation ----------------------------------------------------------------------------


def test_evaluation_predicts_the_holdout_purchases_of_simulated_members():
    calibration, holdout = members(50_000, seed=6, holdout_days=182)

    evaluation = clv.evaluate(calibration, 182, holdout)

    assert evaluation.actual_total == holdout.sum()
    assert evaluation.predicted_total == pytest.approx(evaluation.actual_total, rel=0.04)
    assert [bucket.label for bucket in evaluation.by_frequency] == [
        "0", "1", "2", "3", "4", "5", "6", "7+"
    ]  # fmt: skip
    assert sum(bucket.customers for bucket in evaluation.by_frequency) == 50_000
    assert sum(bucket.actual for bucket in evaluation.by_frequency) == evaluation.actual_total
    assert math.isclose(
        sum(bucket.predicted for bucket in evaluation.by_frequency), evaluation.predicted_total
    )
    for bucket in evaluation.by_frequency:
        assert bucket.predicted == pytest.approx(bucket.actual, rel=0.15)


def test_gamma_gamma_without_spread_in_order_value_expects_the_common_spend():
    """Every repeat order worth the same (one subscription price): p and q run off together,
    the fit stops on the way to that limit and says so, and every buyer is expected to spend
    the common value."""
    frequency = np.array([1, 2, 3, 4] * 25, dtype=float)
    monetary = np.full(len(frequency), 1000.0)

    fit = gamma_gamma.fit_gamma_gamma(frequency, monetary)

    assert len(fit.notes) == 1
    assert fit.notes[0].startswith("order values do not vary detectably")
    spend = gamma_gamma.expected_spend(fit.params, frequency, monetary)
    assert spend == pytest.approx(np.full(len(frequency), 1000.0), rel=1e-3)
