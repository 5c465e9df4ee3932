"""Earning rules through /v1/admin/rules: create, validate, read, list, version, deactivate,
and simulate what a cart or an event would earn before a rule goes live."""

from __future__ import annotations

import uuid

import pytest

from loyalty.extensions import db
from loyalty.ledger.models import LedgerTransaction
from tests.factories import MemberFactory, OrderFactory, RuleFactory

CART = OrderFactory.build(order_id=None, member_id=None)  # 62.00


def create(client, admin, body, status=201):
    response = client.post("/v1/admin/rules", json=body, headers=admin)
    assert response.status_code == status, response.json
    return response.json


def errors_of(response):
    assert response.status_code == 422, response.json
    assert response.json["code"] == "validation_error"
    return response.json["errors"]


# --- create ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "config"),
    [
        (RuleFactory.build(), {"points": 1, "per_amount": 100, "factor": None, "event_type": None}),
        (
            RuleFactory.build(multiplier=True),
            {"points": None, "per_amount": None, "factor": "1.5", "event_type": None},
        ),
        (
            RuleFactory.build(bonus=True),
            {"points": 200, "per_amount": None, "factor": None, "event_type": None},
        ),
        (
            RuleFactory.build(review=True),
            {"points": 25, "per_amount": None, "factor": None, "event_type": "review"},
        ),
    ],
    ids=["spend", "multiplier", "bonus", "event"],
)
def test_each_kind_of_rule_is_created_at_version_1(client, admin, body, config):
    rule = create(client, admin, body)
    assert uuid.UUID(rule["id"])
    assert rule["version"] == 1
    assert rule["kind"] == body["kind"]
    assert rule["name"] == body["name"]
    assert rule["active"] is True
    assert {key: rule[key] for key in config} == config


def test_created_rule_keeps_its_conditions_caps_priority_and_window(client, admin):
    rule = create(
        client,
        admin,
        {
            **RuleFactory.build(),
            "priority": 5,
            "starts_at": "2025-01-01T00:00:00+00:00",
            "ends_at": "2025-02-01T00:00:00+00:00",
            "conditions": {"skus": ["tee"], "tiers": ["gold"], "min_amount": 1000},
            "caps": {"per_order": 500, "per_member": {"period_days": 30, "points": 2000}},
        },
    )
    assert rule["priority"] == 5
    assert rule["starts_at"] == "2025-01-01T00:00:00+00:00"
    assert rule["ends_at"] == "2025-02-01T00:00:00+00:00"
    assert rule["conditions"] == {
        "skus": ["tee"],
        "categories": [],
        "tiers": ["gold"],
        "segments": [],
        "min_amount": 1000,
        "first_order": False,
    }
    assert rule["caps"]["per_order"] == 500
    assert rule["caps"]["per_member"] == {"period_days": 30, "count": None, "points": 2000}


# --- validation per kind -----------------------------------------------------------------


def test_spend_rule_without_per_amount_is_refused(client, admin):
    body = {k: v for k, v in RuleFactory.build().items() if k != "per_amount"}
    errors = errors_of(client.post("/v1/admin/rules", json=body, headers=admin))
    assert "per_amount" in errors


def test_spend_rule_without_points_is_refused(client, admin):
    body = {k: v for k, v in RuleFactory.build().items() if k != "points"}
    assert "points" in errors_of(client.post("/v1/admin/rules", json=body, headers=admin))


@pytest.mark.parametrize("factor", ["abc", "1.5x", "", "1e2", "-2"])
def test_multiplier_factor_that_is_not_a_decimal_is_refused(client, admin, factor):
    body = {**RuleFactory.build(multiplier=True), "factor": factor}
    assert "factor" in errors_of(client.post("/v1/admin/rules", json=body, headers=admin))


@pytest.mark.parametrize("factor", ["1", "1.0", "0.5", "0"])
def test_multiplier_factor_of_one_or_less_is_refused(client, admin, factor):
    body = {**RuleFactory.build(multiplier=True), "factor": factor}
    assert "factor" in errors_of(client.post("/v1/admin/rules", json=body, headers=admin))


