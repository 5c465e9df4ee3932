"""The HTTP layer: thin views that parse, call one service and serialize.

``init_app`` registers the OpenAPI machinery, the blueprints, and the request hooks shared by
every /v1 route (authentication, scopes, rate limits, idempotency, problem+json errors).
"""

from __future__ import annotations

import http
from typing import Any

from apispec import BasePlugin
from flask import Flask
from flask_smorest import Api as BaseApi
from flask_smorest.utils import prepare_response

from loyalty.schemas.common import ProblemSchema
from loyalty.schemas.webhooks import EVENT_PAYLOAD_SCHEMAS

PROBLEM_JSON = "application/problem+json"
PROBLEM_REF = "#/components/schemas/Problem"


class ConventionsPlugin(BasePlugin):
    """Documents what every /v1 operation shares: bearer auth (and member tokens where an
    operation admits them), 400/401/403, the rate limit's 429, Idempotency-Key."""

    def operation_helper(
        self, path: str | None = None, operations: dict[str, Any] | None = None, **_: Any
    ) -> None:
        if not path or not path.startswith("/v1") or operations is None:
            return
        for method, operation in operations.items():
            if "member" in operation.get("x-scopes", ()):
                operation.setdefault("security", [{"bearerAuth": []}, {"memberToken": []}])
            operation.setdefault("security", [{"bearerAuth": []}])
            responses = operation.setdefault("responses", {})
            responses.setdefault("401", "UNAUTHORIZED")
            responses.setdefault("403", "FORBIDDEN")
            responses.setdefault("429", "RATE_LIMITED")
            if method == "post":
                operation.setdefault("parameters", []).append("IdempotencyKey")
                responses.setdefault("409", "CONFLICT")
                responses.setdefault("422", "UNPROCESSABLE_ENTITY")
            # malformed_json for a body; malformed_url for any path or query string
            responses.setdefault("400", "BAD_REQUEST")
            if "requestBody" in operation:
                responses.setdefault("413", "REQUEST_ENTITY_TOO_LARGE")
                responses.setdefault("415", "UNSUPPORTED_MEDIA_TYPE")
            for status, response in responses.items():
                # An error documented without a schema (alt_response(404)) is problem+json too.
                if str(status)[0] in "45" and isinstance(response, dict):
                    problem = {"schema": {"$ref": PROBLEM_REF}}
                    response.setdefault("content", {PROBLEM_JSON: problem})


class Api(BaseApi):
    ERROR_SCHEMA = ProblemSchema

    def _register_error_handlers(self) -> None:
        """Errors are handled by loyalty.api.errors, for every route, not just smorest's."""

    def _register_responses(self) -> None:
        for status in http.HTTPStatus:
            response: dict[str, Any] = {"description": status.phrase}
            if status >= 400:
                response["schema"] = self.ERROR_SCHEMA
            prepare_response(response, self.spec, PROBLEM_JSON)
            self.spec.components.response(status.name, response, lazy=True)
        default = {"description": "Default error response", "schema": self.ERROR_SCHEMA}
        prepare_response(default, self.spec, PROBLEM_JSON)
        self.spec.components.response("DEFAULT_ERROR", default, lazy=True)


api = Api(spec_kwargs={"extra_plugins": [ConventionsPlugin()]})


def init_app(app: Flask) -> None:
    from loyalty.api import auth, cors, errors, limits, member_tokens, transaction
    from loyalty.api.base import OrderIdConverter, SegmentConverter, refuse_undecodable_url
    from loyalty.api.blueprints import BLUEPRINTS

    app.url_map.converters["default"] = app.url_map.converters["string"] = SegmentConverter
    app.url_map.converters["order_id"] = OrderIdConverter
    api.init_app(app)
    api.spec.components.security_scheme(
        "bearerAuth",
        {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key made by `loyalty keys create`.",
        },
    )
    api.spec.components.security_scheme(
        "memberToken",
        {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "lmt_...",
            "description": (
                "A short-lived token for one member, minted by the shop's backend with "
                "`POST /v1/members/{external_id}/tokens`, for the customer app: the operations "
                "that list it admit it for that member only (scope `member`); every other "
                "operation refuses it (403 `member_token_not_allowed`)."
            ),
        },
    )
    api.spec.components.parameter(
        "IdempotencyKey",
        "header",
        {
            "name": "Idempotency-Key",
            "required": False,
            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
            "description": (
                "Makes a retry safe: the same key and body return the first response without "
                "doing the work again."
            ),
        },
    )
    api.spec.components.response(
        "RATE_LIMITED",
        {
            "description": (
                "Too many requests from this API key (or, without a valid key, from this "
                "address): code `rate_limited`; retry after `Retry-After` seconds."
            ),
            "content": {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_REF}}},
            "headers": {
                "Retry-After": {
                    "description": "Seconds to wait before the next request is accepted.",
                    "schema": {"type": "integer", "minimum": 1},
                },
            },
        },
    )
    for blueprint in BLUEPRINTS:
        api.register_blueprint(blueprint)
    for event_type, schema in EVENT_PAYLOAD_SCHEMAS.items():
        # Webhook payloads are no operation's response: named components document them.
        name = "".join(part.title() for part in event_type.replace(".", "_").split("_"))
        api.spec.components.schema(f"{name}Event", schema=schema)
    errors.init_app(app)
    # before authentication: a URL that cannot be read names nothing to authorize
    app.before_request(refuse_undecodable_url)
    # before authentication too: a browser's preflight carries no Authorization header
    cors.init_app(app)
    member_tokens.init_app(app)
    auth.init_app(app)
    # After authentication (the limit is the key's) and before the request's transaction
    # (a refused request claims no Idempotency-Key and writes nothing).
    limits.init_app(app)
    transaction.init_app(app)
