"""Admin: lifecycle automations, their versions, and the simulator."""

from __future__ import annotations

import uuid
from typing import Any

from flask.views import MethodView

from loyalty.api.auth import current_caller, requires
from loyalty.api.base import Blueprint
from loyalty.api.replica import reads_from_replica
from loyalty.api.reports import CAMPAIGN_REPORT_DESCRIPTION
from loyalty.api.rules import budget_usage_body
from loyalty.automations import services as automations
from loyalty.automations.definitions import AutomationChanges, AutomationDefinition
from loyalty.automations.report import automation_report
from loyalty.automations.services import AutomationVersionView, AutomationView
from loyalty.extensions import db
from loyalty.pagination import cursor_to, position_of
from loyalty.schemas.automations import (
    AutomationInSchema,
    AutomationListQuerySchema,
    AutomationPageSchema,
    AutomationSchema,
    AutomationSimulationSchema,
    AutomationUpdateSchema,
    AutomationVersionListSchema,
    SimulateAutomationSchema,
)
from loyalty.schemas.reports import (
    CampaignReportQuerySchema,
    CampaignReportSchema,
    campaign_report_body,
)

blp = Blueprint(
    "automations", __name__, url_prefix="/v1/admin", description="Admin: lifecycle automations."
)

WIN_BACK_EXAMPLE = {
    "name": "Win-back after 60 days",
    "trigger": {"kind": "inactive", "days": 60},
    "conditions": {"tiers": ["gold"]},
    "actions": [{"type": "webhook"}],
}
INVALID = (
    "validation_error: an invalid definition (a grant_coupon action naming no active reward "
    "too); unknown_segment: a `conditions.segments` key that is no live saved segment's; "
    "rule_not_grantable: a grant_points action naming no active bonus rule."
)


def automation_body(version: AutomationVersionView) -> dict[str, Any]:
    """An automation at one of its versions."""
    return {
        "id": version.automation_id,
        "version": version.version,
        "name": version.name,
        "active": version.active,
        "trigger": version.trigger,
        "conditions": version.conditions,
        "actions": version.actions,
        "dedup_days": version.dedup_days,
        "budget": version.budget,
        "created_at": version.created_at,
        "actor": version.actor,
    }


def current_body(automation: AutomationView) -> dict[str, Any]:
    """An automation at its current version, with its budget's current period."""
    return {
        **automation_body(automation.current),
        "budget_usage": budget_usage_body(automation.budget_usage),
    }


@blp.route("/automations")
class Automations(MethodView):
    @requires("admin")
    @blp.arguments(AutomationListQuerySchema, location="query")
    @blp.response(200, AutomationPageSchema)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """List automations, newest first"""
        found, next_position = automations.list_automations(
            db.session(),
            active=query["active"],
            limit=query["limit"],
            after=position_of(query["cursor"]),
        )
        return {
            "items": [current_body(automation) for automation in found],
            "next_cursor": cursor_to(next_position),
        }

    @requires("admin")
    @blp.arguments(AutomationInSchema, example=WIN_BACK_EXAMPLE)
    @blp.response(201, AutomationSchema)
    @blp.alt_response(422, description=INVALID)
    def post(self, definition: AutomationDefinition) -> dict[str, Any]:
        """Create an automation (version 1)"""
        return current_body(
            automations.create_automation(db.session(), definition, current_caller().name)
        )


@blp.route("/automations/<uuid:automation_id>")
class Automation(MethodView):
    @requires("admin")
    @blp.response(200, AutomationSchema)
    @blp.alt_response(404, description="No such automation.")
    def get(self, automation_id: uuid.UUID) -> dict[str, Any]:
        """An automation at its current version"""
        return current_body(automations.get_automation(db.session(), automation_id))

    @requires("admin")
    @blp.arguments(AutomationUpdateSchema(partial=True), example={"dedup_days": 30})
    @blp.response(200, AutomationSchema)
    @blp.alt_response(404, description="No such automation.")
    @blp.alt_response(422, description=INVALID)
    def patch(self, changes: AutomationChanges, automation_id: uuid.UUID) -> dict[str, Any]:
        """Change an automation: the change becomes its next version"""
        return current_body(
            automations.update_automation(
                db.session(), automation_id, changes, current_caller().name
            )
        )


@blp.route("/automations/<uuid:automation_id>/deactivate")
class DeactivateAutomation(MethodView):
    @requires("admin")
    @blp.response(200, AutomationSchema)
    @blp.alt_response(404, description="No such automation.")
    def post(self, automation_id: uuid.UUID) -> dict[str, Any]:
        """Deactivate an automation (a new, inactive version; history is kept)"""
        return current_body(
            automations.deactivate_automation(db.session(), automation_id, current_caller().name)
        )


@blp.route("/automations/<uuid:automation_id>/versions")
class AutomationVersions(MethodView):
    @requires("admin")
    @blp.response(200, AutomationVersionListSchema)
    @blp.alt_response(404, description="No such automation.")
    def get(self, automation_id: uuid.UUID) -> dict[str, Any]:
        """Every version of an automation, newest first"""
        versions = automations.list_versions(db.session(), automation_id)
        return {"items": [automation_body(version) for version in versions]}


@blp.route("/automations/<uuid:automation_id>/simulate")
class SimulateAutomation(MethodView):
    @requires("admin")
    @blp.arguments(SimulateAutomationSchema, example={"member_id": "cust_1001"})
    @blp.response(200, AutomationSimulationSchema)
    @blp.alt_response(404, description="No such automation or member.")
    def post(self, body: dict[str, Any], automation_id: uuid.UUID) -> dict[str, Any]:
        """Whether the automation would fire for a member now, and why (or why not)"""
        found = automations.simulate(db.session(), automation_id, body["member_id"])
        return {
            "automation_id": found.automation_id,
            "version": found.version,
            "member_id": found.external_id,
            "would_fire": found.would_fire,
            "reason": found.reason,
            "detail": found.detail,
            "condition": found.condition,
            "window_start": found.window_start,
            "trigger": found.trigger,
        }


@blp.route("/automations/<uuid:automation_id>/report")
class AutomationReport(MethodView):
    @reads_from_replica
    @requires("admin")
    @blp.arguments(CampaignReportQuerySchema, location="query")
    @blp.response(200, CampaignReportSchema)
    @blp.alt_response(404, description="No such automation.")
    @blp.doc(description=CAMPAIGN_REPORT_DESCRIPTION)
    def get(self, query: dict[str, Any], automation_id: uuid.UUID) -> dict[str, Any]:
        """Return on the automation: reach, cost, and orders and revenue attributed"""
        report = automation_report(db.session(), automation_id, query["window_days"])
        return campaign_report_body(report)
