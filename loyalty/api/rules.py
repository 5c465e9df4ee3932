"""Admin: earning rules, their versions, and the simulator."""

from __future__ import annotations

import uuid
from typing import Any

from flask.views import MethodView

from loyalty.api.auth import current_caller, requires
from loyalty.api.base import Blueprint
from loyalty.api.replica import reads_from_replica
from loyalty.api.reports import CAMPAIGN_REPORT_DESCRIPTION
from loyalty.extensions import db
from loyalty.orders import earning
from loyalty.pagination import cursor_to, position_of
from loyalty.reports import campaigns
from loyalty.rules import services as rules
from loyalty.rules.budgets import BudgetUsageView
from loyalty.rules.definitions import RuleChanges, RuleDefinition
from loyalty.rules.services import RuleVersionView, RuleView
from loyalty.schemas.reports import (
    CampaignReportQuerySchema,
    CampaignReportSchema,
    campaign_report_body,
)
from loyalty.schemas.rules import (
    CONFIG_KEYS,
    RuleInSchema,
    RuleListQuerySchema,
    RulePageSchema,
    RuleSchema,
    RuleUpdateSchema,
    RuleVersionListSchema,
    SimulateSchema,
    SimulationSchema,
)

blp = Blueprint("rules", __name__, url_prefix="/v1/admin", description="Admin: earning rules.")

SPEND_EXAMPLE = {
    "name": "1 point per dollar",
    "kind": "spend",
    "points": 1,
    "per_amount": 100,
    "priority": 10,
}


def rule_body(version: RuleVersionView) -> dict[str, Any]:
    """A rule at one of its versions."""
    return {
        "id": version.rule_id,
        "version": version.version,
        "name": version.name,
        "kind": version.kind,
        "active": version.active,
        "priority": version.priority,
        "starts_at": version.starts_at,
        "ends_at": version.ends_at,
        **{key: version.config.get(key) for key in CONFIG_KEYS},
        "conditions": version.conditions,
        "caps": version.caps,
        "budget": version.budget,
        "created_at": version.created_at,
        "actor": version.actor,
    }


def budget_usage_body(usage: BudgetUsageView | None) -> dict[str, Any] | None:
    """A budget's current period (a rule's or an automation's), or None without a budget."""
    if usage is None:
        return None
    return {
        "period": usage.period.value,
        "starts_at": usage.starts_at,
        "ends_at": usage.ends_at,
        "limit": usage.limit,
        "used": usage.used,
        "remaining": usage.remaining,
        "exhausted_at": usage.exhausted_at,
    }


def current_body(rule: RuleView) -> dict[str, Any]:
    """A rule at its current version, with its budget's current period."""
    return {**rule_body(rule.current), "budget_usage": budget_usage_body(rule.budget_usage)}


@blp.route("/rules")
class Rules(MethodView):
    @requires("admin")
    @blp.arguments(RuleListQuerySchema, location="query")
    @blp.response(200, RulePageSchema)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """List earning rules, newest first"""
        after = position_of(query["cursor"])
        found, next_position = rules.list_rules(
            db.session(),
            active=query["active"],
            kind=query["kind"],
            limit=query["limit"],
            after=after,
        )
        return {
            "items": [current_body(rule) for rule in found],
            "next_cursor": cursor_to(next_position),
        }

    @requires("admin")
    @blp.arguments(RuleInSchema, example=SPEND_EXAMPLE)
    @blp.response(201, RuleSchema)
    @blp.alt_response(
        422,
        description="validation_error: an invalid definition; unknown_segment: a "
        "`conditions.segments` key that is no live saved segment's.",
    )
    def post(self, definition: RuleDefinition) -> dict[str, Any]:
        """Create an earning rule (version 1)"""
        return current_body(rules.create_rule(db.session(), definition, current_caller().name))


@blp.route("/rules/<uuid:rule_id>")
class Rule(MethodView):
    @requires("admin")
    @blp.response(200, RuleSchema)
    @blp.alt_response(404, description="No such rule.")
    def get(self, rule_id: uuid.UUID) -> dict[str, Any]:
        """A rule at its current version"""
        return current_body(rules.get_rule(db.session(), rule_id))

    @requires("admin")
    @blp.arguments(RuleUpdateSchema(partial=True), example={"points": 2})
    @blp.response(200, RuleSchema)
    @blp.alt_response(404, description="No such rule.")
    @blp.alt_response(
        422,
        description="validation_error: an invalid definition, or a change of kind; "
        "unknown_segment: a `conditions.segments` key that is no live saved segment's.",
    )
    def patch(self, changes: RuleChanges, rule_id: uuid.UUID) -> dict[str, Any]:
        """Change a rule: the change becomes its next version"""
        rule = rules.update_rule(db.session(), rule_id, changes, current_caller().name)
        return current_body(rule)


@blp.route("/rules/<uuid:rule_id>/deactivate")
class DeactivateRule(MethodView):
    @requires("admin")
    @blp.response(200, RuleSchema)
    @blp.alt_response(404, description="No such rule.")
    def post(self, rule_id: uuid.UUID) -> dict[str, Any]:
        """Deactivate a rule (a new, inactive version; history is kept)"""
        return current_body(rules.deactivate_rule(db.session(), rule_id, current_caller().name))


@blp.route("/rules/<uuid:rule_id>/versions")
class RuleVersions(MethodView):
    @requires("admin")
    @blp.response(200, RuleVersionListSchema)
    @blp.alt_response(404, description="No such rule.")
    def get(self, rule_id: uuid.UUID) -> dict[str, Any]:
        """Every version of a rule, newest first"""
        return {"items": [rule_body(v) for v in rules.list_versions(db.session(), rule_id)]}


@blp.route("/rules/simulate")
class Simulate(MethodView):
    @requires("admin")
    @blp.arguments(
        SimulateSchema,
        example={
            "currency": "USD",
            "lines": [{"sku": "tee", "category": "apparel", "quantity": 2, "unit_price": 2500}],
            "rules": [
                {
                    "name": "Apparel x2",
                    "kind": "multiplier",
                    "factor": "2",
                    "conditions": {"categories": ["apparel"]},
                }
            ],
        },
    )
    @blp.response(200, SimulationSchema)
    @blp.alt_response(404, description="No such member.")
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Show what a cart or an event would earn, draft rules included, before they go live"""
        points, breakdown = earning.simulate(
            db.session(),
            external_id=body["member_id"],
            lines=body["lines"],
            discount=body["discount"],
            event_type=body["event_type"],
            drafts=[draft.as_fields() for draft in body["rules"]],
            include_active=body["include_active"],
        )
        return {"points_to_earn": points, "breakdown": breakdown}


@blp.route("/rules/<uuid:rule_id>/report")
class RuleReport(MethodView):
    @reads_from_replica
    @requires("admin")
    @blp.arguments(CampaignReportQuerySchema, location="query")
    @blp.response(200, CampaignReportSchema)
    @blp.alt_response(404, description="No such rule.")
    @blp.doc(description=CAMPAIGN_REPORT_DESCRIPTION)
    def get(self, query: dict[str, Any], rule_id: uuid.UUID) -> dict[str, Any]:
        """Return on the rule: reach, cost, and orders and revenue attributed"""
        report = campaigns.rule_report(db.session(), rule_id, query["window_days"])
        return campaign_report_body(report)
