"""GET /v1/admin/rules/{id}/report and /v1/admin/automations/{id}/report over HTTP: the
answer's shape and figures, the window's bounds as problem+json, unknown ids, scopes, and
reads left out of the audit log. The figures' edge cases are in
tests/integration/test_campaign_reports.py."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.api.checkout_calls import add_rule, enroll, order
from tests.factories import RuleFactory
from tests.helpers import created, ok, problem

WELCOME = {
    "name": "Welcome",
    "trigger": {"kind": "enrolled", "delay_days": 0},
    "actions": [{"type": "webhook"}],
}


def report(client: Any, admin: dict[str, str], path: str, **query: Any) -> dict[str, Any]:
    return ok(client.get(f"{path}/report", query_string=query, headers=admin))


def test_a_rules_report_gives_each_version_and_the_total(client, admin, checkout):
    rule = add_rule(client, admin, RuleFactory.build())  # 1 point per 1.00
    enroll(client, checkout, "c1")
    created(order(client, checkout, "o1"))  # 62.00: 62 points, the touch
    created(order(client, checkout, "o2"))  # after o1's award: its return; earns 62 too

    found = report(client, admin, f"/v1/admin/rules/{rule['id']}")

    figures = {
        "members_reached": 1,
        "touches": 2,
        "points_issued": 124,
        "cost": {"amount": 124, "currency": "USD"},
        "orders_attributed": 1,
        "revenue_attributed": [
            {"currency": "USD", "orders": 1, "gross": 6200, "refunded": 0, "net": 6200}
        ],
    }
    [version] = found["versions"]
    assert {key: version[key] for key in figures} == figures
    assert (version["version"], version["name"]) == (1, "1 point per dollar")
    assert found["total"] == figures
    assert (found["id"], found["name"], found["window_days"]) == (
        rule["id"],
        "1 point per dollar",
        7,
    )
    assert found["point_value"] == {"points": 100, "amount": 100}
    assert "last touch" in found["attribution"]
    assert "at most 7 days" in found["attribution"]


def test_an_automations_report_names_its_window(client, admin):
    automation = created(client.post("/v1/admin/automations", json=WELCOME, headers=admin))

    found = report(client, admin, f"/v1/admin/automations/{automation['id']}", window_days=30)

    assert found["window_days"] == 30
    assert "at most 30 days" in found["attribution"]
    assert [v["version"] for v in found["versions"]] == [1]
    assert found["total"]["touches"] == 0
    assert found["total"]["revenue_attributed"] == []


@pytest.mark.parametrize("kind", ["rules", "automations"])
@pytest.mark.parametrize("days", ["0", "366", "-3", "abc", "1.5", ""])
def test_a_window_that_is_no_whole_number_from_1_to_365_is_a_validation_error(
    client, admin, kind, days
):
    body = WELCOME if kind == "automations" else RuleFactory.build()
    made = created(client.post(f"/v1/admin/{kind}", json=body, headers=admin))

    response = client.get(
        f"/v1/admin/{kind}/{made['id']}/report", query_string={"window_days": days}, headers=admin
    )

    assert "window_days" in problem(response, 422, "validation_error")["errors"]


def test_an_unknown_query_parameter_is_a_validation_error(client, admin):
    rule = add_rule(client, admin, RuleFactory.build())

    response = client.get(f"/v1/admin/rules/{rule['id']}/report?window=7", headers=admin)

    assert "window" in problem(response, 422, "validation_error")["errors"]


@pytest.mark.parametrize("kind", ["rules", "automations"])
def test_an_unknown_id_is_not_found(client, admin, kind):
    response = client.get(f"/v1/admin/{kind}/{uuid.uuid4()}/report", headers=admin)

    problem(response, 404, "not_found")


def test_the_report_needs_the_admin_scope(client, admin, checkout):
    rule = add_rule(client, admin, RuleFactory.build())

    response = client.get(f"/v1/admin/rules/{rule['id']}/report", headers=checkout)

    problem(response, 403, "forbidden")


def test_reading_a_report_is_not_audited(client, admin):
    rule = add_rule(client, admin, RuleFactory.build())
    before = ok(client.get("/v1/admin/audit-log", headers=admin))["items"]

    report(client, admin, f"/v1/admin/rules/{rule['id']}")

    assert ok(client.get("/v1/admin/audit-log", headers=admin))["items"] == before
