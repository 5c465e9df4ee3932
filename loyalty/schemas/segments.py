"""Saved segments as the admin API takes and shows them."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from loyalty.errors import ValidationFailed
from loyalty.insight.saved_segments import SegmentChanges, SegmentDefinition
from loyalty.insight.segment_filter import MAX_BOUND, MAX_ITEMS, RANGES, SegmentFilter
from loyalty.insight.segments import Segment
from loyalty.members.models import MemberStatus
from loyalty.members.segments import SEGMENT_KEY_PATTERN
from loyalty.schemas.common import StrictSchema, UTCDateTime, page_schema

BOUND = validate.Range(min=-MAX_BOUND, max=MAX_BOUND)


class IntRangeSchema(StrictSchema):
    min = fields.Integer(load_default=None, allow_none=True, strict=True, validate=BOUND)
    max = fields.Integer(load_default=None, allow_none=True, strict=True, validate=BOUND)


class ShareRangeSchema(StrictSchema):
    min = fields.Float(load_default=None, allow_none=True, allow_nan=False)
    max = fields.Float(load_default=None, allow_none=True, allow_nan=False)


def _range(name: str, description: str) -> fields.Nested:
    schema = ShareRangeSchema if not RANGES[name][3] else IntRangeSchema
    return fields.Nested(
        schema, load_default=None, allow_none=True, metadata={"description": description}
    )


def _list(values: list[str] | None, description: str) -> fields.List[Any]:
    item = (
        fields.String(validate=validate.OneOf(values))
        if values
        else fields.String(validate=validate.Length(min=1, max=32))
    )
    return fields.List(
        item,
        load_default=list,
        validate=validate.Length(max=MAX_ITEMS),
        metadata={"description": description},
    )


class SegmentFilterSchema(StrictSchema):
    """Every criterion named must hold; a list holds when any of its values does; a range
    includes both bounds. Name at least one."""

    rfm_segments = _list([s.value for s in Segment], "RFM segment codes (any of them).")
    tiers = _list(None, "Tier codes (any of them).")
    statuses = _list([s.value for s in MemberStatus], "Member statuses (any of them).")
    recency_score = _range("recency_score", "R score range, 1-5.")
    frequency_score = _range("frequency_score", "F score range, 1-5.")
    monetary_score = _range("monetary_score", "M score range, 1-5.")
    orders = _range("orders", "Purchases as of the refresh.")
    net_revenue = _range("net_revenue", "Net revenue, minor units.")
    predicted_value = _range("predicted_value", "Predicted lifetime value, minor units.")
    days_since_last_order = _range("days_since_last_order", "Days since the last purchase.")
    probability_alive = _range("probability_alive", "Probability still buying, 0 to 1.")
    metadata = fields.Dict(
        keys=fields.String(validate=validate.Length(min=1, max=100)),
        values=fields.Raw(),
        load_default=dict,
        validate=validate.Length(max=MAX_ITEMS),
        metadata={"description": "Member metadata keys equal to a string, integer or boolean."},
    )

    @ma.post_load
    def _typed(self, data: dict[str, Any], **_: Any) -> SegmentFilter:
        try:
            return SegmentFilter.from_json(data)
        except ValidationFailed as failed:
            errors = failed.extra["errors"]
            raise ma.ValidationError(
                {k.removeprefix("filter.") or "_schema": v for k, v in errors.items()}
            ) from None


def segment_keys(description: str) -> fields.List[str]:
    """A list of at most 20 saved segment keys (rules, rewards and automations name the
    segments they are limited to so)."""
    return fields.List(
        fields.String(validate=validate.Regexp(SEGMENT_KEY_PATTERN)),
        validate=validate.Length(max=20),
        load_default=list,
        metadata={"description": description},
    )


class SegmentInSchema(StrictSchema):
    key = fields.String(
        required=True,
        validate=validate.Regexp(SEGMENT_KEY_PATTERN),
        metadata={"description": "Lowercase slug naming the segment in rules, rewards, events."},
    )
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    description = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(max=2000)
    )
    filter = fields.Nested(SegmentFilterSchema, required=True)

    @ma.post_load
    def _command(self, data: dict[str, Any], **_: Any) -> SegmentDefinition:
        return SegmentDefinition(**data)


class SegmentUpdateSchema(StrictSchema):
    name = fields.String(validate=validate.Length(min=1, max=200))
    description = fields.String(allow_none=True, validate=validate.Length(max=2000))
    filter = fields.Nested(SegmentFilterSchema)

    @ma.validates_schema
    def _not_empty(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ma.ValidationError("Name at least one field to change.", "_schema")

    @ma.post_load
    def _command(self, data: dict[str, Any], **_: Any) -> SegmentChanges:
        return SegmentChanges(
            name=data.get("name"),
            description=data.get("description"),
            description_given="description" in data,
            filter=data.get("filter"),
        )


class SegmentSchema(ma.Schema):
    class Meta:
        ordered = True

    key = fields.String(required=True)
    name = fields.String(required=True)
    description = fields.String(required=True, allow_none=True)
    filter = fields.Dict(required=True)
    members = fields.Integer(
        required=True, metadata={"description": "Members as of the last insight refresh."}
    )
    created_at = UTCDateTime(required=True)
    updated_at = UTCDateTime(required=True)


SegmentPageSchema = page_schema(SegmentSchema, "SegmentPage")
