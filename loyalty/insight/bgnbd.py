"""BG/NBD, the model of repeat purchasing: Fader, Hardie & Lee (2005), "Counting your
customers the easy way", Marketing Science 24(2). Fitted by maximum likelihood; the inputs
(frequency, recency, T in days) and the choice of scipy are described in
``loyalty.insight.clv``.

Pure computation over numpy arrays, one row per member; no database, no Flask.

Its limit where dropout is not identified (a and b run to infinity) is
``loyalty.insight.bgnbd_limit``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special

from loyalty.insight.bgnbd_limit import (
    BgNbdLimit,
    limit_neg_ll,
    limit_theta,
    purchases_if_alive,
)
from loyalty.insight.fitting import (
    AtBound,
    Fit,
    FitFailed,
    FloatArray,
    RfmRows,
    maximise,
    rfm_arrays,
)

# Past this, a + b is tried against the limit a, b -> infinity (adopted only if it fits as
# well): the dropout probability's spread between members is then 1% of its mean at a mean of
# 0.5, 3% at 0.1. So is a below its inverse: a Beta(1e-4, b) puts its mass at 0, no dropout.
# And r past it is noted as purchase rates without spread (a 1% spread).
NARROW = 1e4
# The limit is taken when its log-likelihood is at most this far below the fit's: a likelihood
# ratio of 1.001, no evidence for a spread in dropout.
_LIMIT_TOLERANCE = 1e-3
# A mean dropout probability above this is no population: every member gone after their
# first repeat purchase (the fit of one or two repeat buyers).
CERTAIN_DROPOUT = 0.999
# Gauss-Jacobi nodes for the expected purchases where eq. 10 overflows, and the largest
# Beta parameter scipy's nodes are finite for.
_JACOBI_NODES = 100
_JACOBI_LIMIT = 1000.0
# exp(500) ~ 1e217: a hypergeometric prefactor up to this is safe to multiply out in floats.
_EXP_SAFE = 500.0


@dataclass(frozen=True)
class BgNbdParams:
    """BG/NBD: purchase rates ~ Gamma(shape r, rate alpha per day), dropout ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float


PurchaseParams = BgNbdParams | BgNbdLimit


