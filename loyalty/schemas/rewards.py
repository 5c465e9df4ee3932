from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from loyalty.ledger.policy import MAX_POINTS
from loyalty.rewards.definitions import RewardChanges, RewardDefinition
from loyalty.rewards.models import RewardKind
from loyalty.schemas.common import EXTERNAL_ID, StrictSchema, UTCDateTime
from loyalty.schemas.orders import MoneySchema
from loyalty.schemas.segments import segment_keys


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
        if data.get("starts_at") and data.get("ends_at") and data["ends_at"] <= data["starts_at"]:
            raise ma.ValidationError("Must be after starts_at.", "ends_at")

    @ma.post_load
    def _command(self, data: dict[str, Any], **_: Any) -> RewardDefinition | RewardChanges:
        return RewardDefinition(**_typed(data))


def _typed(data: dict[str, Any]) -> dict[str, Any]:
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
