"""Admin: what the program holds about a member, exported, erased, or merged into another."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask.views import MethodView

from loyalty.api.auth import current_caller, requires
from loyalty.api.base import Blueprint
from loyalty.api.members import card_body
from loyalty.extensions import db
from loyalty.membership.merging import merge
from loyalty.privacy import erasure
from loyalty.privacy.export import export
from loyalty.schemas.members import MemberCardSchema
from loyalty.schemas.privacy import ErasureSchema, MemberExportSchema, MergeSchema

blp = Blueprint(
    "admin_privacy",
    __name__,
    url_prefix="/v1/admin/members",
    description="Admin: a member's data, exported, erased or merged.",
)


@blp.route("/<string:external_id>/export")
class MemberExport(MethodView):
    @requires("admin")
    @blp.response(200, MemberExportSchema)
    @blp.alt_response(404, description="No such member.")
    def get(self, external_id: str) -> Any:
        """Everything held about a member

        Profile, consent, balance, lots, every ledger transaction, orders with their refunds,
        quoted carts, events, holds, reward redemptions, benefit grants, tier history,
        experiment assignments and automation firings, each oldest first. The export is
        recorded in the audit log (`member.export`).
        """
        return export(db.session(), external_id, current_caller().name)


@blp.route("/<string:external_id>/erasure")
class MemberErasure(MethodView):
    @requires("admin")
    @blp.response(200, ErasureSchema)
    @blp.alt_response(404, description="No such member.")
    def post(self, external_id: str) -> dict[str, Any]:
        """Erase a member's personal data

        Closes the member (their points are forfeited, so they can no longer earn), clears
        their profile, consent and event attributes, and replaces their `external_id`
        everywhere by a pseudonym (`erased:` and a keyed hash of the id, then a random
        tail), which the answer names. The ledger keeps every amount. Idempotent: asking
        again with the old id or the pseudonym answers the same. Audited (`member.erase`).
        """
        done = erasure.erase(
            db.session(), external_id, current_app.config["SECRET_KEY"], current_caller().name
        )
        return {"pseudonym": done.pseudonym, "erased_at": done.erased_at}


@blp.route("/<string:external_id>/merge")
class MemberMerge(MethodView):
    @requires("admin")
    @blp.arguments(MergeSchema, example={"into": "cust_1002"})
    @blp.response(200, MemberCardSchema, description="The surviving member's card.")
    @blp.alt_response(404, description="No such member (either).")
    @blp.alt_response(409, description="Either member is closed (`member_closed`).")
    @blp.alt_response(422, description="Merging a member into itself (`merge_into_itself`).")
    def post(self, fields: dict[str, Any], external_id: str) -> dict[str, Any]:
        """Merge a duplicate member into another

        In one transaction the duplicate's points (available, pending, held) move with their
        lots and holds, a debt on either side repaid from the other's lots; their orders,
        quoted carts and events move; the survivor's history lists the duplicate's
        transactions and their qualifying points count together for tiers (the survivor
        keeps the higher tier). The duplicate is closed and points to the survivor.
        Idempotent: merging the same pair again answers the survivor's card. Audited
        (`member.merge`); a `member.merged` webhook.
        """
        survivor = merge(db.session(), external_id, fields["into"], current_caller().name)
        return card_body(survivor)
