"""BG/NBD, the model of repeat purchasing: Fader, Hardie & Lee (2005), "Counting your
customers the easy way", Marketing Science 24(2). Fitted by maximum likelihood; the inputs
(frequency, recency, T in days) and the choice of scipy are described in
``loyalty.insight.clv``.

Pure computation over numpy arrays, one row per member; no database, no Flask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special

from loyalty.insight.fitting import (
    Fit,
    FitFailed,
    FloatArray,
    distinct_rows,
    maximise,
    rfm_arrays,
)


@dataclass(frozen=True)
class BgNbdParams:
    """BG/NBD: purchase rates ~ Gamma(shape r, rate alpha per day), dropout ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float


def fit_bg_nbd(frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> Fit[BgNbdParams]:
    """Fit BG/NBD by maximum likelihood on one row per member (see the module docstring for
    the inputs, in days). Returns the parameters (alpha in days), the log-likelihood and the
    number of members. Raises ValueError on malformed input and FitFailed when the history
    does not identify the parameters."""
    x, t_x, t = rfm_arrays(frequency, recency, T)
    if not np.any(x > 0):
        # Members drop out only after repeat purchases: without any, a and b are free.
        raise FitFailed("no member has a repeat purchase")
    # alpha is a time scale: fitting on T / scale and multiplying alpha back is the same
    # maximum, but keeps every log-parameter near 0 for the optimiser.
    scale = float(np.mean(t)) or 1.0
    rows = _RfmRows.of(x, t_x / scale, t / scale)
    log_params = maximise(lambda theta: _bg_nbd_neg_ll(theta, rows), len(x), "r alpha a b")
    r, alpha, a, b = np.exp(log_params)
    params = BgNbdParams(r=float(r), alpha=float(alpha * scale), a=float(a), b=float(b))
    return Fit(params, bg_nbd_log_likelihood(params, x, t_x, t), customers=len(x))


def bg_nbd_log_likelihood(
    params: BgNbdParams, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> float:
    """The BG/NBD log-likelihood of the rows at `params`, summed (FHL 2005, eq. 6)."""
    theta = np.log([params.r, params.alpha, params.a, params.b])
    value, _ = _bg_nbd_neg_ll(theta, _RfmRows.of(*rfm_arrays(frequency, recency, T)))
    return -value


@dataclass(frozen=True)
class _RfmRows:
    """The distinct (x, t_x, T) rows with how often each occurs, and the distinct x with the
    total count at each: the terms of the likelihood that depend on x alone (the slow gamma
    functions) are worked out once per x."""

    x: FloatArray
    t_x: FloatArray
    t: FloatArray
    counts: FloatArray
    levels: FloatArray
    level_counts: FloatArray

    @classmethod
    def of(cls, x: FloatArray, t_x: FloatArray, t: FloatArray) -> _RfmRows:
        (x, t_x, t), row_of = distinct_rows(x, t_x, t)
        counts = np.bincount(row_of).astype(np.float64)
        levels, level_of_row = np.unique(x, return_inverse=True)
        level_counts = np.bincount(level_of_row, weights=counts).astype(np.float64)
        return cls(x, t_x, t, counts, levels, level_counts)


def _bg_nbd_neg_ll(theta: FloatArray, rows: _RfmRows) -> tuple[float, FloatArray]:
    """Minus the log-likelihood, summed over the rows, and its gradient in the log-parameters."""
    r, alpha, a, b = np.exp(theta)
    x, t_x, t = rows.x, rows.t_x, rows.t
    # Per distinct x: ln[Gamma(r+x) alpha^r / Gamma(r)] + ln[B(a, b+x) / B(a, b)].
    n = rows.levels
    psi_abn = special.digamma(a + b + n)
    ll_levels = (
        special.gammaln(r + n)
        - special.gammaln(r)
        + r * np.log(alpha)
        + special.gammaln(b + n)
        - special.gammaln(b)
        + special.gammaln(a + b)
        - special.gammaln(a + b + n)
    )
    grad_levels = np.array(
        [
            special.digamma(r + n) - special.digamma(r) + np.log(alpha),
            np.full_like(n, r / alpha),
            special.digamma(a + b) - psi_abn,
            special.digamma(b + n) - psi_abn - special.digamma(b) + special.digamma(a + b),
        ]
    )
    # Per row: ln[(alpha+T)^-(r+x) + [x>0] a/(b+x-1) (alpha+t_x)^-(r+x)], the member either
    # still active at T or gone after their last purchase.
    repeat = x > 0
    # b + x - 1 only matters for repeat buyers; the floor at x = 1 keeps log() defined for the rest.
    b_x1 = b + np.maximum(x, 1) - 1
    log_alive_term = -(r + x) * np.log(alpha + t)
    log_dropped_term = np.where(
        repeat, np.log(a) - np.log(b_x1) - (r + x) * np.log(alpha + t_x), -np.inf
    )
    log_sum = np.logaddexp(log_alive_term, log_dropped_term)
    # The second term's share of the sum: how the gradient spreads over the two.
    dropped = np.where(repeat, np.exp(log_dropped_term - log_sum), 0.0)
    alive = 1.0 - dropped
    grad_rows = np.array(
        [
            -alive * np.log(alpha + t) - dropped * np.log(alpha + t_x),
            -(r + x) * (alive / (alpha + t) + dropped / (alpha + t_x)),
            dropped / a,
            -dropped / b_x1,
        ]
    )
    ll = rows.level_counts @ ll_levels + rows.counts @ log_sum
    grad = grad_levels @ rows.level_counts + grad_rows @ rows.counts
    return -float(ll), -grad * np.array([r, alpha, a, b])


def probability_alive(
    params: BgNbdParams, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> FloatArray:
    """P(a member is still active at T | x, t_x, T) under BG/NBD (FHL 2005, eq. 11). It is 1
    for members without a repeat purchase: in BG/NBD a member can only drop out right after a
    repeat purchase."""
    x, t_x, t = rfm_arrays(frequency, recency, T)
    alive: FloatArray = special.expit(-_log_dropout_odds(params, x, t_x, t))
    return alive


def _log_dropout_odds(
    params: BgNbdParams, x: FloatArray, t_x: FloatArray, t: FloatArray
) -> FloatArray:
    """log(P(dropped) / P(alive)) given the history; -inf without repeat purchases."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    log_odds = (
        math.log(a)
        - np.log(b + np.maximum(x, 1) - 1)
        + (r + x) * (np.log(alpha + t) - np.log(alpha + t_x))
    )
    return np.where(x > 0, log_odds, -np.inf)


def expected_purchases(
    params: BgNbdParams, t: float, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> FloatArray:
    """Expected repeat purchase days in the next `t` days, given each member's history
    (FHL 2005, eq. 10)."""
    if t < 0:
        raise ValueError("t must be 0 or more days")
    x, t_x, t_obs = rfm_arrays(frequency, recency, T)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    z = t / (alpha + t_obs + t)
    # Eq. 10 holds ((alpha+T)/(alpha+T+t))**(r+x) * 2F1(r+x, b+x; a+b+x-1; z), which for a
    # frequent buyer multiplies a vanishing power by a diverging series. Euler's transformation
    # 2F1(a1, b1; c; z) = (1-z)**(c-a1-b1) 2F1(c-a1, c-b1; c; z) folds the two into one
    # well-conditioned product.
    tail: FloatArray = (1 - z) ** (a - 1) * special.hyp2f1(a + b - 1 - r, a - 1, a + b + x - 1, z)
    # Near a = 1 both (1 - tail) and (a - 1) vanish; the ratio keeps its meaning and loses
    # accuracy only for |a - 1| below about 1e-8, which no fit lands on by chance.
    unconditional = (a + b + x - 1) / (a - 1) * (1 - tail)
    alive: FloatArray = special.expit(-_log_dropout_odds(params, x, t_x, t_obs))
    return unconditional * alive


def simulate_bg_nbd(
    params: BgNbdParams, customers: int, T: ArrayLike, rng: np.random.Generator
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Draw (frequency, recency, T) for `customers` members from BG/NBD, observed for `T` days
    (one value for all, or one per member). For tests and evaluation."""
    calibration, _ = simulate_bg_nbd_holdout(params, customers, T, 0.0, rng)
    return calibration


def simulate_bg_nbd_holdout(
    params: BgNbdParams,
    customers: int,
    T: ArrayLike,
    holdout_days: float,
    rng: np.random.Generator,
) -> tuple[tuple[FloatArray, FloatArray, FloatArray], NDArray[np.int64]]:
    """Draw members from BG/NBD as `simulate_bg_nbd` does, and the repeat purchases the same
    members make in the `holdout_days` after their T: the data of a calibration/holdout split."""
    t = np.broadcast_to(np.asarray(T, dtype=float), (customers,)).copy()
    rate = rng.gamma(params.r, 1 / params.alpha, customers)
    # A Beta draw can underflow to 0, where a geometric draw is undefined; 1e-12 is a member who
    # never leaves for any horizon that matters.
    dropout = np.clip(rng.beta(params.a, params.b, customers), 1e-12, 1.0)
    # The member leaves right after repeat purchase number `lifetime`, if they live to make it.
    lifetime = rng.geometric(dropout)
    arrivals = rng.poisson(rate * t)
    x = np.minimum(lifetime, arrivals)
    # Given `arrivals` Poisson arrivals in (0, T], the x-th is T times the x-th of that many
    # uniform order statistics, which is Beta(x, arrivals - x + 1).
    last = rng.beta(np.maximum(x, 1), arrivals - x + 1)
    t_x = np.where(x > 0, t * last, 0.0)
    # Members still active at T carry on at the same rate: the Poisson process forgets.
    more = rng.poisson(rate * holdout_days)
    holdout = np.where(lifetime > arrivals, np.minimum(lifetime - arrivals, more), 0)
    return (x.astype(float), t_x, t), holdout.astype(np.int64)