def test_multiplier_factor_given_as_a_json_number_is_refused(client, admin):
    body = {**RuleFactory.build(multiplier=True), "factor": 1.5}
    assert "factor" in errors_of(client.post("/v1/admin/rules", json=body, headers=admin))


def test_multiplier_without_factor_is_refused(client, admin):
    body = {k: v for k, v in RuleFactory.build(multiplier=True).items() if k != "factor"}
    assert "factor" in errors_of(client.post("/v1/admin/rules", json=body, headers=admin))


def test_event_rule_without_event_type_is_refused(client, admin):
    body = {k: v for k, v in RuleFactory.build(review=True).items() if k != "event_type"}
    assert "event_type" in errors_of(client.post("/v1/admin/rules", json=body, headers=admin))


def test_event_rule_matching_skus_is_refused(client, admin):
    body = {**RuleFactory.build(review=True), "conditions": {"skus": ["tee"]}}
    assert "conditions" in errors_of(client.post("/v1/admin/rules", json=body, headers=admin))


@pytest.mark.parametrize(
    ("body", "unused"),
    [
        ({**RuleFactory.build(), "factor": "2"}, "factor"),
        ({**RuleFactory.build(), "event_type": "review"}, "event_type"),
        ({**RuleFactory.build(multiplier=True), "points": 5}, "points"),
        ({**RuleFactory.build(multiplier=True), "per_amount": 100}, "per_amount"),
        ({**RuleFactory.build(bonus=True), "per_amount": 100}, "per_amount"),
        ({**RuleFactory.build(bonus=True), "event_type": "review"}, "event_type"),
        ({**RuleFactory.build(review=True), "factor": "2"}, "factor"),
    ],
    ids=lambda value: value if isinstance(value, str) else value["kind"],
)
def test_fields_the_kind_does_not_use_are_refused(client, admin, body, unused):
    assert unused in errors_of(client.post("/v1/admin/rules", json=body, headers=admin))


@pytest.mark.parametrize("ends_at", ["2025-01-01T00:00:00+00:00", "2024-12-31T00:00:00+00:00"])
def test_ends_at_not_after_starts_at_is_refused(client, admin, ends_at):
    body = {**RuleFactory.build(), "starts_at": "2025-01-01T00:00:00+00:00", "ends_at": ends_at}
    assert "ends_at" in errors_of(client.post("/v1/admin/rules", json=body, headers=admin))


def test_unknown_kind_is_refused(client, admin):
    body = {**RuleFactory.build(), "kind": "cashback"}
    assert "kind" in errors_of(client.post("/v1/admin/rules", json=body, headers=admin))


def test_unknown_field_is_refused(client, admin):
    body = {**RuleFactory.build(), "multiplier": 2}
    assert "multiplier" in errors_of(client.post("/v1/admin/rules", json=body, headers=admin))


def test_member_cap_needs_a_count_or_points_limit(client, admin):
    body = {**RuleFactory.build(review=True), "caps": {"per_member": {"period_days": 30}}}
    errors = errors_of(client.post("/v1/admin/rules", json=body, headers=admin))
    assert any(field.startswith("caps") for field in errors)


def test_a_refused_rule_is_not_saved(client, admin):
    client.post("/v1/admin/rules", json={**RuleFactory.build(), "factor": "2"}, headers=admin)
    assert client.get("/v1/admin/rules", headers=admin).json["items"] == []


# --- get and list --------------------------------------------------------------------------


def test_get_returns_the_rule_at_its_current_version(client, admin):
    created = create(client, admin, RuleFactory.build())
    response = client.get(f"/v1/admin/rules/{created['id']}", headers=admin)
    assert response.status_code == 200
    assert response.json == created


def test_get_of_an_unknown_rule_is_404(client, admin):
    response = client.get(f"/v1/admin/rules/{uuid.uuid4()}", headers=admin)
    assert response.status_code == 404
    assert response.json["code"] == "not_found"


