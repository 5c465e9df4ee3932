"""What an earning rule is, as an admin writes it: a whole definition (``RuleDefinition``),
a change to one (``RuleChanges``), and the checks a definition must pass for its kind. Pure:
no database."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from loyalty.changes import UNCHANGED, Maybe, given
from loyalty.errors import ValidationFailed
from loyalty.rules import policy
from loyalty.rules.models import RuleKind

VERSIONED_FIELDS = (
    "name",
    "active",
    "priority",
    "starts_at",
    "ends_at",
    "config",
    "conditions",
    "caps",
    "budget",
)
CONFIG_FIELDS = {
    RuleKind.SPEND: {"points", "per_amount"},
    RuleKind.MULTIPLIER: {"factor"},
    RuleKind.BONUS: {"points"},
    RuleKind.EVENT: {"points", "event_type"},
}
# The config is merged key by key on a change; the other versioned fields (the budget too:
# points and amount exclude each other) are replaced.
MERGED_FIELDS = ("config", "conditions", "caps")


@dataclass(frozen=True, slots=True)
class RuleDefinition:
    """A whole rule, as created: its kind and what every version of it stores.

    `config` holds the kind's settings (points, per_amount, factor, event_type), only those
    set."""

    kind: RuleKind
    name: str
    active: bool = True
    priority: int = 100
    starts_at: dt.datetime | None = None
    ends_at: dt.datetime | None = None
    config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    conditions: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    caps: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # {"period", "points"} or {"period", "amount"}: a total across all members per period.
    budget: Mapping[str, Any] | None = None

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> RuleDefinition:
        """A definition from the stored shape: `kind` and the versioned fields (the demo's
        seed writes its rules so; a field it leaves out keeps its default)."""
        return cls(
            kind=RuleKind(fields["kind"]),
            **{name: fields[name] for name in VERSIONED_FIELDS if name in fields},
        )

    def versioned(self) -> dict[str, Any]:
        """The fields a version stores (plain dicts, copied)."""
        fields = {name: getattr(self, name) for name in VERSIONED_FIELDS}
        copied = {name: dict(fields[name]) for name in MERGED_FIELDS}
        return {**fields, **copied, "budget": dict(self.budget) if self.budget else None}

    def as_fields(self) -> dict[str, Any]:
        """The stored shape with its kind, as the simulator's drafts take it."""
        return {"kind": self.kind.value, **self.versioned()}


@dataclass(frozen=True, slots=True)
class RuleChanges:
    """A change to a rule, becoming its next version: the fields left UNCHANGED keep their
    current values; `config`, `conditions` and `caps` are merged key by key. A `kind` is
    refused (a rule's kind never changes) but carried so the refusal can say so."""

    kind: Maybe[RuleKind] = UNCHANGED
    name: Maybe[str] = UNCHANGED
    active: Maybe[bool] = UNCHANGED
    priority: Maybe[int] = UNCHANGED
    starts_at: Maybe[dt.datetime | None] = UNCHANGED
    ends_at: Maybe[dt.datetime | None] = UNCHANGED
    config: Maybe[Mapping[str, Any]] = UNCHANGED
    conditions: Maybe[Mapping[str, Any]] = UNCHANGED
    caps: Maybe[Mapping[str, Any]] = UNCHANGED
    budget: Maybe[Mapping[str, Any] | None] = UNCHANGED

    @property
    def fields_given(self) -> frozenset[str]:
        """The names of the fields this change sets."""
        return frozenset(given(self))


def check_budget(budget: Mapping[str, Any] | None) -> None:
    """Raise ValidationFailed unless `budget` (stored shape; None: no budget) is a budget:
    a period and points or amount, a positive integer (a rule's or an automation's)."""
    if budget is None:
        return
    period = budget.get("period")
    if period not in {p.value for p in policy.BudgetPeriod}:
        raise ValidationFailed({"budget.period": ["One of lifetime, day, week, month."]})
    limits = [name for name in ("points", "amount") if budget.get(name) is not None]
    if len(limits) != 1:
        raise ValidationFailed({"budget": ["Set points or amount (not both)."]})
    value = budget[limits[0]]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationFailed({f"budget.{limits[0]}": ["Must be a positive integer."]})


def check_definition(kind: RuleKind, fields: Mapping[str, Any]) -> None:
    """Raise ValidationFailed unless `fields` (the stored shape) is a valid `kind` rule."""
    config = fields["config"]
    missing = sorted(name for name in CONFIG_FIELDS[kind] if config.get(name) is None)
    if missing:
        raise ValidationFailed({name: [f"Required for {kind} rules."] for name in missing})
    extra = sorted(
        name
        for name, value in config.items()
        if value is not None and name not in CONFIG_FIELDS[kind]
    )
    if extra:
        raise ValidationFailed({name: [f"Not used by {kind} rules."] for name in extra})
    if kind == RuleKind.MULTIPLIER:
        policy.parse_factor(config["factor"])
    if kind == RuleKind.EVENT and (
        fields["conditions"].get("skus") or fields["conditions"].get("categories")
    ):
        raise ValidationFailed({"conditions": ["Event rules cannot match skus or categories."]})
    per_member = fields["caps"].get("per_member")
    if per_member and per_member.get("period_days") is None:
        raise ValidationFailed({"caps.per_member.period_days": ["Required for a member cap."]})
    check_budget(fields.get("budget"))
    starts, ends = fields.get("starts_at"), fields.get("ends_at")
    if starts and ends and ends <= starts:
        raise ValidationFailed({"ends_at": ["Must be after starts_at."]})
