"""Admin: what the program holds about a member, exported or erased."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask.views import MethodView

from loyalty.api.auth import current_caller, requires
from loyalty.api.base import Blueprint
from loyalty.extensions import db
from loyalty.privacy import erasure
from loyalty.privacy.export import export
from loyalty.schemas.privacy import ErasureSchema, MemberExportSchema

blp = Blueprint(
    "admin_privacy",
    __name__,
    url_prefix="/v1/admin/members",
    description="Admin: a member's data, exported or erased.",
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
