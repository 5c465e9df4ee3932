"""Every error is application/problem+json with a stable `code`, and nothing a client sends
is ever answered with a 500."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.exc import OperationalError
from werkzeug.test import TestResponse

from loyalty import config
from loyalty.membership import adjustments
from loyalty.membership import services as members
from tests.helpers import app_built

PROBLEM_JSON = "application/problem+json"
PROBLEM_FIELDS = {"type", "title", "status", "detail", "code"}


def assert_problem(response: TestResponse, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM_JSON
    body: dict[str, Any] = json.loads(response.get_data(as_text=True))
    assert body["status"] == status
    assert body["code"] == code
    return body


@pytest.fixture
def member(client: FlaskClient, checkout: dict[str, str]) -> str:
    client.post("/v1/members", json={"external_id": "m1"}, headers=checkout)
    return "m1"


# --- Flask's own errors --------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/no-such-thing", "/no-such-thing", "/v1"])
def test_an_unknown_path_is_a_404_not_found(client, path):
    assert_problem(client.get(path), 404, "not_found")


def test_an_unsupported_method_is_a_405_method_not_allowed_with_allow(client, admin):
    response = client.delete("/v1/admin/program", headers=admin)

    assert_problem(response, 405, "method_not_allowed")
    assert {"GET", "PATCH"} <= {m.strip() for m in response.headers["Allow"].split(",")}


def test_an_unknown_member_is_a_404_not_found(client, checkout):
    body = assert_problem(client.get("/v1/members/nobody", headers=checkout), 404, "not_found")

    assert "nobody" in body["detail"]


# --- bodies that are not JSON --------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b"{", b'{"external_id": "m1",}', b"{'external_id': 'm1'}", b"\xff\xfe", b"NaN-ish"],
)
def test_malformed_json_is_a_400_malformed_json(client, checkout, raw):
    response = client.post(
        "/v1/members", data=raw, content_type="application/json", headers=checkout
    )

    assert_problem(response, 400, "malformed_json")


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/xml", None],
)
def test_a_body_that_is_not_json_is_a_415_unsupported_media_type(client, checkout, content_type):
    response = client.post(
        "/v1/members",
        data='{"external_id": "m1"}',
        content_type=content_type,
        headers=checkout,
    )

    assert_problem(response, 415, "unsupported_media_type")


def test_json_nested_too_deeply_is_a_400_not_a_500(client, checkout):
    deep = '{"external_id": "m1", "metadata": {"k": ' + "[" * 5000 + "]" * 5000 + "}}"

    response = client.post(
        "/v1/members", data=deep, content_type="application/json", headers=checkout
    )

    assert_problem(response, 400, "malformed_json")


def test_a_body_over_the_size_limit_is_a_413(client, checkout):
    huge = json.dumps({"external_id": "m1", "name": "x" * (1024 * 1024)})

    response = client.post(
        "/v1/members", data=huge, content_type="application/json", headers=checkout
    )

    assert_problem(response, 413, "payload_too_large")


# --- validation ------------------------------------------------------------------------------


def test_a_validation_failure_is_a_422_with_messages_by_field(client, checkout):
    response = client.post(
        "/v1/members",
        json={"external_id": "has spaces", "email": "not-an-email"},
        headers=checkout,
    )

    body = assert_problem(response, 422, "validation_error")
    assert set(body["errors"]) == {"external_id", "email"}
    for messages in body["errors"].values():
        assert messages
        assert all(isinstance(message, str) for message in messages)


def test_a_missing_required_field_is_named(client, checkout):
    body = assert_problem(
        client.post("/v1/members", json={}, headers=checkout), 422, "validation_error"
    )

    assert list(body["errors"]) == ["external_id"]


def test_an_empty_body_is_validated_like_an_empty_object(client, checkout):
    body = assert_problem(client.post("/v1/members", headers=checkout), 422, "validation_error")

    assert list(body["errors"]) == ["external_id"]


def test_nested_fields_are_named_with_dots(client, admin):
    response = client.patch(
        "/v1/admin/program", json={"expiry": {"policy": "fixed"}}, headers=admin
    )

    body = assert_problem(response, 422, "validation_error")
    assert list(body["errors"]) == ["expiry.months"]


def test_unknown_fields_are_rejected(client, checkout):
    response = client.post(
        "/v1/members", json={"external_id": "m1", "nickname": "Ada"}, headers=checkout
    )

    body = assert_problem(response, 422, "validation_error")
    assert list(body["errors"]) == ["nickname"]
    assert client.get("/v1/members/m1", headers=checkout).status_code == 404


@pytest.mark.parametrize("document", [[{"external_id": "m1"}], "m1", 42, None])
def test_a_body_that_is_not_an_object_is_a_422(client, checkout, document):
    response = client.post(
        "/v1/members", data=json.dumps(document), content_type="application/json", headers=checkout
    )

    assert_problem(response, 422, "validation_error")


def test_a_nul_character_in_a_path_is_a_404_not_a_500(client, checkout):
    assert_problem(client.get("/v1/members/a%00b", headers=checkout), 404, "not_found")


def test_a_nul_character_in_a_body_string_is_a_422_not_a_500(client, checkout):
    response = client.post(
        "/v1/members", json={"external_id": "m1", "name": "Ada\x00"}, headers=checkout
    )

    assert_problem(response, 422, "validation_error")
    assert client.get("/v1/members/m1", headers=checkout).status_code == 404


# --- every error has the same shape -----------------------------------------------------------

Request = Callable[[FlaskClient, dict[str, str], dict[str, str]], TestResponse]

ERRORS: dict[str, tuple[Request, int, str]] = {
    "no key": (lambda c, a, k: c.get("/v1/members/m1"), 401, "unauthorized"),
    "wrong scope": (lambda c, a, k: c.get("/v1/admin/program", headers=k), 403, "forbidden"),
    "unknown route": (lambda c, a, k: c.get("/v1/nothing", headers=a), 404, "not_found"),
    "unknown member": (lambda c, a, k: c.get("/v1/members/x", headers=a), 404, "not_found"),
    "wrong method": (
        lambda c, a, k: c.put("/v1/admin/program", headers=a),
        405,
        "method_not_allowed",
    ),
    "malformed json": (
        lambda c, a, k: c.post("/v1/members", data="{", content_type="application/json", headers=a),
        400,
        "malformed_json",
    ),
    "not json": (
        lambda c, a, k: c.post("/v1/members", data="x", content_type="text/plain", headers=a),
        415,
        "unsupported_media_type",
    ),
    "invalid field": (
        lambda c, a, k: c.patch("/v1/admin/program", json={"pending_days": -1}, headers=a),
        422,
        "validation_error",
    ),
    "business rule": (
        lambda c, a, k: c.post(
            "/v1/admin/members/m1/adjustments", json={"points": -1, "reason": "x"}, headers=a
        ),
        422,
        "insufficient_points",
    ),
    "conflict": (
        lambda c, a, k: (
            c.patch("/v1/admin/members/m1", json={"status": "closed"}, headers=a),
            c.patch("/v1/admin/members/m1", json={"status": "active"}, headers=a),
        )[-1],
        409,
        "member_closed",
    ),
}


@pytest.mark.parametrize("case", ERRORS)
def test_every_error_is_a_complete_problem_document(client, admin, checkout, member, case):
    send, status, code = ERRORS[case]

    response = send(client, admin, checkout)

    body = assert_problem(response, status, code)
    assert set(body) >= PROBLEM_FIELDS
    assert all(isinstance(body[name], str) and body[name] for name in PROBLEM_FIELDS - {"status"})
    assert body["type"].endswith(code)
    assert ("errors" in body) == (code == "validation_error")


# --- failures on our side ---------------------------------------------------------------------


def test_an_unexpected_exception_is_a_500_without_internals(client, checkout, member, monkeypatch):
    def explode(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("secret detail: /srv/loyalty/members.py password=hunter2")

    monkeypatch.setattr(members, "card", explode)

    response = client.get(f"/v1/members/{member}", headers=checkout)

    body = assert_problem(response, 500, "internal_error")
    text = response.get_data(as_text=True)
    assert set(body) == PROBLEM_FIELDS
    for leak in ("secret", "hunter2", "Traceback", "RuntimeError", ".py"):
        assert leak not in text


@pytest.fixture
def fresh_app(migrated_app: Flask) -> Iterator[Flask]:
    """A second app from the factory, with the test configuration of `migrated_app`."""
    with app_built(migrated_app.config["SQLALCHEMY_DATABASE_URI"]) as fresh:
        yield fresh


def test_an_unexpected_exception_in_any_view_is_a_500_problem(fresh_app):
    @fresh_app.get("/boom")
    def boom() -> str:
        raise KeyError("internal-state-42")

    response = fresh_app.test_client().get("/boom")

    assert_problem(response, 500, "internal_error")
    assert "internal-state-42" not in response.get_data(as_text=True)


def test_a_database_operational_error_is_a_503_service_unavailable(
    client, admin, member, monkeypatch
):
    def database_gone(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))

    monkeypatch.setattr(adjustments, "adjust", database_gone)

    response = client.post(
        f"/v1/admin/members/{member}/adjustments",
        json={"points": 5, "reason": "goodwill"},
        headers=admin,
    )

    body = assert_problem(response, 503, "service_unavailable")
    assert response.headers["Retry-After"] == "1"
    assert "connection refused" not in json.dumps(body)


@pytest.fixture
def unreachable_app() -> Iterator[Flask]:
    """An app whose PostgreSQL is down: nothing listens on port 1."""
    with app_built(config.database_url("postgresql://postgres@127.0.0.1:1/loyalty")) as down:
        yield down


def test_a_request_while_the_database_is_down_is_a_503(unreachable_app):
    response = unreachable_app.test_client().get(
        "/v1/members/m1", headers={"Authorization": "Bearer lk_whatever"}
    )

    assert_problem(response, 503, "service_unavailable")
