"""/v1/admin/automations: create, list, get, change (a new version), versions, deactivate,
every change audited; validation errors as problem+json; the simulator's answers."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.checkout_calls import add_rule, enroll
from tests.factories import RuleFactory
from tests.helpers import created, ok, problem

URL = "/v1/admin/automations"
WIN_BACK = {
    "name": "Win-back",
    "trigger": {"kind": "inactive", "days": 60},
    "actions": [{"type": "webhook"}],
}
# Its webhook is marketing: it reaches members who consented to it.
EMAIL_CONSENT = {"marketing_email": True}
WELCOME = {
    "name": "Welcome",
    "trigger": {"kind": "enrolled", "delay_days": 0},
    "actions": [{"type": "webhook"}],
}


def create(client: Any, admin: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    return created(client.post(URL, json=body, headers=admin))


def test_an_automation_is_created_at_version_1(client, admin):
    body = {
        **WIN_BACK,
        "conditions": {"tiers": ["gold"], "metadata": {"vip": True}},
        "dedup_days": 90,
    }

    found = create(client, admin, body)

    assert found["version"] == 1
    assert found["active"] is True
    assert found["trigger"] == {"kind": "inactive", "days": 60}
    assert found["conditions"] == {"tiers": ["gold"], "metadata": {"vip": True}}
    assert found["actions"] == [{"type": "webhook"}]
    assert found["dedup_days"] == 90
    assert ok(client.get(f"{URL}/{found['id']}", headers=admin)) == found


def test_a_change_is_a_new_version_and_the_old_one_is_kept(client, admin):
    found = create(client, admin, WIN_BACK)

    changed = ok(
        client.patch(
            f"{URL}/{found['id']}",
            json={"trigger": {"kind": "inactive", "days": 90}, "name": "Win-back 90"},
            headers=admin,
        )
    )

    assert (changed["version"], changed["name"], changed["trigger"]["days"]) == (
        2,
        "Win-back 90",
        90,
    )
    versions = ok(client.get(f"{URL}/{found['id']}/versions", headers=admin))["items"]
    assert [(v["version"], v["trigger"]["days"]) for v in versions] == [(2, 90), (1, 60)]


def test_a_change_removes_a_condition_sent_empty_and_keeps_those_not_sent(client, admin):
    conditions = {"tiers": ["gold"], "metadata": {"vip": True}, "predicted_value": {"min": 1}}
    found = create(client, admin, {**WIN_BACK, "conditions": conditions})

    changed = ok(
        client.patch(
            f"{URL}/{found['id']}",
            json={"conditions": {"tiers": [], "predicted_value": None}},
            headers=admin,
        )
    )

    assert changed["conditions"] == {"metadata": {"vip": True}}


def test_deactivating_makes_an_inactive_version(client, admin):
    found = create(client, admin, WIN_BACK)

    deactivated = ok(client.post(f"{URL}/{found['id']}/deactivate", headers=admin))

    assert (deactivated["version"], deactivated["active"]) == (2, False)
    listed = ok(client.get(URL, query_string={"active": "false"}, headers=admin))["items"]
    assert [a["id"] for a in listed] == [found["id"]]


def test_every_change_is_audited(client, admin):
    found = create(client, admin, WIN_BACK)
    client.patch(f"{URL}/{found['id']}", json={"dedup_days": 30}, headers=admin)
    client.post(f"{URL}/{found['id']}/deactivate", headers=admin)

    entries = ok(
        client.get(
            "/v1/admin/audit-log",
            query_string={"target_type": "automation", "target_id": found["id"]},
            headers=admin,
        )
    )["items"]

    assert [e["action"] for e in entries] == [
        "automation.deactivate",
        "automation.update",
        "automation.create",
    ]


def test_the_list_pages_newest_first_with_a_cursor(client, admin):
    ids = [create(client, admin, {**WIN_BACK, "name": f"A{n}"})["id"] for n in range(3)]

    first = ok(client.get(URL, query_string={"limit": 2}, headers=admin))
    second = ok(
        client.get(URL, query_string={"limit": 2, "cursor": first["next_cursor"]}, headers=admin)
    )

    assert [a["id"] for a in first["items"] + second["items"]] == ids[::-1]
    assert second["next_cursor"] is None


@pytest.mark.parametrize(
    ("trigger", "field"),
    [
        ({"kind": "enrolled"}, "trigger.delay_days"),
        ({"kind": "inactive", "days": 0}, "trigger"),
        ({"kind": "birthday", "days": 3}, "trigger.days"),
        ({"kind": "repurchase_due"}, "trigger.default_gap_days"),
        ({"kind": "someday"}, "trigger"),
    ],
)
def test_an_invalid_trigger_is_422(client, admin, trigger, field):
    response = client.post(URL, json={**WIN_BACK, "trigger": trigger}, headers=admin)

    body = problem(response, 422, "validation_error")
    assert any(key.startswith(field) for key in body["errors"]), body["errors"]


def test_an_automation_without_actions_is_422(client, admin):
    problem(
        client.post(URL, json={**WIN_BACK, "actions": []}, headers=admin), 422, "validation_error"
    )


def test_an_unknown_segment_is_422(client, admin):
    response = client.post(
        URL, json={**WIN_BACK, "conditions": {"segments": ["nobody"]}}, headers=admin
    )

    body = problem(response, 422, "unknown_segment")
    assert "conditions.segments" in body["errors"]


def test_points_are_granted_only_through_an_active_bonus_rule(client, admin):
    spend = add_rule(client, admin, RuleFactory.build())
    body = {**WELCOME, "actions": [{"type": "grant_points", "rule_id": spend["id"]}]}

    response = client.post(URL, json=body, headers=admin)

    assert "actions.0.rule_id" in problem(response, 422, "rule_not_grantable")["errors"]


def test_a_grant_through_a_bonus_rule_is_accepted(client, admin):
    bonus = add_rule(client, admin, RuleFactory.build(bonus=True, conditions={}))
    actions = [{"type": "grant_points", "rule_id": bonus["id"], "points": 50}]

    found = create(client, admin, {**WELCOME, "actions": actions})

    assert found["actions"] == actions


def test_an_unknown_automation_is_404(client, admin):
    missing = "00000000-0000-0000-0000-000000000000"
    problem(client.get(f"{URL}/{missing}", headers=admin), 404, "not_found")
    problem(client.patch(f"{URL}/{missing}", json={"name": "x"}, headers=admin), 404, "not_found")


def test_an_empty_change_is_422(client, admin):
    found = create(client, admin, WIN_BACK)
    problem(client.patch(f"{URL}/{found['id']}", json={}, headers=admin), 422, "validation_error")


def test_automations_need_the_admin_scope(client, checkout):
    problem(client.get(URL, headers=checkout), 403, "forbidden")


# --- simulate -----------------------------------------------------------------------------------


def simulate(client: Any, admin: dict[str, str], automation: dict[str, Any], member: str) -> Any:
    return ok(
        client.post(f"{URL}/{automation['id']}/simulate", json={"member_id": member}, headers=admin)
    )


def test_simulate_says_it_would_fire_for_a_member_it_is_due_for(client, admin, checkout):
    welcome = create(client, admin, WELCOME)
    enroll(client, checkout, "c1", consent=EMAIL_CONSENT)

    answer = simulate(client, admin, welcome, "c1")

    assert (answer["would_fire"], answer["reason"]) == (True, "due")
    assert answer["trigger"]["kind"] == "enrolled"
    assert answer["window_start"] is not None


def test_simulate_says_when_the_trigger_is_not_due(client, admin, checkout):
    win_back = create(client, admin, WIN_BACK)
    enroll(client, checkout, "c1", consent=EMAIL_CONSENT)

    answer = simulate(client, admin, win_back, "c1")

    assert (answer["would_fire"], answer["reason"], answer["trigger"]) == (False, "not_due", None)


def test_simulate_names_the_condition_that_failed(client, admin, checkout):
    welcome = create(client, admin, {**WELCOME, "conditions": {"metadata": {"vip": True}}})
    enroll(client, checkout, "c1", consent=EMAIL_CONSENT)

    answer = simulate(client, admin, welcome, "c1")

    assert (answer["reason"], answer["condition"]) == ("condition_failed", "metadata.vip")


def test_simulate_says_a_suspended_member_never_fires(client, admin, checkout):
    welcome = create(client, admin, WELCOME)
    enroll(client, checkout, "c1", consent=EMAIL_CONSENT)
    ok(client.patch("/v1/admin/members/c1", json={"status": "suspended"}, headers=admin))

    assert simulate(client, admin, welcome, "c1")["reason"] == "member_inactive"


def test_simulate_says_a_webhook_only_automation_skips_a_member_without_consent(
    client, admin, checkout
):
    welcome = create(client, admin, WELCOME)
    enroll(client, checkout, "c1", consent={"marketing_email": False, "marketing_sms": False})

    answer = simulate(client, admin, welcome, "c1")

    assert (answer["would_fire"], answer["reason"]) == (False, "no_marketing_consent")


def test_simulate_says_an_inactive_automation_never_fires(client, admin, checkout):
    welcome = create(client, admin, WELCOME)
    enroll(client, checkout, "c1", consent=EMAIL_CONSENT)
    client.post(f"{URL}/{welcome['id']}/deactivate", headers=admin)

    assert simulate(client, admin, welcome, "c1")["reason"] == "automation_inactive"


def test_simulate_says_it_already_fired(client, admin, checkout, app):
    from loyalty.automations import firing
    from loyalty.extensions import db

    welcome = create(client, admin, WELCOME)
    enroll(client, checkout, "c1", consent={"marketing_email": True})
    with app.app_context():
        assert firing.fire_due(db.session).total == 1

    assert simulate(client, admin, welcome, "c1")["reason"] == "already_fired"


def test_simulate_for_an_unknown_member_is_404(client, admin):
    welcome = create(client, admin, WELCOME)
    response = client.post(
        f"{URL}/{welcome['id']}/simulate", json={"member_id": "nobody"}, headers=admin
    )
    problem(response, 404, "not_found")


# --- coupons, benefits, budgets ---------------------------------------------------------------


def add_reward(client: Any, admin: dict[str, str], **fields: Any) -> dict[str, Any]:
    body = {"name": "Mug", "kind": "product", "cost_points": 100, **fields}
    return created(client.post("/v1/admin/rewards", json=body, headers=admin))


def test_coupon_and_benefit_actions_and_a_budget_are_kept_and_shown(client, admin):
    mug = add_reward(client, admin)
    actions = [
        {"type": "webhook"},
        {"type": "grant_coupon", "reward_id": mug["id"], "expires_in_days": 30},
        {"type": "grant_benefit", "code": "free_shipping", "params": {"min": 0}, "days": 7},
    ]
    budget = {"period": "month", "amount": 5000}

    found = create(client, admin, {**WELCOME, "actions": actions, "budget": budget})

    assert (found["actions"], found["budget"]) == (actions, budget)
    usage = found["budget_usage"]
    assert (usage["period"], usage["limit"], usage["used"], usage["remaining"]) == (
        "month",
        5000,
        0,
        5000,
    )
    assert ok(client.get(f"{URL}/{found['id']}", headers=admin)) == found
    [version] = ok(client.get(f"{URL}/{found['id']}/versions", headers=admin))["items"]
    assert version["budget"] == budget
    assert "budget_usage" not in version


def test_an_automation_without_a_budget_shows_no_usage(client, admin):
    found = create(client, admin, WIN_BACK)

    assert (found["budget"], found["budget_usage"]) == (None, None)


def test_removing_the_budget_is_a_new_version_without_one(client, admin):
    bonus = add_rule(client, admin, RuleFactory.build(bonus=True, conditions={}))
    actions = [{"type": "grant_points", "rule_id": bonus["id"]}]
    found = create(
        client,
        admin,
        {**WELCOME, "actions": actions, "budget": {"period": "day", "points": 100}},
    )

    changed = ok(client.patch(f"{URL}/{found['id']}", json={"budget": None}, headers=admin))

    assert (changed["version"], changed["budget"], changed["budget_usage"]) == (2, None, None)


def test_budget_usage_counts_what_the_grants_gave(client, admin, checkout, app):
    from loyalty.automations import firing
    from loyalty.extensions import db

    bonus = add_rule(client, admin, RuleFactory.build(bonus=True, points=60, conditions={}))
    actions = [{"type": "grant_points", "rule_id": bonus["id"]}]
    budget = {"period": "lifetime", "points": 100}
    found = create(client, admin, {**WELCOME, "actions": actions, "budget": budget})
    for external_id in ("c1", "c2", "c3"):
        enroll(client, checkout, external_id)
    with app.app_context():
        assert firing.fire_due(db.session).points_granted == 100

    usage = ok(client.get(f"{URL}/{found['id']}", headers=admin))["budget_usage"]

    assert (usage["used"], usage["remaining"], usage["starts_at"]) == (100, 0, None)
    assert usage["exhausted_at"] is not None


@pytest.mark.parametrize(
    ("action", "field"),
    [
        ({"type": "grant_coupon", "expires_in_days": 30}, "actions.0.reward_id"),
        (
            {"type": "grant_coupon", "reward_id": "00000000-0000-0000-0000-000000000000"},
            "actions.0.expires_in_days",
        ),
        ({"type": "grant_benefit", "code": "Free shipping"}, "actions.0.code"),
        ({"type": "grant_benefit", "code": "vip", "days": 0}, "actions.0.days"),
        (
            {"type": "grant_benefit", "code": "vip", "expires_in_days": 3},
            "actions.0.expires_in_days",
        ),
    ],
)
def test_an_invalid_grant_is_422(client, admin, action, field):
    response = client.post(URL, json={**WELCOME, "actions": [action]}, headers=admin)

    assert field in problem(response, 422, "validation_error")["errors"]


def test_a_coupon_of_an_unknown_or_inactive_reward_is_422(client, admin):
    retired = add_reward(client, admin, active=False)
    for reward_id in (retired["id"], "00000000-0000-0000-0000-000000000000"):
        action = {"type": "grant_coupon", "reward_id": reward_id, "expires_in_days": 30}

        response = client.post(URL, json={**WELCOME, "actions": [action]}, headers=admin)

        assert "actions.0.reward_id" in problem(response, 422, "validation_error")["errors"]


def test_a_budget_without_a_grant_it_counts_is_422(client, admin):
    body = {**WELCOME, "budget": {"period": "day", "points": 100}}

    response = client.post(URL, json=body, headers=admin)

    assert "budget" in problem(response, 422, "validation_error")["errors"]


def test_the_automation_webhooks_payloads_are_documented(client):
    schemas = client.get("/openapi.json").json["components"]["schemas"]
    fired = schemas["AutomationFiredEvent"]
    exhausted = schemas["AutomationBudgetExhaustedEvent"]

    assert {"coupon", "benefit", "withheld"} <= set(fired["required"])
    assert {"automation", "budget", "period", "limit", "used"} <= set(exhausted["required"])
