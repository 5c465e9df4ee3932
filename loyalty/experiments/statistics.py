"""The results of an experiment against its control arm: uplift with its uncertainty.

Pure computation over numpy arrays, one entry per member exposed to the experiment; no
database, no Flask. The per-member outcomes: whether the member ordered in the window, their
revenue and the cost of the points they earned (both integer minor units). Net value per
member is revenue times the margin minus points cost.

What is computed against control, all with scipy (no statsmodels: scipy covers every test):

- conversion, absolute uplift (difference of proportions): the Newcombe hybrid score interval
  (Newcombe 1998, "Interval estimation for the difference between independent proportions",
  Statistics in Medicine 17, method 10), built from each arm's Wilson interval as
  ``scipy.stats.binomtest(...).proportion_ci(method="wilson")`` gives it; unlike the Wald
  interval it stays inside [-1, 1] and keeps its coverage when a rate is near 0. The p-value
  is Pearson's chi-square on the 2x2 table (``scipy.stats.chi2_contingency`` without Yates'
  correction), which is the two-sided pooled z-test for two proportions.
- conversion, relative uplift (treated rate / control rate - 1): the Katz log interval of the
  risk ratio (``scipy.stats.contingency.relative_risk``), a delta-method interval on the log
  scale, minus one. Undefined (nan) when either arm has no conversion. Its p-value is the
  absolute uplift's: both test the same null hypothesis, equal rates.
- revenue and net value per member: difference of means with Welch's t-test and interval
  (``scipy.stats.ttest_ind(equal_var=False)``). Why Welch and not a bootstrap: revenue per
  member is skewed with many zeros, but what is estimated is a mean over hundreds or thousands
  of members, whose sampling distribution the central limit theorem makes near normal; Welch
  allows the arms different variances and sizes, is exact arithmetic on four sums (instant at a
  million members) and gives the same answer on every run, where a bootstrap costs thousands of
  resamples and needs a seed to be reproducible, and its percentile interval undercovers for
  skewed data about as much as Welch does. The simulation in
  tests/unit/test_experiment_statistics.py measures the coverage on lognormal revenue with
  zeros. With a few dozen members per arm and a heavy tail neither method is trustworthy:
  read the member counts beside the interval.
- sample-ratio mismatch: Pearson's chi-square goodness of fit (``scipy.stats.chisquare``) of
  the members exposed per arm against the weights. A mismatch means assignment or exposure
  recording is broken, and then no uplift can be trusted. It is flagged at p < 0.001, not at
  0.05: the check runs on every look at every experiment, and at 0.05 one healthy experiment
  in twenty would be flagged; a real defect (a 52/48 split at 20,000 members) has p ~ 1e-8.

Floats live only here, for estimation; money that is booked stays integer minor units, and the
inputs are integers. Intervals are two-sided at `confidence` (95% by default).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

import numpy as np
from numpy.typing import NDArray
from scipy import stats
from scipy.stats.contingency import relative_risk

from loyalty.experiments.assignment import arm_problems

# The start of scipy's warning for samples whose values are (nearly) all the same.
PRECISION_LOSS = "Precision loss occurred in moment calculation"

SRM_THRESHOLD = 0.001
"""Sample-ratio mismatch is flagged below this p-value (see the module docstring for why)."""


@dataclass(frozen=True)
class ArmOutcomes:
    """One arm's members: its weight in the design and one entry per member exposed."""

    key: str
    weight: int
    ordered: NDArray[np.bool_]
    revenue: NDArray[np.int64]
    points_cost: NDArray[np.int64]


@dataclass(frozen=True)
class Estimate:
    """A treated-minus-control effect, its interval and the p-value of "no effect"."""

    value: float
    low: float
    high: float
    p_value: float


@dataclass(frozen=True)
class ArmSummary:
    key: str
    exposed: int
    converted: int
    conversion_rate: float
    revenue_per_member: float
    points_cost_per_member: float
    net_value_per_member: float


@dataclass(frozen=True)
class Comparison:
    """One treated arm against control."""

    key: str
    conversion_uplift: Estimate
    conversion_relative_uplift: Estimate
    revenue_per_member_uplift: Estimate
    net_value_per_member_uplift: Estimate


@dataclass(frozen=True)
class SampleRatio:
    observed: tuple[int, ...]
    expected: tuple[float, ...]
    statistic: float
    p_value: float
    mismatch: bool


@dataclass(frozen=True)
class ExperimentResults:
    control: str
    arms: tuple[ArmSummary, ...]
    comparisons: tuple[Comparison, ...]
    sample_ratio: SampleRatio


