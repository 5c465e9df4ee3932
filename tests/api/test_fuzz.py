"""Schemathesis against our own contract: every operation in openapi/openapi.json, fuzzed.

For each operation, on SQLite and on PostgreSQL, the database is seeded with a member who
has points, an order and a hold, a member token, a rule, a tier, a reward (redeemed once), a
draft experiment and a webhook with a delivery. Then schemathesis sends the document's
examples, its coverage cases (boundaries, missing and wrongly typed values, other methods,
other content types) and a bounded number of random valid and invalid requests, each with a
key of one of the scopes the operation allows (a member token's valid cases all name its
member). Every other valid case is pointed at the seeded resources (path parameters, the
member, reward and hold named in a body or query, the program's currency), so requests hit
real rows as well as missing ones.

Every response must pass schemathesis' checks: no 5xx; the body, content type
(problem+json for errors) and status the document gives; invalid input refused with a 4xx;
valid input never refused as malformed; no success without a valid key; 405 with a right
`Allow` for other methods. On top of those, the status must be one the operation lists
itself: the `default` response every operation carries would otherwise let any status pass.
Each operation must also have succeeded at least once, so the fuzzing reached past
validation, and the ledger must still verify afterwards.

The findings the fuzzing made are pinned by the plain tests at the end.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from schemathesis.config import SchemathesisConfig

from loyalty.cli.openapi import OPENAPI_FILE
from loyalty.extensions import db
from loyalty.ledger import verify as ledger_verify
from loyalty.webhooks import services as webhooks
from tests.factories import ApiKeyFactory, OrderFactory, auth

# Valid input may still be refused by a business rule (422 insufficient_points,
# currency_mismatch, ...), a conflict (409) or a missing resource (404), never as malformed.
POSITIVE_STATUSES = ["2xx", "404", "409", "422"]

CONFIG = SchemathesisConfig.from_dict(
    {
        "generation": {"mode": "all", "max-examples": 15, "with-security-parameters": False},
        "phases": {"stateful": {"enabled": False}},
        "checks": {"positive_data_acceptance": {"expected-statuses": POSITIVE_STATUSES}},
    }
)
schema = schemathesis.openapi.from_path(OPENAPI_FILE, config=CONFIG)


def status_is_listed(ctx: Any, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """The status is one the operation lists, not one only its `default` response covers."""
    if case.method.upper() != case.operation.method.upper():
        return  # a probe with another method: `unsupported_method` wants its 405 and Allow
    listed = [code for code in case.operation.definition.raw["responses"] if code != "default"]
    if str(response.status_code) not in listed:
        raise AssertionError(
            f"Undocumented status {response.status_code}: {case.operation.label} lists "
            f"{', '.join(listed)}"
        )


@dataclass
class Seeded:
    """What an operation's fuzzing starts from: a key per scope and a real resource for each
    path parameter and each id a body or query names."""

    app: Flask
    keys: dict[str, dict[str, str]]
    ids: dict[str, str]
    cases: Iterator[int] = field(default_factory=itertools.count)
    valid_cases: Iterator[int] = field(default_factory=itertools.count)
    statuses: Counter[int] = field(default_factory=Counter)

    def scope(self, case: schemathesis.Case, turn: int) -> str:
        """Each scope the operation allows in turn."""
        scopes = case.operation.definition.raw["x-scopes"]
        return str(scopes[turn % len(scopes)])

    def aim(self, case: schemathesis.Case, *, always: bool = False) -> None:
        """Point every other valid case (`always`: every one) at the seeded resources and the
        program's currency."""
        if case.meta is None or not case.meta.generation.mode.is_positive:
            return
        if next(self.valid_cases) % 2 and not always:
            return
        for name in case.path_parameters or {}:
            case.path_parameters[name] = self.ids[name]
        if isinstance(case.body, dict):
            for name in ("member_id", "reward_id", "redemption_id", "currency"):
                if isinstance(case.body.get(name), str):
                    case.body[name] = self.ids[name]
        if case.query and "member_id" in case.query:
            case.query["member_id"] = self.ids["member_id"]


def names_member_in_query(case: schemathesis.Case, member_id: str) -> None:
    """A valid case of an operation that takes the member in its query names the token's
    member there (a member token never stands for another member, nor for none)."""
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return
    parameters = case.operation.definition.raw.get("parameters", [])
    if any(p.get("in") == "query" and p.get("name") == "member_id" for p in parameters):
        case.query = {**(case.query or {}), "member_id": member_id}


