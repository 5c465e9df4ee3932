"""CORS for the customer app: pages on the configured origins may call, from a browser, the
routes that admit member tokens, and no other route.

``CORS_ORIGINS`` (LOYALTY_CORS_ORIGINS) lists exact origins such as
``https://app.example.com``; a wildcard, a path or anything but http(s) stops the start. A
preflight (OPTIONS with Origin and Access-Control-Request-Method) to a member-facing route,
from a listed origin, for a method the route admits member tokens on, is answered 204 with
that origin, the method, the request headers the app may send and how long the browser may
keep the answer. Any other preflight under /v1 is refused (403 ``cors_refused``, without
CORS headers, so the browser stops there). The answers of member-facing routes to a listed
origin, errors included (the app must read a 401 to mint a new token), carry
Access-Control-Allow-Origin with that origin and expose the headers the app reads.

There is never a wildcard, and never Access-Control-Allow-Credentials: the token travels in
the Authorization header the app sets, not in a cookie, so the browser sends no credentials
of its own and a page on another origin has nothing to borrow.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, Response, current_app, request

from loyalty.api.auth import API_PREFIX, admits_member_tokens
from loyalty.api.errors import problem

EXTENSION = "loyalty.cors_origins"
ALLOWED_HEADERS = "Authorization, Content-Type, Idempotency-Key"
EXPOSED_HEADERS = (
    "Retry-After, Idempotent-Replayed, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset"
)
# Ten minutes: Chromium's cap is two hours, and a shorter wait lets a narrowed list take
# effect soon.
MAX_AGE_SECONDS = 600
# A shared cache must keep one answer per origin (and per preflight's question).
PREFLIGHT_VARY = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"


def parse_origins(origins: list[str]) -> frozenset[str]:
    """The allowed origins, as browsers send them (lower case, no trailing slash).

    Raises ValueError naming the setting for a wildcard or anything but scheme://host[:port].
    """
    parsed = set()
    for origin in origins:
        parts = urlsplit(origin.strip().lower())
        if (
            "*" in origin
            or parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.username is not None
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
        ):
            raise ValueError(
                f"LOYALTY_CORS_ORIGINS: {origin!r} is not an origin such as "
                "'https://app.example.com' (no wildcard, path or query)"
            )
        parsed.add(f"{parts.scheme}://{parts.netloc}")
    return frozenset(parsed)


def _member_facing(method: str) -> bool:
    """Whether this request's route admits member tokens on `method`."""
    if request.url_rule is None or not request.path.startswith(API_PREFIX):
        return False
    view = current_app.view_functions[request.url_rule.endpoint]
    return admits_member_tokens(view, "GET" if method == "HEAD" else method)


def _allowed_origin() -> str | None:
    origin = request.headers.get("Origin")
    allowed: frozenset[str] = current_app.extensions[EXTENSION]
    return origin if origin in allowed else None


def _answer_preflight() -> Response | None:
    if request.method != "OPTIONS" or not request.path.startswith(API_PREFIX):
        return None
    wanted = request.headers.get("Access-Control-Request-Method")
    if "Origin" not in request.headers or wanted is None:
        return None  # not a preflight: Flask answers OPTIONS itself
    origin = _allowed_origin()
    if origin is None or not _member_facing(wanted.upper()):
        response = problem(
            403,
            "cors_refused",
            "Cross-origin call refused",
            "Browsers may call only the member-facing routes, and only from the origins in "
            "LOYALTY_CORS_ORIGINS.",
        )
    else:
        response = current_app.response_class(status=204)
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Methods"] = wanted.upper()
        response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
        response.headers["Access-Control-Max-Age"] = str(MAX_AGE_SECONDS)
    response.headers["Vary"] = PREFLIGHT_VARY
    return response


def _mark_answer(response: Response) -> Response:
    if request.method == "OPTIONS" or not _member_facing(request.method):
        return response
    response.vary.add("Origin")
    origin = _allowed_origin()
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
    return response


def init_app(app: Flask) -> None:
    """Answer preflights and mark member-facing answers. Call it before auth.init_app: a
    preflight carries no Authorization header. Raises ValueError for a bad origin."""
    app.extensions[EXTENSION] = parse_origins(app.config["CORS_ORIGINS"])
    app.before_request(_answer_preflight)
    app.after_request(_mark_answer)
