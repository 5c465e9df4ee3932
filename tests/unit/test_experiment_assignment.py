"""Deterministic arm assignment: pinned answers, balance and independence at 100,000 members,
and the validation of the arms.

The member ids are fixed ("member-0" ... "member-99999"), so every statistical test here gives
the same p-value on every run: it cannot flake, and a change of hash that skews assignment
fails it.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from loyalty.errors import ValidationFailed
from loyalty.experiments.assignment import ArmSplit, assign_arm, hash_point

HALVES = [("control", 1), ("treatment", 1)]
TENTHS = [("control", 10), ("small", 30), ("large", 60)]
MEMBERS = [f"member-{i}" for i in range(100_000)]


def counts(experiment_key: str, arms: list[tuple[str, int]]) -> list[int]:
    split = ArmSplit.of(arms)
    assigned = [split.arm_for(experiment_key, member) for member in MEMBERS]
    return [assigned.count(key) for key, _ in arms]


def test_the_hash_is_the_first_8_bytes_of_sha256_big_endian():
    # printf 'weekend-double:m-1' | sha256sum  ->  11a0eecbfbd16f86...
    assert hash_point("weekend-double", "m-1") == 0x11A0EECBFBD16F86


@pytest.mark.parametrize(
    ("member", "halves", "tenths"),
    [
        ("m-1", "control", "large"),
        ("m-2", "control", "control"),
        ("m-3", "treatment", "large"),
        ("m-5", "control", "small"),
        ("alice", "treatment", "large"),
        ("bob", "control", "small"),
    ],
)
def test_known_members_get_their_pinned_arms(member, halves, tenths):
    # Computed once and written here: a change of hash or of interval arithmetic moves
    # members of running experiments between arms, and must break this test.
    assert assign_arm("weekend-double", member, HALVES) == halves
    assert assign_arm("winback", member, TENTHS) == tenths


@pytest.mark.parametrize("arms", [HALVES, TENTHS], ids=["50/50", "10/30/60"])
def test_assignment_is_balanced_to_the_weights_at_100000_members(arms):
    observed = counts("balance", arms)
    total_weight = sum(weight for _, weight in arms)
    expected = [len(MEMBERS) * weight / total_weight for _, weight in arms]

    assert stats.chisquare(observed, expected).pvalue > 0.001


def test_the_same_member_is_split_independently_by_two_experiments():
    first = ArmSplit.of(HALVES)
    second = ArmSplit.of(TENTHS)
    table = np.zeros((2, 3), dtype=np.int64)
    for member in MEMBERS:
        row = first.keys.index(first.arm_for("weekend-double", member))
        column = second.keys.index(second.arm_for("winback", member))
        table[row, column] += 1

    assert stats.chi2_contingency(table).pvalue > 0.001


def test_the_order_of_the_arms_is_part_of_the_design():
    # The same weights in another order give other intervals: members move. Documented in
    # the module, and the reason a running experiment's arms cannot be changed.
    forward = ArmSplit.of(HALVES)
    backward = ArmSplit.of(list(reversed(HALVES)))
    moved = sum(
        forward.arm_for("order", member) != backward.arm_for("order", member)
        for member in MEMBERS[:1000]
    )

    assert moved > 400


arm_lists = st.lists(
    st.tuples(st.text(min_size=1, max_size=8), st.integers(min_value=1, max_value=1000)),
    min_size=2,
    max_size=6,
    unique_by=lambda arm: arm[0],
)


@given(arms=arm_lists, experiment=st.text(), member=st.text())
def test_the_arm_is_always_one_of_the_arms_and_the_same_on_every_call(arms, experiment, member):
    arm = assign_arm(experiment, member, arms)

    assert arm in {key for key, _ in arms}
    assert assign_arm(experiment, member, arms) == arm


@given(arms=arm_lists, factor=st.integers(min_value=2, max_value=1000), member=st.text())
def test_scaling_every_weight_moves_no_member(arms, factor, member):
    scaled = [(key, weight * factor) for key, weight in arms]

    assert assign_arm("scale", member, scaled) == assign_arm("scale", member, arms)


@given(arms=arm_lists, member=st.text())
def test_the_first_arm_takes_exactly_the_members_whose_point_is_below_its_weight(arms, member):
    # The documented rule, checked from the hash up: the first interval is [0, w0), whatever
    # arms follow it.
    split = ArmSplit.of(arms)
    point = hash_point("first", member) * split.total // 2**64

    assert (split.arm_for("first", member) == split.keys[0]) == (point < split.weights[0])


@pytest.mark.parametrize(
    ("arms", "problem"),
    [
        ([("control", 1)], "at least two arms"),
        ([], "at least two arms"),
        ([("a", 1), ("a", 2)], "unique"),
        ([("a", 1), ("", 1)], "non-empty key"),
        ([("a", 1), ("b", 0)], "positive integers"),
        ([("a", 1), ("b", -3)], "positive integers"),
        ([("a", 1), ("b", 1.5)], "positive integers"),
        ([("a", 1), ("b", True)], "positive integers"),
    ],
)
def test_invalid_arms_are_refused_with_what_is_wrong(arms, problem):
    with pytest.raises(ValidationFailed) as refused:
        assign_arm("e", "m", arms)

    assert refused.value.code == "validation_error"
    assert any(problem in message for message in refused.value.extra["errors"]["arms"])