def test_list_pages_newest_first_with_a_cursor(client, admin):
    ids = [
        create(client, admin, {**RuleFactory.build(), "name": f"rule {n}"})["id"] for n in range(5)
    ]
    seen, cursor = [], None
    while True:
        query = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/admin/rules", query_string=query, headers=admin).json
        assert len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))


def test_list_of_exactly_one_page_has_no_next_cursor(client, admin):
    for n in range(2):
        create(client, admin, {**RuleFactory.build(), "name": f"rule {n}"})
    page = client.get("/v1/admin/rules?limit=2", headers=admin).json
    assert len(page["items"]) == 2
    assert page["next_cursor"] is None


def test_list_filters_by_kind_and_by_active(client, admin):
    spend = create(client, admin, RuleFactory.build())
    event = create(client, admin, RuleFactory.build(review=True))
    retired = create(client, admin, {**RuleFactory.build(review=True), "name": "Old review"})
    client.post(f"/v1/admin/rules/{retired['id']}/deactivate", headers=admin)

    def ids(query):
        page = client.get("/v1/admin/rules", query_string=query, headers=admin).json
        return [item["id"] for item in page["items"]]

    assert ids({"kind": "spend"}) == [spend["id"]]
    assert ids({"kind": "event"}) == [retired["id"], event["id"]]
    assert ids({"active": "true"}) == [event["id"], spend["id"]]
    assert ids({"active": "false"}) == [retired["id"]]
    assert ids({"kind": "event", "active": "true"}) == [event["id"]]


def test_list_refuses_a_cursor_it_never_made(client, admin):
    response = client.get("/v1/admin/rules?cursor=not-a-cursor", headers=admin)
    assert "cursor" in errors_of(response)


# --- versions ------------------------------------------------------------------------------


def test_patch_creates_version_2_with_the_change(client, admin):
    rule = create(client, admin, RuleFactory.build())
    response = client.patch(f"/v1/admin/rules/{rule['id']}", json={"points": 2}, headers=admin)
    assert response.status_code == 200, response.json
    assert response.json["version"] == 2
    assert response.json["points"] == 2
    assert response.json["per_amount"] == 100
    assert response.json["name"] == RuleFactory.build()["name"]
    current = client.get(f"/v1/admin/rules/{rule['id']}", headers=admin).json
    assert (current["version"], current["points"]) == (2, 2)


def test_versions_show_the_history_newest_first(client, admin):
    rule = create(client, admin, RuleFactory.build())
    client.patch(f"/v1/admin/rules/{rule['id']}", json={"points": 2}, headers=admin)
    client.patch(f"/v1/admin/rules/{rule['id']}", json={"name": "Double points"}, headers=admin)
    response = client.get(f"/v1/admin/rules/{rule['id']}/versions", headers=admin)
    assert response.status_code == 200
    history = [(v["version"], v["name"], v["points"]) for v in response.json["items"]]
    assert history == [
        (3, "Double points", 2),
        (2, RuleFactory.build()["name"], 2),
        (1, RuleFactory.build()["name"], 1),
    ]


def test_patch_keeps_the_conditions_it_does_not_name(client, admin):
    rule = create(
        client, admin, {**RuleFactory.build(), "conditions": {"skus": ["tee"], "min_amount": 500}}
    )
    response = client.patch(
        f"/v1/admin/rules/{rule['id']}", json={"conditions": {"min_amount": 900}}, headers=admin
    )
    assert response.status_code == 200, response.json
    assert response.json["conditions"]["skus"] == ["tee"]
    assert response.json["conditions"]["min_amount"] == 900


