"""The audit log over HTTP: every admin write, by whom (the API key's name), what was done, to
which target, the target before and after, and when.

Entries are written in the same transaction as the write itself, so a write that fails leaves
none; the log is read-only through the API, newest first, filterable by target and time, and
paginated like every list.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from loyalty.audit.models import AuditEntry
from loyalty.db import utcnow
from loyalty.experiments import services as experiments
from loyalty.experiments.definitions import ArmDefinition, ExperimentDefinition
from loyalty.extensions import db
from loyalty.ledger.models import MemberBalance
from loyalty.members import lookup
from loyalty.membership import adjustments
from loyalty.webhooks import outbox
from tests.factories import ApiKeyFactory, RuleFactory, TierFactory, auth
from tests.helpers import created, ok

# After every test the whole ledger must verify.
pytestmark = pytest.mark.usefixtures("ledger_verifies_after_each_test")

TOTE = {"name": "Tote bag", "kind": "product", "cost_points": 500}


# --- helpers -------------------------------------------------------------------------------


@pytest.fixture
def ops(app: Flask) -> dict[str, str]:
    """An admin key named "ops-admin": the name every entry it writes must carry."""
    with app.app_context():
        return auth(ApiKeyFactory(name="ops-admin", scopes=("admin",)))


def page(client: FlaskClient, headers: dict[str, str], **query: Any) -> dict[str, Any]:
    return ok(client.get("/v1/admin/audit-log", query_string=query, headers=headers))


def log(client: FlaskClient, headers: dict[str, str], **query: Any) -> list[dict[str, Any]]:
    """The whole log (newest first), with the filters given."""
    return page(client, headers, limit=200, **query)["items"]


def latest(client: FlaskClient, headers: dict[str, str], **query: Any) -> dict[str, Any]:
    return log(client, headers, **query)[0]


def actions(client: FlaskClient, headers: dict[str, str], **query: Any) -> list[str]:
    return [entry["action"] for entry in log(client, headers, **query)]


def entry_count(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count(AuditEntry.id))) or 0


def when(entry: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(entry["created_at"])


def cli(app: Flask, *args: str) -> None:
    result = app.test_cli_runner().invoke(args=list(args))
    assert result.exit_code == 0, result.output


# --- what an entry says --------------------------------------------------------------------


def test_an_entry_names_the_key_the_action_the_target_before_after_and_time(client, ops):
    start = utcnow()

    ok(client.patch("/v1/admin/program", json={"pending_days": 30}, headers=ops))

    entry = latest(client, ops)
    assert set(entry) == {
        "actor",
        "action",
        "target_type",
        "target_id",
        "before",
        "after",
        "created_at",
    }
    assert entry["actor"] == "ops-admin"
    assert entry["action"] == "program.update"
    assert (entry["target_type"], entry["target_id"]) == ("program", "1")
    assert entry["before"]["pending_days"] == 14
    assert entry["after"]["pending_days"] == 30
    assert start <= when(entry) <= utcnow()


def test_the_log_is_newest_first(client, ops):
    for days in (20, 21, 22):
        ok(client.patch("/v1/admin/program", json={"pending_days": days}, headers=ops))

    assert [e["after"]["pending_days"] for e in log(client, ops, target_type="program")] == [
        22,
        21,
        20,
    ]


# --- every admin write is logged -----------------------------------------------------------


def test_creating_a_rule_is_logged_with_its_definition(client, ops):
    rule = created(client.post("/v1/admin/rules", json=RuleFactory.build(), headers=ops))

    entry = latest(client, ops, target_type="rule")

    assert (entry["actor"], entry["action"]) == ("ops-admin", "rule.create")
    assert entry["target_id"] == rule["id"]
    assert entry["before"] is None
    assert entry["after"]["name"] == RuleFactory.build()["name"]
    assert entry["after"]["config"] == {"points": 1, "per_amount": 100}
    assert entry["after"]["version"] == 1


def test_an_experiments_changes_are_found_by_their_target_type(app, client, ops):
    # Experiments have no API yet: made through their services, read through the log's.
    starts_at = utcnow() + dt.timedelta(days=1)
    definition = ExperimentDefinition(
        key="winback",
        name="Win-back bonus",
        hypothesis="It brings lapsed members back for more than it costs.",
        target={"kind": "benefit", "code": "free-shipping"},
        arms=(
            ArmDefinition("holdout", 1, control=True, applies=False),
            ArmDefinition("shipping", 1, applies=True),
        ),
        starts_at=starts_at,
        ends_at=starts_at + dt.timedelta(days=28),
        margin="0.35",
    )
    with app.app_context():
        experiment = experiments.create_experiment(db.session, definition, "ops-admin")
        experiments.start_experiment(db.session, experiment.public_id, "ops-admin")

    entries = log(client, ops, target_type="experiment")

    assert [entry["action"] for entry in entries] == ["experiment.start", "experiment.create"]
    assert {entry["target_id"] for entry in entries} == {str(experiment.public_id)}


def test_updating_a_rule_is_logged_with_the_old_and_new_version(client, ops):
    rule = created(client.post("/v1/admin/rules", json=RuleFactory.build(), headers=ops))

    ok(client.patch(f"/v1/admin/rules/{rule['id']}", json={"points": 2}, headers=ops))

    entry = latest(client, ops, target_type="rule")
    assert entry["action"] == "rule.update"
    assert entry["target_id"] == rule["id"]
    assert (entry["before"]["version"], entry["after"]["version"]) == (1, 2)
    assert entry["before"]["config"]["points"] == 1
    assert entry["after"]["config"]["points"] == 2


def test_deactivating_a_rule_is_logged_as_a_deactivation(client, ops):
    rule = created(client.post("/v1/admin/rules", json=RuleFactory.build(), headers=ops))

    ok(client.post(f"/v1/admin/rules/{rule['id']}/deactivate", headers=ops))

    entry = latest(client, ops, target_type="rule")
    assert entry["action"] == "rule.deactivate"
    assert entry["target_id"] == rule["id"]
    assert (entry["before"]["active"], entry["after"]["active"]) == (True, False)


def test_creating_updating_and_deleting_a_tier_are_logged(client, ops):
    created(client.post("/v1/admin/tiers", json=TierFactory.build(), headers=ops))
    ok(client.patch("/v1/admin/tiers/silver", json={"threshold": 150}, headers=ops))
    assert client.delete("/v1/admin/tiers/silver", headers=ops).status_code == 204

    create, update, delete = reversed(log(client, ops, target_type="tier"))

    assert [e["action"] for e in (create, update, delete)] == [
        "tier.create",
        "tier.update",
        "tier.delete",
    ]
    assert {e["target_id"] for e in (create, update, delete)} == {"silver"}
    assert {e["actor"] for e in (create, update, delete)} == {"ops-admin"}
    assert create["before"] is None
    assert create["after"]["threshold"] == 100
    assert (update["before"]["threshold"], update["after"]["threshold"]) == (100, 150)
    assert delete["before"]["threshold"] == 150
    assert delete["after"] is None


def test_creating_updating_and_deactivating_a_reward_are_logged(client, ops):
    reward = created(client.post("/v1/admin/rewards", json=TOTE, headers=ops))
    ok(client.patch(f"/v1/admin/rewards/{reward['id']}", json={"cost_points": 600}, headers=ops))
    ok(client.post(f"/v1/admin/rewards/{reward['id']}/deactivate", headers=ops))

    create, update, deactivate = reversed(log(client, ops, target_type="reward"))

    assert [e["action"] for e in (create, update, deactivate)] == [
        "reward.create",
        "reward.update",
        "reward.deactivate",
    ]
    assert {e["target_id"] for e in (create, update, deactivate)} == {reward["id"]}
    assert create["before"] is None
    assert create["after"]["cost_points"] == 500
    assert (update["before"]["cost_points"], update["after"]["cost_points"]) == (500, 600)
    assert (deactivate["before"]["active"], deactivate["after"]["active"]) == (True, False)


def test_an_adjustment_is_logged_against_the_member(client, ops, member):
    txn = created(
        client.post(
            "/v1/admin/members/c1/adjustments",
            json={"points": 250, "reason": "late delivery"},
            headers=ops,
        )
    )

    entry = latest(client, ops, target_type="member", target_id="c1")

    assert (entry["actor"], entry["action"]) == ("ops-admin", "points.adjust")
    assert entry["before"] is None
    assert entry["after"] == {
        "points": 250,
        "reason": "late delivery",
        "transaction": txn["id"],
    }


def test_a_member_status_change_is_logged_with_the_old_and_new_status(client, ops, member):
    ok(client.patch("/v1/admin/members/c1", json={"status": "suspended"}, headers=ops))

    entry = latest(client, ops, target_type="member", target_id="c1")

    assert (entry["actor"], entry["action"]) == ("ops-admin", "member.update")
    assert (entry["before"]["status"], entry["after"]["status"]) == ("active", "suspended")
    assert entry["before"]["external_id"] == "c1"


def test_a_benefit_grant_is_logged_against_the_member(client, ops, member):
    created(
        client.post(
            "/v1/admin/members/c1/benefits",
            json={"code": "free_shipping", "reason": "VIP complaint"},
            headers=ops,
        )
    )

    entry = latest(client, ops, target_type="member", target_id="c1")

    assert (entry["actor"], entry["action"]) == ("ops-admin", "benefit.grant")
    assert entry["before"] is None
    assert entry["after"]["code"] == "free_shipping"
    assert entry["after"]["reason"] == "VIP complaint"


def test_creating_and_deleting_a_webhook_are_logged_without_its_secret(client, ops):
    hook = created(
        client.post(
            "/v1/admin/webhooks",
            json={"url": "https://shop.example/hooks", "event_types": ["tier.changed"]},
            headers=ops,
        )
    )
    assert client.delete(f"/v1/admin/webhooks/{hook['id']}", headers=ops).status_code == 204

    delete, create = log(client, ops, target_type="webhook")

    assert (create["action"], delete["action"]) == ("webhook.create", "webhook.delete")
    assert create["target_id"] == delete["target_id"] == hook["id"]
    assert create["after"] == {"url": "https://shop.example/hooks", "event_types": ["tier.changed"]}
    assert delete["before"]["url"] == "https://shop.example/hooks"
    assert delete["after"] is None
    assert hook["secret"] not in json.dumps(log(client, ops))


def test_keys_created_and_revoked_with_the_cli_are_logged_without_their_hash(app, client, ops):
    cli(app, "keys", "create", "shop-checkout", "--scope", "checkout")
    cli(app, "keys", "revoke", "shop-checkout")

    revoke, create = log(client, ops, target_type="api_key", target_id="shop-checkout")

    assert (create["actor"], create["action"]) == ("cli", "key.create")
    assert create["before"] is None
    assert create["after"]["scopes"] == "checkout"
    assert create["after"]["revoked_at"] is None
    assert (revoke["actor"], revoke["action"]) == ("cli", "key.revoke")
    assert revoke["before"]["revoked_at"] is None
    assert revoke["after"]["revoked_at"] is not None
    for entry in (create, revoke):
        assert "key_hash" not in entry["after"]


def test_revoking_a_revoked_key_again_logs_nothing_new(app, client, ops):
    cli(app, "keys", "create", "shop-checkout", "--scope", "checkout")
    cli(app, "keys", "revoke", "shop-checkout")

    cli(app, "keys", "revoke", "shop-checkout")

    assert actions(client, ops, target_type="api_key", target_id="shop-checkout") == [
        "key.revoke",
        "key.create",
    ]


def test_reads_and_checkout_calls_are_not_logged(app, client, ops, checkout, member):
    before = entry_count(app)

    ok(client.get("/v1/admin/program", headers=ops))
    ok(client.get("/v1/members/c1", headers=checkout))
    ok(client.get("/v1/admin/tiers", headers=ops))

    assert entry_count(app) == before


# --- filters and pages ---------------------------------------------------------------------


@pytest.fixture
def two_tiers(client: FlaskClient, ops: dict[str, str]) -> None:
    """Silver, then Gold, created by ops."""
    created(client.post("/v1/admin/tiers", json=TierFactory.build(), headers=ops))
    created(
        client.post(
            "/v1/admin/tiers",
            json=TierFactory.build(code="gold", name="Gold", rank=2, threshold=500),
            headers=ops,
        )
    )


def test_the_log_filters_by_target_type_and_id(client, ops, two_tiers):
    ok(client.patch("/v1/admin/program", json={"pending_days": 30}, headers=ops))

    assert {e["target_type"] for e in log(client, ops, target_type="tier")} == {"tier"}
    assert [e["target_id"] for e in log(client, ops, target_type="tier", target_id="gold")] == [
        "gold"
    ]
    assert log(client, ops, target_type="tier", target_id="platinum") == []


def test_the_log_filters_by_time_from_inclusive_to_exclusive(client, ops, two_tiers):
    silver, gold = (latest(client, ops, target_id=code) for code in ("silver", "gold"))

    from_gold = log(client, ops, target_type="tier", **{"from": gold["created_at"]})
    to_gold = log(client, ops, target_type="tier", to=gold["created_at"])
    both = log(
        client, ops, target_type="tier", **{"from": silver["created_at"]}, to=utcnow().isoformat()
    )

    assert [e["target_id"] for e in from_gold] == ["gold"]
    assert [e["target_id"] for e in to_gold] == ["silver"]
    assert [e["target_id"] for e in both] == ["gold", "silver"]


def test_a_time_without_an_offset_is_422(client, ops):
    response = client.get(
        "/v1/admin/audit-log", query_string={"from": "2026-11-01T00:00:00"}, headers=ops
    )

    assert response.status_code == 422
    assert "from" in response.json["errors"]


def test_an_unknown_target_type_is_422(client, ops):
    response = client.get("/v1/admin/audit-log?target_type=order", headers=ops)

    assert response.status_code == 422
    assert "target_type" in response.json["errors"]


def test_the_log_is_paginated_with_a_cursor(client, ops):
    for days in range(20, 25):
        ok(client.patch("/v1/admin/program", json={"pending_days": days}, headers=ops))

    first = page(client, ops, target_type="program", limit=2)
    second = page(client, ops, target_type="program", limit=2, cursor=first["next_cursor"])
    third = page(client, ops, target_type="program", limit=2, cursor=second["next_cursor"])

    seen = [e["after"]["pending_days"] for p in (first, second, third) for e in p["items"]]
    assert seen == [24, 23, 22, 21, 20]
    assert third["next_cursor"] is None


def test_a_bad_cursor_is_422(client, ops):
    assert client.get("/v1/admin/audit-log?cursor=nonsense", headers=ops).status_code == 422


# --- failed writes leave no entry ----------------------------------------------------------


def test_a_refused_adjustment_leaves_no_entry(app, client, ops, member):
    before = entry_count(app)

    response = client.post(
        "/v1/admin/members/c1/adjustments", json={"points": -10, "reason": "oops"}, headers=ops
    )

    assert response.status_code == 422
    assert response.json["code"] == "insufficient_points"
    assert entry_count(app) == before


def test_a_conflicting_tier_leaves_no_entry(app, client, ops):
    created(client.post("/v1/admin/tiers", json=TierFactory.build(), headers=ops))
    before = entry_count(app)

    response = client.post(
        "/v1/admin/tiers",
        json={**TierFactory.build(code="gold", name="Gold", rank=2, threshold=500), "rank": 1},
        headers=ops,
    )

    assert response.status_code == 409
    assert entry_count(app) == before
    assert actions(client, ops, target_type="tier") == ["tier.create"]


def test_a_write_that_fails_after_its_entry_was_written_leaves_no_entry(
    app, client, ops, member, monkeypatch
):
    """An adjustment records its entry, then writes its webhook event: when that fails, the
    points, the entry and the event all roll back together."""
    before = entry_count(app)

    def outbox_down(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("outbox unavailable")

    monkeypatch.setattr(outbox, "emit", outbox_down)
    with app.app_context(), pytest.raises(RuntimeError, match="outbox unavailable"):
        adjustments.adjust(db.session, "c1", 500, "goodwill", "ops-admin")

    assert entry_count(app) == before
    with app.app_context():
        member_id = lookup.find_member(db.session, "c1").id
        assert db.session.get(MemberBalance, member_id).available == 0


# --- the log is read-only ------------------------------------------------------------------


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_the_log_cannot_be_changed_through_the_api(app, client, ops, method):
    ok(client.patch("/v1/admin/program", json={"pending_days": 30}, headers=ops))
    before = log(client, ops)

    response = getattr(client, method)("/v1/admin/audit-log", json={"actor": "x"}, headers=ops)

    assert response.status_code == 405
    assert response.json["code"] == "method_not_allowed"
    assert log(client, ops) == before


def test_no_route_below_the_log_exists(client, ops):
    ok(client.patch("/v1/admin/program", json={"pending_days": 30}, headers=ops))

    assert client.delete("/v1/admin/audit-log/1", headers=ops).status_code == 404
    assert client.patch("/v1/admin/audit-log/1", json={}, headers=ops).status_code == 404


def test_the_log_is_for_admins_only(client, checkout, app_key):
    for headers in (checkout, app_key):
        response = client.get("/v1/admin/audit-log", headers=headers)
        assert response.status_code == 403
        assert response.json["code"] == "forbidden"


def test_the_log_needs_a_key(client):
    assert client.get("/v1/admin/audit-log").status_code == 401
