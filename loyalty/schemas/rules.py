from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from loyalty.ledger.policy import MAX_POINTS
from loyalty.rules.definitions import RuleChanges, RuleDefinition
from loyalty.rules.models import RuleKind
from loyalty.rules.policy import BudgetPeriod
from loyalty.schemas.common import EXTERNAL_ID, StrictSchema, UTCDateTime, page_schema
from loyalty.schemas.orders import CartSchema, ContributionSchema, LineSchema
from loyalty.schemas.segments import segment_keys

CODE = validate.Length(min=1, max=64)
# The kind's settings: top-level in the API's rule, kept together as the rule's config.
CONFIG_KEYS = ("points", "per_amount", "factor", "event_type")


def _split_config(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the fields other than the config, the config settings given and not null)."""
    fields = {k: v for k, v in data.items() if k not in CONFIG_KEYS}
    return fields, {k: data[k] for k in CONFIG_KEYS if data.get(k) is not None}


class ConditionsSchema(StrictSchema):
    skus = fields.List(
        fields.String(validate=CODE), validate=validate.Length(max=500), load_default=list
    )
    categories = fields.List(
        fields.String(validate=CODE), validate=validate.Length(max=100), load_default=list
    )
    tiers = fields.List(
        fields.String(validate=CODE),
        validate=validate.Length(max=20),
        load_default=list,
        metadata={"description": "Tier codes the member must be in (empty: any)."},
    )
    segments = segment_keys(
        "Saved segment keys the member must be in one of, as of the last "
        "insight refresh (empty: any). Each must be a live saved segment's key "
        "(unknown_segment otherwise): an RFM segment is named through a saved segment "
        "whose filter has it in rfm_segments."
    )
    min_amount = fields.Integer(
        strict=True,
        allow_none=True,
        load_default=None,
        validate=validate.Range(min=0),
        metadata={"description": "Order amount after discount, in minor units."},
    )
    first_order = fields.Boolean(
        load_default=False, metadata={"description": "Bonus rules: only the member's first order."}
    )


class MemberCapSchema(StrictSchema):
    period_days = fields.Integer(
        required=True, strict=True, validate=validate.Range(min=1, max=3660)
    )
    count = fields.Integer(
        strict=True,
        allow_none=True,
        load_default=None,
        validate=validate.Range(min=1),
        metadata={"description": "At most this many awards per member per period."},
    )
    points = fields.Integer(
        strict=True,
        allow_none=True,
        load_default=None,
        validate=validate.Range(min=1, max=MAX_POINTS),
        metadata={"description": "At most this many points per member per period."},
    )

    @ma.validates_schema
    def _one_limit(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("count") is None and data.get("points") is None:
            raise ma.ValidationError("Set count, points or both.", "_schema")


class CapsSchema(StrictSchema):
    per_order = fields.Integer(
        strict=True,
        allow_none=True,
        load_default=None,
        validate=validate.Range(min=1, max=MAX_POINTS),
    )
    per_member = fields.Nested(MemberCapSchema, allow_none=True, load_default=None)


class BudgetSchema(StrictSchema):
    period = fields.String(
        required=True,
        validate=validate.OneOf([p.value for p in BudgetPeriod]),
        metadata={
            "description": "When the budget starts afresh, in the program's time zone: never "
            "(`lifetime`), each `day`, each ISO `week` (Monday 00:00) or each calendar `month`."
        },
    )
    points = fields.Integer(
        strict=True,
        allow_none=True,
        load_default=None,
        validate=validate.Range(min=1, max=MAX_POINTS),
        metadata={"description": "At most this many points per period, across all members."},
    )
    amount = fields.Integer(
        strict=True,
        allow_none=True,
        load_default=None,
        validate=validate.Range(min=1, max=MAX_POINTS),
        metadata={
            "description": "Or at most points worth this much per period (minor units of the "
            "program's currency, at its current point value, rounded down)."
        },
    )

    @ma.validates_schema
    def _one_limit(self, data: dict[str, Any], **_: Any) -> None:
        if (data.get("points") is None) == (data.get("amount") is None):
            raise ma.ValidationError("Set points or amount (not both).", "_schema")

    @ma.post_dump
    def _set_only(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return {key: value for key, value in data.items() if value is not None}


class BudgetUsageSchema(ma.Schema):
    class Meta:
        ordered = True

    period = fields.String(required=True)
    starts_at = UTCDateTime(
        required=True, allow_none=True, metadata={"description": "null for a lifetime budget."}
    )
    ends_at = UTCDateTime(required=True, allow_none=True)
    limit = fields.Integer(
        required=True, metadata={"description": "The budget in points (a money budget converted)."}
    )
    used = fields.Integer(required=True, metadata={"description": "Points awarded this period."})
    remaining = fields.Integer(required=True)
    exhausted_at = UTCDateTime(
        required=True,
        allow_none=True,
        metadata={"description": "When an award used the period's budget up."},
    )


class RuleInSchema(StrictSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    kind = fields.String(required=True, validate=validate.OneOf([k.value for k in RuleKind]))
    active = fields.Boolean(load_default=True)
    priority = fields.Integer(
        strict=True,
        load_default=100,
        validate=validate.Range(min=0, max=10000),
        metadata={
            "description": "Lower runs first within its kind (spend, then multiplier, then bonus)."
        },
    )
    starts_at = UTCDateTime(allow_none=True, load_default=None)
    ends_at = UTCDateTime(allow_none=True, load_default=None)
    points = fields.Integer(
        strict=True,
        allow_none=True,
        validate=validate.Range(min=1, max=MAX_POINTS),
        metadata={"description": "spend: points per `per_amount`; bonus and event: fixed points."},
    )
    per_amount = fields.Integer(
        strict=True,
        allow_none=True,
        validate=validate.Range(min=1, max=MAX_POINTS),
        metadata={"description": "spend: the amount (minor units) that earns `points`."},
    )
    factor = fields.String(
        allow_none=True,
        validate=validate.Regexp(r"^\d{1,3}(\.\d{1,4})?$", error="A decimal such as 1.5."),
        metadata={
            "description": 'multiplier: a decimal factor such as "1.5" (exact, no floats).',
            "example": "1.5",
        },
    )
    event_type = fields.String(
        allow_none=True,
        validate=validate.Regexp(r"^[a-z][a-z0-9_]{0,63}$"),
        metadata={
            "description": "event: the event type it rewards (signup, review, referral, ...)."
        },
    )
    conditions = fields.Nested(ConditionsSchema, load_default=lambda: ConditionsSchema().load({}))
    caps = fields.Nested(CapsSchema, load_default=lambda: CapsSchema().load({}))
    budget = fields.Nested(
        BudgetSchema,
        allow_none=True,
        load_default=None,
        metadata={
            "description": "A total across all members per period (null: none). When it is "
            "reached the rule stops awarding; the award that reaches it is clipped."
        },
    )

    @ma.post_load
    def _definition(self, data: dict[str, Any], **_: Any) -> Any:
        """Loads a RuleDefinition (a RuleUpdateSchema: RuleChanges)."""
        fields, config = _split_config(data)
        return RuleDefinition(**{**fields, "kind": RuleKind(fields["kind"]), "config": config})


class RuleUpdateSchema(RuleInSchema):
    """Load it partial: the fields sent become a RuleChanges."""

    @ma.validates_schema
    def _not_empty(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ma.ValidationError("Name at least one field to change.", "_schema")

    @ma.post_load
    def _definition(self, data: dict[str, Any], **_: Any) -> Any:
        fields, config = _split_config(data)
        if "kind" in fields:
            fields["kind"] = RuleKind(fields["kind"])
        if config:
            fields["config"] = config
        return RuleChanges(**fields)


class RuleSchema(ma.Schema):
    class Meta:
        ordered = True

    id = fields.UUID(required=True)
    version = fields.Integer(required=True)
    name = fields.String(required=True)
    kind = fields.String(required=True)
    active = fields.Boolean(required=True)
    priority = fields.Integer(required=True)
    starts_at = UTCDateTime(required=True, allow_none=True)
    ends_at = UTCDateTime(required=True, allow_none=True)
    points = fields.Integer(allow_none=True)
    per_amount = fields.Integer(allow_none=True)
    factor = fields.String(allow_none=True)
    event_type = fields.String(allow_none=True)
    conditions = fields.Nested(ConditionsSchema, required=True)
    caps = fields.Nested(CapsSchema, required=True)
    budget = fields.Nested(BudgetSchema, required=True, allow_none=True)
    budget_usage = fields.Nested(
        BudgetUsageSchema,
        allow_none=True,
        metadata={
            "description": "The budget's current period: its limit, usage and what is left "
            "(null without a budget; not shown in a rule's version history)."
        },
    )
    created_at = UTCDateTime(required=True)
    actor = fields.String(
        required=True, allow_none=True, metadata={"description": "API key that made this version."}
    )


RulePageSchema = page_schema(RuleSchema, "RulePage")


class RuleListQuerySchema(StrictSchema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = fields.String(load_default=None, validate=validate.Length(max=100))
    active = fields.Boolean(load_default=None, allow_none=True)
    kind = fields.String(load_default=None, validate=validate.OneOf([k.value for k in RuleKind]))


class RuleVersionListSchema(ma.Schema):
    items = fields.List(fields.Nested(RuleSchema), required=True)


class SimulateSchema(CartSchema):
    lines = fields.List(
        fields.Nested(LineSchema), load_default=list, validate=validate.Length(max=500)
    )
    member_id = fields.String(
        load_default=None,
        allow_none=True,
        validate=EXTERNAL_ID,
        metadata={"description": "Simulate for this member (tier, first order, caps)."},
    )
    rules = fields.List(
        fields.Nested(RuleInSchema),
        load_default=list,
        validate=validate.Length(max=20),
        metadata={"description": "Draft rules to try alongside the active ones (not saved)."},
    )
    include_active = fields.Boolean(load_default=True)
    event_type = fields.String(
        load_default=None,
        allow_none=True,
        metadata={"description": "Simulate an event of this type instead of an order."},
    )


class SimulationSchema(ma.Schema):
    class Meta:
        ordered = True

    points_to_earn = fields.Integer(required=True)
    breakdown = fields.List(fields.Nested(ContributionSchema), required=True)
