"""Domain errors. Each carries its HTTP status and a stable machine-readable code, so the
HTTP layer maps every one of them to application/problem+json with a single handler."""

from __future__ import annotations

from typing import Any, ClassVar

# The `code` of an error known only by its HTTP status: the framework's (a 404 route, a 405
# method) and the server's own refusals before the application runs (loyalty.serving).
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    417: "expectation_failed",
    422: "validation_error",
    429: "too_many_requests",
    431: "request_header_fields_too_large",
    500: "internal_error",
    501: "not_implemented",
    503: "service_unavailable",
}


def problem_document(
    status: int, code: str, title: str, detail: str, **extra: Any
) -> dict[str, Any]:
    """An RFC 9457 problem document as every error of the service is written."""
    return {
        "type": f"urn:problem:loyalty:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }


class LoyaltyError(Exception):
    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    title: ClassVar[str] = "Bad request"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra


class NotFound(LoyaltyError):
    status = 404
    code = "not_found"
    title = "Not found"


class ValidationFailed(LoyaltyError):
    """Input that passed the schema but breaks a rule only the service can check."""

    status = 422
    code = "validation_error"
    title = "Validation failed"

    def __init__(self, errors: dict[str, list[str]], detail: str | None = None) -> None:
        super().__init__(detail or "The request did not validate.", errors=errors)


class BusinessRuleViolation(LoyaltyError):
    status = 422


class Conflict(LoyaltyError):
    status = 409
    code = "conflict"
    title = "Conflict"
