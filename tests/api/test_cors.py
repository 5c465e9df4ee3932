"""CORS: the customer app's pages, on the configured origins, may call the member-facing
routes from a browser; no other origin, and no other route.

The suite's app lists no origin; these tests give it the app's origin for the test only.
"""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from loyalty.api import cors
from tests.factories import auth
from tests.helpers import app_built, created, ok, problem

APP_ORIGIN = "https://app.example.com"
ELSEWHERE = "https://evil.example.net"


@pytest.fixture(autouse=True)
def origins(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(app.extensions, cors.EXTENSION, cors.parse_origins([APP_ORIGIN]))


@pytest.fixture
def token(client: FlaskClient, app_key: dict[str, str], member: str) -> dict[str, str]:
    """A member token for c1, as the app's headers."""
    body = created(client.post("/v1/members/c1/tokens", json={}, headers=app_key))
    return auth(body["token"])


def preflight(client: FlaskClient, path: str, method: str, origin: str = APP_ORIGIN):
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/v1/members/c1", "GET"),
        ("/v1/members/c1/transactions", "GET"),
        ("/v1/members/c1/benefits", "GET"),
        ("/v1/rewards?member_id=c1", "GET"),
        ("/v1/members/c1/reward-redemptions", "POST"),
    ],
)
def test_a_preflight_from_the_apps_origin_to_a_member_route_is_allowed(client, path, method):
    response = preflight(client, path, method)

    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert response.headers["Access-Control-Allow-Methods"] == method
    allowed_headers = response.headers["Access-Control-Allow-Headers"].lower().split(", ")
    assert {"authorization", "content-type", "idempotency-key"} <= set(allowed_headers)
    assert response.headers["Access-Control-Max-Age"] == "600"
    assert "Origin" in response.headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_a_preflight_needs_no_key(client):
    """A browser sends no Authorization header with a preflight."""
    assert preflight(client, "/v1/members/c1", "GET").status_code == 204


def test_a_preflight_from_another_origin_is_refused(client):
    response = preflight(client, "/v1/members/c1", "GET", origin=ELSEWHERE)

    problem(response, 403, "cors_refused")
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/v1/admin/program", "GET"),
        ("/v1/orders", "POST"),
        ("/v1/members", "POST"),
        ("/v1/members/c1/tokens", "POST"),
        ("/v1/members/c1/tokens", "DELETE"),
        # a member route, but not for this method
        ("/v1/members/c1", "DELETE"),
    ],
)
def test_a_preflight_to_any_other_route_or_method_is_refused(client, path, method):
    response = preflight(client, path, method)

    problem(response, 403, "cors_refused")
    assert "Access-Control-Allow-Origin" not in response.headers


def test_an_options_request_that_is_no_preflight_is_left_to_flask(client):
    response = client.options("/v1/members/c1")

    assert response.status_code == 200
    assert "GET" in response.headers["Allow"]
    assert "Access-Control-Allow-Origin" not in response.headers


def test_a_member_routes_answer_to_the_apps_origin_allows_it(client, token):
    response = client.get("/v1/members/c1", headers={**token, "Origin": APP_ORIGIN})

    ok(response)
    assert response.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert "Origin" in response.vary
    exposed = response.headers["Access-Control-Expose-Headers"]
    assert "Retry-After" in exposed
    assert "Idempotent-Replayed" in exposed
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_an_error_from_a_member_route_is_readable_by_the_app(client, member):
    """The app must read a 401 (token expired or revoked) to fetch a new token."""
    response = client.get(
        "/v1/members/c1", headers={**auth("lmt_" + "x" * 43), "Origin": APP_ORIGIN}
    )

    problem(response, 401, "unauthorized")
    assert response.headers["Access-Control-Allow-Origin"] == APP_ORIGIN


def test_a_member_routes_answer_to_another_origin_does_not_allow_it(client, token):
    response = client.get("/v1/members/c1", headers={**token, "Origin": ELSEWHERE})

    ok(response)
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Origin" in response.vary  # a cache must not serve it to the app's origin


def test_other_routes_never_answer_with_cors_headers(client, admin):
    response = client.get("/v1/admin/program", headers={**admin, "Origin": APP_ORIGIN})

    ok(response)
    assert "Access-Control-Allow-Origin" not in response.headers


def test_no_origin_is_allowed_unless_configured(app, client, token, monkeypatch):
    monkeypatch.setitem(app.extensions, cors.EXTENSION, cors.parse_origins([]))

    response = client.get("/v1/members/c1", headers={**token, "Origin": APP_ORIGIN})

    assert "Access-Control-Allow-Origin" not in response.headers
    problem(preflight(client, "/v1/members/c1", "GET"), 403, "cors_refused")


def test_origins_are_compared_as_browsers_send_them():
    assert cors.parse_origins(["HTTPS://App.Example.com/", "http://localhost:3000"]) == {
        "https://app.example.com",
        "http://localhost:3000",
    }


@pytest.mark.parametrize(
    "origin",
    [
        "*",
        "https://*.example.com",
        "app.example.com",
        "https://app.example.com/path",
        "ftp://app.example.com",
        "https://user@app.example.com",
        "https://app.example.com?x=1",
    ],
)
def test_a_wildcard_or_anything_but_an_origin_stops_the_start(tmp_path, origin):
    with (
        pytest.raises(ValueError, match="LOYALTY_CORS_ORIGINS"),
        app_built(f"sqlite:///{tmp_path / 'x.db'}", CORS_ORIGINS=[origin]),
    ):
        pass


def test_the_setting_is_read_at_start(tmp_path):
    with app_built(f"sqlite:///{tmp_path / 'x.db'}", CORS_ORIGINS=[APP_ORIGIN]) as built:
        assert built.extensions[cors.EXTENSION] == {APP_ORIGIN}
