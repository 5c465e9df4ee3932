"""What an automation is, as an admin writes it: a whole definition
(``AutomationDefinition``), a change to one (``AutomationChanges``), and the checks a
definition must pass. Pure: no database."""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from loyalty.automations.models import ActionType, TriggerKind
from loyalty.changes import UNCHANGED, Maybe, given
from loyalty.errors import ValidationFailed
from loyalty.members.segments import SEGMENT_KEY_PATTERN
from loyalty.rules.definitions import check_budget

VERSIONED_FIELDS = ("name", "active", "trigger", "conditions", "actions", "dedup_days", "budget")
# Conditions are merged key by key on a change; the trigger, the actions and the budget are
# replaced.
MERGED_FIELDS = ("conditions",)

# Each trigger kind's parameters: (name, required, lowest, highest); integers in days (but
# cart_abandoned's after_hours, in hours: a cart goes cold within the day, and 720 hours is
# the month after which a reminder is no longer about that cart), and repurchase_due's factor
# (a decimal string such as "1.5").
TRIGGER_PARAMETERS: dict[TriggerKind, tuple[tuple[str, bool, int, int], ...]] = {
    TriggerKind.ENROLLED: (("delay_days", True, 0, 3650),),
    TriggerKind.INACTIVE: (("days", True, 1, 3650),),
    TriggerKind.POINTS_EXPIRING: (("within_days", True, 1, 3650),),
    TriggerKind.BIRTHDAY: (),
    TriggerKind.REPURCHASE_DUE: (
        ("default_gap_days", True, 1, 3650),
        ("min_purchase_days", False, 2, 1000),
    ),
    TriggerKind.SEGMENT_ENTERED: (),
    TriggerKind.SEGMENT_LEFT: (),
    TriggerKind.REWARD_AFFORDABLE: (),
    TriggerKind.TIER_AT_RISK: (("within_days", True, 1, 3650),),
    TriggerKind.CART_ABANDONED: (("after_hours", True, 1, 720),),
}
# The kinds naming a saved segment in `segment` (its key; checked live by the service).
SEGMENT_KINDS = frozenset({TriggerKind.SEGMENT_ENTERED, TriggerKind.SEGMENT_LEFT})
# Each kind's parameters that are not integers in days, checked on their own below.
OTHER_PARAMETERS: dict[TriggerKind, tuple[str, ...]] = {
    TriggerKind.REPURCHASE_DUE: ("factor",),
    TriggerKind.SEGMENT_ENTERED: ("segment",),
    TriggerKind.SEGMENT_LEFT: ("segment",),
    TriggerKind.REWARD_AFFORDABLE: ("reward_id",),
}
# Each action type's parameters beside `type`: (name, required).
ACTION_PARAMETERS: dict[ActionType, tuple[tuple[str, bool], ...]] = {
    ActionType.WEBHOOK: (),
    ActionType.GRANT_POINTS: (("rule_id", True), ("points", False)),
    ActionType.GRANT_COUPON: (("reward_id", True), ("expires_in_days", True)),
    ActionType.GRANT_BENEFIT: (("code", True), ("params", False), ("days", False)),
}
# The actions a budget counts (a benefit has no value in points).
BUDGETED_ACTIONS = frozenset({ActionType.GRANT_POINTS, ActionType.GRANT_COUPON})
BENEFIT_CODE_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
MAX_DAYS = 3650
DEFAULT_MIN_PURCHASE_DAYS = 3
DEFAULT_FACTOR = "1"


def set_conditions(conditions: Mapping[str, Any]) -> dict[str, Any]:
    """The conditions that narrow anything: an empty one (no tiers, no metadata, no predicted
    value range) is not stored, so that a change can remove a condition by sending it empty."""
    return {name: value for name, value in conditions.items() if value}


@dataclass(frozen=True, slots=True)
class AutomationDefinition:
    """A whole automation, as created: what every version of it stores."""

    name: str
    trigger: Mapping[str, Any]
    actions: Sequence[Mapping[str, Any]]
    active: bool = True
    conditions: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    dedup_days: int | None = None
    # {"period", "points"} or {"period", "amount"}: what its grants may give per period.
    budget: Mapping[str, Any] | None = None

    def versioned(self) -> dict[str, Any]:
        """The fields a version stores (plain dicts and lists, copied)."""
        return {
            "name": self.name,
            "active": self.active,
            "trigger": dict(self.trigger),
            "conditions": set_conditions(self.conditions),
            "actions": [dict(action) for action in self.actions],
            "dedup_days": self.dedup_days,
            "budget": dict(self.budget) if self.budget else None,
        }


