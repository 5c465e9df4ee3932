from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from loyalty.automations.definitions import BUDGETED_ACTIONS
from loyalty.automations.models import Withheld
from loyalty.experiments.models import EndReason, ExperimentStatus
from loyalty.referrals.models import ReferralStatus
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


class BudgetPeriodSchema(ma.Schema):
    """The budget and the period used up, as both exhausted events report them."""

    class Meta:
        ordered = True

    budget = fields.Nested(BudgetSchema, required=True)
    period = fields.String(required=True, metadata={"example": "day"})
    period_start = UTCDateTime(
        required=True, allow_none=True, metadata={"description": "null for a lifetime budget."}
    )
    period_end = UTCDateTime(required=True, allow_none=True)
    limit = fields.Integer(required=True, metadata={"description": "The budget in points."})
    used = fields.Integer(required=True, metadata={"description": "Points given this period."})


class RuleBudgetExhaustedSchema(BudgetPeriodSchema):
    """The `data` of a `rule.budget_exhausted` event: sent once per rule and budget period,
    by the award that used the period's budget up."""

    rule_id = fields.UUID(required=True)
    name = fields.String(required=True)
    version = fields.Integer(
        required=True, metadata={"description": "The rule version whose award used it up."}
    )


class FiredAutomationSchema(ma.Schema):
    class Meta:
        ordered = True

    id = fields.UUID(required=True)
    name = fields.String(required=True)
    version = fields.Integer(required=True, metadata={"description": "The version that fired."})


class MarketingConsentSchema(ma.Schema):
    """Whether the shop may send the member marketing, channel by channel."""

    class Meta:
        ordered = True

    marketing_email = fields.Boolean(required=True)
    marketing_sms = fields.Boolean(required=True)


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
    consent = fields.Nested(
        MarketingConsentSchema,
        required=True,
        metadata={"description": "Send the message only on a channel marked true."},
    )


class GrantedCouponSchema(ma.Schema):
    class Meta:
        ordered = True

    id = fields.UUID(required=True, metadata={"description": "The reward redemption's id."})
    reward_id = fields.UUID(required=True)
    reward = fields.String(required=True, metadata={"description": "The reward's name."})
    code = fields.String(required=True, metadata={"description": "The coupon code."})
    expires_at = UTCDateTime(required=True)


class GrantedBenefitSchema(ma.Schema):
    class Meta:
        ordered = True

    code = fields.String(required=True, metadata={"example": "free_shipping"})
    params = fields.Dict(required=True)
    ends_at = UTCDateTime(
        required=True, allow_none=True, metadata={"description": "null: held for good."}
    )


class WithheldGrantSchema(ma.Schema):
    class Meta:
        ordered = True

    action = fields.String(
        required=True,
        validate=validate.OneOf(sorted(a.value for a in BUDGETED_ACTIONS)),
    )
    reason = fields.String(
        required=True,
        validate=validate.OneOf([w.value for w in Withheld]),
        metadata={
            "description": "automation_budget: the automation's budget has too little left; "
            "rule_unavailable: the grant's rule is no longer active; rule_limit: the rule's "
            "conditions, caps or budget left nothing; reward_unavailable: the reward is "
            "inactive or outside its window; out_of_stock: no unit or code of it is left."
        },
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
    coupon = fields.Nested(
        GrantedCouponSchema,
        required=True,
        allow_none=True,
        metadata={
            "description": "The coupon the grant_coupon action gave (null without one, or "
            "when it was withheld: see `withheld`)."
        },
    )
    benefit = fields.Nested(
        GrantedBenefitSchema,
        required=True,
        allow_none=True,
        metadata={"description": "The benefit the grant_benefit action gave (null without one)."},
    )
    withheld = fields.List(
        fields.Nested(WithheldGrantSchema),
        required=True,
        metadata={"description": "The grants that gave nothing, and why (empty: none)."},
    )
    fired_at = UTCDateTime(required=True)


class AutomationBudgetExhaustedSchema(BudgetPeriodSchema):
    """The `data` of an `automation.budget_exhausted` event: sent once per automation and
    budget period, by the firing whose grant used it up or found too little left for its
    grant (the automation keeps firing, without its grants, until the next period)."""

    automation = fields.Nested(
        FiredAutomationSchema,
        required=True,
        metadata={"description": "The automation, at the version that used it up."},
    )


class ExperimentEventSchema(ma.Schema):
    """What every experiment event says of the experiment."""

    class Meta:
        ordered = True

    experiment_id = fields.UUID(required=True)
    key = fields.String(required=True, metadata={"example": "double-weekends"})
    status = fields.String(
        required=True,
        validate=validate.OneOf([s.value for s in ExperimentStatus]),
        metadata={"description": "Its status once the event happened."},
    )


class ExperimentStartedSchema(ExperimentEventSchema):
    """The `data` of an `experiment.started` event: an admin started the experiment (it
    exposes members within its window from now on)."""


class ExperimentEndedSchema(ExperimentEventSchema):
    """The `data` of an `experiment.ended` event: the experiment stopped and exposes no one
    any more; its results stay."""

    reason = fields.String(
        required=True,
        validate=validate.OneOf([r.value for r in EndReason]),
        metadata={
            "description": "stopped: an admin stopped it; window_ended: its ends_at passed "
            "(the jobs end it, as of its ends_at)."
        },
    )


class ExperimentFlaggedSchema(ExperimentEventSchema):
    """The `data` of an `experiment.flagged` event, sent once per experiment: the members
    exposed per arm do not fit its weights (a sample-ratio mismatch: chi-square p < 0.001),
    so its assignment or exposure recording is broken and no uplift of it can be trusted.
    It keeps running: stopping it is the admins' call."""

    observed = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        required=True,
        metadata={
            "description": "Members exposed per arm key.",
            "example": {"holdout": 5210, "fires": 4790},
        },
    )
    expected = fields.Dict(
        keys=fields.String(),
        values=fields.Float(),
        required=True,
        metadata={"description": "Members the weights expect per arm key, of the same total."},
    )
    p_value = fields.Float(required=True)
    flagged_at = UTCDateTime(required=True)


