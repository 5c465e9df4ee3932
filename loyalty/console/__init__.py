"""The admin console at /admin: server-rendered pages for the people who run the program.

Sign-in takes an admin API key and starts a session kept on the server
(loyalty.auth.sessions): the cookie (signed, HttpOnly, SameSite=Strict, Secure) carries only
a random token, the table its SHA-256. Signing out deletes the session, so no copy of the
cookie works after; so do the idle and absolute timeouts (LOYALTY_CONSOLE_IDLE_MINUTES,
LOYALTY_CONSOLE_MAX_HOURS) and revoking the key, checked on every request.

Forms are Flask-WTF forms (forms.py) whose bounds are read from the API's schemas, so the
console refuses what the API refuses (the automation form, automation_forms.py, has no bounds
at all: the API's schemas load what it gathered); every write needs Flask-WTF's CSRF token,
checked by the console's guard only (security.py). Every console response carries a Content
Security Policy (scripts only from the console's own files, never inline) and the
anti-framing, nosniff and referrer headers, pages Cache-Control: no-store; a NUL in a path,
query or form is a 400 page. Writes go through the same services as the API,
under the key's name, so they land in the audit log alike.

Pages speak English or Simplified Chinese (language.py: the header's switch, then
Accept-Language), every string through Flask-Babel's gettext with the catalogs in
translations/; figures and dates are written for the reader's locale (formatting.py).
"""

from flask import Blueprint

blp = Blueprint(
    "console",
    __name__,
    url_prefix="/admin",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

from loyalty.console import (  # noqa: E402, F401 - register the routes on blp
    accounts,
    automations,
    experiments,
    grants,
    insight,
    language,
    rewards,
    rules,
    tiers,
    views,
    webhooks,
)
