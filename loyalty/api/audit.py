"""Admin: the audit log (read-only: no route can change it)."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from loyalty.api.auth import requires
from loyalty.api.base import Blueprint
from loyalty.api.replica import reads_from_replica
from loyalty.audit import services as audit
from loyalty.audit.services import AuditRecord
from loyalty.extensions import db
from loyalty.pagination import cursor_to, position_of
from loyalty.schemas.audit import AuditPageSchema, AuditQuerySchema

blp = Blueprint("audit", __name__, url_prefix="/v1/admin", description="Admin: the audit log.")


def entry_body(entry: AuditRecord) -> dict[str, Any]:
    return {
        "actor": entry.actor,
        "action": entry.action,
        "target_type": entry.target_type,
        "target_id": entry.target_id,
        "before": entry.before,
        "after": entry.after,
        "created_at": entry.created_at,
    }


@blp.route("/audit-log")
class AuditLog(MethodView):
    @reads_from_replica
    @requires("admin")
    @blp.arguments(AuditQuerySchema, location="query")
    @blp.response(200, AuditPageSchema)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """Every admin write: who, what, on which target, before and after, when

        Newest first; filter by target and by time (`from` inclusive, `to` exclusive).
        """
        found, next_position = audit.entries(
            db.session(),
            target_type=query["target_type"],
            target_id=query["target_id"],
            since=query["from_"],
            until=query["to"],
            limit=query["limit"],
            before_position=position_of(query["cursor"]),
        )
        return {
            "items": [entry_body(entry) for entry in found],
            "next_cursor": cursor_to(next_position),
        }