def fit_bg_nbd(frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> Fit[PurchaseParams]:
    """Fit BG/NBD by maximum likelihood on one row per member (see ``loyalty.insight.clv`` for
    the inputs, in days). Returns the parameters (alpha in days), the log-likelihood, the
    number of members and notes on what the history did not identify. The parameters are a
    BgNbdLimit when the maximum lies at a, b -> infinity or a -> 0 (or on the way there, past
    NARROW, and the limit fits as well): a history without spread in dropout between
    members. r and alpha run off together (where only r/alpha matters, noted) when purchase
    rates show no spread either. Raises ValueError on malformed input and FitFailed when the
    history does not identify the model (no repeat purchases; r or alpha alone at an edge;
    every member leaving at once)."""
    x, t_x, t = rfm_arrays(frequency, recency, T)
    if not np.any(x > 0):
        # Members drop out only after repeat purchases: without any, a and b are free.
        raise FitFailed("no member has a repeat purchase")
    # alpha is a time scale: fitting on T / scale and multiplying alpha back is the same
    # maximum, but keeps every log-parameter near 0 for the optimiser.
    scale = float(np.mean(t)) or 1.0
    rows = RfmRows.of(x, t_x / scale, t / scale)
    theta, edges = _maximise_to_edge(
        lambda theta: _bg_nbd_neg_ll(theta, rows), len(x), "r alpha a b"
    )
    # a and b both to 0 would split the members into leavers at once and stayers for ever,
    # a limit no history here shows; one of them to 0 or both to infinity is a point mass.
    dropout_edge = bool({"a", "b"} & edges)
    if {"a", "b"} <= edges and max(theta[2:]) < 0:
        raise FitFailed("the history does not identify a, b")
    r, alpha, a, b = np.exp(theta)
    if b < a * (1 - CERTAIN_DROPOUT) / CERTAIN_DROPOUT:
        # a/(a+b) -> 1, the edge the NBD limit cannot stand for: one or two repeat buyers.
        raise FitFailed(
            f"the history does not identify a, b (they ran to {a:.3g}, {b:.3g}): every member "
            "would leave right after a repeat purchase"
        )
    full = BgNbdParams(r=float(r), alpha=float(alpha * scale), a=float(a), b=float(b))
    params: PurchaseParams = full
    notes: list[str] = []
    if dropout_edge or a + b > NARROW or a < 1 / NARROW:
        try:
            params = _fit_limit(rows, len(x), theta, scale, full)
        except FitFailed:
            if dropout_edge:
                raise
        else:
            notes.append(_limit_note(params, full))
    if params.r > NARROW:
        notes.append(
            f"purchase rates do not vary detectably between members (r ran to {params.r:.3g}): "
            f"in effect one rate for everyone, r/alpha = {params.r / params.alpha:.4g} purchase "
            "days a day"
        )
    log_likelihood = bg_nbd_log_likelihood(params, x, t_x, t)
    return Fit(params, log_likelihood, customers=len(x), notes=tuple(notes))


def _maximise_to_edge(
    neg_ll: Callable[[FloatArray], tuple[float, FloatArray]],
    customers: int,
    names: str,
    start: ArrayLike | None = None,
) -> tuple[FloatArray, set[str]]:
    """`maximise`, returning where the optimiser stopped and the names of the parameters at
    the edge of the search, for the caller to judge, rather than refusing. r and alpha may
    run off together: every member then buys at the same rate r/alpha, which the values at
    the edge give to many digits (a Gamma of shape 1e8 is a point). Raises FitFailed when the
    optimiser fails or r or alpha runs off alone (or towards 0)."""
    try:
        return maximise(neg_ll, customers, names, start), set()
    except AtBound as edge:
        rates = {"r", "alpha"} & set(edge.names)
        if rates and not (edge.theta[0] > 0 and edge.theta[1] > 0):
            raise
        return edge.theta, set(edge.names)


def _fit_limit(
    rows: RfmRows, customers: int, theta: FloatArray, scale: float, fitted: BgNbdParams
) -> BgNbdLimit:
    """The limit a, b -> infinity, with one dropout probability and without dropout (the
    NBD); the NBD when it fits as well. Raises FitFailed when neither fits as well as the
    full model stopped at `theta` (`fitted`), or neither identifies its own parameters."""

    def neg_ll(theta: FloatArray) -> tuple[float, FloatArray]:
        return limit_neg_ll(theta, rows)

    found: list[BgNbdLimit] = []
    for names in ("r alpha", "r alpha dropout"):
        try:
            limit, edges = _maximise_to_edge(neg_ll, customers, names)
        except FitFailed:
            continue
        # A dropout probability at the edge is 0 (the NBD, fitted on its own) or 1 (every
        # member leaving after their first repeat purchase: no history here shows that).
        if "dropout" not in edges:
            dropout = float(special.expit(limit[2])) if len(limit) == 3 else 0.0
            r, alpha = np.exp(limit[:2])
            found.append(BgNbdLimit(r=float(r), alpha=float(alpha * scale), dropout=dropout))
    scored = [(-neg_ll(limit_theta(limit, scale))[0], limit) for limit in found]
    full = -_bg_nbd_neg_ll(theta, rows)[0]
    fitting = [(ll, limit) for ll, limit in scored if ll >= full - _LIMIT_TOLERANCE]
    if not fitting:
        raise FitFailed(
            f"the history does not identify a, b (they ran to {fitted.a:.3g}, "
            f"{fitted.b:.3g}) and the model's limit there does not fit as well"
        )
    best = max(ll for ll, _ in fitting)
    # The first, the NBD, when it is as good: no dropout is the simpler story.
    return next(limit for ll, limit in fitting if ll >= best - _LIMIT_TOLERANCE)


def _limit_note(limit: BgNbdLimit, full: BgNbdParams) -> str:
    edge = f"dropout is not identifiable (a and b ran to {full.a:.3g} and {full.b:.3g}"
    if limit.dropout == 0:
        return (
            f"{edge}: nobody seems to leave); the model's limit without dropout was used: "
            "every buyer alive, purchases as the NBD predicts"
        )
    return (
        f"{edge}: no spread between buyers); the model's limit a, b -> infinity was used: "
        f"every buyer leaves after a repeat purchase with the same probability, "
        f"{limit.dropout:.4g}"
    )


def bg_nbd_log_likelihood(
    params: PurchaseParams, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> float:
    """The BG/NBD log-likelihood of the rows at `params`, summed (FHL 2005, eq. 6; its limit
    for a BgNbdLimit)."""
    rows = RfmRows.of(*rfm_arrays(frequency, recency, T))
    if isinstance(params, BgNbdLimit):
        return -limit_neg_ll(limit_theta(params, 1.0), rows)[0]
    theta = np.log([params.r, params.alpha, params.a, params.b])
    value, _ = _bg_nbd_neg_ll(theta, rows)
    return -value


def _bg_nbd_neg_ll(theta: FloatArray, rows: RfmRows) -> tuple[float, FloatArray]:
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
    params: PurchaseParams, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> FloatArray:
    """P(a member is still active at T | x, t_x, T) under BG/NBD (FHL 2005, eq. 11). It is 1
    for members without a repeat purchase: in BG/NBD a member can only drop out right after a
    repeat purchase. In the limit without dropout it is 1 for every member."""
    x, t_x, t = rfm_arrays(frequency, recency, T)
    alive: FloatArray = special.expit(-_log_dropout_odds(params, x, t_x, t))
    return alive


def _log_dropout_odds(
    params: PurchaseParams, x: FloatArray, t_x: FloatArray, t: FloatArray
) -> FloatArray:
    """log(P(dropped) / P(alive)) given the history; -inf without repeat purchases, and for
    everyone in the limit without dropout."""
    r, alpha = params.r, params.alpha
    if isinstance(params, BgNbdLimit):
        if params.dropout == 0:
            return np.full_like(x, -np.inf)
        # a / (b + x - 1) -> p / (1 - p)
        log_ratio: float | FloatArray = float(special.logit(params.dropout))
    else:
        log_ratio = math.log(params.a) - np.log(params.b + np.maximum(x, 1) - 1)
    # log((alpha+T)/(alpha+t_x)) without losing T - t_x to a huge alpha (rates without spread)
    log_odds = log_ratio + (r + x) * np.log1p((t - t_x) / (alpha + t_x))
    return np.where(x > 0, log_odds, -np.inf)


def expected_purchases(
    params: PurchaseParams, t: float, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> FloatArray:
    """Expected repeat purchase days in the next `t` days, given each member's history
    (FHL 2005, eq. 10; its limit for a BgNbdLimit)."""
    if t < 0:
        raise ValueError("t must be 0 or more days")
    x, t_x, t_obs = rfm_arrays(frequency, recency, T)
    alive: FloatArray = special.expit(-_log_dropout_odds(params, x, t_x, t_obs))
    if isinstance(params, BgNbdLimit):
        return purchases_if_alive(params.r, params.alpha, params.dropout, t, x, t_obs) * alive
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    z = t / (alpha + t_obs + t)
    # -log(1 - z): the hypergeometric function of eq. 10 grows like (1-z)**-(its exponent).
    stretch = np.log1p(t / (alpha + t_obs))
    # Eq. 10 holds ((alpha+T)/(alpha+T+t))**(r+x) * 2F1(r+x, b+x; a+b+x-1; z), which for a
    # frequent buyer multiplies a vanishing power by a diverging series. Euler's transformation
    # 2F1(a1, b1; c; z) = (1-z)**(c-a1-b1) 2F1(c-a1, c-b1; c; z) folds the two into one
    # product, (1-z)**(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z), well-conditioned until a is large
    # (a nearly homogeneous dropout), where the direct form is the safe one. A member both
    # frequent and under a large a, or with r huge (purchase rates without spread: the first
    # parameter hugely negative), has both overflow: then eq. 10 by quadrature.
    euler = (a - 1) * stretch <= _EXP_SAFE
    tail = np.full_like(z, np.nan)
    with np.errstate(over="ignore", invalid="ignore"):
        tail[euler] = (1 - z[euler]) ** (a - 1) * special.hyp2f1(
            a + b - 1 - r, a - 1, a + b + x[euler] - 1, z[euler]
        )
        # Where that overflowed, or its first parameter is hugely negative (r far above a,
        # purchase rates without spread), the direct form, if its own power is safe.
        direct = ~np.isfinite(tail) & ((r + x) * stretch <= _EXP_SAFE)
        tail[direct] = np.exp(-(r + x[direct]) * stretch[direct]) * special.hyp2f1(
            r + x[direct], b + x[direct], a + b + x[direct] - 1, z[direct]
        )
        # Near a = 1 both (1 - tail) and (a - 1) vanish; the ratio keeps its meaning and loses
        # accuracy only for |a - 1| below about 1e-8, which no fit lands on by chance.
        unconditional = (a + b + x - 1) / (a - 1) * (1 - tail)
    neither = ~np.isfinite(unconditional)
    unconditional[neither] = _purchases_over_dropout(params, t, x[neither], t_obs[neither])
    return unconditional * alive


def _purchases_over_dropout(
    params: BgNbdParams, t: float, x: FloatArray, T: FloatArray
) -> FloatArray:
    """Eq. 10 without the hypergeometric function, for members where neither of its forms
    is finite: the purchases of a member alive at T who leaves with probability p after each
    one (``purchases_if_alive``), averaged over p's Beta(a, b + x) given x survived repeat
    purchases, by Gauss-Jacobi quadrature (exact to about 1e-13 against numerical
    integration). Where a or b + x is beyond what scipy's Jacobi nodes take (about 1000),
    the Beta is narrow and its mean a/(a+b+x) stands for it (relative error of order 1/a)."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    result = np.empty_like(x)
    for level in np.unique(x):
        at = x == level
        if max(a, b + level) > _JACOBI_LIMIT:
            mean = a / (a + b + level)
            result[at] = purchases_if_alive(r, alpha, mean, t, x[at], T[at])
            continue
        nodes, weights = special.roots_jacobi(_JACOBI_NODES, b + level - 1, a - 1)
        dropout = ((1 + nodes) / 2)[:, np.newaxis]
        purchases = purchases_if_alive(r, alpha, dropout, t, x[at], T[at])
        result[at] = (weights / weights.sum()) @ purchases
    return result


def simulate_bg_nbd(
    params: PurchaseParams, customers: int, T: ArrayLike, rng: np.random.Generator
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Draw (frequency, recency, T) for `customers` members from BG/NBD, observed for `T` days
    (one value for all, or one per member). For tests and evaluation."""
    calibration, _ = simulate_bg_nbd_holdout(params, customers, T, 0.0, rng)
    return calibration


def simulate_bg_nbd_holdout(
    params: PurchaseParams,
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
    if isinstance(params, BgNbdLimit):
        drawn = np.full(customers, params.dropout)
    else:
        drawn = rng.beta(params.a, params.b, customers)
    dropout = np.clip(drawn, 1e-12, 1.0)
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
