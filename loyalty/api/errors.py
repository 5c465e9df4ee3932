"""Every error as application/problem+json with a stable `code` (RFC 9457).

Domain errors carry their status and code; Flask's and webargs' HTTP errors are mapped to
codes here; a database that cannot be reached is a 503, and anything unexpected a 500 with
no internals in the body.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, current_app, json
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException

from loyalty.errors import HTTP_CODES, LoyaltyError, problem_document

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger(__name__)


class MalformedJson(LoyaltyError):
    status = 400
    code = "malformed_json"
    title = "Malformed JSON"


def problem(status: int, code: str, title: str, detail: str, **extra: Any) -> Response:
    body = problem_document(status, code, title, detail, **extra)
    return current_app.response_class(json.dumps(body), status=status, mimetype=PROBLEM_JSON)


def flatten_messages(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """webargs/marshmallow nest messages by location and field; clients want {field: [..]}."""
    if isinstance(messages, list):
        return {prefix or "_schema": [str(m) for m in messages]}
    if not isinstance(messages, dict):
        return {prefix or "_schema": [str(messages)]}
    flat: dict[str, list[str]] = {}
    for key, value in messages.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        flat.update(flatten_messages(value, name))
    return flat


def refusal_messages(error: LoyaltyError) -> dict[str, list[str]]:
    """A service's refusal as {field: [..]}: its field errors, or its detail for the whole."""
    return flatten_messages(error.extra.get("errors") or {"_schema": [error.detail]})


def _strip_location(messages: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for location, fields in messages.items():
        if location in ("json", "query", "path", "form", "headers") and isinstance(fields, dict):
            merged.update(fields)
        else:
            merged[location] = fields
    return merged


def handle_loyalty_error(error: LoyaltyError) -> Response:
    return problem(error.status, error.code, error.title, error.detail, **error.extra)


def handle_http_exception(error: HTTPException) -> Response:
    status = error.code or 500
    code = HTTP_CODES.get(status, "http_error")
    data = getattr(error, "data", None) or {}
    messages = data.get("messages")
    if status == 422 and messages is not None:
        errors = flatten_messages(_strip_location(messages))
        return problem(
            422,
            "validation_error",
            "Validation failed",
            "The request did not validate.",
            errors=errors,
        )
    response = problem(status, code, error.name, error.description or error.name)
    if status == 405 and hasattr(error, "valid_methods") and error.valid_methods:
        response.headers["Allow"] = ", ".join(error.valid_methods)
    return response


def handle_database_down(error: DBAPIError) -> Response:
    log.warning("database unavailable: %s", error.__class__.__name__)
    response = problem(
        503,
        "service_unavailable",
        "Service unavailable",
        "The database is unavailable; retry shortly.",
    )
    response.headers["Retry-After"] = "1"
    return response


def handle_unexpected(error: Exception) -> Response:
    if isinstance(error, DBAPIError) and (
        isinstance(error, OperationalError) or error.connection_invalidated
    ):
        return handle_database_down(error)
    log.exception("unhandled error", exc_info=error)
    return problem(
        500,
        "internal_error",
        "Internal server error",
        "Something went wrong on our side; it has been logged.",
    )


def init_app(app: Flask) -> None:
    app.register_error_handler(LoyaltyError, handle_loyalty_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)
