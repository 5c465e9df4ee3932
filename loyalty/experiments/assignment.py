"""Deterministic arm assignment: which arm of an experiment a member belongs to.

Every node and every retry must agree on a member's arm without coordination, so the arm is a
pure function of the experiment's key, the member's external id and the arms. The hash:

1. h = the first 8 bytes of SHA-256(f"{experiment_key}:{member_external_id}" in UTF-8), read
   as a big-endian unsigned integer, so u = h / 2**64 is a point in [0, 1);
2. the arms, in their given order, split [0, total weight) into consecutive intervals, one per
   arm and as wide as its weight;
3. the member's arm is the one whose interval contains u * total.

Step 3 is computed in integers, floor(h * total / 2**64), so no rounding can move a member
across a boundary and scaling every weight by the same factor keeps every member in place.

The order of the arms is part of the experiment's definition: the same weights in another order
give other intervals and so move members between arms. That is why the arms and weights of a
running experiment must not change (a changed weight moves members too), and why the key of
the experiment is in the hash: two experiments split the same members independently.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

from loyalty.errors import ValidationFailed

_HASH_BYTES = 8
_HASH_SPACE = 2 ** (8 * _HASH_BYTES)


def hash_point(experiment_key: str, member_external_id: str) -> int:
    """The member's point h in [0, 2**64) for the experiment (u = h / 2**64)."""
    digest = hashlib.sha256(f"{experiment_key}:{member_external_id}".encode()).digest()
    return int.from_bytes(digest[:_HASH_BYTES], "big")


@dataclass(frozen=True)
class ArmSplit:
    """The validated arms of an experiment, in order, with their cumulative weights.

    Build it once with `ArmSplit.of(arms)` and assign many members with `arm_for`.
    """

    keys: tuple[str, ...]
    weights: tuple[int, ...]
    cumulative: tuple[int, ...]

    @classmethod
    def of(cls, arms: Sequence[tuple[str, int]]) -> ArmSplit:
        """The split of ordered (arm_key, weight) pairs.

        Raises ValidationFailed (code validation_error, under "arms") when there are fewer than
        two arms, a key is repeated or empty, or a weight is not a positive integer.
        """
        problems = arm_problems(arms)
        if problems:
            raise ValidationFailed({"arms": problems}, "The experiment's arms are not valid.")
        keys = tuple(key for key, _ in arms)
        weights = tuple(weight for _, weight in arms)
        return cls(keys, weights, tuple(accumulate(weights)))

    @property
    def total(self) -> int:
        return self.cumulative[-1]

    def arm_for(self, experiment_key: str, member_external_id: str) -> str:
        """The key of the member's arm in the experiment."""
        point = hash_point(experiment_key, member_external_id) * self.total // _HASH_SPACE
        # Few arms: a linear scan reads plainer than bisect and is as fast.
        for key, upper in zip(self.keys, self.cumulative, strict=True):
            if point < upper:
                return key
        raise AssertionError("point beyond the total weight")  # pragma: no cover


def arm_problems(arms: Sequence[tuple[str, int]]) -> list[str]:
    """What is wrong with ordered (arm_key, weight) pairs; empty when they make a valid split."""
    problems = []
    if len(arms) < 2:
        problems.append("An experiment needs at least two arms.")
    keys = [key for key, _ in arms]
    if any(not isinstance(key, str) or not key for key in keys):
        problems.append("Every arm needs a non-empty key.")
    if len(set(keys)) != len(keys):
        problems.append("Arm keys must be unique.")
    # bool is an int subclass; True as a weight is a mistake, not a weight of 1.
    if any(type(weight) is not int or weight <= 0 for _, weight in arms):
        problems.append("Arm weights must be positive integers.")
    return problems


def assign_arm(
    experiment_key: str, member_external_id: str, arms: Sequence[tuple[str, int]]
) -> str:
    """The key of the member's arm among ordered (arm_key, weight) pairs.

    Raises ValidationFailed when the arms are not valid (see `ArmSplit.of`).
    """
    return ArmSplit.of(arms).arm_for(experiment_key, member_external_id)
