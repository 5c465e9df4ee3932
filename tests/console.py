"""Helpers the console's test files share: reading a page's CSRF token, signing in."""

from __future__ import annotations

import re

from flask.testing import FlaskClient


def csrf_token(client: FlaskClient, path: str) -> str:
    """The CSRF token in the page at `path` (signed in, it is this session's)."""
    page = client.get(path)
    assert page.status_code == 200, page.status_code
    found = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text) or re.search(
        r'type="hidden" name="csrf_token" value="([^"]+)"', page.text
    )
    assert found, page.text
    return found[1]


def sign_in(client: FlaskClient, key: str) -> None:
    token = csrf_token(client, "/admin/login")
    response = client.post("/admin/login", data={"api_key": key, "csrf_token": token})
    assert response.status_code == 302, response.text
    assert response.location == "/admin/"