def test_patch_of_a_member_cap_without_its_period_is_refused(client, admin, checkout):
    capped = {
        **RuleFactory.build(review=True),
        "caps": {"per_member": {"period_days": 30, "count": 3}},
    }
    rule = create(client, admin, capped)
    response = client.patch(
        f"/v1/admin/rules/{rule['id']}",
        json={"caps": {"per_member": {"count": 5}}},
        headers=admin,
    )
    assert "caps.per_member.period_days" in errors_of(response)
    current = client.get(f"/v1/admin/rules/{rule['id']}", headers=admin).json
    assert current["version"] == 1
    assert current["caps"]["per_member"]["period_days"] == 30
    # The rule still earns (a cap without a period would break every event of its type).
    client.post("/v1/members", json={"external_id": "c1"}, headers=checkout)
    event = {"event_id": "e1", "member_id": "c1", "type": "review"}
    assert client.post("/v1/events", json=event, headers=checkout).json["points_earned"] == 25


def test_patch_replaces_a_member_cap_given_in_full(client, admin):
    capped = {
        **RuleFactory.build(review=True),
        "caps": {"per_member": {"period_days": 30, "count": 3}},
    }
    rule = create(client, admin, capped)
    response = client.patch(
        f"/v1/admin/rules/{rule['id']}",
        json={"caps": {"per_member": {"period_days": 7, "count": 1}}},
        headers=admin,
    )
    assert response.status_code == 200, response.json
    per_member = response.json["caps"]["per_member"]
    assert (per_member["period_days"], per_member["count"]) == (7, 1)
    assert per_member.get("points") is None


def test_kind_cannot_change(client, admin):
    rule = create(client, admin, RuleFactory.build(bonus=True))
    response = client.patch(f"/v1/admin/rules/{rule['id']}", json={"kind": "spend"}, headers=admin)
    assert "kind" in errors_of(response)
    assert client.get(f"/v1/admin/rules/{rule['id']}", headers=admin).json["version"] == 1


def test_patch_that_makes_the_rule_invalid_is_refused_and_adds_no_version(client, admin):
    rule = create(client, admin, RuleFactory.build(multiplier=True))
    response = client.patch(f"/v1/admin/rules/{rule['id']}", json={"points": 5}, headers=admin)
    assert "points" in errors_of(response)
    versions = client.get(f"/v1/admin/rules/{rule['id']}/versions", headers=admin).json
    assert [v["version"] for v in versions["items"]] == [1]


def test_patch_with_ends_at_before_the_existing_starts_at_is_refused(client, admin):
    rule = create(client, admin, {**RuleFactory.build(), "starts_at": "2025-06-01T00:00:00+00:00"})
    response = client.patch(
        f"/v1/admin/rules/{rule['id']}",
        json={"ends_at": "2025-05-01T00:00:00+00:00"},
        headers=admin,
    )
    assert "ends_at" in errors_of(response)


def test_empty_patch_is_refused(client, admin):
    rule = create(client, admin, RuleFactory.build())
    errors_of(client.patch(f"/v1/admin/rules/{rule['id']}", json={}, headers=admin))


def test_patch_of_an_unknown_rule_is_404(client, admin):
    response = client.patch(f"/v1/admin/rules/{uuid.uuid4()}", json={"points": 2}, headers=admin)
    assert response.status_code == 404


def test_versions_record_the_key_that_made_them(client, admin, headers_for):
    rule = create(client, admin, RuleFactory.build())
    assert rule["actor"]
    other = headers_for("admin")
    client.patch(f"/v1/admin/rules/{rule['id']}", json={"points": 3}, headers=other)
    versions = client.get(f"/v1/admin/rules/{rule['id']}/versions", headers=admin).json["items"]
    assert versions[0]["actor"] != versions[1]["actor"]


# --- deactivate ----------------------------------------------------------------------------


def test_deactivate_makes_an_inactive_new_version_and_keeps_history(client, admin):
    rule = create(client, admin, RuleFactory.build())
    response = client.post(f"/v1/admin/rules/{rule['id']}/deactivate", headers=admin)
    assert response.status_code == 200
    assert (response.json["active"], response.json["version"]) == (False, 2)
    versions = client.get(f"/v1/admin/rules/{rule['id']}/versions", headers=admin).json["items"]
    assert [(v["version"], v["active"]) for v in versions] == [(2, False), (1, True)]


