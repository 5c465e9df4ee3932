"""The refresh's model step (``predict_lifetime_value``) on histories drawn from the models
with known parameters: it fits both and predicts every buyer; and on small or regular
histories that identify no dropout, where it fits the model's limit and says so."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from loyalty.insight import bgnbd, gamma_gamma, prediction
from loyalty.insight.models import ModelStatus

AS_OF = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
# The CDNOW estimates (alpha per day), as in tests/unit/test_clv.py.
TRUE_BG = bgnbd.BgNbdParams(r=0.243, alpha=30.9, a=0.793, b=2.426)
TRUE_GG = gamma_gamma.GammaGammaParams(p=6.25, q=3.74, v=15.44)


def inputs(frequency, recency, T, monetary) -> prediction.ModelInputs:
    return prediction.ModelInputs(
        as_of=AS_OF,
        member_ids=np.arange(len(frequency), dtype=np.int64),
        frequency=np.asarray(frequency, dtype=float),
        recency=np.asarray(recency, dtype=float),
        T=np.asarray(T, dtype=float),
        monetary=np.asarray(monetary, dtype=float),
    )


def test_the_model_step_fits_both_models_and_predicts_every_buyer():
    rng = np.random.default_rng(13)
    frequency, recency, T = bgnbd.simulate_bg_nbd(
        TRUE_BG, 50_000, rng.uniform(180, 730, 50_000), rng
    )
    monetary = gamma_gamma.simulate_gamma_gamma(TRUE_GG, frequency, rng) * 100  # minor units

    outcome = prediction.predict_lifetime_value(inputs(frequency, recency, T, monetary))

    assert outcome.status == ModelStatus.FITTED
    assert outcome.customers == 50_000
    assert outcome.horizon_days == prediction.HORIZON_DAYS == 365
    assert outcome.params is not None
    fitted = outcome.params["bg_nbd"]
    for name in ("r", "alpha"):  # the best-determined two, within 10%
        assert fitted[name] == pytest.approx(getattr(TRUE_BG, name), rel=0.10)
    assert outcome.params["gamma_gamma"]["q"] == pytest.approx(TRUE_GG.q, rel=0.10)
    assert outcome.params["gamma_gamma_customers"] == int((frequency > 0).sum())
    assert outcome.params["annual_discount_rate"] == prediction.ANNUAL_DISCOUNT_RATE
    assert outcome.log_likelihood is not None
    assert outcome.log_likelihood < 0
    for predictions in (outcome.probability_alive, outcome.expected_purchases):
        assert predictions is not None
        assert len(predictions) == 50_000
    assert outcome.probability_alive is not None
    assert ((outcome.probability_alive > 0) & (outcome.probability_alive <= 1)).all()
    assert outcome.predicted_value is not None
    assert (outcome.predicted_value >= 0).all()
    # Members who bought again recently are worth more than members gone quiet.
    recent = (frequency >= 3) & (T - recency < 30)
    quiet = (frequency >= 3) & (T - recency > 300)
    assert outcome.predicted_value[recent].mean() > outcome.predicted_value[quiet].mean()


def test_without_buyers_there_is_no_model():
    outcome = prediction.predict_lifetime_value(inputs([], [], [], []))

    assert (outcome.status, outcome.detail) == (ModelStatus.NOT_FITTED, "no buyers yet")


def test_a_history_without_repeat_purchases_is_no_model_with_the_reason():
    outcome = prediction.predict_lifetime_value(inputs([0, 0, 0], [0, 0, 0], [10, 20, 30], [0] * 3))

    assert outcome.status == ModelStatus.NOT_FITTED
    assert outcome.detail is not None
    assert outcome.detail.startswith("the model could not be fitted: ")


def test_a_history_without_spread_in_dropout_gets_the_models_limit_flagged():
    """Every buyer still buying on a fixed pattern: a and b run off to infinity together (the
    full model's closed forms overflow there). The limit is fitted, flagged and explained."""
    frequency = [k % 5 for k in range(100)]
    last = [10 + (37 * k) % 100 for k in range(100)]
    recency = [day if f else 0 for f, day in zip(frequency, last, strict=True)]
    T = [200 if f else 200 - day for f, day in zip(frequency, last, strict=True)]
    monetary = [1000.0 if f else 0.0 for f in frequency]

    outcome = prediction.predict_lifetime_value(inputs(frequency, recency, T, monetary))

    assert outcome.status == ModelStatus.FITTED
    assert outcome.params is not None
    assert outcome.params["bg_nbd_limit"] is True
    assert set(outcome.params["bg_nbd"]) == {"r", "alpha", "dropout"}
    assert outcome.detail is not None
    assert outcome.detail.startswith("dropout is not identifiable")
    assert_sensible(outcome, frequency)


def test_forty_regular_buyers_get_finite_sensible_predictions():
    """Forty buyers, each buying every 7 to 14 days since a first day in the first ten, all
    still buying on day 120: nobody seems to leave and rates barely differ."""
    frequency, recency, T = [], [], []
    for k in range(40):
        days = range(k % 10, 120, 7 + k % 8)
        frequency.append(len(days) - 1)
        recency.append(days[-1] - days[0])
        T.append(120 - days[0])
    monetary = [1000.0 + 250 * (k % 4) for k in range(40)]

    outcome = prediction.predict_lifetime_value(inputs(frequency, recency, T, monetary))

    assert outcome.status == ModelStatus.FITTED
    assert outcome.params is not None
    assert outcome.params["bg_nbd_limit"] is True
    assert outcome.params["bg_nbd"]["dropout"] == 0
    assert outcome.detail is not None
    assert "nobody seems to leave" in outcome.detail
    assert "purchase rates do not vary detectably" in outcome.detail
    assert_sensible(outcome, frequency)
    assert outcome.probability_alive is not None
    assert (outcome.probability_alive == 1).all()
    # About one purchase day every 10 days over the next year, at 10-17.50 a time.
    assert outcome.expected_purchases is not None
    assert 25 < outcome.expected_purchases.mean() < 45
    assert outcome.predicted_value is not None
    assert 25 * 1000 < outcome.predicted_value.mean() < 45 * 1750


def test_one_repeat_buyer_is_still_no_model():
    outcome = prediction.predict_lifetime_value(inputs([1, 0], [3, 0], [10, 9], [3000.0, 0.0]))

    assert outcome.status == ModelStatus.NOT_FITTED
    assert outcome.detail is not None
    assert outcome.detail.startswith("the model could not be fitted: ")
    assert outcome.probability_alive is None


def assert_sensible(outcome: prediction.ModelOutcome, frequency: list[int]) -> None:
    alive, expected, value = (
        outcome.probability_alive,
        outcome.expected_purchases,
        outcome.predicted_value,
    )
    assert alive is not None
    assert expected is not None
    assert value is not None
    for predictions in (alive, expected, value):
        assert len(predictions) == len(frequency)
        assert np.isfinite(predictions).all()
    assert ((alive >= 0) & (alive <= 1)).all()
    assert (expected >= 0).all()
    assert (value >= 0).all()
