"""BG/NBD in the limit where dropout is not identified (the model itself is in
``loyalty.insight.bgnbd``).

When the members of a history seem to leave at one common rate, or not at all (few members,
very regular buyers), the likelihood keeps growing as a and b run to infinity together: the
Beta of the dropout probability narrows to a point, a/(a+b). That limit is a model of its
own, ``BgNbdLimit``: r, alpha and the one dropout probability; 0 when nobody seems to leave,
where purchases follow the NBD (Poisson at Gamma-distributed rates) and every member is alive.
``bgnbd.fit_bg_nbd`` fits and reports it, with the closed forms here, instead of a and b at
the edge of the optimiser's box, where the hypergeometric function of eq. 10 overflows.

Pure computation over numpy arrays; no database, no Flask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from loyalty.insight.fitting import FloatArray, RfmRows


@dataclass(frozen=True)
class BgNbdLimit:
    """BG/NBD in the limit a, b -> infinity with a/(a+b) -> `dropout`: every member leaves
    right after each repeat purchase with the same probability `dropout` (a and b themselves
    are not identified). With dropout 0 (also the limit of a -> 0 or b -> infinity alone)
    nobody leaves: the purchases are NBD, Poisson at Gamma(shape r, rate alpha per day)
    rates, and every member is alive."""

    r: float
    alpha: float
    dropout: float

    def __post_init__(self) -> None:
        if not 0 <= self.dropout < 1:
            raise ValueError("the dropout probability must be at least 0 and below 1")


def limit_theta(params: BgNbdLimit, scale: float) -> FloatArray:
    """The limit's parameters on the optimiser's scale, alpha in units of `scale` days:
    log r, log alpha and, unless it is 0, the logit of the dropout probability."""
    logs = [math.log(params.r), math.log(params.alpha / scale)]
    if params.dropout > 0:
        logs.append(float(special.logit(params.dropout)))
    return np.array(logs)


def limit_neg_ll(theta: FloatArray, rows: RfmRows) -> tuple[float, FloatArray]:
    """Minus the log-likelihood of the limit a, b -> infinity, summed over the rows, and its
    gradient in (log r, log alpha[, logit dropout]); without the third, no dropout (NBD).
    Eq. 6 where B(a, b+x)/B(a, b) becomes (1-p)**x and a/(b+x-1) becomes p/(1-p)."""
    r, alpha = np.exp(theta[:2])
    n = rows.levels
    ll_levels = special.gammaln(r + n) - special.gammaln(r) + r * np.log(alpha)
    grad_levels = [
        special.digamma(r + n) - special.digamma(r) + np.log(alpha),
        np.full_like(n, r / alpha),
    ]
    x, t_x, t = rows.x, rows.t_x, rows.t
    log_alive_term = -(r + x) * np.log(alpha + t)
    dropped = np.zeros_like(x)
    log_sum = log_alive_term
    if len(theta) == 3:
        # log p and log(1-p) of p = expit(theta[2]), without rounding p to 0 or 1.
        log_p, log_stay = special.log_expit(theta[2]), special.log_expit(-theta[2])
        ll_levels = ll_levels + n * log_stay
        grad_levels.append(-n * special.expit(theta[2]))
        log_dropped_term = np.where(
            x > 0, log_p - log_stay - (r + x) * np.log(alpha + t_x), -np.inf
        )
        log_sum = np.logaddexp(log_alive_term, log_dropped_term)
        dropped = np.where(x > 0, np.exp(log_dropped_term - log_sum), 0.0)
    alive = 1.0 - dropped
    grad_rows = [
        -alive * np.log(alpha + t) - dropped * np.log(alpha + t_x),
        -(r + x) * (alive / (alpha + t) + dropped / (alpha + t_x)),
    ]
    if len(theta) == 3:
        grad_rows.append(dropped)  # d/dtheta of log(p / (1-p)) is 1
    ll = rows.level_counts @ ll_levels + rows.counts @ log_sum
    grad = np.array(grad_levels) @ rows.level_counts + np.array(grad_rows) @ rows.counts
    chain = np.array([r, alpha, 1.0][: len(theta)])
    return -float(ll), -grad * chain


def purchases_if_alive(
    r: float, alpha: float, dropout: float | FloatArray, t: float, x: FloatArray, T: FloatArray
) -> FloatArray:
    """Expected repeat purchases in `t` days of members alive at T who leave after each one
    with probability `dropout`: given the rate, (1 - exp(-rate dropout t)) / dropout, averaged
    over the rate's Gamma(r + x, alpha + T) posterior; (r + x) t / (alpha + T) at dropout 0."""
    rate_t = t / (alpha + T)
    p = np.asarray(dropout, dtype=float)
    safe = np.where(p > 0, p, 1.0)
    leaving = -np.expm1(-(r + x) * np.log1p(safe * rate_t)) / safe
    result: FloatArray = np.where(p > 0, leaving, (r + x) * rate_t)
    return result