def fresh_idempotency_key(case: schemathesis.Case, turn: int) -> None:
    """Give a valid Idempotency-Key a prefix of its own. Generated keys repeat (the coverage
    cases send "0" again and again), and a key repeated with another body is refused before
    the body is read (422 idempotency_key_reused), which would leave the bodies untested."""
    key = (case.headers or {}).get("Idempotency-Key")
    if isinstance(key, str) and 1 <= len(key) <= 255:
        case.headers["Idempotency-Key"] = f"{turn}:{key}"[:255]


def send_objects_as_requests_does(case: schemathesis.Case) -> None:
    """An object in a query string is sent as its keys by `requests`, and schemathesis' checks
    judge the request by that; werkzeug's test client would send str(value) instead, another
    (valid) string, and the checks would blame the app for accepting it."""
    for name, value in (case.query or {}).items():
        if isinstance(value, dict):
            case.query[name] = list(value)


def created(client: FlaskClient, path: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    response = client.post(path, json=body, headers=headers)
    assert response.status_code in (200, 201), (path, response.json)
    return response.json


@pytest.fixture
def seeded(app: Flask, client: FlaskClient) -> Iterator[Seeded]:
    with app.app_context():
        keys = {
            scope: auth(ApiKeyFactory(scopes=(scope,))) for scope in ("checkout", "app", "admin")
        }
    admin, checkout, app_key = keys["admin"], keys["checkout"], keys["app"]
    hook = created(
        client,
        "/v1/admin/webhooks",
        {"url": "https://shop.example/hooks", "event_types": ["*"]},
        admin,
    )
    # Its benefit is the one the document's experiment example tests.
    tier = {
        "code": "gold",
        "name": "Gold",
        "rank": 1,
        "threshold": 100_000,
        "benefits": [{"code": "free_shipping"}],
    }
    created(client, "/v1/admin/tiers", tier, admin)
    segment = created(
        client,
        "/v1/admin/segments",
        {"key": "seeded", "name": "Seeded", "filter": {"orders": {"min": 1}}},
        admin,
    )
    rule = created(
        client,
        "/v1/admin/rules",
        {"name": "1 point per dollar", "kind": "spend", "points": 1, "per_amount": 100},
        admin,
    )
    reward = created(
        client,
        "/v1/admin/rewards",
        {"name": "Free coffee", "kind": "coupon", "cost_points": 100, "stock": 1000},
        admin,
    )
    automation = created(
        client,
        "/v1/admin/automations",
        {
            "name": "Win back",
            "trigger": {"kind": "inactive", "days": 60},
            "actions": [{"type": "webhook"}],
        },
        admin,
    )
    # The document's examples name cust_1001, so they reach this member too.
    member = created(client, "/v1/members", {"external_id": "cust_1001"}, checkout)
    member_id = member["external_id"]
    # The member-facing operations also take a member token (for this member: the cases
    # are aimed at it).
    token = created(client, f"/v1/members/{member_id}/tokens", {}, app_key)
    keys["member"] = {"Authorization": f"Bearer {token['token']}"}
    created(
        client,
        f"/v1/admin/members/{member_id}/adjustments",
        {"points": 50_000, "reason": "Opening balance"},
        admin,
    )
    order = created(
        client,
        "/v1/orders",
        {
            "order_id": "ord_1",
            "member_id": member_id,
            "currency": "USD",
            "lines": [{"sku": "mug", "category": "home", "quantity": 2, "unit_price": 1200}],
        },
        checkout,
    )
    hold = created(client, "/v1/redemptions", {"member_id": member_id, "points": 500}, checkout)
    coffee = created(
        client,
        f"/v1/members/{member_id}/reward-redemptions",
        {"reward_id": reward["id"]},
        app_key,
    )
    experiment = created(
        client,
        "/v1/admin/experiments",
        {
            "key": "free-shipping",
            "name": "Free shipping",
            "hypothesis": "Free shipping brings members back.",
            "target": {"kind": "benefit", "code": "free_shipping"},
            "arms": [
                {"key": "holdout", "weight": 1, "control": True, "applies": False},
                {"key": "ships-free", "weight": 1, "applies": True},
            ],
            "starts_at": "2031-03-01T00:00:00Z",
            "ends_at": "2031-03-29T00:00:00Z",
            "margin": "0.35",
        },
        admin,
    )
    with app.app_context():
        webhooks.dispatch(db.session)
    deliveries = client.get(f"/v1/admin/webhooks/{hook['id']}/deliveries", headers=admin).json
    seeded = Seeded(
        app=app,
        keys=keys,
        ids={
            "external_id": member_id,
            "member_id": member_id,
            "currency": "USD",
            "code": tier["code"],
            "rule_id": rule["id"],
            "reward_id": reward["id"],
            "order_id": order["order_id"],
            "redemption_id": hold["redemption_id"],
            "webhook_id": hook["id"],
            "delivery_id": deliveries["items"][0]["id"],
            "segment_key": segment["key"],
            "automation_id": automation["id"],
            "experiment_id": experiment["id"],
            "token_id": token["id"],
            "reward_redemption_id": coffee["id"],
        },
    )
    yield seeded
    assert any(200 <= status < 300 for status in seeded.statuses), (
        f"no request succeeded ({dict(seeded.statuses)}): the fuzzing never got past validation"
    )
    with app.app_context():
        report = ledger_verify.verify(db.session)
        assert report.ok, report.problems


@schema.parametrize()
@hypothesis.settings(
    deadline=None,
    suppress_health_check=[
        hypothesis.HealthCheck.function_scoped_fixture,  # the seed is per operation, on purpose
        hypothesis.HealthCheck.too_slow,
        hypothesis.HealthCheck.filter_too_much,
    ],
)
def test_every_operation_keeps_its_contract(case: schemathesis.Case, seeded: Seeded) -> None:
    # This database's app answers the cases and the checks' own probes (no key, a bad key).
    case.operation.schema.app = seeded.app
    turn = next(seeded.cases)
    scope = seeded.scope(case, turn)
    # A member token admits its own member only: another one is refused (403), rightly, so
    # its valid cases all name the seeded member the token is for.
    seeded.aim(case, always=scope == "member")
    if scope == "member":
        names_member_in_query(case, seeded.ids["member_id"])
    fresh_idempotency_key(case, turn)
    send_objects_as_requests_does(case)

    response = case.call_and_validate(
        app=seeded.app, headers=seeded.keys[scope], additional_checks=[status_is_listed]
    )

    seeded.statuses[response.status_code] += 1


# --- the findings, pinned ----------------------------------------------------------------------


def test_a_nul_in_a_query_string_is_refused_not_a_server_error(client, headers_for):
    for query in ("target_id=a%00b", "a%00b=1"):
        response = client.get(f"/v1/admin/audit-log?{query}", headers=headers_for("admin"))

        assert response.status_code == 422, response.json
        assert response.content_type == "application/problem+json"
        assert response.json["code"] == "validation_error"


def test_a_nul_in_an_idempotency_key_is_refused_not_a_server_error(client, headers_for):
    headers = headers_for("checkout", **{"Idempotency-Key": "pay\x00ord_1"})

    response = client.post("/v1/members", json={"external_id": "c1"}, headers=headers)

    assert response.status_code == 422, response.json
    assert response.json["errors"] == {"Idempotency-Key": ["Must not contain NUL (\\u0000)."]}


def test_orders_quote_is_only_the_quote_endpoint(client, headers_for):
    checkout = headers_for("checkout")
    enrolled = client.post("/v1/members", json={"external_id": "c1"}, headers=checkout)
    assert enrolled.status_code == 201
    order = OrderFactory.build(
        order_id="quote", lines=[{"sku": "mug", "quantity": 1, "unit_price": 1200}]
    )

    refused = client.post("/v1/orders", json=order, headers=checkout)
    get = client.get("/v1/orders/quote", headers=checkout)
    options = client.options("/v1/orders/quote")

    assert refused.status_code == 422, refused.json
    assert list(refused.json["errors"]) == ["order_id"]
    assert get.status_code == 405
    assert get.content_type == "application/problem+json"
    assert set(options.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}


def test_a_refusal_with_extension_members_matches_the_documented_problem(client, headers_for):
    checkout = headers_for("checkout")
    client.post("/v1/members", json={"external_id": "c1"}, headers=checkout)

    response = client.post(
        "/v1/redemptions", json={"member_id": "c1", "points": 600}, headers=checkout
    )

    assert response.json["code"] == "insufficient_points"
    assert {"available", "requested"} <= set(response.json)
    operation = schema["/v1/redemptions"]["POST"]
    operation.validate_response(response)


def test_a_body_over_the_size_limit_is_a_documented_413(client, headers_for):
    body = '{"external_id": "' + "a" * (1024 * 1024) + '"}'

    response = client.post(
        "/v1/members", data=body, content_type="application/json", headers=headers_for("checkout")
    )

    assert response.status_code == 413
    assert response.json["code"] == "payload_too_large"
    assert "413" in schema["/v1/members"]["POST"].definition.raw["responses"]
    schema["/v1/members"]["POST"].validate_response(response)
