"""Admin: reports."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from loyalty.api.auth import requires
from loyalty.api.base import Blueprint
from loyalty.api.replica import reads_from_replica
from loyalty.extensions import db
from loyalty.reports import services as reports
from loyalty.schemas.reports import ActivityQuerySchema, ActivitySchema, LiabilitySchema

blp = Blueprint("reports", __name__, url_prefix="/v1/admin/reports", description="Admin: reports.")


@blp.route("/liability")
class LiabilityReport(MethodView):
    @reads_from_replica
    @requires("admin")
    @blp.response(200, LiabilitySchema)
    def get(self) -> dict[str, Any]:
        """Points outstanding (available, pending, held) and their money value

        As of the request, whether or not the jobs worker has settled every member: points
        that matured, expired or came back from timed-out holds by now count where they
        belong. The report reads only; it never settles.
        """
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
    @reads_from_replica
    @requires("admin")
    @blp.arguments(ActivityQuerySchema, location="query")
    @blp.response(200, ActivitySchema)
    def get(self, query: dict[str, Any]) -> Any:
        """Points earned, redeemed, restored, expired, adjusted, reversed and new members per
        day, and members per tier now

        Days are those of the program's time zone (`time_zone` in the program settings; 23
        or 25 hours on a daylight-saving change). `from` and `to` are dates, both included,
        at most 366 days apart. As of the request,
        whether or not the jobs worker has caught up: points that expired by now count on
        their day, and tier reviews due count as made. The report reads only.
        """
        return reports.activity(db.session(), query["from_"], query["to"])


# Both campaign reports' OpenAPI description, after their summary line.
CAMPAIGN_REPORT_DESCRIPTION = """Per version (newest first) and in total: members reached,
touches, points issued and their cost at the program's point value, orders and revenue
attributed within `window_days` (1 to 365, default 7) after each touch.

**Attribution (last touch).** An order counts for a touch when the touched member placed it
after the touch and at most `window_days` days (24 hours each; the end included) after it.
Each order counts once per campaign, for the latest touch before it. For a rule, the order
that earned an award is not that award's return (it caused it). Revenue is each order's total
(lines less discount) less its refunds to date; a fully refunded order counts for nothing.
This is correlation, not causal uplift.

400 `malformed_url`; 422 `validation_error` for a `window_days` that is not a whole number
from 1 to 365 (or an unknown parameter). Reads are not audited.
"""
