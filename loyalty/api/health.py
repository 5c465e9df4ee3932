"""Service endpoints, outside /v1 and without auth: liveness, readiness and the API docs."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, send_from_directory
from swagger_ui_bundle import swagger_ui_path

from loyalty.api.errors import problem
from loyalty.extensions import db
from loyalty.migrate import pending_migrations

blp = Blueprint("service", __name__)


@blp.get("/healthz")
def healthz() -> dict[str, Any]:
    """The process is up (it says nothing about the database)."""
    return {"status": "ok"}


@blp.get("/readyz")
def readyz() -> Response | dict[str, Any]:
    """Ready to serve: the database answers and carries every migration."""
    try:
        with db.engine.connect() as connection:
            missing = pending_migrations(connection)
    except Exception as error:
        return problem(
            503,
            "service_unavailable",
            "Not ready",
            f"The database is unreachable ({error.__class__.__name__}).",
        )
    if missing:
        return problem(
            503,
            "service_unavailable",
            "Not ready",
            f"The database lacks migrations: {', '.join(missing)}.",
        )
    return {"status": "ready"}


@blp.get("/docs/assets/<path:filename>")
def docs_assets(filename: str) -> Response:
    """Swagger UI's files, served by the app itself so /docs works offline."""
    return send_from_directory(swagger_ui_path, filename, max_age=86400)