def analyse(
    arms: Sequence[ArmOutcomes],
    control: str,
    margin: Fraction | Decimal,
    confidence: float = 0.95,
) -> ExperimentResults:
    """Each arm's summary, each other arm against `control`, and the sample-ratio check.

    Raises ValueError when the arms are not a valid design (see
    loyalty.experiments.assignment), `control` is not one of them, an arm has fewer than two
    members or arrays of different lengths, or the margin is outside [0, 1].
    """
    problems = arm_problems([(arm.key, arm.weight) for arm in arms])
    if problems:
        raise ValueError(" ".join(problems))
    by_key = {arm.key: arm for arm in arms}
    if control not in by_key:
        raise ValueError(f"the control arm {control!r} is not one of the arms")
    margin = Fraction(margin)
    if not 0 <= margin <= 1:
        raise ValueError("the margin must be between 0 and 1")
    for arm in arms:
        sizes = {len(arm.ordered), len(arm.revenue), len(arm.points_cost)}
        if len(sizes) != 1 or sizes.pop() < 2:
            raise ValueError(f"arm {arm.key!r} needs at least two members and equal arrays")

    nets = {arm.key: net_values(arm, margin) for arm in arms}
    base = by_key[control]
    comparisons = []
    for arm in arms:
        if arm.key == control:
            continue
        absolute, relative = conversion_uplift(
            int(arm.ordered.sum()),
            len(arm.ordered),
            int(base.ordered.sum()),
            len(base.ordered),
            confidence,
        )
        comparisons.append(
            Comparison(
                key=arm.key,
                conversion_uplift=absolute,
                conversion_relative_uplift=relative,
                revenue_per_member_uplift=mean_difference(arm.revenue, base.revenue, confidence),
                net_value_per_member_uplift=mean_difference(
                    nets[arm.key], nets[control], confidence
                ),
            )
        )
    return ExperimentResults(
        control=control,
        arms=tuple(summarise(arm, nets[arm.key]) for arm in arms),
        comparisons=tuple(comparisons),
        sample_ratio=sample_ratio([len(arm.ordered) for arm in arms], [arm.weight for arm in arms]),
    )


def net_values(arm: ArmOutcomes, margin: Fraction) -> NDArray[np.float64]:
    """Each member's revenue times the margin minus points cost, in minor units."""
    revenue = np.asarray(arm.revenue, dtype=np.float64)
    return revenue * float(margin) - np.asarray(arm.points_cost, dtype=np.float64)


def summarise(arm: ArmOutcomes, net: NDArray[np.float64]) -> ArmSummary:
    converted = int(np.count_nonzero(arm.ordered))
    return ArmSummary(
        key=arm.key,
        exposed=len(arm.ordered),
        converted=converted,
        conversion_rate=converted / len(arm.ordered),
        revenue_per_member=float(np.mean(arm.revenue)),
        points_cost_per_member=float(np.mean(arm.points_cost)),
        net_value_per_member=float(np.mean(net)),
    )


def conversion_uplift(
    treated_converted: int,
    treated_exposed: int,
    control_converted: int,
    control_exposed: int,
    confidence: float = 0.95,
) -> tuple[Estimate, Estimate]:
    """The absolute (difference of rates) and relative (ratio of rates - 1) uplift.

    Methods in the module docstring; the relative estimate is all nan but its p-value when
    either arm has no conversion.
    """
    p1 = treated_converted / treated_exposed
    p0 = control_converted / control_exposed
    wilson1 = stats.binomtest(treated_converted, treated_exposed).proportion_ci(
        confidence, method="wilson"
    )
    wilson0 = stats.binomtest(control_converted, control_exposed).proportion_ci(
        confidence, method="wilson"
    )
    difference = p1 - p0
    low = difference - math.hypot(p1 - wilson1.low, wilson0.high - p0)
    high = difference + math.hypot(wilson1.high - p1, p0 - wilson0.low)

    converted = treated_converted + control_converted
    if converted in (0, treated_exposed + control_exposed):
        # Everyone or no one converted: the table has an empty column and no evidence of a
        # difference; chi2_contingency refuses such a table.
        p_value = 1.0
    else:
        table = [
            [treated_converted, treated_exposed - treated_converted],
            [control_converted, control_exposed - control_converted],
        ]
        p_value = float(stats.chi2_contingency(table, correction=False).pvalue)
    absolute = Estimate(difference, low, high, p_value)

    if treated_converted == 0 or control_converted == 0:
        return absolute, Estimate(math.nan, math.nan, math.nan, p_value)
    ratio = relative_risk(treated_converted, treated_exposed, control_converted, control_exposed)
    ratio_ci = ratio.confidence_interval(confidence)
    relative = Estimate(
        float(ratio.relative_risk) - 1, float(ratio_ci.low) - 1, float(ratio_ci.high) - 1, p_value
    )
    return absolute, relative


def mean_difference(
    treated: NDArray[np.generic], control: NDArray[np.generic], confidence: float = 0.95
) -> Estimate:
    """Treated mean minus control mean, with Welch's t interval and p-value (two-sided).

    When both arms have no variance (every member of each the same value) the interval is
    the difference itself, and the p-value nan for equal values, 0 for different ones.
    """
    treated = np.asarray(treated, dtype=np.float64)
    control = np.asarray(control, dtype=np.float64)
    with warnings.catch_warnings():
        # The values are whole minor units: an arm whose members all have the same one has
        # exactly no variance, which scipy's check for catastrophic cancellation mistakes
        # for precision lost (a members' points cost when none of them ordered, say).
        warnings.filterwarnings("ignore", PRECISION_LOSS, RuntimeWarning)
        test = stats.ttest_ind(treated, control, equal_var=False)
    interval = test.confidence_interval(confidence)
    return Estimate(
        float(treated.mean() - control.mean()),
        float(interval.low),
        float(interval.high),
        float(test.pvalue),
    )


def sample_ratio(exposed: Sequence[int], weights: Sequence[int]) -> SampleRatio:
    """Whether the members exposed per arm fit the designed weights (chi-square, p < 0.001)."""
    total = sum(exposed)
    expected = [total * weight / sum(weights) for weight in weights]
    test = stats.chisquare(exposed, expected)
    p_value = float(test.pvalue)
    return SampleRatio(
        observed=tuple(int(n) for n in exposed),
        expected=tuple(expected),
        statistic=float(test.statistic),
        p_value=p_value,
        mismatch=p_value < SRM_THRESHOLD,
    )
