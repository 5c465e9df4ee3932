"""What an experiment is, as admins define it: a typed command and its validation.

Pure: no database, no Flask. The service checks what only the database can (the key taken,
the segments live); everything else is checked here, with a message per field path
("arms.1.rule_ids", "target.kind", ...) so the API can point at the faulty field.

Decisions, kept as small as issue 15 needs:
- The key is a slug and never changes: it is in the assignment hash (see ``assignment``), so
  a new key would move every member to another arm.
- The target is one lever: a set of earning rules, one automation or one benefit. An arm
  says what its members get of it: for rules, which of the target's rules apply to them;
  for an automation or a benefit, whether it applies to them at all (`applies`). Exactly one
  arm is the control; a control that gets nothing (no rule, or `applies` false) is a
  holdout, one that gets today's behaviour names it like any arm.
- References (rule ids, automation id, benefit code, tier codes) are checked for shape only
  here; that they exist is for the layer that applies arms, which reads those features. The
  eligibility's segments are checked live by the service, as rules and rewards do.
- The margin is a decimal string in [0, 1] (at most 4 places) and stays a string: it is
  only read, as a Decimal, to compute net value in the results, and SQLite has no decimal.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from loyalty.errors import ValidationFailed
from loyalty.experiments.assignment import arm_problems

KEY_PATTERN = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
KEY_MAX = 64
ARM_KEY_MAX = 32
NAME_MAX = 200
BENEFIT_CODE_MAX = 64
# "0", "1", "0.35", "1.0000": a share of revenue kept, never above all of it.
MARGIN_PATTERN = re.compile(r"^(?:0(?:\.\d{1,4})?|1(?:\.0{1,4})?)$")


class TargetKind(enum.StrEnum):
    RULES = "rules"
    AUTOMATION = "automation"
    BENEFIT = "benefit"


@dataclass(frozen=True, slots=True)
class ArmDefinition:
    """One arm, in the experiment's order (the order is part of the assignment).

    `rule_ids` is for a rules target (the target's rules that apply to the arm's members),
    `applies` for an automation or a benefit target (whether it applies to them); the other
    stays None.
    """

    key: str
    weight: int
    control: bool = False
    rule_ids: tuple[str, ...] | None = None
    applies: bool | None = None

    def as_fields(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "weight": self.weight,
            "control": self.control,
            "rule_ids": list(self.rule_ids) if self.rule_ids is not None else None,
            "applies": self.applies,
        }


@dataclass(frozen=True, slots=True)
class Eligibility:
    """Who may be exposed: members in any of `segments` (saved segment keys) and any of
    `tiers` (tier codes), new members only if said; empty lists narrow nothing."""

    segments: tuple[str, ...] = ()
    tiers: tuple[str, ...] = ()
    new_members_only: bool = False

    def as_fields(self) -> dict[str, Any]:
        return {
            "segments": list(self.segments),
            "tiers": list(self.tiers),
            "new_members_only": self.new_members_only,
        }


@dataclass(frozen=True, slots=True)
class ExperimentDefinition:
    """A new experiment (created as a draft). `target` is {"kind": "rules", "rule_ids": [...]},
    {"kind": "automation", "automation_id": ...} or {"kind": "benefit", "code": ...}."""

    key: str
    name: str
    hypothesis: str
    target: Mapping[str, Any]
    arms: tuple[ArmDefinition, ...]
    starts_at: dt.datetime
    ends_at: dt.datetime
    margin: str
    eligibility: Eligibility = field(default_factory=Eligibility)


# What a change may replace; the key never changes (see the module's docstring).
CHANGEABLE_FIELDS = (
    "name",
    "hypothesis",
    "target",
    "arms",
    "eligibility",
    "starts_at",
    "ends_at",
    "margin",
)
# What may change once the experiment is no longer a draft: words, not what members get.
DESCRIPTIVE_FIELDS = frozenset({"name", "hypothesis"})


@dataclass(frozen=True, slots=True)
class ExperimentChanges:
    """A change of an experiment: the fields given replace the current ones whole."""

    name: str | None = None
    hypothesis: str | None = None
    target: Mapping[str, Any] | None = None
    arms: tuple[ArmDefinition, ...] | None = None
    eligibility: Eligibility | None = None
    starts_at: dt.datetime | None = None
    ends_at: dt.datetime | None = None
    margin: str | None = None

    def given(self) -> frozenset[str]:
        """The names of the fields this change replaces."""
        return frozenset(name for name in CHANGEABLE_FIELDS if getattr(self, name) is not None)

    def applied_to(self, definition: ExperimentDefinition) -> ExperimentDefinition:
        return dataclasses.replace(
            definition, **{name: getattr(self, name) for name in self.given()}
        )


def _is_uuid(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _target_problems(target: Mapping[str, Any]) -> dict[str, list[str]]:
    kind = target.get("kind")
    if kind == TargetKind.RULES:
        rule_ids = target.get("rule_ids")
        if not isinstance(rule_ids, list | tuple) or not rule_ids:
            return {"target.rule_ids": ["A rules target names at least one rule id."]}
        if not all(_is_uuid(rule_id) for rule_id in rule_ids):
            return {"target.rule_ids": ["Rule ids are UUIDs."]}
        if len(set(rule_ids)) != len(rule_ids):
            return {"target.rule_ids": ["Rule ids must be unique."]}
    elif kind == TargetKind.AUTOMATION:
        if not _is_uuid(target.get("automation_id")):
            return {"target.automation_id": ["An automation target names an automation id."]}
    elif kind == TargetKind.BENEFIT:
        code = target.get("code")
        if not isinstance(code, str) or not code or len(code) > BENEFIT_CODE_MAX:
            return {"target.code": ["A benefit target names a benefit code."]}
    else:
        return {"target.kind": [f"One of {', '.join(kind.value for kind in TargetKind)}."]}
    extra = set(target) - {"kind", "rule_ids", "automation_id", "code"}
    if extra:
        return {"target": [f"Unknown fields: {', '.join(sorted(extra))}."]}
    return {}


def _arm_problems(
    arms: Sequence[ArmDefinition], target: Mapping[str, Any] | None
) -> dict[str, list[str]]:
    """The arms' problems; what each arm gets is read only against a valid `target`."""
    problems: dict[str, list[str]] = {}
    split = arm_problems([(arm.key, arm.weight) for arm in arms])
    if sum(1 for arm in arms if arm.control is True) != 1:
        split.append("Exactly one arm must be the control.")
    if split:
        problems["arms"] = split
    for position, arm in enumerate(arms):
        path = f"arms.{position}"
        if isinstance(arm.key, str) and (
            len(arm.key) > ARM_KEY_MAX or not KEY_PATTERN.match(arm.key)
        ):
            problems[f"{path}.key"] = [f"A slug (a-z, 0-9, hyphens) of at most {ARM_KEY_MAX}."]
        if target is None:
            continue
        if target["kind"] == TargetKind.RULES:
            if arm.applies is not None:
                problems[f"{path}.applies"] = ["Arms of a rules target name their rule_ids."]
            if arm.rule_ids is None:
                problems[f"{path}.rule_ids"] = ["Which of the target's rules apply ([]: none)."]
            elif len(set(arm.rule_ids)) != len(arm.rule_ids):
                problems[f"{path}.rule_ids"] = ["Rule ids must be unique."]
            elif not set(arm.rule_ids) <= set(target["rule_ids"]):
                # An arm can only vary the rules under test; others apply to everyone.
                problems[f"{path}.rule_ids"] = ["Only rules of the experiment's target."]
        else:
            if arm.rule_ids is not None:
                problems[f"{path}.rule_ids"] = ["Only arms of a rules target name rules."]
            if not isinstance(arm.applies, bool):
                problems[f"{path}.applies"] = ["Whether the target applies to the arm."]
    return problems


