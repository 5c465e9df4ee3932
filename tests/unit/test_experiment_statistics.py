"""The statistics of an experiment's results, proven by simulation.

Members are assigned to arms by the real assignment code; their outcomes are drawn with a known
uplift by a seeded numpy Generator, 400 experiments per check. A 95% interval must cover the
true uplift in about 95% of them: with 400 runs the count of covers is binomial with a standard
deviation of 1.1 points, so [0.92, 0.98] is about 2.7 standard deviations each side, and an
interval that is too narrow (a wrong variance, a z for a t) or off-centre falls outside it.
Seeds are fixed, so every run gives the same numbers: these tests cannot flake.
"""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from loyalty.experiments.assignment import ArmSplit
from loyalty.experiments.statistics import (
    SRM_THRESHOLD,
    ArmOutcomes,
    analyse,
    conversion_uplift,
    mean_difference,
    sample_ratio,
)

RUNS = 400
HALVES = ArmSplit.of([("control", 1), ("treatment", 1)])
POPULATION = [f"sim-{i}" for i in range(4000)]
# Whether each member of the population is treated, fixed once by the real assignment.
TREATED = np.array([HALVES.arm_for("simulation", m) == "treatment" for m in POPULATION])

CONTROL_RATE = 0.10
TREATED_RATE = 0.12
# Revenue of a member who ordered: lognormal (median e**8.5 ~ 4,900 minor units, mean ~ 8,100).
LOG_MEAN, LOG_SIGMA = 8.5, 1.0
ORDER_MEAN = math.exp(LOG_MEAN + LOG_SIGMA**2 / 2)


def arm(key: str, ordered, revenue, points_cost=None, weight: int = 1) -> ArmOutcomes:
    ordered = np.asarray(ordered, dtype=np.bool_)
    revenue = np.asarray(revenue, dtype=np.int64)
    cost = np.zeros_like(revenue) if points_cost is None else np.asarray(points_cost, np.int64)
    return ArmOutcomes(key, weight, ordered, revenue, cost)


def simulate(seed: int, treated_rate: float):
    """One experiment over the population: conversion and revenue per member, drawn."""
    rng = np.random.default_rng(seed)
    rates = np.where(TREATED, treated_rate, CONTROL_RATE)
    ordered = rng.random(len(POPULATION)) < rates
    # Non-buyers spend nothing: the many zeros that make revenue per member skewed.
    revenue = np.where(ordered, np.rint(rng.lognormal(LOG_MEAN, LOG_SIGMA, len(POPULATION))), 0)
    return analyse(
        [
            arm("control", ordered[~TREATED], revenue[~TREATED]),
            arm("treatment", ordered[TREATED], revenue[TREATED]),
        ],
        control="control",
        margin=Fraction(1, 3),
    )


@pytest.fixture(scope="module")
def uplifted():
    return [simulate(seed, TREATED_RATE).comparisons[0] for seed in range(RUNS)]


@pytest.fixture(scope="module")
def null():
    return [simulate(10_000 + seed, CONTROL_RATE).comparisons[0] for seed in range(RUNS)]


def coverage(estimates, truth: float) -> float:
    return sum(e.low <= truth <= e.high for e in estimates) / len(estimates)


def test_the_conversion_interval_covers_the_true_uplift_95_percent_of_the_time(uplifted):
    estimates = [c.conversion_uplift for c in uplifted]

    assert 0.92 <= coverage(estimates, TREATED_RATE - CONTROL_RATE) <= 0.98


def test_the_relative_conversion_interval_covers_the_true_ratio(uplifted):
    estimates = [c.conversion_relative_uplift for c in uplifted]

    assert 0.92 <= coverage(estimates, TREATED_RATE / CONTROL_RATE - 1) <= 0.98


def test_the_revenue_interval_covers_the_true_uplift_on_skewed_revenue(uplifted):
    estimates = [c.revenue_per_member_uplift for c in uplifted]

    assert 0.92 <= coverage(estimates, (TREATED_RATE - CONTROL_RATE) * ORDER_MEAN) <= 0.98


def test_the_estimates_are_centred_on_the_truth(uplifted):
    # Coverage alone would pass a wide interval around a biased estimate.
    conversion = np.mean([c.conversion_uplift.value for c in uplifted])
    revenue = np.mean([c.revenue_per_member_uplift.value for c in uplifted])

    assert conversion == pytest.approx(TREATED_RATE - CONTROL_RATE, abs=0.002)
    assert revenue == pytest.approx((TREATED_RATE - CONTROL_RATE) * ORDER_MEAN, rel=0.1)


def test_a_real_uplift_is_detected_most_of_the_time(uplifted):
    # 2,000 members per arm have about 50% power for 10% vs 12%: far above the 5% of the null.
    detected = sum(c.conversion_uplift.p_value < 0.05 for c in uplifted) / RUNS

    assert detected > 0.35