@dataclass(frozen=True, slots=True)
class AutomationChanges:
    """A change to an automation, becoming its next version: the fields left UNCHANGED keep
    their current values; `conditions` is merged key by key (a condition given empty, such
    as no tiers, is removed), `trigger` and `actions` replaced whole."""

    name: Maybe[str] = UNCHANGED
    active: Maybe[bool] = UNCHANGED
    trigger: Maybe[Mapping[str, Any]] = UNCHANGED
    conditions: Maybe[Mapping[str, Any]] = UNCHANGED
    actions: Maybe[Sequence[Mapping[str, Any]]] = UNCHANGED
    dedup_days: Maybe[int | None] = UNCHANGED
    budget: Maybe[Mapping[str, Any] | None] = UNCHANGED

    def merged_into(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """`fields` (a version's) with this change applied."""
        merged = dict(fields)
        for name, value in given(self).items():
            if name in MERGED_FIELDS:
                merged[name] = set_conditions({**merged[name], **value})
            elif name == "actions":
                merged[name] = [dict(action) for action in value]
            elif name in ("trigger", "budget"):
                merged[name] = dict(value) if value is not None else None
            else:
                merged[name] = value
        return merged


def parameter_names(kind: TriggerKind) -> tuple[str, ...]:
    """Every parameter a trigger of `kind` takes besides its kind, required ones first: what
    the validation allows and the console's form shows for the kind."""
    return tuple(name for name, *_ in TRIGGER_PARAMETERS[kind]) + OTHER_PARAMETERS.get(kind, ())


def parse_factor(raw: str) -> Fraction:
    """repurchase_due's factor as an exact fraction; raises ValidationFailed unless it is a
    decimal from 0.1 to 100."""
    try:
        factor = Fraction(raw)
    except (ValueError, ZeroDivisionError, TypeError):
        raise ValidationFailed({"trigger.factor": ["A decimal such as 1.5."]}) from None
    if not Fraction(1, 10) <= factor <= 100:
        raise ValidationFailed({"trigger.factor": ["From 0.1 to 100."]})
    return factor


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _check_trigger(trigger: Mapping[str, Any]) -> None:
    try:
        kind = TriggerKind(str(trigger.get("kind")))
    except ValueError:
        kinds = ", ".join(k.value for k in TriggerKind)
        raise ValidationFailed({"trigger.kind": [f"One of {kinds}."]}) from None
    allowed = {*parameter_names(kind), "kind"}
    if kind == TriggerKind.REPURCHASE_DUE:
        parse_factor(trigger.get("factor", DEFAULT_FACTOR))
    errors: dict[str, list[str]] = {}
    if kind in SEGMENT_KINDS:
        segment = trigger.get("segment")
        if segment is None:
            errors["trigger.segment"] = [f"Required for {kind} triggers."]
        elif not isinstance(segment, str) or not re.match(SEGMENT_KEY_PATTERN, segment):
            errors["trigger.segment"] = ["A saved segment's key."]
    if kind == TriggerKind.REWARD_AFFORDABLE:
        reward_id = trigger.get("reward_id")
        if reward_id is not None and not _is_uuid(reward_id):
            errors["trigger.reward_id"] = ["A reward's id."]
    for name in sorted(set(trigger) - allowed):
        if trigger[name] is not None:
            errors[f"trigger.{name}"] = [f"Not used by {kind} triggers."]
    for name, required, lowest, highest in TRIGGER_PARAMETERS[kind]:
        value = trigger.get(name)
        if value is None:
            if required:
                errors[f"trigger.{name}"] = [f"Required for {kind} triggers."]
        elif (
            isinstance(value, bool) or not isinstance(value, int) or not lowest <= value <= highest
        ):
            errors[f"trigger.{name}"] = [f"An integer from {lowest} to {highest}."]
    if errors:
        raise ValidationFailed(errors)


def _is_days(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and 1 <= value <= MAX_DAYS


def _check_action(position: int, action: Mapping[str, Any]) -> dict[str, list[str]]:
    """The field errors of one action (none: it is valid)."""
    try:
        kind = ActionType(str(action.get("type")))
    except ValueError:
        kinds = ", ".join(t.value for t in ActionType)
        return {f"actions.{position}.type": [f"One of {kinds}."]}
    at = f"actions.{position}"
    parameters = dict(ACTION_PARAMETERS[kind])
    errors = {
        f"{at}.{name}": [f"Not used by {kind} actions."]
        for name in sorted(set(action) - set(parameters) - {"type"})
        if action[name] is not None
    }
    for name, required in parameters.items():
        if required and action.get(name) is None:
            errors[f"{at}.{name}"] = [f"Required for {kind} actions."]
    if errors:
        return errors
    if kind == ActionType.GRANT_COUPON:
        if not _is_uuid(action["reward_id"]):
            errors[f"{at}.reward_id"] = ["A reward's id."]
        if not _is_days(action["expires_in_days"]):
            errors[f"{at}.expires_in_days"] = [f"An integer from 1 to {MAX_DAYS}."]
    if kind == ActionType.GRANT_BENEFIT:
        if not isinstance(action["code"], str) or not re.match(
            BENEFIT_CODE_PATTERN, action["code"]
        ):
            errors[f"{at}.code"] = ["Lowercase letters, digits, _; 1-64."]
        if not isinstance(action.get("params") or {}, Mapping):
            errors[f"{at}.params"] = ["An object."]
        if action.get("days") is not None and not _is_days(action["days"]):
            errors[f"{at}.days"] = [f"An integer from 1 to {MAX_DAYS}."]
    return errors


def _check_actions(actions: Sequence[Mapping[str, Any]], budget: Mapping[str, Any] | None) -> None:
    if not actions:
        raise ValidationFailed({"actions": ["Name at least one action."]})
    types = [action.get("type") for action in actions]
    if len(set(types)) != len(types):
        raise ValidationFailed({"actions": ["Each action type at most once."]})
    errors: dict[str, list[str]] = {}
    for position, action in enumerate(actions):
        errors |= _check_action(position, action)
    if errors:
        raise ValidationFailed(errors)
    if budget is not None and not BUDGETED_ACTIONS & set(types):
        raise ValidationFailed(
            {"budget": ["A budget caps grant_points and grant_coupon actions: name one."]}
        )


def check_definition(fields: Mapping[str, Any]) -> None:
    """Raise ValidationFailed unless `fields` (the stored shape) is a valid automation (the
    rule and segments it names are checked against the database by the service)."""
    _check_trigger(fields["trigger"])
    check_budget(fields.get("budget"))
    _check_actions(fields["actions"], fields.get("budget"))
    value = fields["conditions"].get("predicted_value") or {}
    low, high = value.get("min"), value.get("max")
    if low is not None and high is not None and high < low:
        raise ValidationFailed({"conditions.predicted_value.max": ["Must not be below min."]})
