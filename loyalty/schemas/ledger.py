from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from loyalty.ledger.models import Account, TransactionKind
from loyalty.ledger.policy import MAX_POINTS
from loyalty.schemas.common import StrictSchema, UTCDateTime, page_schema


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
    entries = fields.List(
        fields.Nested(EntrySchema),
        required=True,
        metadata={"description": "The balanced entries: they always sum to zero."},
    )


TransactionPageSchema = page_schema(TransactionSchema, "TransactionPage")


class AdjustmentSchema(StrictSchema):
    points = fields.Integer(
        required=True,
        strict=True,
        validate=validate.Range(min=-MAX_POINTS, max=MAX_POINTS),
        metadata={"description": "Points to add (positive) or remove (negative); not zero."},
    )
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))