class RewardCodeEventSchema(ma.Schema):
    """What every reward code event says of the redemption."""

    class Meta:
        ordered = True

    id = fields.UUID(required=True, metadata={"description": "The reward redemption's id."})
    member_id = fields.String(required=True, metadata={"description": "The external id."})
    reward_id = fields.UUID(required=True)
    reward = fields.String(required=True, metadata={"description": "The reward's name."})
    code = fields.String(required=True)


class RewardCodeUsedSchema(RewardCodeEventSchema):
    """The `data` of a `reward.code_used` event: the checkout consumed the code (once)."""

    order_id = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "The shop's order the checkout named (null: none)."},
    )
    used_at = UTCDateTime(required=True)


class RewardRedemptionCancelledSchema(RewardCodeEventSchema):
    """The `data` of a `reward.redemption_cancelled` event: the redemption was cancelled
    before its code was used; its points, unit of stock and pooled code came back."""

    points_restored = fields.Integer(
        required=True, metadata={"description": "0 for a coupon an automation granted."}
    )
    cancelled_at = UTCDateTime(required=True)


class PointsForfeitedSchema(ma.Schema):
    """The `data` of a `points.forfeited` event: a member was closed (or erased) and gave up
    every point in one ledger transaction."""

    class Meta:
        ordered = True

    member_id = fields.String(required=True, metadata={"description": "The external id."})
    available = fields.Integer(
        required=True, metadata={"description": "Available points forfeited (negative: a debt)."}
    )
    pending = fields.Integer(required=True, metadata={"description": "Pending points forfeited."})
    released_holds = fields.List(
        fields.UUID(),
        required=True,
        metadata={"description": "Redemption holds released first, their points forfeited too."},
    )


class MemberErasedSchema(ma.Schema):
    """The `data` of a `member.erased` event: the member's personal data is gone; the
    pseudonym stands for them in every later event and read."""

    class Meta:
        ordered = True

    member_id = fields.String(required=True, metadata={"description": "The pseudonym."})
    erased_at = UTCDateTime(required=True)


class ReferralEventSchema(ma.Schema):
    """What every referral event says of the referral."""

    class Meta:
        ordered = True

    referral_id = fields.UUID(required=True)
    referrer_id = fields.String(
        required=True, metadata={"description": "The referrer's external_id."}
    )
    member_id = fields.String(
        required=True, metadata={"description": "The friend's (the referred member's) external_id."}
    )
    status = fields.String(
        required=True,
        validate=validate.OneOf([s.value for s in ReferralStatus]),
        metadata={"description": "The referral's status once the event happened."},
    )
    linked_at = UTCDateTime(required=True)


class ReferralLinkedSchema(ReferralEventSchema):
    """The `data` of a `referral.linked` event: a friend enrolled naming a referrer. Status
    `linked` waits for the friend's first order; `over_limit` (the referrer reached the
    program's limit for the period) is never rewarded."""


class ReferralRewardedSchema(ReferralEventSchema):
    """The `data` of a `referral.rewarded` event: the friend's first order passed its return
    window unrefunded, and both sides were credited (an inactive member, or a setting of 0,
    gets 0)."""

    order_id = fields.String(required=True, metadata={"description": "The friend's first order."})
    referrer_points = fields.Integer(required=True)
    friend_points = fields.Integer(required=True)
    rewarded_at = UTCDateTime(required=True)


class ReferralCancelledSchema(ReferralEventSchema):
    """The `data` of a `referral.cancelled` event: the friend's first order was refunded
    inside its return window, so neither side is rewarded."""

    order_id = fields.String(required=True)
    reason = fields.String(required=True, validate=validate.OneOf(["refunded"]))
    cancelled_at = UTCDateTime(required=True)


# Each event's `data`, documented in the OpenAPI document's components (as <Name>Event).
EVENT_PAYLOAD_SCHEMAS: dict[str, type[ma.Schema]] = {
    "rule.budget_exhausted": RuleBudgetExhaustedSchema,
    "points.forfeited": PointsForfeitedSchema,
    "member.erased": MemberErasedSchema,
    "reward.code_used": RewardCodeUsedSchema,
    "reward.redemption_cancelled": RewardRedemptionCancelledSchema,
    "automation.fired": AutomationFiredSchema,
    "automation.budget_exhausted": AutomationBudgetExhaustedSchema,
    "experiment.started": ExperimentStartedSchema,
    "experiment.ended": ExperimentEndedSchema,
    "experiment.flagged": ExperimentFlaggedSchema,
    "referral.linked": ReferralLinkedSchema,
    "referral.rewarded": ReferralRewardedSchema,
    "referral.cancelled": ReferralCancelledSchema,
}
