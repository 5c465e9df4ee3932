"""The console's language: the reader's choice (a cookie set by the switch in every page's
header) beats the browser's Accept-Language; English when neither names a language the
console speaks. Catalogs live in console/translations (`make translations`)."""

from __future__ import annotations

from typing import Any

from flask import current_app, has_request_context, redirect, request, url_for
from werkzeug.wrappers import Response

from loyalty.console import blp

# Locale identifiers (Babel's) and each language's name in itself, for the switch.
LANGUAGES = {"en_US": "English", "zh_CN": "简体中文"}
DEFAULT = "en_US"
COOKIE = "console_language"
YEAR = 365 * 24 * 3600


def _from_tag(tag: str) -> str | None:
    """The console's locale for a BCP 47 tag, None when it speaks no such language.
    Simplified Chinese is zh, zh-CN, zh-SG and zh-Hans(-*); zh-TW or zh-Hant are not it."""
    tag = tag.lower().replace("_", "-")
    if tag == "en" or tag.startswith("en-"):
        return "en_US"
    if tag in ("zh", "zh-cn", "zh-sg") or tag.startswith("zh-hans"):
        return "zh_CN"
    return None


def select() -> str:
    """Flask-Babel's locale selector: the cookie, then Accept-Language in the browser's order
    of preference, then English (the test client and API callers send none; outside a
    request, a command's, there is no reader)."""
    if not has_request_context():
        return DEFAULT
    chosen = request.cookies.get(COOKIE)
    if chosen in LANGUAGES:
        return chosen
    for tag, _quality in request.accept_languages:
        found = _from_tag(tag)
        if found:
            return found
    return DEFAULT


def html_lang() -> str:
    """The page's `lang` attribute for the chosen language: en-US, zh-CN."""
    return select().replace("_", "-")


@blp.app_context_processor
def template_globals() -> dict[str, Any]:
    """The switch's languages and the page's: app-wide, since a console error page can be
    rendered for a path no console route matched (a NUL in it)."""
    return {"html_lang": html_lang(), "languages": LANGUAGES, "language": select()}


@blp.get("/language/<code>")
def choose_language(code: str) -> Response:
    """Remember the reader's language in a cookie and go back to the page they were on
    (one of ours: never an open redirect). A preference, not a write: no CSRF token needed."""
    target = request.args.get("next", "")
    if not target.startswith("/admin") or target.startswith("//"):
        target = url_for("console.dashboard")
    response = redirect(target)
    if code in LANGUAGES:
        response.set_cookie(
            COOKIE,
            code,
            max_age=YEAR,
            httponly=True,
            samesite="Lax",
            secure=bool(current_app.config.get("SESSION_COOKIE_SECURE")),
        )
    return response