def _eligibility_problems(eligibility: Eligibility) -> dict[str, list[str]]:
    problems = {}
    for name in ("segments", "tiers"):
        values = getattr(eligibility, name)
        if not all(isinstance(value, str) and value for value in values):
            problems[f"eligibility.{name}"] = ["Non-empty keys."]
        elif len(set(values)) != len(values):
            problems[f"eligibility.{name}"] = ["Keys must be unique."]
    return problems


def check_definition(definition: ExperimentDefinition) -> None:
    """Return if the definition is valid; raise ValidationFailed with a message per field
    path if not."""
    problems: dict[str, list[str]] = {}
    if len(definition.key) > KEY_MAX or not KEY_PATTERN.match(definition.key):
        problems["key"] = [f"A slug (a-z, 0-9, hyphens) of at most {KEY_MAX} characters."]
    if not definition.name.strip() or len(definition.name) > NAME_MAX:
        problems["name"] = [f"Between 1 and {NAME_MAX} characters."]
    if not definition.hypothesis.strip():
        problems["hypothesis"] = ["Say what the experiment expects to show."]
    target_problems = _target_problems(definition.target)
    problems |= target_problems
    # What an arm gets is read against the target: against a broken one it would only
    # repeat the target's problem.
    problems |= _arm_problems(definition.arms, None if target_problems else definition.target)
    problems |= _eligibility_problems(definition.eligibility)
    for name in ("starts_at", "ends_at"):
        if getattr(definition, name).utcoffset() is None:
            problems[name] = ["A timezone-aware time."]
    if (
        "starts_at" not in problems
        and "ends_at" not in problems
        and definition.ends_at <= definition.starts_at
    ):
        problems["ends_at"] = ["After starts_at."]
    if not MARGIN_PATTERN.match(definition.margin):
        problems["margin"] = ['A decimal string from 0 to 1, at most 4 places (e.g. "0.35").']
    if problems:
        raise ValidationFailed(problems, "The experiment's definition is not valid.")
