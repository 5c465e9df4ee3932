"""What the lifetime-value models share (``loyalty.insight.bgnbd``,
``loyalty.insight.gamma_gamma``; the overview and the choice of library are in
``loyalty.insight.clv``): the fitted parameters' record, the refusal of a history that does
not identify them, the checks on the inputs, and the maximiser of a log-likelihood.

Pure computation over numpy arrays; no database, no Flask.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize

TIME_UNIT = "days"

# The optimiser works on log-parameters of data rescaled to a mean of 1; beyond e**±20 a
# parameter is not being estimated but pushed to the edge by a history that cannot identify it.
_LOG_BOUND = 20.0

FloatArray = NDArray[np.float64]
P = TypeVar("P")


class FitFailed(ValueError):
    """The history does not determine the model's parameters (too few or too uniform members)."""


@dataclass(frozen=True)
class Fit(Generic[P]):
    """Fitted parameters with what an analyst needs to check them against their own tools:
    the maximised log-likelihood (summed over members, on the data as given), the number of
    members it was fitted on, and the time unit of the inputs and of alpha. The BG/NBD
    log-likelihood depends on the unit: in weeks it is larger by ln(7) per repeat purchase."""

    params: P
    log_likelihood: float
    customers: int
    time_unit: str = TIME_UNIT


def rfm_arrays(
    frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The members' (frequency, recency, T) as float arrays (see ``loyalty.insight.clv``).
    Raises ValueError when they are not one history per member."""
    x, t_x, t = (np.asarray(a, dtype=float) for a in (frequency, recency, T))
    if x.ndim != 1 or x.shape != t_x.shape or x.shape != t.shape:
        raise ValueError("frequency, recency and T must be 1-d arrays of one length")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(x))):
        raise ValueError("frequency and T must be finite")
    if np.any(x < 0) or np.any(x != np.round(x)):
        raise ValueError("frequency must count repeat purchase days: whole numbers, 0 or more")
    if not np.all((t_x >= 0) & (t_x <= t)):
        raise ValueError("recency must lie between 0 and T")
    if np.any(t_x[x == 0] != 0):
        raise ValueError("recency must be 0 without repeat purchases")
    return x, t_x, t


def distinct_rows(*columns: FloatArray) -> tuple[tuple[FloatArray, ...], NDArray[np.intp]]:
    """The distinct rows of the columns, and for each input row the index of its distinct row.
    (A lexicographic sort and a scan: np.unique(axis=0) takes seconds at a million rows.)"""
    order = np.lexsort(columns[::-1])
    sorted_columns = tuple(column[order] for column in columns)
    starts_row = np.zeros(len(order), dtype=bool)
    starts_row[0:1] = True
    for column in sorted_columns:
        starts_row[1:] |= column[1:] != column[:-1]
    row_of = np.empty(len(order), dtype=np.intp)
    row_of[order] = np.cumsum(starts_row) - 1
    return tuple(column[starts_row] for column in sorted_columns), row_of


def maximise(
    neg_ll: Callable[[FloatArray], tuple[float, FloatArray]], customers: int, names: str
) -> FloatArray:
    """Minimise `neg_ll` over the log-parameters `names`, starting from all parameters at 1
    (the data is rescaled to a mean of 1), or raise FitFailed. The objective is divided by the
    number of customers, so the optimiser's tolerances mean the same at a thousand members
    and at a million."""

    def mean_neg_ll(theta: FloatArray) -> tuple[float, FloatArray]:
        value, grad = neg_ll(theta)
        return value / customers, grad / customers

    result = optimize.minimize(
        mean_neg_ll,
        np.zeros(len(names.split())),
        jac=True,
        method="L-BFGS-B",
        bounds=[(-_LOG_BOUND, _LOG_BOUND)] * len(names.split()),
    )
    if not result.success:
        raise FitFailed(f"the likelihood was not maximised: {result.message}")
    at_bound = [n for n, v in zip(names.split(), result.x, strict=True) if abs(v) > _LOG_BOUND - 1]
    if at_bound:
        raise FitFailed(f"the history does not identify {', '.join(at_bound)}")
    return np.asarray(result.x, dtype=float)
