"""Automations over the API: what an admin writes and reads, and the simulator's answer."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from loyalty.automations.definitions import AutomationChanges, AutomationDefinition
from loyalty.automations.models import ActionType, TriggerKind
from loyalty.ledger.policy import MAX_POINTS
from loyalty.members.segments import SEGMENT_KEY_PATTERN
from loyalty.schemas.common import EXTERNAL_ID, JSONBoolean, StrictSchema, UTCDateTime, page_schema
from loyalty.schemas.rules import BudgetSchema, BudgetUsageSchema
from loyalty.schemas.segments import IntRangeSchema, segment_keys
from loyalty.schemas.tiers import BENEFIT_CODE

DAYS = validate.Range(min=0, max=3650)


def _days(description: str, lowest: int = 1) -> fields.Integer:
    return fields.Integer(
        strict=True,
        allow_none=True,
        validate=validate.Range(min=lowest, max=3650),
        metadata={"description": description},
    )


class TriggerSchema(StrictSchema):
    """What makes the automation due for a member; each kind takes its own parameters (see
    the README's "Automations")."""

    class Meta(StrictSchema.Meta):
        ordered = True

    kind = fields.String(required=True, validate=validate.OneOf([k.value for k in TriggerKind]))
    delay_days = _days("enrolled: days after enrolment (0: at the next jobs run).", lowest=0)
    days = _days("inactive: days without a purchase.")
    within_days = _days(
        "points_expiring: available points expire within this many days; tier_at_risk: the "
        "tier's retention review is within this many days."
    )
    factor = fields.String(
        allow_none=True,
        validate=validate.Regexp(r"^\d{1,3}(\.\d{1,4})?$", error="A decimal such as 1.5."),
        metadata={
            "description": "repurchase_due: due once the member's mean gap between purchase "
            'days times this has passed since the last (default "1").',
            "example": "1.5",
        },
    )
    default_gap_days = _days(
        "repurchase_due: the gap for members with fewer than min_purchase_days purchase days."
    )
    min_purchase_days = fields.Integer(
        strict=True,
        allow_none=True,
        validate=validate.Range(min=2, max=1000),
        metadata={
            "description": "repurchase_due: purchase days needed for an own gap (default 3)."
        },
    )

    segment = fields.String(
        allow_none=True,
        validate=validate.Regexp(SEGMENT_KEY_PATTERN),
        metadata={
            "description": "segment_entered, segment_left: a live saved segment's key "
            "(unknown_segment otherwise).",
            "example": "vips",
        },
    )

    reward_id = fields.UUID(
        allow_none=True,
        metadata={"description": "reward_affordable: only this reward (default: any active one)."},
    )

    after_hours = fields.Integer(
        strict=True,
        allow_none=True,
        validate=validate.Range(min=1, max=720),
        metadata={
            "description": "cart_abandoned: hours since the cart's last quote without an order "
            "naming it (1 to 720)."
        },
    )

    @ma.post_load
    def _set_only(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        stored = {key: value for key, value in data.items() if value is not None}
        if "reward_id" in stored:
            stored["reward_id"] = str(stored["reward_id"])
        return stored

    @ma.post_dump
    def _shown_set_only(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return {key: value for key, value in data.items() if value is not None}


class AutomationConditionsSchema(StrictSchema):
    """Narrow the trigger: every condition named must hold."""

    class Meta(StrictSchema.Meta):
        ordered = True

    tiers = fields.List(
        fields.String(validate=validate.Length(min=1, max=64)),
        validate=validate.Length(max=20),
        load_default=list,
        metadata={"description": "Tier codes the member must be in one of (empty: any)."},
    )
    segments = segment_keys(
        "Live saved segment keys the member must be in one of, as of the "
        "last insight refresh (unknown_segment otherwise)."
    )
    predicted_value = fields.Nested(
        IntRangeSchema,
        load_default=None,
        allow_none=True,
        metadata={
            "description": "Predicted lifetime value range (minor units, both ends included) "
            "as of the last insight refresh; a member without a prediction is outside it."
        },
    )
    metadata = fields.Dict(
        keys=fields.String(validate=validate.Length(min=1, max=100)),
        values=fields.Raw(),
        load_default=dict,
        validate=validate.Length(max=20),
        metadata={"description": "Member metadata keys equal to a string, integer or boolean."},
    )

    @ma.validates("metadata")
    def _plain_values(self, value: dict[str, Any], **_: Any) -> None:
        if any(not isinstance(v, str | int) for v in value.values()):
            raise ma.ValidationError("Values are strings, integers or booleans.")

    # Empty conditions are kept as loaded: a change sending one empty removes that condition
    # (definitions.set_conditions drops them from what is stored).


class ActionSchema(StrictSchema):
    class Meta(StrictSchema.Meta):
        ordered = True

    type = fields.String(
        required=True,
        validate=validate.OneOf([a.value for a in ActionType]),
        metadata={
            "description": "webhook: an automation.fired event; grant_points: points through "
            "an active bonus earning rule; grant_coupon: an active reward as a coupon (no "
            "points spent) that expires; grant_benefit: a benefit held for some days or for "
            "good."
        },
    )
    rule_id = fields.UUID(
        allow_none=True,
        metadata={"description": "grant_points: the active bonus rule the points are its award."},
    )
    points = fields.Integer(
        strict=True,
        allow_none=True,
        validate=validate.Range(min=1, max=MAX_POINTS),
        metadata={"description": "grant_points: the points (default: the rule's own)."},
    )
    reward_id = fields.UUID(
        allow_none=True,
        metadata={
            "description": "grant_coupon: the active reward given; its stock and code pool "
            "hold for coupons too, and a budget counts it at its cost in points."
        },
    )
    expires_in_days = fields.Integer(
        strict=True,
        allow_none=True,
        validate=validate.Range(min=1, max=3650),
        metadata={"description": "grant_coupon: the code is honoured this many days."},
    )
    code = fields.String(
        allow_none=True,
        validate=BENEFIT_CODE,
        metadata={"description": "grant_benefit: the benefit's code.", "example": "free_shipping"},
    )
    params = fields.Dict(
        keys=fields.String(),
        allow_none=True,
        metadata={"description": "grant_benefit: the benefit's parameters."},
    )
    days = fields.Integer(
        strict=True,
        allow_none=True,
        validate=validate.Range(min=1, max=3650),
        metadata={"description": "grant_benefit: held this many days (default: for good)."},
    )

    @ma.post_load
    def _stored(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        stored = {key: value for key, value in data.items() if value is not None}
        for name in ("rule_id", "reward_id"):
            if name in stored:
                stored[name] = str(stored[name])
        return stored

    @ma.post_dump
    def _shown_set_only(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return {key: value for key, value in data.items() if value is not None}


class AutomationInSchema(StrictSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    active = JSONBoolean(load_default=True)
    trigger = fields.Nested(TriggerSchema, required=True)
    conditions = fields.Nested(
        AutomationConditionsSchema, load_default=lambda: AutomationConditionsSchema().load({})
    )
    actions = fields.List(
        fields.Nested(ActionSchema),
        required=True,
        validate=validate.Length(min=1, max=len(ActionType)),
        metadata={"description": "What firing does; each type at most once."},
    )
    dedup_days = fields.Integer(
        strict=True,
        allow_none=True,
        load_default=None,
        validate=validate.Range(min=1, max=3650),
        metadata={
            "description": "At most one firing per member within this many days, whatever "
            "the trigger's dedup key (null: the key alone)."
        },
    )
    budget = fields.Nested(
        BudgetSchema,
        allow_none=True,
        load_default=None,
        metadata={
            "description": "What its grant_points and grant_coupon actions may give across "
            "all members per period, in points (a coupon at its reward's cost). Once used up "
            "it still fires, without those grants, and sends automation.budget_exhausted."
        },
    )

    @ma.post_load
    def _definition(self, data: dict[str, Any], **_: Any) -> Any:
        """Loads an AutomationDefinition (an AutomationUpdateSchema: AutomationChanges)."""
        return AutomationDefinition(**data)


class AutomationUpdateSchema(AutomationInSchema):
    """Load it partial: the fields sent become an AutomationChanges."""

    @ma.validates_schema
    def _not_empty(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ma.ValidationError("Name at least one field to change.", "_schema")

    @ma.post_load
    def _definition(self, data: dict[str, Any], **_: Any) -> Any:
        return AutomationChanges(**data)


class AutomationSchema(ma.Schema):
    class Meta:
        ordered = True

    id = fields.UUID(required=True)
    version = fields.Integer(required=True)
    name = fields.String(required=True)
    active = fields.Boolean(required=True)
    trigger = fields.Nested(TriggerSchema, required=True)
    conditions = fields.Nested(AutomationConditionsSchema, required=True)
    actions = fields.List(fields.Nested(ActionSchema), required=True)
    dedup_days = fields.Integer(required=True, allow_none=True)
    budget = fields.Nested(BudgetSchema, required=True, allow_none=True)
    budget_usage = fields.Nested(
        BudgetUsageSchema,
        allow_none=True,
        metadata={
            "description": "The budget's current period: its limit, usage and what is left "
            "(null without a budget; not shown in the version history)."
        },
    )
    created_at = UTCDateTime(required=True)
    actor = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "API key that made this version."},
    )


AutomationPageSchema = page_schema(AutomationSchema, "AutomationPage")


class AutomationListQuerySchema(StrictSchema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = fields.String(load_default=None, validate=validate.Length(max=100))
    active = fields.Boolean(load_default=None, allow_none=True)


class AutomationVersionListSchema(ma.Schema):
    items = fields.List(fields.Nested(AutomationSchema), required=True)


class SimulateAutomationSchema(StrictSchema):
    member_id = fields.String(required=True, validate=EXTERNAL_ID)


class AffordableRewardSchema(ma.Schema):
    class Meta:
        ordered = True

    id = fields.UUID(required=True)
    name = fields.String(required=True)
    cost_points = fields.Integer(required=True)


class CartLineSchema(ma.Schema):
    class Meta:
        ordered = True

    sku = fields.String(required=True)
    category = fields.String(required=True, allow_none=True)
    quantity = fields.Integer(required=True)
    unit_price = fields.Integer(required=True, metadata={"description": "Minor units."})


class AbandonedCartSchema(ma.Schema):
    """A quoted cart as its last quote left it."""

    class Meta:
        ordered = True

    cart_id = fields.String(required=True, metadata={"description": "The shop's cart id."})
    amount = fields.Integer(
        required=True,
        metadata={"description": "The last quote's total: lines less discount, minor units."},
    )
    currency = fields.String(required=True)
    points_to_earn = fields.Integer(
        required=True, metadata={"description": "What the last quote said the cart would earn."}
    )
    items = fields.List(
        fields.Nested(CartLineSchema),
        required=True,
        metadata={"description": "The last quote's lines, as sent."},
    )
    first_quoted_at = fields.String(
        required=True,
        metadata={"format": "date-time", "description": "The first quote: the dedup key."},
    )
    quoted_at = fields.String(
        required=True,
        metadata={"format": "date-time", "description": "The last quote: the timer's start."},
    )


class TriggerDetailsSchema(ma.Schema):
    """The trigger's kind and specifics: only those of its kind are present (times as RFC
    3339 strings, as stored with the firing)."""

    class Meta:
        ordered = True

    kind = fields.String(required=True, validate=validate.OneOf([k.value for k in TriggerKind]))
    delay_days = fields.Integer(metadata={"description": "enrolled"})
    enrolled_at = fields.String(metadata={"format": "date-time", "description": "enrolled"})
    last_order_at = fields.String(
        metadata={
            "format": "date-time",
            "description": "inactive, repurchase_due: the last purchase.",
        }
    )
    days_inactive = fields.Integer(metadata={"description": "inactive: UTC days since it."})
    points = fields.Integer(metadata={"description": "points_expiring: available points due."})
    expires_at = fields.String(
        metadata={"format": "date-time", "description": "points_expiring: the soonest expiry."}
    )
    birthday = fields.String(metadata={"format": "date", "description": "birthday"})
    purchase_days = fields.Integer(metadata={"description": "repurchase_due"})
    typical_gap_days = fields.Integer(
        metadata={
            "description": "repurchase_due: the member's mean gap between purchase days "
            "(rounded), or the default gap."
        }
    )
    due_after_days = fields.Integer(
        metadata={"description": "repurchase_due: the gap times the factor, rounded up."}
    )
    days_since_last_purchase = fields.Integer(metadata={"description": "repurchase_due"})
    segment = fields.String(metadata={"description": "segment_entered, segment_left: its key."})
    entered_at = fields.String(
        metadata={
            "format": "date-time",
            "description": "segment_entered: the insight refresh at which the member entered.",
        }
    )
    left_at = fields.String(
        metadata={
            "format": "date-time",
            "description": "segment_left: the insight refresh at which the member left.",
        }
    )
    reward = fields.Nested(
        AffordableRewardSchema, metadata={"description": "reward_affordable: the reward."}
    )
    tier = fields.String(metadata={"description": "tier_at_risk: the tier's code."})
    review_at = fields.String(
        metadata={
            "format": "date-time",
            "description": "tier_at_risk: the retention review, when the tier is lost unless "
            "the points needed are earned.",
        }
    )
    qualifying_points = fields.Integer(
        metadata={"description": "tier_at_risk: qualifying points over the rolling window now."}
    )
    points_needed = fields.Integer(
        metadata={"description": "tier_at_risk: the tier's threshold less those (P)."}
    )
    after_hours = fields.Integer(metadata={"description": "cart_abandoned"})
    cart = fields.Nested(
        AbandonedCartSchema, metadata={"description": "cart_abandoned: the abandoned cart."}
    )


class AutomationSimulationSchema(ma.Schema):
    class Meta:
        ordered = True

    automation_id = fields.UUID(required=True)
    version = fields.Integer(required=True)
    member_id = fields.String(required=True)
    would_fire = fields.Boolean(required=True)
    reason = fields.String(
        required=True,
        validate=validate.OneOf(
            [
                "due",
                "automation_inactive",
                "member_inactive",
                "no_marketing_consent",
                "not_due",
                "condition_failed",
                "already_fired",
                "within_dedup_window",
            ]
        ),
    )
    detail = fields.String(required=True)
    condition = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "condition_failed: the first condition that failed."},
    )
    window_start = UTCDateTime(
        required=True,
        allow_none=True,
        metadata={"description": "The dedup key's window start, when the trigger is due."},
    )
    trigger = fields.Nested(TriggerDetailsSchema, required=True, allow_none=True)
