"""BG/NBD where the history does not identify dropout: the limit a, b -> infinity
(``BgNbdLimit``) is the full model's limit, its likelihood's gradient is right, a fit on such
histories lands on it and predicts what simulated members go on to do, and the full model's
predictions stay finite out to where its closed forms overflow."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize, stats

from loyalty.insight import bgnbd, clv
from loyalty.insight.bgnbd import BgNbdParams
from loyalty.insight.bgnbd_limit import BgNbdLimit, limit_neg_ll
from loyalty.insight.fitting import FitFailed, RfmRows
from loyalty.insight.gamma_gamma import GammaGammaParams

# Members with and without repeat purchases, recent and long gone.
FREQUENCY = [0, 1, 3, 3, 12, 40]
RECENCY = [0.0, 20.0, 150.0, 40.0, 190.0, 60.0]
T = [30.0, 200.0, 200.0, 200.0, 200.0, 200.0]


def regular_buyers(count: int = 40) -> tuple[list[int], list[int], list[int]]:
    """Buyer k buys every 7 to 14 days from a day in the first ten, all still buying on day
    120: nobody leaves."""
    frequency, recency, age = [], [], []
    for k in range(count):
        days = range(k % 10, 120, 7 + k % 8)
        frequency.append(len(days) - 1)
        recency.append(days[-1] - days[0])
        age.append(120 - days[0])
    return frequency, recency, age


@pytest.mark.parametrize("dropout", [0.0, 0.02, 0.3])
def test_the_limit_is_bg_nbd_with_a_and_b_far_out(dropout):
    limit = BgNbdLimit(r=0.4, alpha=20.0, dropout=dropout)
    spread = 1e9
    # dropout 0 as a -> 0 (far enough for a member silent after 40 repeat purchase days);
    # otherwise a, b -> infinity at a/(a+b) = dropout.
    a, b = (1e-30, 2.0) if dropout == 0 else (dropout * spread, (1 - dropout) * spread)
    full = BgNbdParams(r=0.4, alpha=20.0, a=a, b=b)

    for function in (bgnbd.probability_alive, bgnbd.bg_nbd_log_likelihood):
        np.testing.assert_allclose(
            function(limit, FREQUENCY, RECENCY, T), function(full, FREQUENCY, RECENCY, T), rtol=1e-6
        )
    np.testing.assert_allclose(
        bgnbd.expected_purchases(limit, 365, FREQUENCY, RECENCY, T),
        bgnbd.expected_purchases(full, 365, FREQUENCY, RECENCY, T),
        rtol=1e-6,
    )


@pytest.mark.parametrize("names", ["r alpha", "r alpha dropout"])
def test_the_limits_likelihood_has_the_gradient_it_reports(names):
    rows = RfmRows.of(*(np.asarray(c, dtype=float) for c in (FREQUENCY, RECENCY, T)))
    theta = np.array([-0.7, 2.5, -1.2][: len(names.split())])

    def value(theta):
        return limit_neg_ll(theta, rows)[0]

    def gradient(theta):
        return limit_neg_ll(theta, rows)[1]

    assert optimize.check_grad(value, gradient, theta) < 1e-5


def test_regular_buyers_are_fitted_as_the_limit_without_dropout():
    frequency, recency, age = regular_buyers()

    fit = bgnbd.fit_bg_nbd(frequency, recency, age)

    assert isinstance(fit.params, BgNbdLimit)
    assert fit.params.dropout == 0
    # One purchase day every 7 to 14 days: about 0.1 a day.
    assert 0.07 < fit.params.r / fit.params.alpha < 0.14
    assert any(note.startswith("dropout is not identifiable") for note in fit.notes)
    alive = bgnbd.probability_alive(fit.params, frequency, recency, age)
    assert (alive == 1).all()
    expected = bgnbd.expected_purchases(fit.params, 365, frequency, recency, age)
    assert np.isfinite(expected).all()
    assert (expected > 25).all()
    value = clv.predicted_value(
        fit.params, GammaGammaParams(p=6.0, q=4.0, v=1500.0), frequency, recency, age, [2000.0] * 40
    )
    assert np.isfinite(value).all()
    assert (value > 0).all()


def test_a_history_without_spread_in_dropout_is_fitted_as_the_limit_at_its_maximum():
    frequency = [k % 5 for k in range(100)]
    last = [10 + (37 * k) % 100 for k in range(100)]
    recency = [day if f else 0 for f, day in zip(frequency, last, strict=True)]
    age = [200 if f else 200 - day for f, day in zip(frequency, last, strict=True)]

    fit = bgnbd.fit_bg_nbd(frequency, recency, age)

    assert isinstance(fit.params, BgNbdLimit)
    assert 0 < fit.params.dropout < 1
    assert fit.log_likelihood == pytest.approx(
        bgnbd.bg_nbd_log_likelihood(fit.params, frequency, recency, age)
    )
    for name in ("r", "alpha", "dropout"):
        for factor in (0.98, 1.02):
            moved = dataclasses.replace(fit.params, **{name: getattr(fit.params, name) * factor})
            assert bgnbd.bg_nbd_log_likelihood(moved, frequency, recency, age) < fit.log_likelihood
    alive = bgnbd.probability_alive(fit.params, frequency, recency, age)
    assert ((alive >= 0) & (alive <= 1)).all()


@pytest.mark.parametrize("dropout", [0.0, 0.15])
def test_the_limits_expectation_matches_what_simulated_members_go_on_to_buy(dropout):
    truth = BgNbdLimit(r=0.5, alpha=20.0, dropout=dropout)
    rng = np.random.default_rng(7)
    (frequency, recency, age), holdout = bgnbd.simulate_bg_nbd_holdout(
        truth, 50_000, rng.uniform(180, 730, 50_000), 365, rng
    )

    expected = bgnbd.expected_purchases(truth, 365, frequency, recency, age)

    assert expected.sum() == pytest.approx(holdout.sum(), rel=0.03)
    for group in (frequency == 0, (frequency >= 1) & (frequency <= 3), frequency >= 4):
        assert expected[group].sum() == pytest.approx(holdout[group].sum(), rel=0.06)


def test_one_or_two_repeat_buyers_are_still_no_model():
    with pytest.raises(FitFailed, match="every member would leave"):
        bgnbd.fit_bg_nbd([1, 0], [3, 0], [10, 9])


@given(
    r=st.floats(0.05, 1e8),
    rate=st.floats(0.001, 1),
    a=st.floats(0.05, 1e8).filter(lambda a: abs(a - 1) > 1e-3),
    b=st.floats(0.05, 1e8),
    frequency=st.integers(0, 300),
)
@settings(deadline=None)
def test_expected_purchases_stay_finite_where_the_closed_forms_overflow(r, rate, a, b, frequency):
    params = BgNbdParams(r=r, alpha=r / rate, a=a, b=b)
    recency = 150.0 if frequency else 0.0

    shorter, longer = (
        bgnbd.expected_purchases(params, days, [frequency], [recency], [200.0])[0]
        for days in (180, 365)
    )

    assert np.isfinite(longer)
    assert 0 <= shorter <= longer * (1 + 1e-9)


@pytest.mark.parametrize(("r", "a", "b"), [(3e7, 0.8, 2.4), (3e7, 5.0, 50.0), (57416.0, 30.0, 0.5)])
def test_where_both_closed_forms_overflow_the_expectation_is_integrated(r, a, b):
    """r in the millions (purchase rates without spread) makes both forms of eq. 10 overflow;
    the expectation is then the purchases of a member alive at T, leaving with probability p
    after each, averaged over p ~ Beta(a, b + x): checked here against numerical integration."""
    params = BgNbdParams(r=r, alpha=r / 0.1, a=a, b=b)

    expected = bgnbd.expected_purchases(params, 365, FREQUENCY, RECENCY, T)

    alive = bgnbd.probability_alive(params, FREQUENCY, RECENCY, T)
    for x, age, member_alive, found in zip(FREQUENCY, T, alive, expected, strict=True):
        rate_t = 365 / (params.alpha + age)

        def purchases(p, x=x, rate_t=rate_t):
            return -np.expm1(-(r + x) * np.log1p(p * rate_t)) / p

        integral = stats.beta(a, b + x).expect(purchases, epsrel=1e-10)
        assert found == pytest.approx(integral * member_alive, rel=1e-6, abs=1e-12)
