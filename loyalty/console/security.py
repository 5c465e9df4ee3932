"""Sign-in, the server-side session, CSRF, and what every console response carries."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Response, current_app, g, redirect, render_template, request, session, url_for
from flask_babel import gettext
from werkzeug.exceptions import BadRequest

from loyalty.auth import sessions
from loyalty.auth.models import Scope
from loyalty.auth.services import Caller, authenticate
from loyalty.extensions import csrf, db

OPEN_ENDPOINTS = {"console.login", "console.static", "console.choose_language"}
# The cookie (signed by Flask) holds the session's token and Flask-WTF's CSRF secret; the
# session itself, and who signed in, live on the server.
TOKEN = "session_token"  # noqa: S105 - the name of the cookie's entry, not a secret

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
    )
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def timeouts() -> sessions.Timeouts:
    config = current_app.config
    return sessions.Timeouts(
        idle=dt.timedelta(minutes=config["CONSOLE_IDLE_MINUTES"]),
        absolute=dt.timedelta(hours=config["CONSOLE_MAX_HOURS"]),
    )


def sign_in(raw_key: str) -> Caller | None:
    """Start a session for an admin key; None when the key is unknown, revoked or not admin.
    A session this browser already had ends first: each sign-in gets a new token."""
    caller = authenticate(db.session(), raw_key)
    if caller is None or Scope.ADMIN not in caller.scopes:
        return None
    sign_out()
    session[TOKEN] = sessions.start(db.session(), caller, timeouts())
    session.permanent = False
    return caller


def sign_out() -> None:
    """End this browser's session on the server (every copy of its cookie with it)."""
    token = session.get(TOKEN)
    if isinstance(token, str):
        sessions.end(db.session(), token)
    session.clear()


def _caller_from_session() -> Caller | None:
    token = session.get(TOKEN)
    if not isinstance(token, str):
        return None
    caller = sessions.resume(db.session(), token, timeouts())
    if caller is None or Scope.ADMIN not in caller.scopes:
        return None
    return caller


def guard() -> Response | None:
    """Before every console request: a live session of an admin key (but to sign in), and
    on every write a valid CSRF token (Flask-WTF's: 400 when missing or wrong)."""
    if request.endpoint not in OPEN_ENDPOINTS:
        caller = _caller_from_session()
        if caller is None:
            session.clear()
            return redirect(url_for("console.login", next=request.full_path))  # type: ignore[return-value]
        g.console_caller = g.caller = caller
    csrf.protect()
    return None


def is_console_path() -> bool:
    """Whether this request is for a console URL, whether or not it matched a route."""
    prefix = current_app.blueprints["console"].url_prefix or ""
    return request.path == prefix or request.path.startswith(prefix + "/")


def _has_nul(values: Any) -> bool:
    return any("\x00" in key or "\x00" in value for key, value in values.items(multi=True))


def refuse_nul() -> tuple[str, int] | None:
    """Before every console request, routed or not: a NUL in the path, the query string or a
    form field is a 400 page. No database column can hold one (PostgreSQL text refuses it),
    so it must never reach a query."""
    if not is_console_path():
        return None
    if "\x00" in request.path or _has_nul(request.args) or _has_nul(request.form):
        error = BadRequest(
            gettext("The request contains a NUL character (\\u0000), which is not allowed.")
        )
        return render_template("console/error.html", error=error), 400
    return None


def secure_headers(response: Response) -> Response:
    """After every console response, error pages and static files included: no framing, no
    content sniffing, no script or style from anywhere but the console's own files, no
    referrer to other sites, and pages (not the stylesheet) kept out of every cache."""
    if not is_console_path():
        return response
    response.headers.update(HEADERS)
    if request.endpoint != "console.static":
        response.headers["Cache-Control"] = "no-store"
    return response


def actor() -> str:
    caller: Caller = g.console_caller
    return caller.name


def template_globals() -> dict[str, Any]:
    return {"signed_in_as": getattr(g, "console_caller", None)}
