"""Tiers (admin), a member's benefits (app) and tier history and benefit grants (admin)."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from loyalty.api.auth import current_caller, requires
from loyalty.api.base import Blueprint
from loyalty.extensions import db
from loyalty.membership import overview
from loyalty.schemas.tiers import (
    BenefitGrantInSchema,
    BenefitListSchema,
    BenefitSchema,
    TierChangeListSchema,
    TierInSchema,
    TierListSchema,
    TierSchema,
    TierUpdateSchema,
)
from loyalty.tiers import definitions
from loyalty.tiers.benefits import Benefit, GrantBenefit, grant_benefit
from loyalty.tiers.definitions import DefinedTier, TierChanges, TierDefinition

blp = Blueprint("tiers", __name__, url_prefix="/v1", description="Tiers and benefits.")

GOLD_EXAMPLE = {
    "code": "gold",
    "name": "Gold",
    "rank": 3,
    "threshold": 5000,
    "retention_months": 12,
    "benefits": [
        {"code": "free_shipping"},
        {"code": "points_multiplier", "params": {"factor": "1.5"}},
    ],
}


def tier_body(tier: DefinedTier) -> dict[str, Any]:
    return {
        "code": tier.code,
        "name": tier.name,
        "rank": tier.rank,
        "threshold": tier.threshold,
        "retention_months": tier.retention_months,
        "benefits": tier.benefits,
        "members": tier.members,
    }


@blp.route("/admin/tiers")
class Tiers(MethodView):
    @requires("admin")
    @blp.response(200, TierListSchema)
    def get(self) -> dict[str, Any]:
        """Every tier, lowest rank first"""
        return {"items": [tier_body(t) for t in definitions.list_tiers(db.session())]}

    @requires("admin")
    @blp.arguments(TierInSchema, example=GOLD_EXAMPLE)
    @blp.response(201, TierSchema)
    @blp.alt_response(409, description="tier_exists: the code or rank is taken.")
    def post(self, definition: TierDefinition) -> dict[str, Any]:
        """Create a tier"""
        return tier_body(definitions.create_tier(db.session(), definition, current_caller().name))


@blp.route("/admin/tiers/<string:code>")
class TierResource(MethodView):
    @requires("admin")
    @blp.response(200, TierSchema)
    @blp.alt_response(404, description="No such tier.")
    def get(self, code: str) -> dict[str, Any]:
        """A tier"""
        return tier_body(definitions.find_tier(db.session(), code))

    @requires("admin")
    @blp.arguments(
        TierUpdateSchema(partial=tuple(TierUpdateSchema().fields)), example={"threshold": 6000}
    )
    @blp.response(200, TierSchema)
    @blp.alt_response(404, description="No such tier.")
    @blp.alt_response(409, description="tier_exists: the rank is taken.")
    def patch(self, changes: TierChanges, code: str) -> dict[str, Any]:
        """Change a tier (members move on their next touch)"""
        return tier_body(
            definitions.update_tier(db.session(), code, changes, current_caller().name)
        )

    @requires("admin")
    @blp.response(204)
    @blp.alt_response(404, description="No such tier.")
    @blp.alt_response(409, description="tier_in_use: members are in the tier.")
    def delete(self, code: str) -> None:
        """Delete a tier nobody is in"""
        definitions.delete_tier(db.session(), code, current_caller().name)


def benefit_body(benefit: Benefit) -> dict[str, Any]:
    return {
        "code": benefit.code,
        "params": benefit.params,
        "source": benefit.source,
        "ends_at": benefit.ends_at,
    }


@blp.route("/members/<string:external_id>/benefits")
class MemberBenefits(MethodView):
    @requires("app", "checkout", "member")
    @blp.response(200, BenefitListSchema)
    @blp.alt_response(404, description="No such member.")
    def get(self, external_id: str) -> dict[str, Any]:
        """The benefits the member holds now, from their tier and their own grants"""
        return {"items": [benefit_body(b) for b in overview.benefits(db.session(), external_id)]}


@blp.route("/admin/members/<string:external_id>/benefits")
class BenefitGrants(MethodView):
    @requires("admin")
    @blp.arguments(
        BenefitGrantInSchema, example={"code": "free_shipping", "reason": "VIP complaint"}
    )
    @blp.response(201, BenefitSchema)
    @blp.alt_response(404, description="No such member.")
    def post(self, command: GrantBenefit, external_id: str) -> dict[str, Any]:
        """Grant one member a benefit outside their tier"""
        grant = grant_benefit(db.session(), external_id, command, current_caller().name)
        return benefit_body(grant)


@blp.route("/admin/members/<string:external_id>/tier-history")
class TierHistory(MethodView):
    @requires("admin")
    @blp.response(200, TierChangeListSchema)
    @blp.alt_response(404, description="No such member.")
    def get(self, external_id: str) -> dict[str, Any]:
        """The member's tier changes (from, to, why, when), newest first"""
        return {"items": overview.tier_changes(db.session(), external_id, limit=200)}
