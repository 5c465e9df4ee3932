"""The admin console at /admin: server-rendered pages for the people who run the program.

Sign-in takes an admin API key; the session cookie (signed, HttpOnly, SameSite=Strict,
Secure) keeps only the key's id, which is checked again on every request, so revoking the
key signs its sessions out. Every form carries a per-session CSRF token. Writes go through
the same services as the API, under the key's name, so they land in the audit log alike.
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

from loyalty.console import rules, views  # noqa: E402, F401 - register the routes on blp
