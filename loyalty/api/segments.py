"""Admin: saved segments (named filters over member insight, recomputed at each refresh)."""

from __future__ import annotations

import dataclasses
from typing import Any

from flask.views import MethodView

from loyalty.api.auth import current_caller, requires
from loyalty.api.base import Blueprint
from loyalty.api.replica import reads_from_replica
from loyalty.extensions import db
from loyalty.insight import saved_segments as segments
from loyalty.insight.saved_segments import SegmentChanges, SegmentDefinition, SegmentView
from loyalty.pagination import cursor_to, position_of
from loyalty.schemas.common import PageQuerySchema
from loyalty.schemas.segments import (
    SegmentInSchema,
    SegmentPageSchema,
    SegmentSchema,
    SegmentUpdateSchema,
)

blp = Blueprint("segments", __name__, url_prefix="/v1/admin", description="Admin: saved segments.")


def segment_body(segment: SegmentView) -> dict[str, Any]:
    return dataclasses.asdict(segment)


@blp.route("/segments")
class Segments(MethodView):
    @reads_from_replica
    @requires("admin")
    @blp.arguments(PageQuerySchema, location="query")
    @blp.response(200, SegmentPageSchema)
    @blp.alt_response(422, description="Bad limit or cursor.")
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """Saved segments with their member counts, newest first"""
        found, next_position = segments.list_segments(
            db.session(), limit=query["limit"], after=position_of(query["cursor"])
        )
        return {
            "items": [segment_body(segment) for segment in found],
            "next_cursor": cursor_to(next_position),
        }

    @requires("admin")
    @blp.arguments(
        SegmentInSchema,
        example={
            "key": "vip_at_risk",
            "name": "VIPs at risk",
            "description": "Big spenders gone quiet",
            "filter": {
                "rfm_segments": ["at_risk", "cannot_lose_them"],
                "net_revenue": {"min": 50000},
                "probability_alive": {"max": 0.5},
            },
        },
    )
    @blp.response(201, SegmentSchema)
    @blp.alt_response(409, description="The key is, or was, in use.")
    def post(self, definition: SegmentDefinition) -> dict[str, Any]:
        """Save a segment (members from the next insight refresh)"""
        return segment_body(
            segments.create_segment(db.session(), definition, current_caller().name)
        )


@blp.route("/segments/<string:segment_key>")
class Segment(MethodView):
    @reads_from_replica
    @requires("admin")
    @blp.response(200, SegmentSchema)
    @blp.alt_response(404, description="No such segment.")
    def get(self, segment_key: str) -> dict[str, Any]:
        """A saved segment with its member count"""
        return segment_body(segments.get_segment(db.session(), segment_key))

    @requires("admin")
    @blp.arguments(SegmentUpdateSchema, example={"name": "VIPs slipping away"})
    @blp.response(200, SegmentSchema)
    @blp.alt_response(404, description="No such segment.")
    def patch(self, changes: SegmentChanges, segment_key: str) -> dict[str, Any]:
        """Change a segment's name, description or filter (a filter from the next refresh)"""
        return segment_body(
            segments.update_segment(db.session(), segment_key, changes, current_caller().name)
        )

    @requires("admin")
    @blp.response(204)
    @blp.alt_response(404, description="No such segment.")
    @blp.alt_response(
        409,
        description="segment_in_use: rules or rewards name the segment; `used_by` lists them "
        "(`type`: rule or reward, `id`, `name`).",
    )
    def delete(self, segment_key: str) -> None:
        """Delete a segment: its members leave it, its key stays reserved

        Refused with 409 `segment_in_use` while an earning rule's current version
        (`conditions.segments`) or a reward (`segments`) names it, active or not: deleting
        it would quietly limit them to nobody. The problem's `used_by` lists each one; remove
        the key from them (or deactivate and edit them) first.
        """
        segments.delete_segment(db.session(), segment_key, current_caller().name)
