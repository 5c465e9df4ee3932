"""Authentication and scopes: every /v1 operation needs a live key with the right scope.

The walk below covers every /v1 rule in the Flask URL map, so a route added later is checked
without anyone remembering to list it here.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.routing import Rule
from werkzeug.test import TestResponse

from loyalty.api.auth import required_scopes
from loyalty.auth.models import ApiKey
from loyalty.auth.services import create_key, revoke_key
from loyalty.cli.openapi import openapi_document
from loyalty.extensions import db
from tests.factories import auth

PROBLEM_JSON = "application/problem+json"
PATH_ARGUMENT = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>")
# Tried in turn until the filled-in path routes back to its own rule (an int converter, say,
# refuses "nobody").
DUMMIES = ("nobody", "999999", "00000000-0000-0000-0000-000000000000")


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    rule: str
    scopes: frozenset[str]

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def _fill(app: Flask, rule: Rule, method: str) -> str:
    adapter = app.url_map.bind("localhost")
    for dummy in DUMMIES:
        path = PATH_ARGUMENT.sub(dummy, rule.rule)
        try:
            endpoint, _ = adapter.match(path, method=method)
        except Exception:  # noqa: S112 - a converter that refuses this dummy: try the next
            continue
        if endpoint == rule.endpoint:
            return path
    raise AssertionError(f"no dummy value routes {method} {rule.rule} to itself")


def v1_operations(app: Flask) -> list[Operation]:
    """Every (method, path) under /v1, path parameters filled with a dummy value."""
    operations = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/v1/"):
            continue
        for method in sorted(rule.methods or ()):
            if method in ("HEAD", "OPTIONS"):
                continue
            scopes = required_scopes(app.view_functions[rule.endpoint], method)
            assert scopes is not None, f"{method} {rule.rule} declares no scopes"
            operations.append(Operation(method, _fill(app, rule, method), rule.rule, scopes))
    return operations


def call(client: FlaskClient, operation: Operation, headers: dict[str, str]) -> TestResponse:
    return client.open(operation.path, method=operation.method, headers=headers)


def make_key(app: Flask, name: str, *scopes: str) -> str:
    with app.app_context():
        _, raw = create_key(db.session, name, scopes)
        return raw


def refusals(
    client: FlaskClient,
    operations: list[Operation],
    headers: dict[str, str],
    status: int,
    code: str,
) -> list[str]:
    """The operations that did NOT answer `status` problem+json with `code`."""
    wrong = []
    for operation in operations:
        response = call(client, operation, headers)
        body = response.get_json(silent=True) or {}
        if (response.status_code, response.mimetype, body.get("code")) != (
            status,
            PROBLEM_JSON,
            code,
        ):
            wrong.append(f"{operation}: {response.status_code} {response.mimetype} {body}")
    return wrong


def test_the_walk_finds_the_known_operations(app):
    found = {(op.method, op.rule) for op in v1_operations(app)}

    assert {
        ("POST", "/v1/members"),
        ("GET", "/v1/members/<string:external_id>"),
        ("GET", "/v1/members/<string:external_id>/transactions"),
        ("PATCH", "/v1/admin/members/<string:external_id>"),
        ("POST", "/v1/admin/members/<string:external_id>/adjustments"),
        ("GET", "/v1/admin/program"),
        ("PATCH", "/v1/admin/program"),
    } <= found


def test_every_operation_refuses_a_request_without_a_key(app, client):
    assert refusals(client, v1_operations(app), {}, 401, "unauthorized") == []


def test_every_operation_refuses_a_malformed_authorization_header(app, client):
    operations = v1_operations(app)
    for header in ("lk_abc", "Basic dXNlcjpwYXNz", "Bearer ", "Bearer"):
        assert refusals(client, operations, {"Authorization": header}, 401, "unauthorized") == []


def test_every_operation_refuses_an_unknown_key(app, client):
    unknown = auth("lk_" + "x" * 43)

    assert refusals(client, v1_operations(app), unknown, 401, "unauthorized") == []


def test_every_operation_refuses_a_revoked_key(app, client):
    raw = make_key(app, "soon-revoked", "admin")
    with app.app_context():
        revoke_key(db.session, "soon-revoked")

    assert refusals(client, v1_operations(app), auth(raw), 401, "unauthorized") == []


def test_admin_operations_refuse_a_checkout_key(app, client, checkout):
    admin_only = [op for op in v1_operations(app) if op.path.startswith("/v1/admin/")]

    assert admin_only
    assert refusals(client, admin_only, checkout, 403, "forbidden") == []


def test_each_operation_refuses_the_scopes_it_does_not_declare(app, client, headers_for):
    for scope in ("checkout", "app"):
        headers = headers_for(scope)
        undeclared = [op for op in v1_operations(app) if scope not in op.scopes]
        assert refusals(client, undeclared, headers, 403, "forbidden") == [], scope


def test_each_operation_admits_the_scopes_it_declares(app, client, headers_for):
    for scope in ("checkout", "app"):
        headers = headers_for(scope)
        declared = [op for op in v1_operations(app) if scope in op.scopes]
        assert declared, f"no operation admits {scope}"
        for operation in declared:
            status = call(client, operation, headers).status_code
            assert status not in (401, 403), f"{operation} refused a {scope} key: {status}"
            assert status < 500, f"{operation} failed for a {scope} key: {status}"


def test_an_admin_key_may_call_every_operation(app, client, admin):
    for operation in v1_operations(app):
        status = call(client, operation, admin).status_code
        assert status not in (401, 403), f"{operation} refused an admin key: {status}"
        assert status < 500, f"{operation} failed for an admin key: {status}"


def test_a_key_with_several_scopes_has_each_of_them(app, client):
    both = auth(make_key(app, "checkout-and-app", "checkout", "app"))
    client.post("/v1/members", json={"external_id": "m1"}, headers=both)

    assert client.get("/v1/members/m1/transactions", headers=both).status_code == 200
    assert client.post("/v1/members", json={"external_id": "m2"}, headers=both).status_code == 201
    assert client.get("/v1/admin/program", headers=both).status_code == 403


def test_documented_scopes_are_the_enforced_scopes(app):
    spec = json.loads(openapi_document(app))
    for operation in v1_operations(app):
        path = PATH_ARGUMENT.sub(r"{\1}", operation.rule)
        documented = spec["paths"][path][operation.method.lower()]["x-scopes"]
        assert sorted(documented) == sorted({*operation.scopes, "admin"}), str(operation)


def test_head_needs_a_key_like_get(client, checkout):
    assert client.head("/v1/members/nobody").status_code == 401
    assert client.head("/v1/members/nobody", headers=checkout).status_code == 404


def test_the_unauthorized_answer_does_not_say_whether_a_key_exists(app, client):
    raw = make_key(app, "to-revoke", "admin")
    with app.app_context():
        revoke_key(db.session, "to-revoke")

    revoked = client.get("/v1/admin/program", headers=auth(raw)).get_json()
    unknown = client.get("/v1/admin/program", headers=auth("lk_nonexistent")).get_json()

    assert revoked == unknown


def test_keys_are_stored_only_as_a_hash(app):
    raw = make_key(app, "hashed", "checkout")

    with app.app_context():
        rows = db.session.execute(sa.select(ApiKey.__table__)).mappings().all()

    assert len(rows) == 1
    assert rows[0]["key_hash"] == hashlib.sha256(raw.encode()).hexdigest()
    secret = raw.removeprefix("lk_")
    for column, value in rows[0].items():
        assert secret not in str(value), f"api_keys.{column} holds the key"


def test_revoking_a_key_stops_it_at_once(app, client):
    raw = make_key(app, "short-lived", "checkout")
    assert client.get("/v1/members/nobody", headers=auth(raw)).status_code == 404

    with app.app_context():
        revoke_key(db.session, "short-lived")

    assert client.get("/v1/members/nobody", headers=auth(raw)).status_code == 401


def test_a_key_made_with_the_cli_works(app, client):
    result = app.test_cli_runner().invoke(
        args=["keys", "create", "from-cli", "--scope", "checkout"]
    )
    assert result.exit_code == 0, result.output
    raw = result.stdout.strip().splitlines()[-1]

    assert client.get("/v1/members/nobody", headers=auth(raw)).status_code == 404
    assert client.get("/v1/admin/program", headers=auth(raw)).status_code == 403


@pytest.mark.committed  # /readyz opens a connection of its own
def test_service_endpoints_need_no_key(client):
    for path in ("/healthz", "/readyz", "/openapi.json", "/docs"):
        assert client.get(path).status_code == 200, path
