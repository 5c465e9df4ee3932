from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from loyalty.ledger.policy import MAX_POINTS
from loyalty.schemas.common import StrictSchema, UTCDateTime
from loyalty.tiers.benefits import GrantBenefit
from loyalty.tiers.definitions import TierChanges, TierDefinition

CODE = validate.Regexp(r"^[a-z][a-z0-9_]{0,31}$", error="Lowercase letters, digits, _; 1-32.")
FACTOR = re.compile(r"\d{1,3}(\.\d{1,4})?")
BENEFIT_CODE = validate.Regexp(r"^[a-z][a-z0-9_]{0,63}$", error="Lowercase letters, digits, _.")


class BenefitDefinitionSchema(StrictSchema):
    code = fields.String(
        required=True,
        validate=BENEFIT_CODE,
        metadata={
            "description": "Stable code the checkout acts on, e.g. free_shipping, "
            "birthday_gift, points_multiplier.",
            "example": "free_shipping",
        },
    )
    params = fields.Dict(
        keys=fields.String(),
        load_default=dict,
        metadata={"description": 'Benefit parameters; points_multiplier needs {"factor": "1.25"}.'},
    )

    @ma.validates_schema
    def _multiplier_factor(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("code") == "points_multiplier":
            factor = str((data.get("params") or {}).get("factor", ""))
            # The same bounds as a multiplier rule's factor: anything else would fail every
            # order of the tier's members.
            if not FACTOR.fullmatch(factor) or not 1 < Decimal(factor) <= 100:
                raise ma.ValidationError(
                    'points_multiplier needs params.factor above 1 and at most 100, like "1.5".',
                    "params",
                )


class TierInSchema(StrictSchema):
    code = fields.String(required=True, validate=CODE, metadata={"example": "gold"})
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    rank = fields.Integer(
        required=True,
        strict=True,
        validate=validate.Range(min=1, max=1000),
        metadata={"description": "Higher is better; unique."},
    )
    threshold = fields.Integer(
        required=True,
        strict=True,
        validate=validate.Range(min=0, max=MAX_POINTS),
        metadata={"description": "Qualifying points over the program's tier window."},
    )
    retention_months = fields.Integer(
        strict=True,
        load_default=12,
        validate=validate.Range(min=0, max=120),
        metadata={"description": "Kept at least this long after last qualifying."},
    )
    benefits = fields.List(
        fields.Nested(BenefitDefinitionSchema), load_default=list, validate=validate.Length(max=50)
    )

    @ma.post_load
    def _command(self, data: dict[str, Any], **_: Any) -> TierDefinition | TierChanges:
        if "benefits" in data:
            data["benefits"] = tuple(data["benefits"])
        return TierDefinition(**data)


class TierUpdateSchema(TierInSchema):
    @ma.validates_schema
    def _not_empty(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ma.ValidationError("Name at least one field to change.", "_schema")

    @ma.post_load
    def _command(self, data: dict[str, Any], **_: Any) -> TierDefinition | TierChanges:
        if "benefits" in data:
            data["benefits"] = tuple(data["benefits"])
        return TierChanges(**data)


class TierSchema(ma.Schema):
    class Meta:
        ordered = True

    code = fields.String(required=True)
    name = fields.String(required=True)
    rank = fields.Integer(required=True)
    threshold = fields.Integer(required=True)
    retention_months = fields.Integer(required=True)
    benefits = fields.List(fields.Nested(BenefitDefinitionSchema), required=True)
    members = fields.Integer(required=True, metadata={"description": "Members in the tier now."})


class TierListSchema(ma.Schema):
    items = fields.List(fields.Nested(TierSchema), required=True)


class TierRefSchema(ma.Schema):
    class Meta:
        ordered = True

    code = fields.String(required=True)
    name = fields.String(required=True)


class NextTierSchema(TierRefSchema):
    threshold = fields.Integer(required=True)


class TierProgressSchema(ma.Schema):
    class Meta:
        ordered = True

    qualifying_points = fields.Integer(required=True)
    next_tier = fields.Nested(NextTierSchema, required=True, allow_none=True)
    points_to_next = fields.Integer(required=True, allow_none=True)
    retained_until = UTCDateTime(
        required=True,
        allow_none=True,
        metadata={"description": "The member keeps the current tier at least until then."},
    )


class TierChangeSchema(ma.Schema):
    class Meta:
        ordered = True

    from_tier = fields.String(required=True, allow_none=True)
    to_tier = fields.String(required=True, allow_none=True)
    reason = fields.String(
        required=True, metadata={"description": "qualified, retention_expired or merged"}
    )
    qualifying_points = fields.Integer(required=True)
    changed_at = UTCDateTime(required=True)


class TierChangeListSchema(ma.Schema):
    items = fields.List(fields.Nested(TierChangeSchema), required=True)


class BenefitSchema(ma.Schema):
    class Meta:
        ordered = True

    code = fields.String(required=True)
    params = fields.Dict(required=True)
    source = fields.String(required=True, validate=validate.OneOf(["tier", "grant"]))
    ends_at = UTCDateTime(required=True, allow_none=True)


class BenefitListSchema(ma.Schema):
    items = fields.List(fields.Nested(BenefitSchema), required=True)


class BenefitGrantInSchema(BenefitDefinitionSchema):
    reason = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=500))
    starts_at = UTCDateTime(load_default=None, allow_none=True)
    ends_at = UTCDateTime(load_default=None, allow_none=True)

    @ma.post_load
    def _command(self, data: dict[str, Any], **_: Any) -> GrantBenefit:
        return GrantBenefit(**{**data, "params": data.get("params") or {}})
