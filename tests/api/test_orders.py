"""Orders over HTTP: the points they earn (pending for the return window), replays and
conflicts, and which rules apply."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from loyalty.db import utcnow
from loyalty.extensions import db
from loyalty.ledger.models import PointLot
from loyalty.membership import services as membership
from loyalty.membership.services import card
from loyalty.orders.models import Order
from tests.api.checkout_calls import (
    CART,
    DAY,
    add_rule,
    balance,
    ended_five_days_before,
    enroll,
    give,
    hold,
    order,
    refund,
    settings,
)
from tests.commands import enrollment
from tests.factories import MUG, TEE, RuleFactory
from tests.helpers import created, problem, when

# After every test the whole ledger must verify.
pytestmark = pytest.mark.usefixtures("ledger_verifies_after_each_test")


@pytest.fixture
def veteran(app):
    """Member c1, enrolled three years ago."""
    with app.app_context():
        membership.enroll(
            db.session, enrollment({"external_id": "c1"}), now=utcnow() - 3 * 365 * DAY
        )
    return "c1"


def test_order_earns_points_pending_until_the_return_window_ends(client, checkout, rule, member):
    placed_at = utcnow().replace(microsecond=0) - dt.timedelta(hours=1)
    response = order(client, checkout, placed_at=placed_at.isoformat())
    assert response.status_code == 201, response.json
    body = response.json
    assert body["order_id"] == "o1"
    assert body["points_earned"] == 62
    assert body["status"] == "pending"
    assert when(body["placed_at"]) == placed_at
    assert when(body["available_at"]) == placed_at + 14 * DAY
    assert body["breakdown"] == [
        {
            "rule_id": rule["id"],
            "version": 1,
            "name": RuleFactory.build()["name"],
            "kind": "spend",
            "points": 62,
        }
    ]
    assert balance(client, checkout) == {"available": 0, "pending": 62, "held": 0}


def test_pending_points_become_available_once_the_window_passes_without_any_job(
    client, checkout, app, rule, member
):
    available_at = when(order(client, checkout).json["available_at"])
    with app.app_context():
        just_before = card(db.session, "c1", now=available_at - dt.timedelta(microseconds=1))
        assert (just_before.available, just_before.pending) == (0, 62)
        at_the_end = card(db.session, "c1", now=available_at)
        assert (at_the_end.available, at_the_end.pending) == (62, 0)


def test_order_placed_before_the_window_is_available_at_once(client, checkout, rule, veteran):
    placed_at = utcnow() - 20 * DAY
    response = order(client, checkout, placed_at=placed_at.isoformat())
    assert response.status_code == 201, response.json
    assert response.json["status"] == "available"
    assert balance(client, checkout) == {"available": 62, "pending": 0, "held": 0}


def test_order_with_pending_days_zero_is_available_at_once(client, checkout, admin, rule, member):
    settings(client, admin, pending_days=0)
    response = order(client, checkout)
    assert response.json["status"] == "available"
    assert balance(client, checkout) == {"available": 62, "pending": 0, "held": 0}


def test_order_placed_in_the_future_is_refused(client, checkout, rule, member):
    response = order(client, checkout, placed_at=(utcnow() + dt.timedelta(hours=1)).isoformat())
    assert "placed_at" in problem(response, 422, "validation_error")["errors"]


def test_order_without_matching_rules_earns_nothing(client, checkout, member):
    response = order(client, checkout)
    assert response.status_code == 201, response.json
    assert (response.json["points_earned"], response.json["breakdown"]) == (0, [])
    assert response.json["status"] == "none"
    assert response.json["available_at"] is None


def test_same_order_again_returns_the_first_answer_and_earns_once(
    client, checkout, app, rule, member
):
    first = order(client, checkout)
    again = order(client, checkout)
    assert (again.status_code, again.json) == (first.status_code, first.json)
    assert balance(client, checkout)["pending"] == 62
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Order)) == 1


def test_same_order_id_with_a_different_body_is_an_order_conflict(client, checkout, rule, member):
    order(client, checkout)
    changed = order(client, checkout, lines=[{**TEE, "quantity": 3}, MUG])
    problem(changed, 409, "order_conflict")
    assert balance(client, checkout)["pending"] == 62


def test_same_order_id_for_another_member_is_an_order_conflict(client, checkout, rule, member):
    enroll(client, checkout, "c2")
    order(client, checkout)
    problem(order(client, checkout, member_id="c2"), 409, "order_conflict")
    assert balance(client, checkout, "c2")["pending"] == 0


@pytest.mark.parametrize("status", ["suspended", "closed"])
def test_inactive_member_earns_nothing(client, checkout, admin, rule, member, status):
    client.patch("/v1/admin/members/c1", json={"status": status}, headers=admin)
    problem(order(client, checkout), 422, "member_inactive")
    assert client.get("/v1/orders/o1", headers=checkout).status_code == 404
    assert balance(client, checkout)["pending"] == 0


def test_order_in_another_currency_is_refused(client, checkout, rule, member):
    problem(order(client, checkout, currency="EUR"), 422, "currency_mismatch")
    assert client.get("/v1/orders/o1", headers=checkout).status_code == 404


def test_order_with_a_discount_larger_than_the_lines_is_refused(client, checkout, rule, member):
    response = order(client, checkout, discount=6201)
    assert "discount" in problem(response, 422, "validation_error")["errors"]


def test_order_for_an_unknown_member_is_404(client, checkout, rule):
    problem(order(client, checkout, member_id="nobody"), 404, "not_found")


def test_order_earns_on_the_amount_after_the_discount(client, checkout, rule, member):
    response = order(client, checkout, discount=500)
    assert response.json["points_earned"] == 57
    assert response.json["total"] == {"amount": 5700, "currency": "USD"}


def test_order_earns_on_money_paid_not_on_the_value_of_redeemed_points(
    client, checkout, admin, rule, member
):
    give(client, admin, "c1", 2000)
    held = hold(client, checkout, 1000)  # worth 10.00
    response = order(client, checkout, redemption_id=held["redemption_id"])
    assert response.status_code == 201, response.json
    assert response.json["points_earned"] == 52
    assert response.json["points_redeemed"] == 1000
    assert response.json["total"] == {"amount": 6200, "currency": "USD"}
    assert response.json["paid"] == {"amount": 5200, "currency": "USD"}
    assert balance(client, checkout) == {"available": 1000, "pending": 52, "held": 0}


def test_order_breakdown_lists_every_rule_that_gave_points(client, checkout, admin, rule, member):
    multiplier = add_rule(
        client,
        admin,
        {
            "name": "Apparel x1.5",
            "kind": "multiplier",
            "factor": "1.5",
            "conditions": {"categories": ["apparel"]},
        },
    )
    welcome = add_rule(
        client,
        admin,
        {"name": "Welcome", "kind": "bonus", "points": 200, "conditions": {"first_order": True}},
    )
    first = order(client, checkout).json
    assert [(c["rule_id"], c["points"]) for c in first["breakdown"]] == [
        (rule["id"], 62),
        (multiplier["id"], 25),
        (welcome["id"], 200),
    ]
    assert first["points_earned"] == 287
    second = order(client, checkout, "o2").json
    assert second["points_earned"] == 87


def test_order_breakdown_names_the_rule_version_that_applied(client, checkout, admin, rule, member):
    first = order(client, checkout).json
    client.patch(f"/v1/admin/rules/{rule['id']}", json={"points": 2}, headers=admin)
    second = order(client, checkout, "o2").json
    assert [(c["rule_id"], c["version"], c["points"]) for c in second["breakdown"]] == [
        (rule["id"], 2, 124)
    ]
    # The first order still tells which version gave its points.
    stored = client.get("/v1/orders/o1", headers=checkout).json
    assert stored["breakdown"] == first["breakdown"]
    assert [(c["version"], c["points"]) for c in stored["breakdown"]] == [(1, 62)]


def test_rule_for_a_tier_applies_to_members_of_that_tier_only(
    client, checkout, admin, rule, member
):
    tier = {"code": "gold", "name": "Gold", "rank": 1, "threshold": 50}
    assert client.post("/v1/admin/tiers", json=tier, headers=admin).status_code == 201
    gold = add_rule(
        client, admin, RuleFactory.build(name="Gold bonus", conditions={"tiers": ["gold"]})
    )
    first = order(client, checkout).json  # 62 qualifying points: the member reaches gold
    assert [c["rule_id"] for c in first["breakdown"]] == [rule["id"]]
    second = order(client, checkout, "o2").json
    assert {c["rule_id"]: c["points"] for c in second["breakdown"]} == {
        rule["id"]: 62,
        gold["id"]: 62,
    }


def test_order_rule_member_cap_limits_points_across_orders(client, checkout, admin, member):
    capped = RuleFactory.build(caps={"per_member": {"period_days": 30, "points": 100}})
    add_rule(client, admin, capped)
    earned = [order(client, checkout, f"o{n}").json["points_earned"] for n in range(3)]
    assert earned == [62, 38, 0]


def test_order_rule_per_order_cap_limits_each_order(client, checkout, admin, member):
    add_rule(client, admin, RuleFactory.build(caps={"per_order": 50}))
    earned = [order(client, checkout, f"o{n}").json["points_earned"] for n in range(2)]
    assert earned == [50, 50]


def test_order_rule_window_is_checked_at_placed_at(client, checkout, admin, veteran):
    now = utcnow()
    add_rule(
        client,
        admin,
        RuleFactory.build(**ended_five_days_before(now)),
    )
    assert order(client, checkout).json["points_earned"] == 0
    late_entry = order(client, checkout, "o2", placed_at=(now - 7 * DAY).isoformat())
    assert late_entry.json["points_earned"] == 62


def test_get_order_of_an_unknown_order_is_404(client, checkout):
    problem(client.get("/v1/orders/nope", headers=checkout), 404, "not_found")


# --- history: orders placed in the past, before or after the member's enrolment -----------


def test_a_past_order_since_enrolment_earns_as_of_when_it_was_placed(
    client, checkout, rule, veteran
):
    placed_at = utcnow().replace(microsecond=0) - 3 * DAY
    body = created(order(client, checkout, placed_at=placed_at.isoformat()))
    assert (body["points_earned"], body["status"]) == (62, "pending")
    assert when(body["available_at"]) == placed_at + 14 * DAY
    assert when(body["placed_at"]) == placed_at


def test_an_order_placed_before_enrolment_is_history_and_earns_nothing(
    client, checkout, rule, member
):
    placed_at = utcnow().replace(microsecond=0) - 400 * DAY
    body = created(order(client, checkout, placed_at=placed_at.isoformat()))
    assert (body["points_earned"], body["breakdown"], body["status"]) == (0, [], "none")
    assert body["available_at"] is None
    assert body["total"] == {"amount": 6200, "currency": "USD"}
    stored = client.get("/v1/orders/o1", headers=checkout).json
    assert when(stored["placed_at"]) == placed_at
    assert balance(client, checkout) == {"available": 0, "pending": 0, "held": 0}


def test_an_order_placed_before_enrolment_earns_when_asked(client, checkout, rule, member):
    placed_at = utcnow() - 30 * DAY
    body = created(order(client, checkout, placed_at=placed_at.isoformat(), earn_points=True))
    assert (body["points_earned"], body["status"]) == (62, "available")
    assert balance(client, checkout) == {"available": 62, "pending": 0, "held": 0}


def test_earn_points_false_records_a_recent_order_without_points(client, checkout, rule, member):
    body = created(order(client, checkout, earn_points=False))
    assert (body["points_earned"], body["status"]) == (0, "none")
    assert balance(client, checkout)["pending"] == 0


@pytest.mark.parametrize("value", ["yes", 1, "true"])
def test_earn_points_is_a_json_boolean(client, checkout, rule, member, value):
    response = order(client, checkout, earn_points=value)
    assert "earn_points" in problem(response, 422, "validation_error")["errors"]


def test_points_of_an_order_placed_years_ago_have_expired_since(
    client, checkout, app, rule, veteran
):
    placed_at = utcnow() - 2 * 365 * DAY
    body = created(order(client, checkout, placed_at=placed_at.isoformat()))
    assert body["points_earned"] == 62
    assert balance(client, checkout) == {"available": 0, "pending": 0, "held": 0}
    with app.app_context():
        assert db.session.scalar(sa.select(PointLot.state)) == "expired"


def test_a_historical_order_is_refunded_by_amount_and_gives_back_no_points(
    client, checkout, rule, member
):
    placed_at = utcnow() - 400 * DAY
    created(order(client, checkout, placed_at=placed_at.isoformat()))
    first = created(refund(client, checkout, {"refund_id": "r1", "amount": 2000}))
    assert (first["points_reversed"], first["points_restored"]) == (0, 0)
    too_much = refund(client, checkout, {"refund_id": "r2", "amount": 4201})
    problem(too_much, 422, "refund_exceeds_order")
    created(
        refund(client, checkout, {"refund_id": "r3", "lines": [{"sku": MUG["sku"], "quantity": 1}]})
    )
    assert balance(client, checkout) == {"available": 0, "pending": 0, "held": 0}


def test_a_past_order_that_earned_is_refunded_in_full(client, checkout, rule, veteran):
    created(order(client, checkout, placed_at=(utcnow() - 20 * DAY).isoformat()))
    back = created(refund(client, checkout, {"refund_id": "r1", "amount": 6200}))
    assert back["points_reversed"] == 62
    assert balance(client, checkout) == {"available": 0, "pending": 0, "held": 0}


def test_a_historical_order_again_replays_and_asking_for_points_then_conflicts(
    client, checkout, rule, member
):
    placed_at = (utcnow() - 400 * DAY).isoformat()
    first = order(client, checkout, placed_at=placed_at)
    again = order(client, checkout, placed_at=placed_at)
    assert (again.status_code, again.json) == (first.status_code, first.json)
    problem(order(client, checkout, placed_at=placed_at, earn_points=True), 409, "order_conflict")
    assert balance(client, checkout)["available"] == 0


def test_a_historical_order_under_an_idempotency_key_replays(client, checkout, rule, member):
    body = {**CART, "order_id": "o1", "placed_at": (utcnow() - 400 * DAY).isoformat()}
    headers = {**checkout, "Idempotency-Key": "history-1"}
    first = client.post("/v1/orders", json=body, headers=headers)
    again = client.post("/v1/orders", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json == first.json
    assert again.headers["Idempotent-Replayed"] == "true"


def test_a_past_order_does_not_pull_in_the_inactivity_expiry_of_newer_points(
    client, checkout, admin, app, rule, veteran
):
    settings(client, admin, expiry={"policy": "inactivity", "months": 12})
    created(order(client, checkout, "recent"))
    with app.app_context():
        before = db.session.scalar(sa.select(PointLot.expires_at))
    created(order(client, checkout, "old", placed_at=(utcnow() - 700 * DAY).isoformat()))
    with app.app_context():
        expiries = list(db.session.scalars(sa.select(PointLot.expires_at).order_by(PointLot.id)))
    # Both lots expire 12 months after the latest activity, the recent order.
    assert expiries == [before, before]
    assert balance(client, checkout) == {"available": 62, "pending": 62, "held": 0}


# --- cart_id: the cart an order came from ------------------------------------------------------


def test_an_order_names_the_cart_it_came_from(client, checkout, rule, member):
    placed = order(client, checkout, cart_id="cart-1")

    assert created(placed)["cart_id"] == "cart-1"
    assert client.get("/v1/orders/o1", headers=checkout).json["cart_id"] == "cart-1"
    assert created(order(client, checkout, order_id="o2"))["cart_id"] is None


def test_an_order_replayed_with_another_cart_id_is_an_order_conflict(
    client, checkout, rule, member
):
    created(order(client, checkout, cart_id="cart-1"))

    assert order(client, checkout, cart_id="cart-1").status_code == 201
    problem(order(client, checkout, cart_id="cart-2"), 409, "order_conflict")
    problem(order(client, checkout), 409, "order_conflict")


@pytest.mark.parametrize("cart_id", ["", "x" * 101, 7])
def test_an_order_with_an_invalid_cart_id_is_422(client, checkout, member, cart_id):
    response = order(client, checkout, cart_id=cart_id)

    assert "cart_id" in problem(response, 422, "validation_error")["errors"]
