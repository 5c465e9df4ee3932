"""Admin: member insight (RFM segments, predicted value) per member, over the program, and
the member list filtered by it."""

from __future__ import annotations

import dataclasses
from typing import Any

from flask import Response, stream_with_context
from flask.views import MethodView

from loyalty.api.auth import requires
from loyalty.api.base import Blueprint
from loyalty.api.replica import reads_from_replica
from loyalty.extensions import db
from loyalty.insight import evaluation, export, queries
from loyalty.insight.summary import summary
from loyalty.pagination import cursor_to, position_of
from loyalty.schemas.insight import (
    EvaluationQuerySchema,
    EvaluationSchema,
    InsightSummarySchema,
    MemberFilterSchema,
    MemberInsightSchema,
    MemberListPageSchema,
    MemberListQuerySchema,
    member_filters,
)

blp = Blueprint("insight", __name__, url_prefix="/v1/admin", description="Admin: member insight.")

NOT_REFRESHED = "No insight refresh has run yet (409 insight_not_refreshed)."


def member_row_body(row: queries.MemberRow) -> dict[str, Any]:
    return {
        "external_id": row.external_id,
        "email": row.email,
        "name": row.name,
        "status": row.status,
        "tier": None if row.tier_code is None else {"code": row.tier_code, "name": row.tier_name},
        "enrolled_at": row.enrolled_at,
        "insight": row.insight,
    }


@blp.route("/members")
class AdminMembers(MethodView):
    @reads_from_replica
    @requires("admin")
    @blp.arguments(MemberListQuerySchema, location="query")
    @blp.response(200, MemberListPageSchema)
    @blp.alt_response(422, description="A bad filter, limit or cursor.")
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """Members, filtered by segment, RFM scores, tier, status, predicted value, days since
        the last order and text, newest enrolment first

        Every filter given must hold; filters on insight figures leave out members the latest
        refresh has no row for (`insight: null`). `q` matches a case-insensitive substring of
        `external_id`, `email` or `name` (`%` and `_` are taken literally).
        """
        rows, next_position = queries.list_members(
            db.session(), member_filters(query), query["limit"], position_of(query["cursor"])
        )
        return {
            "items": [member_row_body(row) for row in rows],
            "next_cursor": cursor_to(next_position),
        }


CSV_DESCRIPTION = (
    "A header row (external_id, email, name, status, tier, enrolled_at, then the insight "
    "figures as in the member list), then one row per member; figures empty without an "
    "insight row."
)
CSV_CONTENT = {"text/csv": {"schema": {"type": "string"}}}


@blp.route("/members.csv")
class AdminMembersExport(MethodView):
    @reads_from_replica
    @requires("admin")
    @blp.arguments(MemberFilterSchema, location="query")
    @blp.response(200, content_type="text/csv")
    @blp.alt_response(422, description="A bad filter.")
    @blp.doc(responses={"200": {"description": CSV_DESCRIPTION, "content": CSV_CONTENT}})
    def get(self, query: dict[str, Any]) -> Response:
        """The filtered member list as CSV, streamed

        The same filters as the member list; every matching member, newest enrolment first,
        read in batches. Text starting with `=`, `+`, `-` or `@` is prefixed with `'`.
        """
        rows = queries.iter_members(db.session(), member_filters(query))
        return Response(
            stream_with_context(export.csv_lines(rows)),
            content_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="members.csv"'},
        )


@blp.route("/members/<string:external_id>/insight")
class AdminMemberInsight(MethodView):
    @reads_from_replica
    @requires("admin")
    @blp.response(200, MemberInsightSchema)
    @blp.alt_response(404, description="No such member.")
    @blp.alt_response(
        409, description="No refresh has run yet, or the member enrolled after the latest."
    )
    def get(self, external_id: str) -> dict[str, Any]:
        """A member's insight: figures, RFM scores, segment and predicted value as of the
        latest refresh"""
        view = queries.member_insight(db.session(), external_id)
        return {
            **view.figures,
            "external_id": view.external_id,
            "refreshed_at": view.refresh.finished_at,
        }


@blp.route("/insight")
class InsightSummary(MethodView):
    @reads_from_replica
    @requires("admin")
    @blp.response(200, InsightSummarySchema)
    @blp.alt_response(409, description=NOT_REFRESHED)
    def get(self) -> dict[str, Any]:
        """The program at a glance: segments and their share of revenue, the RFM grid, the
        predicted value's deciles and the fitted model, as of the latest refresh"""
        found = summary(db.session())
        return {
            "refresh": dataclasses.asdict(found.refresh),
            "revenue": found.revenue,
            "segments": [dataclasses.asdict(s) for s in found.segments],
            "rfm_grid": [dataclasses.asdict(c) for c in found.rfm_grid],
            "predicted_value": [dataclasses.asdict(d) for d in found.predicted_value],
            "predicted_total": found.predicted_total,
            "model": None if found.model is None else dataclasses.asdict(found.model),
        }


@blp.route("/insight/evaluation")
class InsightEvaluation(MethodView):
    @reads_from_replica
    @requires("admin")
    @blp.arguments(EvaluationQuerySchema, location="query")
    @blp.response(200, EvaluationSchema)
    @blp.alt_response(
        422,
        description="A split less than a day before the end (validation_error), or a history "
        "up to it that identifies no model (evaluation_not_possible).",
    )
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """How well the purchase model predicts: fitted on the history up to `split`,
        predicted against actual repeat purchase days from `split` to the latest refresh

        Computed on request (nothing is stored): two passes over the orders and one fit.
        """
        found = evaluation.evaluate_at(db.session(), query["split"])
        body = dataclasses.asdict(found)
        return body
