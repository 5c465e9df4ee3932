"""Sign-in, the session and CSRF for the console."""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from flask import Response, abort, g, redirect, request, session, url_for

from loyalty.auth.models import Scope
from loyalty.auth.services import Caller, authenticate, caller_by_key_id
from loyalty.extensions import db

OPEN_ENDPOINTS = {"console.login", "console.static"}


def sign_in(raw_key: str) -> Caller | None:
    """Start a session for an admin key; None when the key is unknown, revoked or not admin."""
    caller = authenticate(db.session(), raw_key.strip())
    if caller is None or Scope.ADMIN.value not in caller.scopes:
        return None
    session.clear()
    session["key_id"] = caller.key_id
    session["csrf"] = secrets.token_urlsafe(32)
    session.permanent = False
    return caller


def sign_out() -> None:
    session.clear()


def _caller_from_session() -> Caller | None:
    key_id = session.get("key_id")
    if key_id is None:
        return None
    caller = caller_by_key_id(db.session(), key_id)
    if caller is None or Scope.ADMIN.value not in caller.scopes:
        return None
    return caller


def guard() -> Response | None:
    """Before every console request: a signed-in admin, and a valid CSRF token on writes."""
    if request.endpoint in OPEN_ENDPOINTS:
        if request.method == "POST":
            check_csrf()
        return None
    caller = _caller_from_session()
    if caller is None:
        session.clear()
        return redirect(url_for("console.login", next=request.full_path))  # type: ignore[return-value]
    g.console_caller = g.caller = caller
    if request.method == "POST":
        check_csrf()
    return None


def csrf_token() -> str:
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return str(token)


def check_csrf() -> None:
    sent = request.form.get("csrf_token", "")
    expected = session.get("csrf", "")
    if not expected or not hmac.compare_digest(str(sent), str(expected)):
        abort(400, description="The form's security token is missing or stale; reload the page.")


def actor() -> str:
    caller: Caller = g.console_caller
    return caller.name


def template_globals() -> dict[str, Any]:
    return {"csrf_token": csrf_token, "signed_in_as": getattr(g, "console_caller", None)}
