"""Exporting everything held about a member, over HTTP."""

from __future__ import annotations

import pytest

from tests.api.checkout_calls import give, hold, order, refund
from tests.helpers import created, ok, problem

# After every test the whole ledger must verify.
pytestmark = pytest.mark.usefixtures("ledger_verifies_after_each_test")

SECTIONS = {
    "exported_at",
    "profile",
    "consent",
    "balance",
    "lots",
    "transactions",
    "orders",
    "quoted_carts",
    "events",
    "redemptions",
    "reward_redemptions",
    "benefit_grants",
    "tier_history",
    "experiment_assignments",
    "automation_firings",
}


def export(client, admin, external_id="c1"):
    return ok(client.get(f"/v1/admin/members/{external_id}/export", headers=admin))


@pytest.fixture
def ada(client, checkout):
    profile = {
        "external_id": "c1",
        "email": "ada@example.com",
        "name": "Ada Lovelace",
        "birthday": "1815-12-10",
        "metadata": {"city": "London"},
    }
    created(client.post("/v1/members", json=profile, headers=checkout))
    return "c1"


def test_the_export_has_every_section(client, admin, ada):
    assert set(export(client, admin)) == SECTIONS


def test_the_export_holds_the_profile_and_consent(client, admin, ada):
    document = export(client, admin)

    profile = document["profile"]
    assert (profile["external_id"], profile["email"], profile["name"]) == (
        "c1",
        "ada@example.com",
        "Ada Lovelace",
    )
    assert (profile["birthday"], profile["metadata"], profile["erased_at"]) == (
        "1815-12-10",
        {"city": "London"},
        None,
    )
    assert document["consent"] == {
        "marketing_email": {"granted": False, "changed_at": None},
        "marketing_sms": {"granted": False, "changed_at": None},
    }


def test_the_export_holds_balances_lots_and_every_transaction(client, admin, checkout, rule, ada):
    give(client, admin, "c1", 1000)
    order(client, checkout)  # 62 pending

    document = export(client, admin)

    assert {key: document["balance"][key] for key in ("available", "pending", "held")} == {
        "available": 1000,
        "pending": 62,
        "held": 0,
    }
    assert [(lot["points"], lot["state"]) for lot in document["lots"]] == [
        (1000, "available"),
        (62, "pending"),
    ]
    assert [(txn["kind"], txn["points"]) for txn in document["transactions"]] == [
        ("adjust", 1000),
        ("earn", 62),
    ]
    assert all(sum(e["amount"] for e in txn["entries"]) == 0 for txn in document["transactions"])
    # Each transaction as the history explains it: the order behind an earn, and its rules.
    earn = document["transactions"][1]
    assert earn["order_id"] is not None
    assert [(c["points"], c["kind"]) for c in earn["breakdown"]] == [(62, "spend")]


def test_the_export_holds_orders_with_their_refunds_and_holds(client, admin, checkout, rule, ada):
    give(client, admin, "c1", 1000)
    order(client, checkout)
    refund(client, checkout, {"refund_id": "r1", "amount": 3100})
    held = hold(client, checkout, 200)

    document = export(client, admin)

    [placed] = document["orders"]
    assert (placed["order_id"], placed["total"], placed["points_earned"]) == ("o1", 6200, 62)
    assert [(r["refund_id"], r["points_reversed"]) for r in placed["refunds"]] == [("r1", 31)]
    assert [(r["redemption_id"], r["points"], r["status"]) for r in document["redemptions"]] == [
        (held["redemption_id"], 200, "held")
    ]


def test_the_export_holds_events_and_tier_history(client, admin, checkout, program, ada):
    order(client, checkout, lines=[{"sku": "tv", "quantity": 1, "unit_price": 100_000}])

    document = export(client, admin)

    assert [event["event_id"] for event in document["events"]] == ["signup:c1"]
    assert [(c["from_tier"], c["to_tier"]) for c in document["tier_history"]] == [(None, "gold")]


def test_an_export_is_audited(client, admin, ada):
    export(client, admin)

    log = ok(client.get("/v1/admin/audit-log?target_id=c1", headers=admin))["items"]
    assert log[0]["action"] == "member.export"


def test_exporting_nobody_is_a_404(client, admin):
    problem(client.get("/v1/admin/members/nobody/export", headers=admin), 404, "not_found")


def test_only_an_admin_may_export(client, checkout, ada):
    problem(client.get("/v1/admin/members/c1/export", headers=checkout), 403, "forbidden")
