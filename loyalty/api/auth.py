"""Bearer API keys and scopes for every /v1 route.

Each view method declares the scopes that may call it with ``@requires``; ``admin`` may call
everything. The app refuses to start if a /v1 route declares none, so no route is ever
public by accident.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, current_app, g, request
from flask_smorest import Blueprint

from loyalty.auth.services import Caller, authenticate
from loyalty.errors import LoyaltyError
from loyalty.extensions import db

F = TypeVar("F", bound=Callable[..., Any])
API_PREFIX = "/v1/"


class Unauthorized(LoyaltyError):
    status = 401
    code = "unauthorized"
    title = "Unauthorized"


class Forbidden(LoyaltyError):
    status = 403
    code = "forbidden"
    title = "Forbidden"


def requires(*scopes: str) -> Callable[[F], F]:
    """Allow keys with any of `scopes` (or admin) to call the decorated view method."""

    def decorate(func: F) -> F:
        listed = ", ".join(sorted({*scopes, "admin"}))
        documented = Blueprint.doc(**{"x-scopes": sorted({*scopes, "admin"})})(func)
        documented._scopes = frozenset(scopes)
        doc = (func.__doc__ or "").rstrip()
        documented.__doc__ = f"{doc}\n\nScopes: {listed}." if doc else f"Scopes: {listed}."
        return documented  # type: ignore[no-any-return]

    return decorate


def required_scopes(view: Any, method: str) -> frozenset[str] | None:
    view_class = getattr(view, "view_class", None)
    handler = getattr(view_class, method.lower(), None) if view_class else view
    return getattr(handler, "_scopes", None)


def current_caller() -> Caller:
    caller: Caller = g.caller
    return caller


def _authenticate_request() -> None:
    if not request.path.startswith(API_PREFIX) or request.url_rule is None:
        return
    if request.method == "OPTIONS":
        return
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Send an API key as `Authorization: Bearer <key>`.")
    caller = authenticate(db.session(), token.strip())
    if caller is None:
        raise Unauthorized("This API key is unknown or has been revoked.")
    method = "GET" if request.method == "HEAD" else request.method
    allowed = required_scopes(current_app.view_functions[request.endpoint or ""], method)
    if allowed is None or not caller.may(allowed):
        wanted = ", ".join(sorted(allowed or {"admin"}))
        raise Forbidden(f"This API key lacks the scope for this operation (one of: {wanted}).")
    g.caller = caller


def check_every_route_is_scoped(app: Flask) -> None:
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(API_PREFIX):
            continue
        view = app.view_functions[rule.endpoint]
        for method in rule.methods or ():
            if method in ("HEAD", "OPTIONS"):
                continue
            if required_scopes(view, method) is None:
                raise RuntimeError(f"{method} {rule.rule} declares no scopes (use @requires)")


def init_app(app: Flask) -> None:
    app.before_request(_authenticate_request)
    check_every_route_is_scoped(app)
