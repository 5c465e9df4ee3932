"""Program settings."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from loyalty.api.auth import current_caller, requires
from loyalty.api.base import Blueprint
from loyalty.extensions import db
from loyalty.program import services as program
from loyalty.schemas.program import (
    ProgramOutSchema,
    ProgramSchema,
    settings_changes,
    settings_to_dict,
)

blp = Blueprint("program", __name__, url_prefix="/v1/admin", description="Admin: program settings.")


@blp.route("/program")
class Program(MethodView):
    @requires("admin")
    @blp.response(200, ProgramOutSchema)
    def get(self) -> dict[str, Any]:
        """The program settings"""
        return settings_to_dict(program.settings_view(db.session()))

    @requires("admin")
    @blp.arguments(
        # Partial at the top level only: a nested point_value or expiry is sent whole.
        ProgramSchema(partial=tuple(ProgramSchema().fields)),
        example={"pending_days": 30, "expiry": {"policy": "inactivity", "months": 18}},
    )
    @blp.response(200, ProgramOutSchema)
    def patch(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Change some program settings

        Changes only the settings named; each is validated. New expiry and return-window
        settings apply to points earned from now on.
        """
        settings = program.update_settings(
            db.session(), settings_changes(changes), current_caller().name
        )
        return settings_to_dict(settings)
