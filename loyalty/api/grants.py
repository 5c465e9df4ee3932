"""Admin: bulk grants (points or a benefit to a list of members or a segment, as a job)."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from flask.views import MethodView

from loyalty.api.auth import current_caller, requires
from loyalty.api.base import Blueprint
from loyalty.extensions import db
from loyalty.grants import services as grants
from loyalty.grants.services import JobView, NewBulkGrant
from loyalty.pagination import cursor_to, position_of
from loyalty.schemas.common import PageQuerySchema
from loyalty.schemas.grants import (
    BulkGrantInSchema,
    BulkGrantPageSchema,
    BulkGrantReportSchema,
    BulkGrantSchema,
    ReportQuerySchema,
)

blp = Blueprint("bulk_grants", __name__, url_prefix="/v1/admin", description="Admin: bulk grants.")


def job_body(job: JobView) -> dict[str, Any]:
    return dataclasses.asdict(job)


@blp.route("/bulk-grants")
class BulkGrants(MethodView):
    @requires("admin")
    @blp.arguments(PageQuerySchema, location="query")
    @blp.response(200, BulkGrantPageSchema)
    @blp.alt_response(422, description="Bad limit or cursor.")
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """Bulk grants with their progress, newest first"""
        jobs, next_position = grants.list_jobs(
            db.session(), limit=query["limit"], after=position_of(query["cursor"])
        )
        return {"items": [job_body(job) for job in jobs], "next_cursor": cursor_to(next_position)}

    @requires("admin")
    @blp.arguments(
        BulkGrantInSchema,
        example={
            "grant_id": "apology-2031-03",
            "reason": "Sorry for the outage on 12 March",
            "points": 200,
            "member_ids": ["c1", "c2", "c3"],
            "budget": {"points": 100000},
        },
    )
    @blp.response(201, BulkGrantSchema, description="Queued.")
    @blp.alt_response(200, schema=BulkGrantSchema, description="The job this grant_id made.")
    @blp.alt_response(409, description="bulk_grant_conflict: grant_id names another request.")
    @blp.alt_response(422, description="Bad input, or an unknown segment.")
    def post(self, command: NewBulkGrant) -> tuple[dict[str, Any], int]:
        """Queue points or a benefit for many members

        Name the members as `member_ids`, as `csv` (an uploaded file's text, ids in the
        first column) or as a saved `segment` (its members as of its last refresh). The job
        is queued; `loyalty jobs run` grants in batches, each member at most once, exactly
        as a single admin grant does (the same ledger transaction, audit entry and webhook).
        Watch its progress with GET, and each member's outcome in its report.
        """
        job, created = grants.create_job(db.session(), command, current_caller().name)
        return job_body(job), 201 if created else 200


@blp.route("/bulk-grants/<uuid:job_id>")
class BulkGrant(MethodView):
    @requires("admin")
    @blp.response(200, BulkGrantSchema)
    @blp.alt_response(404, description="No such bulk grant.")
    def get(self, job_id: uuid.UUID) -> dict[str, Any]:
        """A bulk grant and its progress (state, done of total, granted, refused)"""
        return job_body(grants.get_job(db.session(), job_id))


@blp.route("/bulk-grants/<uuid:job_id>/report")
class BulkGrantReport(MethodView):
    @requires("admin")
    @blp.arguments(ReportQuerySchema, location="query")
    @blp.response(200, BulkGrantReportSchema)
    @blp.alt_response(404, description="No such bulk grant.")
    @blp.alt_response(422, description="Bad limit, cursor or outcome.")
    def get(self, query: dict[str, Any], job_id: uuid.UUID) -> dict[str, Any]:
        """Each member's outcome, in the order the job named them

        `outcome` is pending (not yet run), granted (with the points and the ledger
        transaction) or refused (with the `refusal`: unknown_member, closed_member,
        over_budget). Filter with `?outcome=`.
        """
        lines, next_position = grants.report(
            db.session(),
            job_id,
            limit=query["limit"],
            after=position_of(query["cursor"]),
            outcome=query["outcome"],
        )
        return {
            "items": [dataclasses.asdict(line) for line in lines],
            "next_cursor": cursor_to(next_position),
        }
