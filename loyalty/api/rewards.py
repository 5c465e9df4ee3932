"""The rewards catalog: admins manage it, members redeem from it."""

from __future__ import annotations

import uuid
from typing import Any

from flask.views import MethodView

from loyalty.api.auth import current_caller, requires
from loyalty.api.base import Blueprint
from loyalty.extensions import db
from loyalty.rewards import codes, definitions
from loyalty.rewards import services as rewards
from loyalty.rewards.codes import RewardCodeView
from loyalty.rewards.definitions import RewardChanges, RewardDefinition, RewardView
from loyalty.rewards.policy import RewardValue, format_percent
from loyalty.rewards.services import RedeemedReward
from loyalty.schemas.rewards import (
    AdminRewardQuerySchema,
    CatalogQuerySchema,
    CatalogSchema,
    RewardCodeCheckSchema,
    RewardCodeConsumeSchema,
    RewardCodeSchema,
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
        "percent_off": format_percent(reward.percent_off_bps)
        if reward.percent_off_bps is not None
        else None,
        "valid_days": reward.valid_days,
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
        "expires_at": redemption.expires_at,
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


@blp.route("/members/<string:external_id>/reward-redemptions/<uuid:reward_redemption_id>/cancel")
class CancelRewardRedemption(MethodView):
    @requires("app")
    @blp.response(200, RewardCodeSchema)
    @blp.alt_response(404, description="No such member, or no such redemption of theirs.")
    @blp.alt_response(
        409,
        description="reward_code_used: the code was used (a used code cannot be cancelled); "
        "reward_code_expired: the code expired.",
    )
    @blp.alt_response(422, description="member_inactive.")
    def post(self, external_id: str, reward_redemption_id: uuid.UUID) -> dict[str, Any]:
        """Cancel a reward redemption whose code is unused

        The points go back into the lots they were spent from (with their own expiry dates)
        in one ledger transaction, the unit of stock back to the reward and a pooled code
        back to its pool; audited. Cancelling again returns the same answer.
        """
        return code_body(
            codes.cancel(db.session(), external_id, reward_redemption_id, current_caller().name)
        )


def value_body(value: RewardValue | None) -> dict[str, Any] | None:
    if value is None:
        return None
    return {
        "type": value.type,
        "amount": value.amount,
        "currency": value.currency,
        "percent": format_percent(value.percent_off_bps)
        if value.percent_off_bps is not None
        else None,
    }


def code_body(code: RewardCodeView) -> dict[str, Any]:
    return {
        "code": code.code,
        "usable": code.usable,
        "status": code.status,
        "member_id": code.external_id,
        "redemption_id": code.redemption_public_id,
        "reward_id": code.reward_public_id,
        "reward": code.reward_name,
        "kind": code.reward_kind,
        "value": value_body(code.value),
        "points": code.points,
        "created_at": code.created_at,
        "expires_at": code.expires_at,
        "used_at": code.used_at,
        "used_order_id": code.used_order_id,
        "cancelled_at": code.cancelled_at,
    }


@blp.route("/reward-codes/validate")
class ValidateRewardCode(MethodView):
    @requires("checkout")
    @blp.arguments(RewardCodeCheckSchema)
    @blp.response(200, RewardCodeSchema)
    @blp.alt_response(404, description="No such code.")
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Check a reward code: whose it is, what it is worth, whether it can be used

        No side effects. Send the member at the checkout as `member_id`: `usable` is then
        true only for their own active code.
        """
        return code_body(codes.validate(db.session(), body["code"], body["member_id"]))


@blp.route("/reward-codes/consume")
class ConsumeRewardCode(MethodView):
    @requires("checkout")
    @blp.arguments(RewardCodeConsumeSchema)
    @blp.response(200, RewardCodeSchema)
    @blp.alt_response(404, description="No such code.")
    @blp.alt_response(
        409,
        description="reward_code_used (with `used_order_id`), reward_code_expired, "
        "reward_code_cancelled.",
    )
    @blp.alt_response(422, description="reward_code_member_mismatch: another member's code.")
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Use a member's reward code, once, before it expires

        Of two consumes at once exactly one succeeds. A retry with the same Idempotency-Key,
        or for the same `order_id`, returns the first answer.
        """
        return code_body(
            codes.consume(db.session(), body["code"], body["member_id"], body["order_id"])
        )
