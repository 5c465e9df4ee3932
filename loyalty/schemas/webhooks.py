from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from loyalty.schemas.automations import TriggerDetailsSchema
from loyalty.schemas.common import StrictSchema, UTCDateTime, page_schema
from loyalty.schemas.rules import BudgetSchema
from loyalty.webhooks.endpoints import NewWebhook
from loyalty.webhooks.models import DeliveryStatus
from loyalty.webhooks.outbox import EVENT_TYPES


class WebhookInSchema(StrictSchema):
    url = fields.URL(
        required=True,
        require_tld=False,
        schemes={"https", "http"},
        validate=validate.Length(max=2000),
        metadata={
            "description": "https:// (http:// only for localhost).",
            "example": "https://shop.example/hooks/loyalty",
        },
    )
    event_types = fields.List(
        fields.String(validate=validate.OneOf([*EVENT_TYPES, "*"])),
        required=True,
        validate=validate.Length(min=1, max=len(EVENT_TYPES) + 1),
        metadata={
            "description": 'Event types to receive, or ["*"] for all.',
            "example": ["tier.changed"],
        },
    )
    description = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(max=500)
    )

    @ma.post_load
    def _new(self, data: dict[str, Any], **_: Any) -> NewWebhook:
        return NewWebhook(data["url"], tuple(data["event_types"]), data["description"])


class WebhookSchema(ma.Schema):
    class Meta:
        ordered = True

    id = fields.UUID(required=True)
    url = fields.String(required=True)
    event_types = fields.List(fields.String(), required=True)
    description = fields.String(required=True, allow_none=True)
    created_at = UTCDateTime(required=True)


class WebhookCreatedSchema(WebhookSchema):
    secret = fields.String(
        required=True,
        metadata={
            "description": "Signing secret, shown only now: verify Loyalty-Signature with it."
        },
    )


class WebhookListSchema(ma.Schema):
    items = fields.List(fields.Nested(WebhookSchema), required=True)


class AttemptSchema(ma.Schema):
    class Meta:
        ordered = True

    attempted_at = UTCDateTime(required=True)
    status_code = fields.Integer(required=True, allow_none=True)
    error = fields.String(required=True, allow_none=True)
    duration_ms = fields.Integer(required=True)


class DeliverySchema(ma.Schema):
    class Meta:
        ordered = True

    id = fields.UUID(required=True)
    event_id = fields.UUID(required=True)
    event_type = fields.String(required=True)
    status = fields.String(
        required=True, validate=validate.OneOf([s.value for s in DeliveryStatus])
    )
    attempts = fields.List(fields.Nested(AttemptSchema), required=True)
    next_attempt_at = UTCDateTime(required=True, allow_none=True)
    created_at = UTCDateTime(required=True)
    delivered_at = UTCDateTime(required=True, allow_none=True)


DeliveryPageSchema = page_schema(DeliverySchema, "DeliveryPage")


class RuleBudgetExhaustedSchema(ma.Schema):
    """The `data` of a `rule.budget_exhausted` event: sent once per rule and budget period,
    by the award that used the period's budget up."""

    class Meta:
        ordered = True

    rule_id = fields.UUID(required=True)
    name = fields.String(required=True)
    version = fields.Integer(
        required=True, metadata={"description": "The rule version whose award used it up."}
    )
    budget = fields.Nested(BudgetSchema, required=True)
    period = fields.String(required=True, metadata={"example": "day"})
    period_start = UTCDateTime(
        required=True, allow_none=True, metadata={"description": "null for a lifetime budget."}
    )
    period_end = UTCDateTime(required=True, allow_none=True)
    limit = fields.Integer(required=True, metadata={"description": "The budget in points."})
    used = fields.Integer(required=True, metadata={"description": "Points awarded this period."})


class FiredAutomationSchema(ma.Schema):
    class Meta:
        ordered = True

    id = fields.UUID(required=True)
    name = fields.String(required=True)
    version = fields.Integer(required=True, metadata={"description": "The version that fired."})


class FiredMemberSchema(ma.Schema):
    class Meta:
        ordered = True

    member_id = fields.String(required=True, metadata={"description": "The external id."})
    email = fields.String(required=True, allow_none=True)
    name = fields.String(required=True, allow_none=True)
    tier = fields.String(required=True, allow_none=True, metadata={"description": "Tier code."})
    available = fields.Integer(
        required=True, metadata={"description": "Available points, after any grant."}
    )


class AutomationFiredSchema(ma.Schema):
    """The `data` of an `automation.fired` event: once per automation, member and dedup key
    (see "Automations" in the README)."""

    class Meta:
        ordered = True

    firing_id = fields.UUID(required=True, metadata={"description": "The same on every retry."})
    automation = fields.Nested(FiredAutomationSchema, required=True)
    member = fields.Nested(FiredMemberSchema, required=True)
    trigger = fields.Nested(TriggerDetailsSchema, required=True)
    points_granted = fields.Integer(
        required=True,
        allow_none=True,
        metadata={"description": "Points the grant_points action gave (null without one)."},
    )
    fired_at = UTCDateTime(required=True)


# Each event's `data`, documented in the OpenAPI document's components (as <Name>Event).
EVENT_PAYLOAD_SCHEMAS: dict[str, type[ma.Schema]] = {
    "rule.budget_exhausted": RuleBudgetExhaustedSchema,
    "automation.fired": AutomationFiredSchema,
}
