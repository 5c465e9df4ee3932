"""Hostile input is a documented 4xx, never a 500: lone surrogates, numbers too long to read,
moments outside what UTC can hold, sums past any money column, earnings past the points bound,
and ids that could never be read back from a path. Each class is tried on every operation
that takes such a value (hypothesis draws the values)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import RuleFactory
from tests.helpers import created, problem

SURROGATES = st.integers(0xD800, 0xDFFF).map(lambda code: f"\\u{code:04x}")
OUT_OF_UTC = st.sampled_from(
    [
        "0001-01-01T00:00:00+14:00",
        "0001-01-01T05:00:00+06:00",
        "9999-12-31T23:59:59-14:00",
        "9999-12-31T20:00:00-05:00",
    ]
)
ONCE = settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
CART = {
    "member_id": "c1",
    "currency": "USD",
    "lines": [{"sku": "tee", "quantity": 1, "unit_price": 100}],
}


def refused_every_time(
    values: st.SearchStrategy[str], send: Callable[[str], Any], field: str
) -> None:
    """Every value hypothesis draws, sent, is a 422 naming `field`."""

    @ONCE
    @given(value=values)
    def check(value: str) -> None:
        assert field in problem(send(value), 422, "validation_error")["errors"]

    check()


def post_raw(client: FlaskClient, path: str, raw: str, headers: dict[str, str]) -> Any:
    return client.post(path, data=raw, content_type="application/json", headers=headers)


def with_text(body: dict[str, Any], field: str, escape: str) -> str:
    """The body as JSON with `field` set to a string holding the raw `escape`."""
    marker = "SURROGATE-HERE"
    return json.dumps({**body, field: f"name {marker}"}).replace(marker, escape)


# (path, base body, text field, scope) for every write that stores text
TEXT_FIELDS = [
    ("/v1/members", {"external_id": "c2"}, "name", "checkout"),
    ("/v1/admin/members/c1/adjustments", {"points": 5}, "reason", "admin"),
    ("/v1/events", {"event_id": "e1", "member_id": "c1", "type": "review"}, "event_id", "checkout"),
    (
        "/v1/admin/rules",
        {"kind": "bonus", "config": {"points": 5}},
        "name",
        "admin",
    ),
    ("/v1/admin/rewards", {"kind": "product", "cost_points": 5}, "name", "admin"),
    ("/v1/admin/tiers", {"code": "gold", "rank": 1, "threshold": 5}, "name", "admin"),
    (
        "/v1/admin/webhooks",
        {"url": "https://shop.example/hooks", "event_types": ["*"]},
        "description",
        "admin",
    ),
]


@pytest.mark.parametrize(("path", "body", "field", "scope"), TEXT_FIELDS)
def test_a_lone_surrogate_in_any_stored_text_is_a_422(
    client, headers_for, member, path, body, field, scope
):
    def send(escape: str) -> Any:
        return post_raw(client, path, with_text(body, field, escape), headers_for(scope))

    refused_every_time(SURROGATES, send, "_schema")


def test_a_surrogate_pair_is_an_ordinary_character(client, checkout):
    raw = json.dumps({"external_id": "c9", "name": "smile X"}).replace("X", "\\ud83d\\ude00")

    assert created(post_raw(client, "/v1/members", raw, checkout))["name"] == "smile \U0001f600"


@pytest.mark.parametrize(
    ("path", "scope"),
    [("/v1/members", "checkout"), ("/v1/orders", "checkout"), ("/v1/admin/rules", "admin")],
)
def test_a_number_too_long_to_read_is_malformed_json(client, headers_for, path, scope):
    raw = '{"unknown": ' + "9" * 5000 + "}"

    problem(post_raw(client, path, raw, headers_for(scope)), 400, "malformed_json")


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400", "-1e999"])
def test_a_number_json_cannot_carry_is_malformed_json_not_a_database_error(
    client, checkout, member, number
):
    # Python's json reads these; no JSON column can store them (found in event attributes,
    # benefit and tier params by test_hostile_properties).
    event = {"event_id": "e1", "member_id": "c1", "type": "review"}
    raw = json.dumps({**event, "attributes": {"stars": "N"}}).replace('"N"', number)

    problem(post_raw(client, "/v1/events", raw, checkout), 400, "malformed_json")


def test_a_finite_fraction_is_still_read(client, checkout, member):
    event = {"event_id": "e1", "member_id": "c1", "type": "review", "attributes": {"x": 1.5e300}}

    assert created(client.post("/v1/events", json=event, headers=checkout))


# (path, base body, date field, scope) for every write that takes a moment
MOMENT_FIELDS = [
    ("/v1/orders", {**CART, "order_id": "o1"}, "placed_at", "checkout"),
    (
        "/v1/events",
        {"event_id": "e1", "member_id": "c1", "type": "review"},
        "occurred_at",
        "checkout",
    ),
    ("/v1/admin/rewards", {"name": "Mug", "kind": "product", "cost_points": 5}, "ends_at", "admin"),
    ("/v1/admin/members/c1/benefits", {"code": "free_shipping"}, "ends_at", "admin"),
]


@pytest.mark.parametrize(("path", "body", "field", "scope"), MOMENT_FIELDS)
def test_a_moment_outside_what_utc_can_hold_is_a_422(
    client, headers_for, member, path, body, field, scope
):
    def send(moment: str) -> Any:
        return client.post(path, json={**body, field: moment}, headers=headers_for(scope))

    refused_every_time(OUT_OF_UTC, send, field)


@pytest.mark.parametrize("bound", ["from", "to"])
def test_an_audit_filter_outside_what_utc_can_hold_is_a_422(client, admin, bound):
    response = client.get(
        "/v1/admin/audit-log", query_string={bound: "0001-01-01T00:00:00+14:00"}, headers=admin
    )

    assert bound in problem(response, 422, "validation_error")["errors"]


def test_lines_adding_up_past_any_money_column_are_a_422(client, checkout, member):
    line = {"sku": "gold", "quantity": 100_000, "unit_price": 10**12}
    cart = {**CART, "lines": [line, {**line, "sku": "silver"}]}

    for path, body in [("/v1/orders/quote", cart), ("/v1/orders", {**cart, "order_id": "o1"})]:
        response = client.post(path, json=body, headers=checkout)
        assert "lines" in problem(response, 422, "validation_error")["errors"]


def test_an_order_that_would_earn_past_the_points_bound_is_a_422_and_earns_nothing(
    app, client, checkout, member
):
    with app.app_context():
        RuleFactory(points=1000, per_amount=1)
    cart = {**CART, "lines": [{"sku": "car", "quantity": 1, "unit_price": 10**11}]}

    response = client.post("/v1/orders", json={**cart, "order_id": "o1"}, headers=checkout)

    assert "lines" in problem(response, 422, "validation_error")["errors"]
    problem(client.get("/v1/orders/o1", headers=checkout), 404, "not_found")


@pytest.mark.parametrize("order_id", ["a/b", "a b", "#1", ".hidden", "é"])
def test_an_order_id_that_a_path_could_not_carry_is_refused_at_creation(
    client, checkout, member, order_id
):
    response = client.post("/v1/orders", json={**CART, "order_id": order_id}, headers=checkout)

    assert "order_id" in problem(response, 422, "validation_error")["errors"]


@pytest.mark.parametrize(
    "url",
    [
        "/v1/orders/%ED%A0%80",  # a lone surrogate, as a broken encoder sends it
        "/v1/members/c1%FF/transactions",
        "/v1/admin/rules/%C0%80",  # an overlong NUL
        "/v1/admin/audit-log?target_id=%ED%A0%80",
        "/v1/admin/audit-log?%FF=1",
        "/v1/no-such-route/%FF",
    ],
)
def test_a_url_that_is_not_utf8_once_decoded_is_a_400(client, admin, member, url):
    problem(client.get(url, headers=admin), 400, "malformed_url")


def test_a_url_in_percent_encoded_utf8_is_read(client, admin, member):
    response = client.get("/v1/admin/audit-log?target_id=%C3%A9t%C3%A9", headers=admin)

    assert response.status_code == 200, response.json
