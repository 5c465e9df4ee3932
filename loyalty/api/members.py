"""Members: enrolment, the member card, history, and the admin's changes and adjustments."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask.views import MethodView

from loyalty.api.auth import current_caller, requires
from loyalty.api.base import Blueprint
from loyalty.extensions import db
from loyalty.ledger.queries import Movement
from loyalty.membership import adjustments
from loyalty.membership import services as members
from loyalty.membership.services import history
from loyalty.referrals.listing import referrals_made
from loyalty.schemas.common import PageQuerySchema
from loyalty.schemas.ledger import (
    AdjustmentSchema,
    LotPageSchema,
    TransactionPageSchema,
    TransactionSchema,
)
from loyalty.schemas.members import (
    EnrollSchema,
    MemberCardSchema,
    MemberUpdateSchema,
)
from loyalty.schemas.referrals import ReferralPageSchema

blp = Blueprint("members", __name__, url_prefix="/v1", description="Members and their points.")
admin_blp = Blueprint(
    "admin_members", __name__, url_prefix="/v1/admin", description="Admin: members and points."
)


def card_body(card: members.MemberCard) -> dict[str, Any]:
    progress = card.progress
    return {
        "external_id": card.external_id,
        "status": card.status,
        "email": card.email,
        "name": card.name,
        "birthday": card.birthday,
        "metadata_": card.metadata,
        "enrolled_at": card.enrolled_at,
        "referral_code": card.referral_code,
        "consent": card.consent,
        "tier": progress.tier,
        "tier_progress": {
            "qualifying_points": progress.qualifying_points,
            "next_tier": progress.next_tier,
            "points_to_next": progress.points_to_next,
            "retained_until": progress.retained_until,
        },
        "balance": {
            "available": card.available,
            "pending": card.pending,
            "held": card.held,
            "expiring_soon": [
                {"points": lot.remaining, "expires_at": lot.expires_at}
                for lot in card.expiring_soon
            ],
        },
    }


def transaction_body(movement: Movement) -> dict[str, Any]:
    return {
        "public_id": movement.public_id,
        "kind": movement.kind,
        "points": movement.points,
        "effective_at": movement.effective_at,
        "created_at": movement.created_at,
        "reference": movement.reference,
        "reason": movement.reason,
        "order_id": movement.order_id,
        "event_id": movement.event_id,
        "breakdown": list(movement.breakdown),
        "entries": movement.entries,
    }


@blp.route("/members")
class Members(MethodView):
    @requires("checkout")
    @blp.arguments(EnrollSchema, example={"external_id": "cust_1001", "email": "ada@example.com"})
    @blp.response(201, MemberCardSchema, description="Enrolled.")
    @blp.alt_response(200, schema=MemberCardSchema, description="Already enrolled.")
    def post(self, command: members.EnrollMember) -> tuple[dict[str, Any], int]:
        """Enroll a member

        Idempotent on `external_id`: enrolling the same customer again returns the existing
        member with 200. A friend enrolling with a member's `referral_code` is linked to
        them (`referred_by`, the referrer's external_id, is deprecated but works the same);
        a code nobody has is a 422 `referral_code_not_found`, a `referred_by` naming nobody
        a 422 `referrer_not_found`, a referrer with the friend's own external_id or email a
        422 `self_referral`.
        """
        card, created = members.enroll(db.session(), command)
        return card_body(card), 201 if created else 200


@blp.route("/members/<string:external_id>")
class MemberCard(MethodView):
    @requires("checkout", "app", "member")
    @blp.response(200, MemberCardSchema)
    @blp.alt_response(404, description="No such member.")
    def get(self, external_id: str) -> dict[str, Any]:
        """The member card: status, tier, balances, points expiring soon"""
        return card_body(members.card(db.session(), external_id))


@blp.route("/members/<string:external_id>/transactions")
class MemberTransactions(MethodView):
    @requires("checkout", "app", "member")
    @blp.arguments(PageQuerySchema, location="query")
    @blp.response(200, TransactionPageSchema)
    @blp.alt_response(404, description="No such member.")
    @blp.alt_response(422, description="Bad limit or cursor.")
    def get(self, query: dict[str, Any], external_id: str) -> dict[str, Any]:
        """The member's points history, latest to take effect first

        Ordered by `effective_at` (when each movement took effect: an order's `placed_at`, a
        lot's expiry), not by when it was recorded. Each earning names its order or event
        and the rules (with versions, and experiment and arm when present) behind it.
        """
        page = history(db.session(), external_id, query["limit"], query["cursor"])
        return {
            "items": [transaction_body(txn) for txn in page.items],
            "next_cursor": page.next_cursor,
        }


@blp.route("/members/<string:external_id>/referrals")
class MemberReferrals(MethodView):
    @requires("checkout", "app", "member")
    @blp.arguments(PageQuerySchema, location="query")
    @blp.response(200, ReferralPageSchema)
    @blp.alt_response(404, description="No such member.")
    @blp.alt_response(422, description="Bad limit or cursor.")
    def get(self, query: dict[str, Any], external_id: str) -> dict[str, Any]:
        """The friends who enrolled with the member's referral code, newest first

        Each with its status and the points it earned the member; the friends themselves are
        not named (a member token may read this).
        """
        page = referrals_made(db.session(), external_id, query["limit"], query["cursor"])
        return {
            "items": [
                {
                    "id": referral.id,
                    "status": referral.status.value,
                    "code": referral.code,
                    "linked_at": referral.linked_at,
                    "qualifies_at": referral.qualifies_at,
                    "rewarded_at": referral.rewarded_at,
                    "cancelled_at": referral.cancelled_at,
                    "referrer_points": referral.referrer_points,
                }
                for referral in page.items
            ],
            "next_cursor": page.next_cursor,
        }


@blp.route("/members/<string:external_id>/lots")
class MemberLots(MethodView):
    @requires("checkout", "app")
    @blp.arguments(PageQuerySchema, location="query")
    @blp.response(200, LotPageSchema)
    @blp.alt_response(404, description="No such member.")
    @blp.alt_response(422, description="Bad limit or cursor.")
    def get(self, query: dict[str, Any], external_id: str) -> dict[str, Any]:
        """The member's points by lot: what is left, when it is spendable, when it expires

        Every lot with points left, pending or available, soonest-expiring first (those that
        never expire last), however far off; spending takes from them in this order.
        """
        page = members.lots(db.session(), external_id, query["limit"], query["cursor"])
        return {
            "items": [
                {
                    "points": lot.points,
                    "remaining": lot.remaining,
                    "state": lot.state,
                    "credited_by": lot.credited_by,
                    "earned_at": lot.earned_at,
                    "available_at": lot.available_at,
                    "expires_at": lot.expires_at,
                    "order_id": lot.order_id,
                    "event_id": lot.event_id,
                }
                for lot in page.items
            ],
            "next_cursor": page.next_cursor,
        }


@admin_blp.route("/members/<string:external_id>")
class AdminMember(MethodView):
    @requires("admin")
    @admin_blp.arguments(MemberUpdateSchema, example={"status": "suspended"})
    @admin_blp.response(200, MemberCardSchema)
    @admin_blp.alt_response(404, description="No such member.")
    @admin_blp.alt_response(409, description="The member is closed; closing is final.")
    def patch(self, changes: members.MemberChanges, external_id: str) -> dict[str, Any]:
        """Change a member's status (active, suspended, closed) or profile"""
        card = members.update_member(db.session(), external_id, changes, current_caller().name)
        return card_body(card)


@admin_blp.route("/members/<string:external_id>/adjustments")
class Adjustments(MethodView):
    @requires("admin")
    @admin_blp.arguments(
        AdjustmentSchema, example={"points": 500, "reason": "Apology for a late delivery"}
    )
    @admin_blp.response(201, TransactionSchema)
    @admin_blp.alt_response(404, description="No such member.")
    @admin_blp.alt_response(422, description="Insufficient points, a closed member, or bad input.")
    def post(self, fields: dict[str, Any], external_id: str) -> Response | dict[str, Any]:
        """Add or remove points by hand, with a reason"""
        txn = adjustments.adjust(
            db.session(), external_id, fields["points"], fields["reason"], current_caller().name
        )
        return transaction_body(txn)
