"""Bearer API keys and scopes for every /v1 route.

Each view method declares the scopes that may call it with ``@requires``; ``admin`` may call
everything. The app refuses to start if a /v1 route declares none, so no route is ever
public by accident.

A member token (loyalty.auth.member_tokens) holds the ``member`` scope only: a route that
declares it admits the token when the member it names is the token's (the path's
``external_id``, or on a route without one the query parameter named by ``member_query``),
and refuses it for another member (403 ``token_member_mismatch``); every route that does not
declare it refuses the token (403 ``member_token_not_allowed``). The app refuses to start if
a route declares ``member`` but names no member.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, current_app, g, request
from flask_smorest import Blueprint

from loyalty.auth import member_tokens
from loyalty.auth.models import Scope
from loyalty.auth.services import Caller, authenticate
from loyalty.errors import LoyaltyError
from loyalty.extensions import db

F = TypeVar("F", bound=Callable[..., Any])
API_PREFIX = "/v1/"


class Unauthorized(LoyaltyError):
    status = 401
    code = "unauthorized"
    title = "Unauthorized"


class TokenExpired(Unauthorized):
    code = "token_expired"
    title = "Token expired"


class Forbidden(LoyaltyError):
    status = 403
    code = "forbidden"
    title = "Forbidden"


class MemberTokenNotAllowed(Forbidden):
    code = "member_token_not_allowed"
    title = "Not for member tokens"


class TokenMemberMismatch(Forbidden):
    code = "token_member_mismatch"
    title = "Token is for another member"


def requires(*scopes: str, member_query: str | None = None) -> Callable[[F], F]:
    """Allow keys with any of `scopes` (or admin) to call the decorated view method.

    With the ``member`` scope, a member token may call it for its own member: the one the
    path's ``external_id`` names, or, on a route without one, the query parameter
    `member_query`.
    """

    def decorate(func: F) -> F:
        listed = ", ".join(sorted({*scopes, "admin"}))
        documented = Blueprint.doc(**{"x-scopes": sorted({*scopes, "admin"})})(func)
        documented._scopes = frozenset(scopes)
        documented._member_query = member_query
        doc = (func.__doc__ or "").rstrip()
        documented.__doc__ = f"{doc}\n\nScopes: {listed}." if doc else f"Scopes: {listed}."
        return documented  # type: ignore[no-any-return]

    return decorate


def _handler(view: Any, method: str) -> Any:
    view_class = getattr(view, "view_class", None)
    return getattr(view_class, method.lower(), None) if view_class else view


def required_scopes(view: Any, method: str) -> frozenset[str] | None:
    return getattr(_handler(view, method), "_scopes", None)


def admits_member_tokens(view: Any, method: str) -> bool:
    """Whether the view's `method` admits a member token (for its own member)."""
    return Scope.MEMBER in (required_scopes(view, method) or ())


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
    view = current_app.view_functions[request.endpoint or ""]
    method = "GET" if request.method == "HEAD" else request.method
    if member_tokens.is_member_token(token.strip()):
        g.caller = _member_token_caller(token.strip(), view, method)
        return
    caller = authenticate(db.session(), token.strip())
    if caller is None:
        raise Unauthorized("This API key is unknown or has been revoked.")
    allowed = required_scopes(view, method)
    if allowed is None or not caller.may(allowed):
        wanted = ", ".join(sorted(allowed or {"admin"}))
        raise Forbidden(f"This API key lacks the scope for this operation (one of: {wanted}).")
    g.caller = caller


def _member_token_caller(raw: str, view: Any, method: str) -> Caller:
    """The caller behind a member token, if it may call this route for this member.

    Raises Unauthorized, TokenExpired, MemberTokenNotAllowed, TokenMemberMismatch.
    """
    caller = member_tokens.authenticate(db.session(), raw)
    if caller is member_tokens.Refusal.EXPIRED:
        raise TokenExpired("This member token has expired: ask the shop's backend for another.")
    if not isinstance(caller, Caller):
        raise Unauthorized("This member token is unknown or has been revoked.")
    if not admits_member_tokens(view, method):
        raise MemberTokenNotAllowed(
            "Member tokens may call only their member's card, history, benefits, the rewards "
            "catalog and reward redemption."
        )
    if _named_members(_handler(view, method)) != [caller.member_external_id]:
        raise TokenMemberMismatch("This member token is for another member.")
    return caller


def _named_members(handler: Any) -> list[str]:
    """The members a request names: its path's, or its member query parameter's (all of
    them: a repeated parameter must not slip a second member past the check)."""
    path_member = (request.view_args or {}).get("external_id")
    if path_member is not None:
        return [str(path_member)]
    return request.args.getlist(handler._member_query)


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
            names_member = "external_id" in rule.arguments or _handler(view, method)._member_query
            if admits_member_tokens(view, method) and not names_member:
                raise RuntimeError(
                    f"{method} {rule.rule} admits member tokens but names no member "
                    "(an <external_id> in the path, or @requires(member_query=...))"
                )


def init_app(app: Flask) -> None:
    app.before_request(_authenticate_request)
    check_every_route_is_scoped(app)
