"""The validation of an experiment's definition: each mistake named under its field path."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from loyalty.errors import ValidationFailed
from loyalty.experiments.definitions import (
    ArmDefinition,
    Eligibility,
    ExperimentChanges,
    ExperimentDefinition,
    check_definition,
)

RULE_A = "0b7e5b4e-8f35-4f4a-9d4c-3c1f3a0f6a01"
RULE_B = "5d0f6c1e-2a4b-4a8e-b1f0-77c9a2e8d402"
AUTOMATION = "9a1d2c3b-4e5f-4a6b-8c7d-0e1f2a3b4c5d"
T0 = dt.datetime(2031, 3, 1, tzinfo=dt.UTC)


def rules_experiment(**fields: Any) -> ExperimentDefinition:
    values: dict[str, Any] = {
        "key": "weekend-double",
        "name": "Double points on weekends",
        "hypothesis": "Double weekend points raise weekend orders by more than they cost.",
        "target": {"kind": "rules", "rule_ids": [RULE_A, RULE_B]},
        "arms": (
            ArmDefinition("control", 1, control=True, rule_ids=(RULE_A,)),
            ArmDefinition("double", 1, rule_ids=(RULE_A, RULE_B)),
        ),
        "starts_at": T0,
        "ends_at": T0 + dt.timedelta(days=28),
        "margin": "0.35",
    }
    return ExperimentDefinition(**(values | fields))


def problems(definition: ExperimentDefinition) -> dict[str, list[str]]:
    with pytest.raises(ValidationFailed) as refused:
        check_definition(definition)
    errors: dict[str, list[str]] = refused.value.extra["errors"]
    return errors


def test_a_rules_experiment_with_a_control_validates():
    check_definition(rules_experiment())


def test_an_automation_holdout_validates():
    check_definition(
        rules_experiment(
            target={"kind": "automation", "automation_id": AUTOMATION},
            arms=(
                ArmDefinition("holdout", 1, control=True, applies=False),
                ArmDefinition("fires", 9, applies=True),
            ),
            eligibility=Eligibility(segments=("lapsed",), new_members_only=True),
        )
    )


def test_a_benefit_target_names_its_code():
    arms = (
        ArmDefinition("control", 1, control=True, applies=False),
        ArmDefinition("free-shipping", 1, applies=True),
    )
    check_definition(rules_experiment(target={"kind": "benefit", "code": "ship"}, arms=arms))
    assert problems(rules_experiment(target={"kind": "benefit", "code": ""}, arms=arms)) == {
        "target.code": ["A benefit target names a benefit code."]
    }


@pytest.mark.parametrize("key", ["", "Weekend", "weekend double", "-weekend", "a" * 65])
def test_the_key_is_a_slug(key):
    assert list(problems(rules_experiment(key=key))) == ["key"]


@pytest.mark.parametrize("controls", [0, 2])
def test_exactly_one_arm_is_the_control(controls):
    arms = (
        ArmDefinition("a", 1, control=controls > 0, rule_ids=()),
        ArmDefinition("b", 1, control=controls > 1, rule_ids=(RULE_A,)),
    )
    assert problems(rules_experiment(arms=arms)) == {
        "arms": ["Exactly one arm must be the control."]
    }


def test_the_arms_are_checked_by_the_assignment():
    arms = (ArmDefinition("control", 0, control=True, rule_ids=()),)
    assert problems(rules_experiment(arms=arms))["arms"] == [
        "An experiment needs at least two arms.",
        "Arm weights must be positive integers.",
    ]


def test_an_arm_varies_only_the_targets_rules():
    other = "11111111-2222-4333-8444-555555555555"
    arms = (
        ArmDefinition("control", 1, control=True, rule_ids=()),
        ArmDefinition("other", 1, rule_ids=(other,)),
    )
    assert problems(rules_experiment(arms=arms)) == {
        "arms.1.rule_ids": ["Only rules of the experiment's target."]
    }


def test_what_an_arm_gets_matches_the_target_kind():
    arms = (
        ArmDefinition("control", 1, control=True, applies=False),
        ArmDefinition("double", 1, rule_ids=(RULE_A,)),
    )
    assert problems(rules_experiment(arms=arms)) == {
        "arms.0.applies": ["Arms of a rules target name their rule_ids."],
        "arms.0.rule_ids": ["Which of the target's rules apply ([]: none)."],
    }
    automation = {"kind": "automation", "automation_id": AUTOMATION}
    assert problems(rules_experiment(target=automation, arms=arms)) == {
        "arms.1.rule_ids": ["Only arms of a rules target name rules."],
        "arms.1.applies": ["Whether the target applies to the arm."],
    }


@pytest.mark.parametrize(
    ("target", "field"),
    [
        ({"kind": "coupon"}, "target.kind"),
        ({"kind": "rules", "rule_ids": []}, "target.rule_ids"),
        ({"kind": "rules", "rule_ids": ["not-a-uuid"]}, "target.rule_ids"),
        ({"kind": "rules", "rule_ids": [RULE_A, RULE_A]}, "target.rule_ids"),
        ({"kind": "automation", "automation_id": 7}, "target.automation_id"),
        ({"kind": "rules", "rule_ids": [RULE_A], "code": "x", "extra": 1}, "target"),
    ],
)
def test_a_broken_target_is_named_once(target, field):
    # Once the target is broken, the arms are not read against it.
    assert list(problems(rules_experiment(target=target))) == [field]


def test_the_window_ends_after_it_starts():
    assert problems(rules_experiment(ends_at=T0)) == {"ends_at": ["After starts_at."]}


def test_times_are_timezone_aware():
    naive = dt.datetime(2031, 4, 1)  # noqa: DTZ001 - the mistake under test
    assert problems(rules_experiment(ends_at=naive)) == {"ends_at": ["A timezone-aware time."]}


@pytest.mark.parametrize("margin", ["0", "1", "0.35", "1.0000", "0.0001"])
def test_a_margin_is_a_share_from_0_to_1(margin):
    check_definition(rules_experiment(margin=margin))


@pytest.mark.parametrize("margin", ["", "1.01", "-0.1", "0.12345", "35%", "NaN", ".5"])
def test_a_margin_outside_0_to_1_is_refused(margin):
    assert list(problems(rules_experiment(margin=margin))) == ["margin"]


def test_eligibility_keys_are_unique_and_non_empty():
    eligibility = Eligibility(segments=("vip", "vip"), tiers=("",))
    assert problems(rules_experiment(eligibility=eligibility)) == {
        "eligibility.segments": ["Keys must be unique."],
        "eligibility.tiers": ["Non-empty keys."],
    }


def test_a_change_replaces_only_the_fields_given():
    definition = rules_experiment()
    changes = ExperimentChanges(name="Weekend x2", margin="0.4")
    assert changes.given() == {"name", "margin"}
    assert changes.applied_to(definition) == dataclasses.replace(
        definition, name="Weekend x2", margin="0.4"
    )
