from __future__ import annotations

import datetime as dt
from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from loyalty.members.models import EXTERNAL_ID_PATTERN

EXTERNAL_ID = validate.Regexp(
    EXTERNAL_ID_PATTERN,
    error="1-128 characters: letters, digits and . _ : @ + -, starting with a letter or digit.",
)


class UTCDateTime(fields.AwareDateTime):
    """A timezone-aware moment that exists in UTC: 0001-01-01T00:00:00+14:00 and
    9999-12-31T23:59:59-14:00 are valid ISO 8601 but fall outside any date UTC can hold."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            moment.astimezone(dt.UTC)
        except OverflowError:
            raise self.make_error("invalid", input=value, obj_type=self.OBJ_TYPE) from None
        return moment


class JSONBoolean(fields.Boolean):
    """true or false, nothing else: not marshmallow's "yes", "1" or 1."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class StrictSchema(ma.Schema):
    """Unknown fields are an error, so a typo in a field name never passes silently."""

    class Meta:
        unknown = ma.RAISE
        ordered = True


class ProblemSchema(ma.Schema):
    """An RFC 9457 problem document (media type application/problem+json).

    Refusals add their own members beside these (insufficient_points: `available`,
    `requested`; refund_exceeds_order: `refundable`; ...), as RFC 9457 allows.
    """

    class Meta:
        ordered = True
        unknown = ma.INCLUDE

    type = fields.String(required=True, metadata={"example": "urn:problem:loyalty:not_found"})
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    detail = fields.String(required=True)
    code = fields.String(
        required=True,
        metadata={"description": "Stable machine-readable error code.", "example": "not_found"},
    )
    errors = fields.Dict(
        keys=fields.String(),
        values=fields.List(fields.String()),
        metadata={"description": "Messages by field, for validation_error and unknown_segment."},
    )


class PageQuerySchema(StrictSchema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = fields.String(load_default=None, validate=validate.Length(max=100))


def page_schema(item: type[ma.Schema], name: str) -> type[ma.Schema]:
    """A {"items": [...], "next_cursor": ...} page of `item`."""
    return ma.Schema.from_dict(
        {
            "items": fields.List(fields.Nested(item), required=True),
            "next_cursor": fields.String(
                required=True,
                allow_none=True,
                metadata={"description": "Pass as ?cursor= for the next page; null at the end."},
            ),
        },
        name=name,
    )
