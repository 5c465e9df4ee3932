from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import fields

from loyalty.schemas.common import StrictSchema
from loyalty.schemas.orders import MoneySchema


class LiabilitySchema(ma.Schema):
    class Meta:
        ordered = True

    available = fields.Integer(required=True)
    pending = fields.Integer(required=True)
    held = fields.Integer(required=True)
    outstanding = fields.Integer(
        required=True,
        metadata={"description": "From the program accounts; equals the sum over members."},
    )
    value = fields.Nested(
        MoneySchema, required=True, metadata={"description": "Money value of outstanding."}
    )
    program_accounts = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    consistent = fields.Boolean(
        required=True,
        metadata={"description": "Program accounts agree with the members' balances."},
    )


class ActivityQuerySchema(StrictSchema):
    from_ = fields.Date(data_key="from", required=True, metadata={"example": "2026-11-01"})
    to = fields.Date(required=True, metadata={"example": "2026-11-30"})

    @ma.validates_schema
    def _ordered(self, data: dict[str, Any], **_: Any) -> None:
        if data["to"] < data["from_"]:
            raise ma.ValidationError("Must not be before from.", "to")


class ActivityDaySchema(ma.Schema):
    class Meta:
        ordered = True

    date = fields.Date(required=True)
    earned = fields.Integer(required=True)
    redeemed = fields.Integer(required=True)
    restored = fields.Integer(required=True)
    expired = fields.Integer(required=True)
    adjusted = fields.Integer(required=True)
    reversed = fields.Integer(required=True)
    new_members = fields.Integer(required=True)


class ActivitySchema(ma.Schema):
    class Meta:
        ordered = True

    days = fields.List(fields.Nested(ActivityDaySchema), required=True)
    members_by_tier = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
