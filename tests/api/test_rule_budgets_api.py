"""A rule's budget through /v1/admin/rules: validated like the other rule fields, shown with
the current period's usage, changed and removed by a new version; the webhook's payload is in
the OpenAPI document."""

from __future__ import annotations

import pytest

from loyalty.webhooks.outbox import EVENT_TYPES
from tests.factories import OrderFactory, RuleFactory


def create(client, admin, budget, status=201):
    response = client.post("/v1/admin/rules", json=RuleFactory.build(budget=budget), headers=admin)
    assert response.status_code == status, response.json
    return response.json


@pytest.mark.parametrize(
    ("budget", "field"),
    [
        ({"period": "day"}, "_schema"),
        ({"period": "day", "points": 10, "amount": 10}, "_schema"),
        ({"period": "year", "points": 10}, "period"),
        ({"points": 10}, "period"),
        ({"period": "day", "points": 0}, "points"),
        ({"period": "day", "amount": -5}, "amount"),
        ({"period": "day", "points": 1.5}, "points"),
        ({"period": "day", "points": 10, "cap": 3}, "cap"),
    ],
    ids=["no-limit", "both", "period", "no-period", "zero", "negative", "float", "unknown"],
)
def test_an_invalid_budget_is_refused_with_its_field(client, admin, budget, field):
    response = client.post("/v1/admin/rules", json=RuleFactory.build(budget=budget), headers=admin)

    assert response.status_code == 422, response.json
    assert response.json["code"] == "validation_error"
    assert f"budget.{field}" in response.json["errors"], response.json


def test_a_rule_without_a_budget_shows_none(client, admin):
    rule = create(client, admin, None)

    assert (rule["budget"], rule["budget_usage"]) == (None, None)


def test_a_budgeted_rule_shows_its_budget_and_the_current_period(client, admin):
    rule = create(client, admin, {"period": "month", "amount": 5000})

    assert rule["budget"] == {"period": "month", "amount": 5000}
    usage = rule["budget_usage"]
    assert usage["period"] == "month"
    assert usage["starts_at"].endswith("-01T00:00:00+00:00")
    assert (usage["limit"], usage["used"], usage["remaining"]) == (5000, 0, 5000)
    assert usage["exhausted_at"] is None


def test_the_rule_shows_what_orders_used_of_its_budget(client, admin, checkout, member):
    rule = create(client, admin, {"period": "lifetime", "points": 100})
    order = OrderFactory.build()
    assert client.post("/v1/orders", json=order, headers=checkout).status_code == 201

    shown = client.get(f"/v1/admin/rules/{rule['id']}", headers=admin).json
    listed = client.get("/v1/admin/rules", headers=admin).json["items"][0]

    expected = {
        "period": "lifetime",
        "starts_at": None,
        "ends_at": None,
        "limit": 100,
        "used": 62,
        "remaining": 38,
        "exhausted_at": None,
    }
    assert shown["budget_usage"] == listed["budget_usage"] == expected


def test_a_change_replaces_the_budget_and_null_removes_it(client, admin):
    rule = create(client, admin, {"period": "day", "points": 100})
    path = f"/v1/admin/rules/{rule['id']}"

    changed = client.patch(path, json={"budget": {"period": "week", "amount": 70}}, headers=admin)
    removed = client.patch(path, json={"budget": None}, headers=admin)

    assert changed.json["budget"] == {"period": "week", "amount": 70}
    assert changed.json["version"] == 2
    assert (removed.json["budget"], removed.json["budget_usage"]) == (None, None)
    versions = client.get(f"{path}/versions", headers=admin).json["items"]
    assert [v["budget"] for v in versions] == [
        None,
        {"period": "week", "amount": 70},
        {"period": "day", "points": 100},
    ]


def test_the_simulator_clips_a_draft_to_its_budget(client, admin):
    draft = RuleFactory.build(budget={"period": "day", "points": 50})
    cart = OrderFactory.build(order_id=None, member_id=None)

    response = client.post(
        "/v1/admin/rules/simulate",
        json={**cart, "rules": [draft], "include_active": False},
        headers=admin,
    )

    assert response.status_code == 200, response.json
    assert response.json["points_to_earn"] == 50
    assert response.json["breakdown"][0]["budget_withheld"] == 12


def test_webhooks_may_subscribe_to_budget_exhaustion_and_its_payload_is_documented(app, client):
    spec = client.get("/openapi.json").json
    payload = spec["components"]["schemas"]["RuleBudgetExhaustedEvent"]

    assert "rule.budget_exhausted" in EVENT_TYPES
    assert set(payload["required"]) >= {"rule_id", "name", "version", "period", "limit", "used"}
