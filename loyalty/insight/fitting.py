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
LOG_BOUND = 20.0

FloatArray = NDArray[np.float64]
P = TypeVar("P")


class FitFailed(ValueError):
    """The history does not determine the model's parameters (too few or too uniform members)."""


class AtBound(FitFailed):
    """The maximum lies at the edge of the optimiser's box: the parameters in `names` run off
    towards 0 or infinity. `theta` is where the optimiser stopped (on its own scale), for a
    caller that knows the model's limit there."""

    def __init__(self, names: list[str], theta: FloatArray) -> None:
        super().__init__(f"the history does not identify {', '.join(names)}")
        self.names = names
        self.theta = theta


class NotConverged(FitFailed):
    """The optimiser stopped without converging; `theta` is where (on its own scale), for a
    caller that knows a limit of the model the parameters may have been running towards."""

    def __init__(self, message: str, theta: FloatArray) -> None:
        super().__init__(message)
        self.theta = theta


@dataclass(frozen=True)
class Fit(Generic[P]):
    """Fitted parameters with what an analyst needs to check them against their own tools:
    the maximised log-likelihood (summed over members, on the data as given), the number of
    members it was fitted on, the time unit of the inputs and of alpha, and `notes`: what
    the history did not identify and which limit of the model was fitted instead. The BG/NBD
    log-likelihood depends on the unit: in weeks it is larger by ln(7) per repeat purchase."""

    params: P
    log_likelihood: float
    customers: int
    time_unit: str = TIME_UNIT
    notes: tuple[str, ...] = ()


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
    neg_ll: Callable[[FloatArray], tuple[float, FloatArray]],
    customers: int,
    names: str,
    start: ArrayLike | None = None,
) -> FloatArray:
    """Minimise `neg_ll` over the parameters `names` on the optimiser's scale (logs, or the
    logit of a probability), starting from `start` or else from 0 (every log-parameter at 1:
    the data is rescaled to a mean of 1). Raises AtBound when a parameter ends at the edge of
    the box, FitFailed when the optimiser fails. The objective is divided by the number of
    customers, so the optimiser's tolerances mean the same at a thousand members and at a
    million."""

    def mean_neg_ll(theta: FloatArray) -> tuple[float, FloatArray]:
        value, grad = neg_ll(theta)
        return value / customers, grad / customers

    count = len(names.split())
    result = optimize.minimize(
        mean_neg_ll,
        np.zeros(count) if start is None else np.asarray(start, dtype=float),
        jac=True,
        method="L-BFGS-B",
        bounds=[(-LOG_BOUND, LOG_BOUND)] * count,
    )
    theta = np.asarray(result.x, dtype=float)
    at_bound = [n for n, v in zip(names.split(), theta, strict=True) if abs(v) > LOG_BOUND - 1]
    # Checked first: on a ridge running into the box's edge (r and alpha off together) the
    # line search can stop abnormally there (scipy 1.17), and the edge is the answer.
    if at_bound:
        raise AtBound(at_bound, theta)
    if not result.success:
        raise NotConverged(f"the likelihood was not maximised: {result.message}", theta)
    return theta


@dataclass(frozen=True)
class RfmRows:
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
    def of(cls, x: FloatArray, t_x: FloatArray, t: FloatArray) -> RfmRows:
        (x, t_x, t), row_of = distinct_rows(x, t_x, t)
        counts = np.bincount(row_of).astype(np.float64)
        levels, level_of_row = np.unique(x, return_inverse=True)
        level_counts = np.bincount(level_of_row, weights=counts).astype(np.float64)
        return cls(x, t_x, t, counts, levels, level_counts)