@pytest.mark.parametrize(
    "measure", ["conversion_uplift", "revenue_per_member_uplift", "net_value_per_member_uplift"]
)
def test_p_values_under_no_uplift_are_uniform(null, measure):
    p_values = np.array([getattr(c, measure).p_value for c in null])

    # Binomial(400, 0.05): 20 expected, standard deviation 4.4.
    assert 0.025 <= np.mean(p_values < 0.05) <= 0.08
    assert stats.kstest(p_values, "uniform").pvalue > 0.001


def test_the_sample_ratio_check_fires_on_a_52_48_split_of_a_50_50_design():
    check = sample_ratio([10_400, 9_600], [1, 1])

    assert check.mismatch
    assert check.p_value < SRM_THRESHOLD


def test_the_sample_ratio_check_passes_the_real_assignment():
    tenths = ArmSplit.of([("control", 10), ("small", 30), ("large", 60)])
    assigned = [tenths.arm_for("srm", f"member-{i}") for i in range(20_000)]
    halves = [HALVES.arm_for("srm", f"member-{i}") for i in range(20_000)]

    assert not sample_ratio([assigned.count(k) for k in tenths.keys], tenths.weights).mismatch
    assert not sample_ratio([halves.count(k) for k in HALVES.keys], HALVES.weights).mismatch


def test_summaries_and_net_value_follow_the_definitions():
    results = analyse(
        [
            arm("control", [1, 0, 0, 1], [1000, 0, 0, 3000], [50, 0, 0, 150], weight=1),
            arm("treatment", [1, 1, 0, 1], [2000, 1000, 0, 1000], [200, 100, 0, 100], weight=1),
        ],
        control="control",
        margin=Decimal("0.25"),
    )
    control, treatment = results.arms

    assert (control.exposed, control.converted, control.conversion_rate) == (4, 2, 0.5)
    assert control.revenue_per_member == 1000
    assert control.points_cost_per_member == 50
    # 1000 * 0.25 - 50
    assert control.net_value_per_member == 200
    # 1000 * 0.25 - 100
    assert treatment.net_value_per_member == 150
    comparison = results.comparisons[0]
    assert comparison.key == "treatment"
    assert comparison.revenue_per_member_uplift.value == 0
    assert comparison.net_value_per_member_uplift.value == -50
    assert comparison.conversion_uplift.value == 0.25
    assert comparison.conversion_relative_uplift.value == pytest.approx(0.5)


def test_the_conversion_interval_matches_newcombe_s_published_example():
    # Newcombe (1998), table II, example (a): 56/70 vs 48/80, method 10: 0.0524 to 0.3339.
    absolute, _ = conversion_uplift(56, 70, 48, 80)

    assert absolute.value == pytest.approx(0.2)
    assert (absolute.low, absolute.high) == pytest.approx((0.0524, 0.3339), abs=1e-4)


def test_no_conversion_anywhere_gives_no_evidence_and_no_ratio():
    absolute, relative = conversion_uplift(0, 100, 0, 100)

    assert absolute.value == 0
    assert absolute.p_value == 1.0
    assert math.isnan(relative.value)


def test_an_arm_whose_members_all_have_one_value_is_compared_without_a_warning():
    """Pytest turns warnings into errors: scipy's precision-loss warning would fail this."""
    estimate = mean_difference(np.array([1000, 1200, 900]), np.array([1000] * 5))

    assert estimate.value == pytest.approx(33.33, abs=0.01)
    assert estimate.low < 0 < estimate.high


def test_two_arms_of_one_value_each_differ_by_exactly_that():
    estimate = mean_difference(np.array([344] * 5), np.array([337] * 4))

    assert (estimate.value, estimate.low, estimate.high) == (7, 7, 7)
    assert estimate.p_value == 0


@pytest.mark.parametrize(
    ("arms", "control", "margin"),
    [
        ([arm("a", [1, 0], [1, 0])], "a", Fraction(1, 2)),
        ([arm("a", [1, 0], [1, 0]), arm("b", [1, 0], [1, 0])], "c", Fraction(1, 2)),
        ([arm("a", [1, 0], [1, 0]), arm("b", [1], [1])], "a", Fraction(1, 2)),
        ([arm("a", [1, 0], [1, 0]), arm("b", [1, 0], [1])], "a", Fraction(1, 2)),
        ([arm("a", [1, 0], [1, 0]), arm("b", [1, 0], [1, 0])], "a", Decimal("1.5")),
        ([arm("a", [1, 0], [1, 0]), arm("b", [1, 0], [1, 0], weight=0)], "a", Fraction(1)),
    ],
    ids=["one arm", "unknown control", "one member", "ragged", "margin above 1", "weight 0"],
)
def test_an_invalid_design_is_refused(arms, control, margin):
    with pytest.raises(ValueError):  # noqa: PT011 (each case has its own message)
        analyse(arms, control, margin)
