"""Domain errors. Each carries its HTTP status and a stable machine-readable code, so the
HTTP layer maps every one of them to application/problem+json with a single handler."""

from __future__ import annotations

from typing import Any, ClassVar


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
