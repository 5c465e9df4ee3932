from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from loyalty.ledger.models import Account, TransactionKind
from loyalty.ledger.policy import MAX_POINTS
from loyalty.schemas.common import StrictSchema, UTCDateTime, page_schema
from loyalty.schemas.orders import ContributionSchema


class EntrySchema(ma.Schema):
    class Meta:
        ordered = True

    account = fields.String(required=True, validate=validate.OneOf([a.value for a in Account]))
    amount = fields.Integer(required=True)


class TransactionSchema(ma.Schema):
    class Meta:
        ordered = True

    id = fields.UUID(required=True, attribute="public_id")
    kind = fields.String(required=True, validate=validate.OneOf([k.value for k in TransactionKind]))
    points = fields.Integer(
        required=True,
        metadata={"description": "Change to the member's available + pending points."},
    )
    effective_at = UTCDateTime(required=True)
    created_at = UTCDateTime(required=True)
    reference = fields.String(required=True, allow_none=True)
    reason = fields.String(required=True, allow_none=True)
    order_id = fields.String(
        required=True, allow_none=True, metadata={"description": "The order it was earned on."}
    )
    event_id = fields.String(
        required=True, allow_none=True, metadata={"description": "The event it was earned for."}
    )
    breakdown = fields.List(
        fields.Nested(ContributionSchema),
        required=True,
        metadata={
            "description": "The rules behind earned points, as they were when earned "
            "(empty for anything else)."
        },
    )
    entries = fields.List(
        fields.Nested(EntrySchema),
        required=True,
        metadata={"description": "The balanced entries: they always sum to zero."},
    )


TransactionPageSchema = page_schema(TransactionSchema, "TransactionPage")


class LotSchema(ma.Schema):
    class Meta:
        ordered = True

    points = fields.Integer(required=True, metadata={"description": "Points it was credited."})
    remaining = fields.Integer(required=True, metadata={"description": "Points left in it."})
    state = fields.String(
        required=True,
        validate=validate.OneOf(["pending", "available"]),
        metadata={"description": "pending: in the return window until available_at."},
    )
    credited_by = fields.String(
        required=True,
        validate=validate.OneOf([k.value for k in TransactionKind]),
        metadata={"description": "The kind of transaction that credited it (earn, adjust, ...)."},
    )
    earned_at = UTCDateTime(required=True)
    available_at = UTCDateTime(required=True)
    expires_at = UTCDateTime(
        required=True, allow_none=True, metadata={"description": "null: never expires."}
    )
    order_id = fields.String(required=True, allow_none=True)
    event_id = fields.String(required=True, allow_none=True)


LotPageSchema = page_schema(LotSchema, "LotPage")


class AdjustmentSchema(StrictSchema):
    points = fields.Integer(
        required=True,
        strict=True,
        validate=validate.Range(min=-MAX_POINTS, max=MAX_POINTS),
        metadata={"description": "Points to add (positive) or remove (negative); not zero."},
    )
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))