def test_deactivate_again_changes_nothing(client, admin):
    rule = create(client, admin, RuleFactory.build())
    client.post(f"/v1/admin/rules/{rule['id']}/deactivate", headers=admin)
    again = client.post(f"/v1/admin/rules/{rule['id']}/deactivate", headers=admin)
    assert again.status_code == 200
    assert (again.json["active"], again.json["version"]) == (False, 2)


def test_a_deactivated_rule_earns_nothing(client, admin, checkout):
    rule = create(client, admin, RuleFactory.build())
    client.post(f"/v1/admin/rules/{rule['id']}/deactivate", headers=admin)
    client.post("/v1/members", json={"external_id": "c1"}, headers=checkout)
    quote = client.post("/v1/orders/quote", json={**CART, "member_id": "c1"}, headers=checkout)
    assert quote.json["points_to_earn"] == 0


def test_deactivate_of_an_unknown_rule_is_404(client, admin):
    assert client.post(f"/v1/admin/rules/{uuid.uuid4()}/deactivate", headers=admin).status_code == (
        404
    )


# --- scopes --------------------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["checkout", "app"])
def test_rules_are_admin_only(client, admin, headers_for, scope):
    rule = create(client, admin, RuleFactory.build())
    other = headers_for(scope)
    calls = [
        client.get("/v1/admin/rules", headers=other),
        client.post("/v1/admin/rules", json=RuleFactory.build(), headers=other),
        client.get(f"/v1/admin/rules/{rule['id']}", headers=other),
        client.patch(f"/v1/admin/rules/{rule['id']}", json={"points": 9}, headers=other),
        client.get(f"/v1/admin/rules/{rule['id']}/versions", headers=other),
        client.post(f"/v1/admin/rules/{rule['id']}/deactivate", headers=other),
        client.post("/v1/admin/rules/simulate", json=CART, headers=other),
    ]
    assert [r.status_code for r in calls] == [403] * len(calls)
    assert {r.json["code"] for r in calls} == {"forbidden"}
    assert client.get(f"/v1/admin/rules/{rule['id']}", headers=admin).json["version"] == 1


def test_rules_need_a_key(client):
    assert client.get("/v1/admin/rules").status_code == 401


# --- simulate ------------------------------------------------------------------------------


def test_simulate_with_draft_rules_shows_what_the_cart_would_earn(client, admin):
    response = client.post(
        "/v1/admin/rules/simulate",
        json={**CART, "rules": [RuleFactory.build(), RuleFactory.build(multiplier=True)]},
        headers=admin,
    )
    assert response.status_code == 200, response.json
    # 62.00 spent: 62 points; apparel (50.00 -> 50 points) x1.5 adds 25.
    assert response.json["points_to_earn"] == 87
    assert [(c["rule_id"], c["version"], c["points"]) for c in response.json["breakdown"]] == [
        ("draft-1", 0, 62),
        ("draft-2", 0, 25),
    ]


def test_simulate_includes_the_active_rules_unless_told_not_to(client, admin):
    live = create(client, admin, RuleFactory.build())
    body = {**CART, "rules": [{**RuleFactory.build(bonus=True), "conditions": {}}]}
    with_active = client.post("/v1/admin/rules/simulate", json=body, headers=admin).json
    assert [c["rule_id"] for c in with_active["breakdown"]] == [live["id"], "draft-1"]
    assert with_active["points_to_earn"] == 262
    alone = client.post(
        "/v1/admin/rules/simulate", json={**body, "include_active": False}, headers=admin
    ).json
    assert alone["points_to_earn"] == 200


def test_simulate_saves_nothing(client, admin, app):
    client.post(
        "/v1/admin/rules/simulate", json={**CART, "rules": [RuleFactory.build()]}, headers=admin
    )
    assert client.get("/v1/admin/rules", headers=admin).json["items"] == []
    with app.app_context():
        assert db.session.query(LedgerTransaction).count() == 0


