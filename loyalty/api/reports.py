"""Admin: reports."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from loyalty.api.auth import requires
from loyalty.api.base import Blueprint
from loyalty.extensions import db
from loyalty.reports import services as reports
from loyalty.schemas.reports import ActivityQuerySchema, ActivitySchema, LiabilitySchema

blp = Blueprint("reports", __name__, url_prefix="/v1/admin/reports", description="Admin: reports.")


@blp.route("/liability")
class LiabilityReport(MethodView):
    @requires("admin")
    @blp.response(200, LiabilitySchema)
    def get(self) -> dict[str, Any]:
        """Points outstanding (available, pending, held) and their money value"""
        report = reports.liability(db.session())
        return {
            "available": report.available,
            "pending": report.pending,
            "held": report.held,
            "outstanding": report.outstanding,
            "value": {"amount": report.value, "currency": report.currency},
            "program_accounts": report.program_accounts,
            "consistent": report.consistent,
        }


@blp.route("/activity")
class ActivityReport(MethodView):
    @requires("admin")
    @blp.arguments(ActivityQuerySchema, location="query")
    @blp.response(200, ActivitySchema)
    def get(self, query: dict[str, Any]) -> Any:
        """Points earned, redeemed, restored, expired, adjusted, reversed and new members per
        day (UTC), and members per tier now

        `from` and `to` are dates, both included, at most 366 days apart.
        """
        return reports.activity(db.session(), query["from_"], query["to"])
