"""The rewards catalog: admins manage it, members redeem from it."""

from __future__ import annotations

import uuid
from typing import Any

from flask.views import MethodView

from loyalty.api.auth import current_caller, requires
from loyalty.api.base import Blueprint
from loyalty.extensions import db
from loyalty.rewards import definitions
from loyalty.rewards import services as rewards
from loyalty.rewards.definitions import RewardChanges, RewardDefinition, RewardView
from loyalty.rewards.services import RedeemedReward
from loyalty.schemas.rewards import (
    AdminRewardQuerySchema,
    CatalogQuerySchema,
    CatalogSchema,
    RewardInSchema,
    RewardListSchema,
    RewardRedeemInSchema,
    RewardRedemptionSchema,
    RewardSchema,
    RewardUpdateSchema,
)

blp = Blueprint("rewards", __name__, url_prefix="/v1", description="The rewards catalog.")


def reward_body(reward: RewardView) -> dict[str, Any]:
    return {
        "id": reward.public_id,
        "name": reward.name,
        "description": reward.description,
        "kind": reward.kind,
        "cost_points": reward.cost_points,
        "value": {"amount": reward.value_amount, "currency": reward.currency}
        if reward.value_amount
        else None,
        "stock": reward.stock,
        "min_tier": reward.min_tier,
        "segments": list(reward.segments),
        "per_member_limit": reward.per_member_limit,
        "starts_at": reward.starts_at,
        "ends_at": reward.ends_at,
        "active": reward.active,
    }


@blp.route("/admin/rewards")
class AdminRewards(MethodView):
    @requires("admin")
    @blp.arguments(AdminRewardQuerySchema, location="query")
    @blp.response(200, RewardListSchema)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """The whole catalog, newest first"""
        return {
            "items": [
                reward_body(r) for r in definitions.list_rewards(db.session(), query["active"])
            ]
        }

    @requires("admin")
    @blp.arguments(
        RewardInSchema,
        example={
            "name": "$5 off",
            "kind": "fixed_discount",
            "cost_points": 500,
            "value_amount": 500,
        },
    )
    @blp.response(201, RewardSchema)
    @blp.alt_response(
        422,
        description="validation_error: an invalid definition or unknown `min_tier`; "
        "unknown_segment: a `segments` key that is no live saved segment's.",
    )
    def post(self, definition: RewardDefinition) -> dict[str, Any]:
        """Add a reward to the catalog"""
        return reward_body(
            definitions.create_reward(db.session(), definition, current_caller().name)
        )


@blp.route("/admin/rewards/<uuid:reward_id>")
class AdminReward(MethodView):
    @requires("admin")
    @blp.response(200, RewardSchema)
    @blp.alt_response(404, description="No such reward.")
    def get(self, reward_id: uuid.UUID) -> dict[str, Any]:
        """A reward"""
        return reward_body(definitions.find_reward(db.session(), reward_id))

    @requires("admin")
    @blp.arguments(
        RewardUpdateSchema(partial=tuple(RewardUpdateSchema().fields)), example={"stock": 50}
    )
    @blp.response(200, RewardSchema)
    @blp.alt_response(404, description="No such reward.")
    @blp.alt_response(
        422,
        description="validation_error: an invalid change or unknown `min_tier`; "
        "unknown_segment: a `segments` key that is no live saved segment's.",
    )
    def patch(self, changes: RewardChanges, reward_id: uuid.UUID) -> dict[str, Any]:
        """Change a reward; `codes` adds coupon codes to its pool"""
        return reward_body(
            definitions.update_reward(db.session(), reward_id, changes, current_caller().name)
        )


@blp.route("/admin/rewards/<uuid:reward_id>/deactivate")
class DeactivateReward(MethodView):
    @requires("admin")
    @blp.response(200, RewardSchema)
    @blp.alt_response(404, description="No such reward.")
    def post(self, reward_id: uuid.UUID) -> dict[str, Any]:
        """Take a reward out of the catalog (kept for history)"""
        return reward_body(
            definitions.update_reward(
                db.session(), reward_id, RewardChanges(active=False), current_caller().name
            )
        )


@blp.route("/rewards")
class Catalog(MethodView):
    @requires("app", "member", member_query="member_id")
    @blp.arguments(CatalogQuerySchema, location="query")
    @blp.response(200, CatalogSchema)
    @blp.alt_response(404, description="No such member.")
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """The rewards open now for this member, each redeemable or with why not"""
        items = rewards.catalog(db.session(), query["member_id"])
        return {
            "items": [
                {
                    **reward_body(i.reward),
                    "redeemable": i.redeemable,
                    "locked_reason": i.locked_reason,
                }
                for i in items
            ]
        }


def redemption_body(redemption: RedeemedReward) -> dict[str, Any]:
    return {
        "id": redemption.public_id,
        "reward_id": redemption.reward_public_id,
        "member_id": redemption.external_id,
        "points": redemption.points,
        "code": redemption.code,
        "created_at": redemption.created_at,
    }


@blp.route("/members/<string:external_id>/reward-redemptions")
class RewardRedemptions(MethodView):
    @requires("app", "member")
    @blp.arguments(RewardRedeemInSchema)
    @blp.response(201, RewardRedemptionSchema)
    @blp.alt_response(404, description="No such member or reward.")
    @blp.alt_response(
        422, description="out_of_stock, insufficient_points, reward_unavailable, member_inactive."
    )
    def post(self, body: dict[str, Any], external_id: str) -> dict[str, Any]:
        """Redeem a reward for points; returns its code

        Points, stock and code move in one transaction: stock is never oversold and a failed
        redemption charges nothing. Send an Idempotency-Key: a retry must not redeem twice.
        """
        redemption = rewards.redeem(db.session(), external_id, body["reward_id"])
        return redemption_body(redemption)
