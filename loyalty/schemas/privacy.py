"""A member's export and erasure."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from loyalty.ledger.models import LotState, RedemptionStatus
from loyalty.members.models import MemberStatus
from loyalty.schemas.common import EXTERNAL_ID, StrictSchema, UTCDateTime
from loyalty.schemas.ledger import TransactionSchema
from loyalty.schemas.members import ConsentSchema


class _Ordered(ma.Schema):
    class Meta:
        ordered = True


class ExportProfileSchema(_Ordered):
    external_id = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf([s.value for s in MemberStatus]))
    email = fields.String(required=True, allow_none=True)
    name = fields.String(required=True, allow_none=True)
    birthday = fields.Date(required=True, allow_none=True)
    metadata = fields.Dict(required=True)
    referred_by = fields.String(required=True, allow_none=True)
    tier = fields.String(required=True, allow_none=True, metadata={"description": "Tier code."})
    tier_retained_until = UTCDateTime(required=True, allow_none=True)
    enrolled_at = UTCDateTime(required=True)
    updated_at = UTCDateTime(required=True)
    erased_at = UTCDateTime(required=True, allow_none=True)


class ExportBalanceSchema(_Ordered):
    available = fields.Integer(required=True)
    pending = fields.Integer(required=True)
    held = fields.Integer(required=True)
    last_activity_at = UTCDateTime(required=True, allow_none=True)


class ExportLotSchema(_Ordered):
    points = fields.Integer(required=True)
    remaining = fields.Integer(required=True)
    state = fields.String(required=True, validate=validate.OneOf([s.value for s in LotState]))
    available_at = UTCDateTime(required=True)
    expires_at = UTCDateTime(required=True, allow_none=True)
    created_at = UTCDateTime(required=True)


class ExportRefundSchema(_Ordered):
    refund_id = fields.String(required=True)
    amount = fields.Integer(required=True)
    points_reversed = fields.Integer(required=True)
    points_restored = fields.Integer(required=True)
    created_at = UTCDateTime(required=True)


class ExportOrderSchema(_Ordered):
    order_id = fields.String(required=True)
    currency = fields.String(required=True)
    subtotal = fields.Integer(required=True)
    discount = fields.Integer(required=True)
    total = fields.Integer(required=True)
    redeemed_points = fields.Integer(required=True)
    points_earned = fields.Integer(required=True)
    lines = fields.List(fields.Dict(), required=True)
    breakdown = fields.List(fields.Dict(), required=True)
    placed_at = UTCDateTime(required=True)
    refunded_amount = fields.Integer(required=True)
    points_reversed = fields.Integer(required=True)
    points_restored = fields.Integer(required=True)
    cart_id = fields.String(required=True, allow_none=True)
    refunds = fields.List(fields.Nested(ExportRefundSchema), required=True)


class ExportQuotedCartSchema(_Ordered):
    cart_id = fields.String(required=True)
    first_quoted_at = UTCDateTime(required=True)
    quoted_at = UTCDateTime(required=True)
    amount = fields.Integer(required=True)
    currency = fields.String(required=True)
    points_to_earn = fields.Integer(required=True)
    items = fields.List(fields.Dict(), required=True)


class ExportEventSchema(_Ordered):
    event_id = fields.String(required=True)
    type = fields.String(required=True)
    occurred_at = UTCDateTime(required=True)
    attributes = fields.Dict(required=True)
    points_earned = fields.Integer(required=True)


class ExportRedemptionSchema(_Ordered):
    redemption_id = fields.UUID(required=True)
    points = fields.Integer(required=True)
    value = fields.Integer(required=True)
    currency = fields.String(required=True)
    status = fields.String(
        required=True, validate=validate.OneOf([s.value for s in RedemptionStatus])
    )
    order_id = fields.String(required=True, allow_none=True)
    expires_at = UTCDateTime(required=True)
    created_at = UTCDateTime(required=True)
    captured_at = UTCDateTime(required=True, allow_none=True)
    released_at = UTCDateTime(required=True, allow_none=True)


class ExportRewardRedemptionSchema(_Ordered):
    id = fields.UUID(required=True)
    reward_id = fields.UUID(required=True)
    reward_name = fields.String(required=True)
    points = fields.Integer(required=True)
    code = fields.String(required=True)
    created_at = UTCDateTime(required=True)
    expires_at = UTCDateTime(required=True, allow_none=True)


class ExportBenefitGrantSchema(_Ordered):
    code = fields.String(required=True)
    params = fields.Dict(required=True)
    reason = fields.String(required=True, allow_none=True)
    starts_at = UTCDateTime(required=True)
    ends_at = UTCDateTime(required=True, allow_none=True)
    created_at = UTCDateTime(required=True)


class ExportTierChangeSchema(_Ordered):
    from_tier = fields.String(required=True, allow_none=True)
    to_tier = fields.String(required=True, allow_none=True)
    reason = fields.String(required=True)
    qualifying_points = fields.Integer(required=True)
    changed_at = UTCDateTime(required=True)


class ExportAssignmentSchema(_Ordered):
    experiment = fields.String(required=True, metadata={"description": "The experiment's key."})
    experiment_name = fields.String(required=True)
    arm = fields.String(required=True, metadata={"description": "The arm's key."})
    first_exposed_at = UTCDateTime(required=True)
    exposure_source = fields.String(required=True)


class ExportFiringSchema(_Ordered):
    id = fields.UUID(required=True)
    automation_id = fields.UUID(required=True)
    automation_name = fields.String(required=True)
    version = fields.Integer(required=True)
    fired_at = UTCDateTime(required=True)
    details = fields.Dict(required=True)
    points_granted = fields.Integer(required=True)


class MemberExportSchema(_Ordered):
    exported_at = UTCDateTime(required=True)
    profile = fields.Nested(ExportProfileSchema, required=True)
    consent = fields.Nested(ConsentSchema, required=True)
    balance = fields.Nested(ExportBalanceSchema, required=True)
    lots = fields.List(fields.Nested(ExportLotSchema), required=True)
    transactions = fields.List(fields.Nested(TransactionSchema), required=True)
    orders = fields.List(fields.Nested(ExportOrderSchema), required=True)
    quoted_carts = fields.List(fields.Nested(ExportQuotedCartSchema), required=True)
    events = fields.List(fields.Nested(ExportEventSchema), required=True)
    redemptions = fields.List(fields.Nested(ExportRedemptionSchema), required=True)
    reward_redemptions = fields.List(fields.Nested(ExportRewardRedemptionSchema), required=True)
    benefit_grants = fields.List(fields.Nested(ExportBenefitGrantSchema), required=True)
    tier_history = fields.List(fields.Nested(ExportTierChangeSchema), required=True)
    experiment_assignments = fields.List(fields.Nested(ExportAssignmentSchema), required=True)
    automation_firings = fields.List(fields.Nested(ExportFiringSchema), required=True)


class ErasureSchema(_Ordered):
    member_id = fields.String(
        required=True,
        attribute="pseudonym",
        metadata={"description": "The pseudonym that now stands for the member."},
    )
    erased_at = UTCDateTime(required=True)


class MergeSchema(StrictSchema):
    into = fields.String(
        required=True,
        validate=EXTERNAL_ID,
        metadata={"description": "external_id of the member who stays.", "example": "cust_1002"},
    )
