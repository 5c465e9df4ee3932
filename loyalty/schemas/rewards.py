from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from loyalty.ledger.policy import MAX_POINTS
from loyalty.rewards.definitions import RewardChanges, RewardDefinition
from loyalty.rewards.models import RewardKind
from loyalty.rewards.policy import CodeState, ValueType, parse_percent
from loyalty.schemas.common import EXTERNAL_ID, StrictSchema, UTCDateTime
from loyalty.schemas.orders import MoneySchema
from loyalty.schemas.segments import segment_keys

PERCENT_PATTERN = r"^\d{1,3}(\.\d{1,2})?$"


class Percent(fields.Field[int]):
    """A percentage as an integer (15) or a decimal string ("12.5"), loaded as basis points
    (1500, 1250): never a float, which could not say 12.5 exactly."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ma.ValidationError('Must be an integer or a decimal string, like 15 or "12.5".')
        try:
            return parse_percent(str(value))
        except ValueError as error:
            raise ma.ValidationError(str(error)) from None


class RewardInSchema(StrictSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    description = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(max=2000)
    )
    kind = fields.String(required=True, validate=validate.OneOf([k.value for k in RewardKind]))
    cost_points = fields.Integer(
        required=True, strict=True, validate=validate.Range(min=1, max=MAX_POINTS)
    )
    value_amount = fields.Integer(
        load_default=None,
        allow_none=True,
        strict=True,
        validate=validate.Range(min=1, max=10**12),
        metadata={"description": "fixed_discount: its value in minor units."},
    )
    percent_off = Percent(
        load_default=None,
        allow_none=True,
        metadata={
            "description": "percent_discount: the share of the order its code takes off, "
            'from 0.01 to 100, as an integer or a decimal string ("12.5"); a reward is worth '
            "an amount or a percentage, not both.",
            "oneOf": [
                {"type": "integer", "minimum": 1, "maximum": 100},
                {"type": "string", "pattern": PERCENT_PATTERN, "example": "12.5"},
            ],
        },
    )
    valid_days = fields.Integer(
        load_default=None,
        allow_none=True,
        strict=True,
        validate=validate.Range(min=1, max=3650),
        metadata={"description": "Days a redemption's code is honoured (null: no expiry)."},
    )
    stock = fields.Integer(
        load_default=None,
        allow_none=True,
        strict=True,
        validate=validate.Range(min=0, max=10**9),
        metadata={"description": "Units left; null is unlimited."},
    )
    min_tier = fields.String(
        load_default=None,
        allow_none=True,
        metadata={"description": "Code of the lowest tier that may redeem it."},
    )
    segments = segment_keys(
        "Saved segment keys the member must be in one of, as of the last "
        "insight refresh (empty: anyone). Each must be a live saved segment's key "
        "(unknown_segment otherwise): an RFM segment is named through a saved segment "
        "whose filter has it in rfm_segments."
    )
    per_member_limit = fields.Integer(
        load_default=None, allow_none=True, strict=True, validate=validate.Range(min=1, max=10**6)
    )
    starts_at = UTCDateTime(load_default=None, allow_none=True)
    ends_at = UTCDateTime(load_default=None, allow_none=True)
    active = fields.Boolean(load_default=True)
    codes = fields.List(
        fields.String(validate=validate.Length(min=1, max=100)),
        load_default=list,
        validate=validate.Length(max=10000),
        metadata={"description": "coupon: codes to hand out, one per redemption (else generated)."},
    )

    @ma.validates_schema
    def _consistent(self, data: dict[str, Any], partial: Any = None, **_: Any) -> None:
        if (
            data.get("kind") == RewardKind.FIXED_DISCOUNT
            and not data.get("value_amount")
            and not partial
        ):
            raise ma.ValidationError("Required for fixed_discount rewards.", "value_amount")
        if (
            data.get("kind") == RewardKind.PERCENT_DISCOUNT
            and not data.get("percent_off")
            and not partial
        ):
            raise ma.ValidationError("Required for percent_discount rewards.", "percent_off")
        if data.get("starts_at") and data.get("ends_at") and data["ends_at"] <= data["starts_at"]:
            raise ma.ValidationError("Must be after starts_at.", "ends_at")

    @ma.post_load
    def _command(self, data: dict[str, Any], **_: Any) -> RewardDefinition | RewardChanges:
        return RewardDefinition(**_typed(data))


def _typed(data: dict[str, Any]) -> dict[str, Any]:
    if "percent_off" in data:
        data["percent_off_bps"] = data.pop("percent_off")
    if "kind" in data:
        data["kind"] = RewardKind(data["kind"])
    if "codes" in data:
        data["codes"] = tuple(data["codes"])
    if "segments" in data:
        data["segments"] = tuple(data["segments"])
    return data


class RewardUpdateSchema(RewardInSchema):
    @ma.validates_schema
    def _not_empty(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ma.ValidationError("Name at least one field to change.", "_schema")

    @ma.post_load
    def _command(self, data: dict[str, Any], **_: Any) -> RewardDefinition | RewardChanges:
        return RewardChanges(**_typed(data))


class RewardSchema(ma.Schema):
    class Meta:
        ordered = True

    id = fields.UUID(required=True)
    name = fields.String(required=True)
    description = fields.String(required=True, allow_none=True)
    kind = fields.String(required=True)
    cost_points = fields.Integer(required=True)
    value = fields.Nested(MoneySchema, required=True, allow_none=True)
    percent_off = fields.String(
        required=True,
        allow_none=True,
        metadata={"pattern": PERCENT_PATTERN, "example": "12.5"},
    )
    valid_days = fields.Integer(required=True, allow_none=True)
    stock = fields.Integer(required=True, allow_none=True)
    min_tier = fields.String(required=True, allow_none=True)
    segments = fields.List(fields.String(), required=True)
    per_member_limit = fields.Integer(required=True, allow_none=True)
    starts_at = UTCDateTime(required=True, allow_none=True)
    ends_at = UTCDateTime(required=True, allow_none=True)
    active = fields.Boolean(required=True)


class RewardListSchema(ma.Schema):
    items = fields.List(fields.Nested(RewardSchema), required=True)


class CatalogItemSchema(RewardSchema):
    redeemable = fields.Boolean(required=True)
    locked_reason = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": 'Why the member cannot redeem it now, e.g. "reach Gold".'},
    )


class CatalogSchema(ma.Schema):
    items = fields.List(fields.Nested(CatalogItemSchema), required=True)


class CatalogQuerySchema(StrictSchema):
    member_id = fields.String(
        required=True, validate=EXTERNAL_ID, metadata={"example": "cust_1001"}
    )


class AdminRewardQuerySchema(StrictSchema):
    active = fields.Boolean(load_default=None, allow_none=True)


class RewardRedeemInSchema(StrictSchema):
    reward_id = fields.UUID(required=True)


class RewardRedemptionSchema(ma.Schema):
    class Meta:
        ordered = True

    id = fields.UUID(required=True)
    reward_id = fields.UUID(required=True)
    member_id = fields.String(required=True)
    points = fields.Integer(required=True)
    code = fields.String(required=True, metadata={"description": "The coupon or voucher code."})
    created_at = UTCDateTime(required=True)
    expires_at = UTCDateTime(
        required=True,
        allow_none=True,
        metadata={"description": "When the code stops being honoured (null: never)."},
    )


CODE_STATES = [state.value for state in CodeState]


class RewardCodeCheckSchema(StrictSchema):
    code = fields.String(
        required=True,
        validate=validate.Length(min=1, max=100),
        metadata={"example": "LOY-1A2B3C4D5E"},
    )
    member_id = fields.String(
        load_default=None,
        validate=EXTERNAL_ID,
        metadata={
            "description": "The member at the checkout: `usable` is true only for their code.",
            "example": "cust_1001",
        },
    )


class RewardCodeConsumeSchema(StrictSchema):
    code = fields.String(
        required=True,
        validate=validate.Length(min=1, max=100),
        metadata={"example": "LOY-1A2B3C4D5E"},
    )
    member_id = fields.String(
        required=True,
        validate=EXTERNAL_ID,
        metadata={"description": "The member using it: only theirs.", "example": "cust_1001"},
    )
    order_id = fields.String(
        load_default=None,
        validate=validate.Length(min=1, max=128),
        metadata={
            "description": "The order it is used on. Consuming again for the same order "
            "answers the same (a retry); for another order: reward_code_used."
        },
    )


class RewardValueSchema(ma.Schema):
    class Meta:
        ordered = True

    type = fields.String(required=True, validate=validate.OneOf([t.value for t in ValueType]))
    amount = fields.Integer(
        required=True, allow_none=True, metadata={"description": "fixed_amount: minor units."}
    )
    currency = fields.String(
        required=True, allow_none=True, metadata={"description": "fixed_amount: ISO 4217."}
    )
    percent = fields.String(
        required=True,
        allow_none=True,
        metadata={
            "description": "percent_off: the share of the order, a decimal string.",
            "pattern": PERCENT_PATTERN,
            "example": "12.5",
        },
    )


class RewardCodeSchema(ma.Schema):
    class Meta:
        ordered = True

    code = fields.String(required=True)
    usable = fields.Boolean(
        required=True,
        metadata={
            "description": "Whether the checkout may consume it now: active and, when "
            "member_id was sent, that member's."
        },
    )
    status = fields.String(
        required=True,
        validate=validate.OneOf(CODE_STATES),
        metadata={"description": "active, used, expired (past expires_at) or cancelled."},
    )
    member_id = fields.String(required=True, metadata={"description": "Whose code it is."})
    redemption_id = fields.UUID(required=True)
    reward_id = fields.UUID(required=True)
    reward = fields.String(required=True, metadata={"description": "The reward's name."})
    kind = fields.String(required=True, validate=validate.OneOf([k.value for k in RewardKind]))
    value = fields.Nested(
        RewardValueSchema,
        required=True,
        allow_none=True,
        metadata={"description": "What it takes off the order (null: a product or gift)."},
    )
    points = fields.Integer(
        required=True, metadata={"description": "Points it cost (0: a granted coupon)."}
    )
    created_at = UTCDateTime(required=True)
    expires_at = UTCDateTime(required=True, allow_none=True)
    used_at = UTCDateTime(required=True, allow_none=True)
    used_order_id = fields.String(required=True, allow_none=True)
    cancelled_at = UTCDateTime(required=True, allow_none=True)