def test_simulate_refuses_an_invalid_draft(client, admin):
    body = {**CART, "rules": [{**RuleFactory.build(), "factor": "2"}]}
    response = client.post("/v1/admin/rules/simulate", json=body, headers=admin)
    assert "factor" in str(errors_of(response))


def test_simulate_for_a_member_applies_their_first_order_state(client, admin, checkout, app):
    create(client, admin, RuleFactory.build(bonus=True))
    with app.app_context():
        MemberFactory(external_id="new")
    body = {**CART, "member_id": "new"}
    assert (
        client.post("/v1/admin/rules/simulate", json=body, headers=admin).json["points_to_earn"]
        == 200
    )
    order = {**CART, "member_id": "new", "order_id": "o1"}
    assert client.post("/v1/orders", json=order, headers=checkout).status_code == 201
    assert (
        client.post("/v1/admin/rules/simulate", json=body, headers=admin).json["points_to_earn"]
        == 0
    )


def test_simulate_for_a_member_applies_their_tier(client, admin, checkout, app):
    tier = {"code": "gold", "name": "Gold", "rank": 1, "threshold": 50}
    assert client.post("/v1/admin/tiers", json=tier, headers=admin).status_code == 201
    create(client, admin, RuleFactory.build())
    with app.app_context():
        MemberFactory(external_id="regular")
    order = {**CART, "member_id": "regular", "order_id": "o1"}
    assert client.post("/v1/orders", json=order, headers=checkout).json["points_earned"] == 62
    assert client.get("/v1/members/regular", headers=checkout).json["tier"]["code"] == "gold"
    gold_only = {**RuleFactory.build(), "name": "Gold x2", "conditions": {"tiers": ["gold"]}}
    body = {**CART, "member_id": "regular", "rules": [gold_only], "include_active": False}
    simulated = client.post("/v1/admin/rules/simulate", json=body, headers=admin).json
    assert simulated["points_to_earn"] == 62
    anonymous = {**body, "member_id": None}
    assert (
        client.post("/v1/admin/rules/simulate", json=anonymous, headers=admin).json[
            "points_to_earn"
        ]
        == 0
    )


def test_simulate_for_a_member_applies_their_remaining_caps(client, admin, checkout, app):
    create(
        client,
        admin,
        {**RuleFactory.build(review=True), "caps": {"per_member": {"period_days": 30, "count": 1}}},
    )
    with app.app_context():
        MemberFactory(external_id="writer")
    body = {"currency": "USD", "member_id": "writer", "event_type": "review"}
    assert (
        client.post("/v1/admin/rules/simulate", json=body, headers=admin).json["points_to_earn"]
        == 25
    )
    review = {"event_id": "r1", "member_id": "writer", "type": "review"}
    assert client.post("/v1/events", json=review, headers=checkout).status_code == 201
    assert (
        client.post("/v1/admin/rules/simulate", json=body, headers=admin).json["points_to_earn"]
        == 0
    )
    # Without a member there is no history to cap against.
    anonymous = {"currency": "USD", "event_type": "review"}
    assert (
        client.post("/v1/admin/rules/simulate", json=anonymous, headers=admin).json[
            "points_to_earn"
        ]
        == 25
    )


def test_simulate_for_an_unknown_member_is_404(client, admin):
    body = {**CART, "member_id": "nobody", "rules": [RuleFactory.build()]}
    assert client.post("/v1/admin/rules/simulate", json=body, headers=admin).status_code == 404


def test_simulate_an_event_with_a_draft_event_rule(client, admin):
    body = {"currency": "USD", "event_type": "review", "rules": [RuleFactory.build(review=True)]}
    response = client.post("/v1/admin/rules/simulate", json=body, headers=admin)
    assert response.status_code == 200, response.json
    assert response.json["points_to_earn"] == 25
    assert response.json["breakdown"][0]["kind"] == "event"
