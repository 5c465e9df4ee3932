from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from loyalty.schemas.common import StrictSchema, UTCDateTime, page_schema


class AuditQuerySchema(StrictSchema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = fields.String(load_default=None, validate=validate.Length(max=100))
    target_type = fields.String(
        load_default=None,
        validate=validate.OneOf(
            [
                "program",
                "rule",
                "automation",
                "experiment",
                "tier",
                "reward",
                "member",
                "api_key",
                "webhook",
            ]
        ),
    )
    target_id = fields.String(load_default=None, validate=validate.Length(min=1, max=128))
    from_ = UTCDateTime(data_key="from", load_default=None)
    to = UTCDateTime(load_default=None)


class AuditEntrySchema(ma.Schema):
    class Meta:
        ordered = True

    actor = fields.String(required=True, metadata={"description": "Name of the API key."})
    action = fields.String(required=True, metadata={"example": "rule.update"})
    target_type = fields.String(required=True)
    target_id = fields.String(required=True)
    before = fields.Dict(required=True, allow_none=True)
    after = fields.Dict(required=True, allow_none=True)
    created_at = UTCDateTime(required=True)


AuditPageSchema = page_schema(AuditEntrySchema, "AuditPage")
