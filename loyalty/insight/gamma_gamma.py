"""Gamma-Gamma, the model of spend per order: Fader, Hardie & Lee (2005), "RFM and CLV: Using
iso-value curves for customer base analysis", JMR 42(4), and Fader & Hardie (2013), "The
Gamma-Gamma model of monetary value". Fitted by maximum likelihood; the inputs (frequency,
monetary) and the choice of scipy are described in ``loyalty.insight.clv``.

Pure computation over numpy arrays, one row per member; no database, no Flask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from loyalty.insight.fitting import AtBound, Fit, FitFailed, FloatArray, NotConverged, maximise

# p and q past this, together: the order values of a member do not vary detectably (a Gamma
# of shape 1e4 has a 1% spread), the likelihood's limit is a point mass, and where the
# optimiser stopped on the way there gives the expected spend to many digits.
NO_SPREAD = 1e4


@dataclass(frozen=True)
class GammaGammaParams:
    """Gamma-Gamma: order values ~ Gamma(p, nu), nu ~ Gamma(shape q, rate v); v in money units."""

    p: float
    q: float
    v: float


def fit_gamma_gamma(frequency: ArrayLike, monetary: ArrayLike) -> Fit[GammaGammaParams]:
    """Fit Gamma-Gamma by maximum likelihood on the members with at least one repeat purchase
    (rows with frequency 0 are left out; `customers` counts the rest). `monetary` is the mean
    value of the repeat purchases. Returns the parameters (v in the unit of `monetary`), the
    log-likelihood and the number of members. Raises ValueError on malformed input and
    FitFailed when the history does not identify the parameters."""
    x, m = _repeat_spend(frequency, monetary)
    # v is a money scale: fitting on monetary / scale and multiplying v back is the same maximum.
    scale = float(np.mean(m))
    rows = _SpendRows.of(x, m / scale)
    try:
        log_params = maximise(lambda theta: _gamma_gamma_neg_ll(theta, rows), len(x), "p q v")
    except (AtBound, NotConverged) as stopped:
        if not np.all(stopped.theta[:2] > np.log(NO_SPREAD)):
            raise
        log_params = stopped.theta
    p, q, v = np.exp(log_params)
    params = GammaGammaParams(p=float(p), q=float(q), v=float(v * scale))
    notes: tuple[str, ...] = ()
    if p > NO_SPREAD and q > NO_SPREAD:
        notes = (
            f"order values do not vary detectably (p and q ran to {p:.3g} and {q:.3g}): "
            "every member's expected spend is in effect the common mean",
        )
    return Fit(params, gamma_gamma_log_likelihood(params, x, m), customers=len(x), notes=notes)


def gamma_gamma_log_likelihood(
    params: GammaGammaParams, frequency: ArrayLike, monetary: ArrayLike
) -> float:
    """The Gamma-Gamma log-likelihood of the repeat buyers' mean spend at `params`, summed."""
    theta = np.log([params.p, params.q, params.v])
    value, _ = _gamma_gamma_neg_ll(theta, _SpendRows.of(*_repeat_spend(frequency, monetary)))
    return -value


@dataclass(frozen=True)
class _SpendRows:
    """The repeat buyers' x and mean spend m, and the distinct x with how many members have
    each: the gamma functions of the likelihood depend on x alone and are worked out once
    per x. Mean spends are rarely equal, so rows are not aggregated."""

    x: FloatArray
    m: FloatArray
    levels: FloatArray
    level_counts: FloatArray

    @classmethod
    def of(cls, x: FloatArray, m: FloatArray) -> _SpendRows:
        levels, counts = np.unique(x, return_counts=True)
        return cls(x, m, levels, counts.astype(float))


def _gamma_gamma_neg_ll(theta: FloatArray, rows: _SpendRows) -> tuple[float, FloatArray]:
    """Minus the log-likelihood of the mean spends, summed, and its gradient in the
    log-parameters: the density of the mean of x Gamma(p, nu) orders, nu ~ Gamma(q, v)."""
    p, q, v = np.exp(theta)
    n = rows.levels
    psi_pnq = special.digamma(p * n + q)
    ll_levels = special.gammaln(p * n + q) - special.gammaln(p * n) - special.gammaln(q)
    grad_levels = np.array(
        [n * (psi_pnq - special.digamma(p * n)), psi_pnq - special.digamma(q), np.zeros_like(n)]
    )
    x, m = rows.x, rows.m
    px = p * x
    log_total = np.log(v + x * m)
    ll_rows = q * np.log(v) + (px - 1) * np.log(m) + px * np.log(x) - (px + q) * log_total
    grad_rows = np.array(
        [
            x * (np.log(m) + np.log(x) - log_total),
            np.log(v) - log_total,
            q / v - (px + q) / (v + x * m),
        ]
    )
    ll = rows.level_counts @ ll_levels + ll_rows.sum()
    grad = grad_levels @ rows.level_counts + grad_rows.sum(axis=1)
    return -float(ll), -grad * np.array([p, q, v])


def expected_spend(
    params: GammaGammaParams, frequency: ArrayLike, monetary: ArrayLike
) -> FloatArray:
    """Expected value of a member's future orders given x repeat purchases of mean `monetary`:
    a weighted mean of the population's p*v/(q-1) and the member's own mean, the weight on
    their own growing with x. Members with frequency 0 get the population mean (their
    `monetary` is ignored). Needs q > 1, or the population mean is infinite."""
    x = np.asarray(frequency, dtype=float)
    m = np.where(x > 0, np.asarray(monetary, dtype=float), 0.0)
    p, q, v = params.p, params.q, params.v
    if q <= 1:
        raise ValueError("expected spend needs q > 1 (the mean order value is infinite)")
    return p * (v + x * m) / (p * x + q - 1)


def simulate_gamma_gamma(
    params: GammaGammaParams, frequency: ArrayLike, rng: np.random.Generator
) -> FloatArray:
    """Draw each member's mean repeat-purchase value given their frequency (0 where frequency
    is 0). For tests and evaluation."""
    x = np.asarray(frequency, dtype=float)
    nu = rng.gamma(params.q, 1 / params.v, len(x))
    # The mean of x Gamma(p, rate nu) orders is Gamma(p x, rate x nu).
    mean = rng.gamma(params.p * np.maximum(x, 1), 1 / (np.maximum(x, 1) * nu))
    return np.where(x > 0, mean, 0.0)


def _repeat_spend(frequency: ArrayLike, monetary: ArrayLike) -> tuple[FloatArray, FloatArray]:
    x, m = np.asarray(frequency, dtype=float), np.asarray(monetary, dtype=float)
    if x.ndim != 1 or x.shape != m.shape:
        raise ValueError("frequency and monetary must be 1-d arrays of one length")
    repeat = x > 0
    x, m = x[repeat], m[repeat]
    if len(x) == 0:
        raise FitFailed("no member has a repeat purchase")
    if not (np.all(np.isfinite(m)) and np.all(m > 0)):
        raise ValueError("the mean repeat-purchase value must be finite and above 0")
    return x, m
