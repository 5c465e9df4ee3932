"""The checkout flow over HTTP: quotes, orders, pending points, refunds, redemption holds and
events, with the contract's status codes and error codes.

Unless a test says otherwise the program runs at its defaults: USD, 100 points = 1.00,
pending_days 14, hold_ttl_seconds 900, max_redemption_percent 50, min_redemption_points 100.
Time is moved by calling the services with `now=` (or by backdating `placed_at`), never by a
batch job. After every test the whole ledger must verify.
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa

from loyalty.db import utcnow
from loyalty.events import services as events
from loyalty.events.models import MemberEvent
from loyalty.extensions import db
from loyalty.jobs import services as jobs
from loyalty.ledger import verify as ledger_verify
from loyalty.ledger.models import (
    LedgerEntry,
    LedgerTransaction,
    MemberBalance,
    PointLot,
    Redemption,
    TransactionKind,
)
from loyalty.membership.services import card
from loyalty.orders.models import Order, Refund
from loyalty.redemptions import services as redemptions
from loyalty.rules.models import RuleAward
from tests.commands import event_command

DAY = dt.timedelta(days=1)
TEE = {"sku": "tee", "category": "apparel", "quantity": 2, "unit_price": 2500}
MUG = {"sku": "mug", "category": "home", "quantity": 1, "unit_price": 1200}
CART = {"member_id": "c1", "currency": "USD", "lines": [TEE, MUG]}  # 62.00
SPEND = {"name": "1 point per dollar", "kind": "spend", "points": 1, "per_amount": 100}


# --- helpers -------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def ledger_verifies_after_each_test(app):
    yield
    with app.app_context():
        report = ledger_verify.verify(db.session)
        assert report.ok, report.problems


@pytest.fixture
def rule(client, admin):
    """The program's base rule: 1 point per 1.00 spent."""
    return add_rule(client, admin, SPEND)


@pytest.fixture
def member(client, checkout):
    enroll(client, checkout, "c1")
    return "c1"


def add_rule(client, admin, body):
    response = client.post("/v1/admin/rules", json=body, headers=admin)
    assert response.status_code == 201, response.json
    return response.json


def enroll(client, checkout, external_id, **fields):
    response = client.post(
        "/v1/members", json={"external_id": external_id, **fields}, headers=checkout
    )
    assert response.status_code in (200, 201), response.json
    return response.json


def give(client, admin, external_id, points):
    """Available points, added by an admin adjustment."""
    response = client.post(
        f"/v1/admin/members/{external_id}/adjustments",
        json={"points": points, "reason": "test"},
        headers=admin,
    )
    assert response.status_code == 201, response.json


def settings(client, admin, **changes):
    response = client.patch("/v1/admin/program", json=changes, headers=admin)
    assert response.status_code == 200, response.json


def balance(client, checkout, external_id="c1"):
    response = client.get(f"/v1/members/{external_id}", headers=checkout)
    assert response.status_code == 200, response.json
    found = response.json["balance"]
    return {key: found[key] for key in ("available", "pending", "held")}


def order(client, checkout, order_id="o1", **fields):
    return client.post(
        "/v1/orders", json={**CART, "order_id": order_id, **fields}, headers=checkout
    )


def hold(client, checkout, points, external_id="c1"):
    response = client.post(
        "/v1/redemptions", json={"member_id": external_id, "points": points}, headers=checkout
    )
    assert response.status_code == 201, response.json
    return response.json


def refund(client, checkout, body, order_id="o1"):
    return client.post(f"/v1/orders/{order_id}/refunds", json=body, headers=checkout)


def problem(response, status, code):
    assert response.status_code == status, response.json
    assert response.content_type == "application/problem+json"
    assert response.json["code"] == code
    return response.json


def when(text):
    return dt.datetime.fromisoformat(text)


def table_counts(app):
    with app.app_context():
        return {
            model.__name__: db.session.scalar(sa.select(sa.func.count()).select_from(model))
            for model in (
                LedgerTransaction,
                LedgerEntry,
                PointLot,
                Order,
                Refund,
                Redemption,
                RuleAward,
                MemberEvent,
            )
        }


def backdated_hold(app, points, ago, external_id="c1"):
    """A hold made `ago` in the past (its TTL may already have run out)."""
    with app.app_context():
        held = redemptions.hold(db.session, external_id, points, now=utcnow() - ago)
        return str(held.public_id)


# --- quote ---------------------------------------------------------------------------------


def test_quote_shows_points_to_earn_with_a_breakdown_naming_rule_and_version(
    client, checkout, rule, member
):
    response = client.post("/v1/orders/quote", json=CART, headers=checkout)
    assert response.status_code == 200, response.json
    assert response.json["points_to_earn"] == 62
    assert response.json["breakdown"] == [
        {"rule_id": rule["id"], "version": 1, "name": SPEND["name"], "kind": "spend", "points": 62}
    ]


def test_quote_earns_on_the_cart_minus_discount_and_points_to_be_redeemed(
    client, checkout, rule, member
):
    body = {**CART, "discount": 500, "redeem_points": 1000}
    response = client.post("/v1/orders/quote", json=body, headers=checkout)
    assert response.json["points_to_earn"] == 47


def test_quote_max_redeemable_is_limited_by_the_balance(client, checkout, admin, member):
    give(client, admin, "c1", 1000)
    quote = client.post("/v1/orders/quote", json=CART, headers=checkout).json
    assert quote["available_points"] == 1000
    assert quote["max_redeemable_points"] == 1000
    assert quote["max_redeemable_value"] == {"amount": 1000, "currency": "USD"}


def test_quote_max_redeemable_is_limited_by_the_share_of_an_order_payable_in_points(
    client, checkout, admin, member
):
    give(client, admin, "c1", 10_000)
    quote = client.post("/v1/orders/quote", json=CART, headers=checkout).json
    assert quote["max_redeemable_points"] == 3100  # 50% of 62.00
    assert quote["max_redeemable_value"] == {"amount": 3100, "currency": "USD"}
    settings(client, admin, max_redemption_percent=20)
    quote = client.post("/v1/orders/quote", json=CART, headers=checkout).json
    assert quote["max_redeemable_points"] == 1240


def test_quote_share_is_measured_after_the_discount(client, checkout, admin, member):
    give(client, admin, "c1", 10_000)
    body = {**CART, "discount": 1200}
    assert (
        client.post("/v1/orders/quote", json=body, headers=checkout).json["max_redeemable_points"]
        == 2500
    )


def test_quote_max_redeemable_follows_the_point_value(client, checkout, admin, member):
    give(client, admin, "c1", 10_000)
    settings(client, admin, point_value={"points": 200, "amount": 100})  # 2 points = 0.01
    quote = client.post("/v1/orders/quote", json=CART, headers=checkout).json
    assert quote["max_redeemable_points"] == 6200
    assert quote["max_redeemable_value"] == {"amount": 3100, "currency": "USD"}


def test_quote_max_redeemable_is_zero_below_the_minimum_redemption(client, checkout, admin, member):
    give(client, admin, "c1", 99)
    assert (
        client.post("/v1/orders/quote", json=CART, headers=checkout).json["max_redeemable_points"]
        == 0
    )
    give(client, admin, "c1", 1)
    assert (
        client.post("/v1/orders/quote", json=CART, headers=checkout).json["max_redeemable_points"]
        == 100
    )


def test_quote_of_a_cart_too_small_for_the_minimum_redemption_offers_no_points(
    client, checkout, admin, member
):
    give(client, admin, "c1", 10_000)
    small = {**CART, "lines": [{"sku": "pen", "quantity": 1, "unit_price": 150}]}
    quote = client.post("/v1/orders/quote", json=small, headers=checkout).json
    assert quote["max_redeemable_points"] == 0
    assert quote["max_redeemable_value"] == {"amount": 0, "currency": "USD"}


def test_quote_counts_neither_pending_nor_held_points_as_redeemable(
    client, checkout, admin, rule, member
):
    assert order(client, checkout).status_code == 201  # 62 pending
    give(client, admin, "c1", 1000)
    hold(client, checkout, 600)
    quote = client.post("/v1/orders/quote", json=CART, headers=checkout).json
    assert quote["available_points"] == 400
    assert quote["max_redeemable_points"] == 400


def test_quote_writes_nothing(client, checkout, admin, app, rule, member):
    add_rule(client, admin, {"name": "Welcome", "kind": "bonus", "points": 200})
    give(client, admin, "c1", 1000)
    order(client, checkout)
    before, card_before = table_counts(app), balance(client, checkout)
    for _ in range(3):
        assert client.post("/v1/orders/quote", json=CART, headers=checkout).status_code == 200
    assert table_counts(app) == before
    assert balance(client, checkout) == card_before


def test_quote_for_an_unknown_member_is_404(client, checkout):
    response = client.post(
        "/v1/orders/quote", json={**CART, "member_id": "nobody"}, headers=checkout
    )
    problem(response, 404, "not_found")


def test_quote_in_another_currency_is_refused(client, checkout, member):
    response = client.post("/v1/orders/quote", json={**CART, "currency": "EUR"}, headers=checkout)
    problem(response, 422, "currency_mismatch")


def test_quote_with_a_discount_larger_than_the_lines_is_refused(client, checkout, member):
    response = client.post("/v1/orders/quote", json={**CART, "discount": 6201}, headers=checkout)
    assert "discount" in problem(response, 422, "validation_error")["errors"]


def test_quote_needs_the_checkout_scope(client, app_key, member):
    problem(client.post("/v1/orders/quote", json=CART, headers=app_key), 403, "forbidden")


# --- orders --------------------------------------------------------------------------------


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
        {"rule_id": rule["id"], "version": 1, "name": SPEND["name"], "kind": "spend", "points": 62}
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


def test_order_placed_before_the_window_is_available_at_once(client, checkout, rule, member):
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
        client, admin, {**SPEND, "name": "Gold bonus", "conditions": {"tiers": ["gold"]}}
    )
    first = order(client, checkout).json  # 62 qualifying points: the member reaches gold
    assert [c["rule_id"] for c in first["breakdown"]] == [rule["id"]]
    second = order(client, checkout, "o2").json
    assert {c["rule_id"]: c["points"] for c in second["breakdown"]} == {
        rule["id"]: 62,
        gold["id"]: 62,
    }


def test_order_rule_member_cap_limits_points_across_orders(client, checkout, admin, member):
    capped = {**SPEND, "caps": {"per_member": {"period_days": 30, "points": 100}}}
    add_rule(client, admin, capped)
    earned = [order(client, checkout, f"o{n}").json["points_earned"] for n in range(3)]
    assert earned == [62, 38, 0]


def test_order_rule_per_order_cap_limits_each_order(client, checkout, admin, member):
    add_rule(client, admin, {**SPEND, "caps": {"per_order": 50}})
    earned = [order(client, checkout, f"o{n}").json["points_earned"] for n in range(2)]
    assert earned == [50, 50]


def test_order_rule_window_is_checked_at_placed_at(client, checkout, admin, member):
    now = utcnow()
    add_rule(
        client,
        admin,
        {
            **SPEND,
            "starts_at": (now - 10 * DAY).isoformat(),
            "ends_at": (now - 5 * DAY).isoformat(),
        },
    )
    assert order(client, checkout).json["points_earned"] == 0
    late_entry = order(client, checkout, "o2", placed_at=(now - 7 * DAY).isoformat())
    assert late_entry.json["points_earned"] == 62


def test_get_order_of_an_unknown_order_is_404(client, checkout):
    problem(client.get("/v1/orders/nope", headers=checkout), 404, "not_found")


# --- refunds -------------------------------------------------------------------------------


@pytest.fixture
def placed(client, checkout, rule, member):
    """Order o1: 2 tees at 25.00 and a mug at 12.00, earning 62 points (pending)."""
    response = order(client, checkout)
    assert response.status_code == 201, response.json
    return response.json


def test_refund_by_lines_reverses_points_in_proportion(client, checkout, placed):
    response = refund(
        client, checkout, {"refund_id": "r1", "lines": [{"sku": "tee", "quantity": 1}]}
    )
    assert response.status_code == 201, response.json
    assert response.json["refund_id"] == "r1"
    assert response.json["order_id"] == "o1"
    assert response.json["amount"] == {"amount": 2500, "currency": "USD"}
    assert (response.json["points_reversed"], response.json["points_restored"]) == (25, 0)
    assert balance(client, checkout) == {"available": 0, "pending": 37, "held": 0}


def test_refund_by_amount_reverses_points_in_proportion(client, checkout, placed):
    response = refund(client, checkout, {"refund_id": "r1", "amount": 3100})
    assert response.status_code == 201, response.json
    assert response.json["points_reversed"] == 31
    assert balance(client, checkout)["pending"] == 31


def test_refund_by_lines_shares_the_discount_across_the_lines(client, checkout, rule, member):
    order(client, checkout, discount=620)  # 10% off: tees 45.00, mug 10.80; 55 points
    response = refund(
        client, checkout, {"refund_id": "r1", "lines": [{"sku": "mug", "quantity": 1}]}
    )
    assert response.json["amount"] == {"amount": 1080, "currency": "USD"}
    assert response.json["points_reversed"] == 55 * 1080 // 5580


def test_partial_refunds_of_a_whole_order_reverse_exactly_what_it_earned(
    client, checkout, rule, member
):
    # 3 x 33.33 = 99.99 earns 99 points; refunds of one unit each floor cumulatively.
    lines = [{"sku": "pen", "quantity": 3, "unit_price": 3333}]
    assert order(client, checkout, lines=lines).json["points_earned"] == 99
    reversed_ = [
        refund(
            client, checkout, {"refund_id": f"r{n}", "lines": [{"sku": "pen", "quantity": 1}]}
        ).json["points_reversed"]
        for n in range(3)
    ]
    assert reversed_ == [33, 33, 33]
    assert balance(client, checkout) == {"available": 0, "pending": 0, "held": 0}


def test_partial_refunds_by_amount_floor_cumulatively_and_add_up_exactly(
    client, checkout, rule, member
):
    lines = [{"sku": "pen", "quantity": 1, "unit_price": 6199}]  # 61 points
    assert order(client, checkout, lines=lines).json["points_earned"] == 61
    amounts = [1000, 1000, 1000, 3199]
    reversed_ = [
        refund(client, checkout, {"refund_id": f"r{n}", "amount": amount}).json["points_reversed"]
        for n, amount in enumerate(amounts)
    ]
    # floor(61 * refunded / 6199) after each: 9, 19, 29, 61.
    assert reversed_ == [9, 10, 10, 32]
    assert sum(reversed_) == 61


def test_refunds_mixing_lines_and_amounts_never_pass_the_order_total(client, checkout, placed):
    assert refund(client, checkout, {"refund_id": "r1", "amount": 5500}).status_code == 201
    too_much = refund(
        client, checkout, {"refund_id": "r2", "lines": [{"sku": "mug", "quantity": 1}]}
    )
    problem(too_much, 422, "refund_exceeds_order")
    assert refund(client, checkout, {"refund_id": "r3", "amount": 700}).json["points_reversed"] == 7


def test_refund_of_more_than_the_order_total_is_refused(client, checkout, placed):
    problem(
        refund(client, checkout, {"refund_id": "r1", "amount": 6201}), 422, "refund_exceeds_order"
    )
    assert balance(client, checkout)["pending"] == 62


def test_refund_past_what_is_left_to_refund_is_refused(client, checkout, placed):
    refund(client, checkout, {"refund_id": "r1", "amount": 6000})
    problem(
        refund(client, checkout, {"refund_id": "r2", "amount": 201}), 422, "refund_exceeds_order"
    )
    assert refund(client, checkout, {"refund_id": "r3", "amount": 200}).status_code == 201


def test_refund_of_more_units_than_ordered_is_refused(client, checkout, placed):
    refund(client, checkout, {"refund_id": "r1", "lines": [{"sku": "tee", "quantity": 2}]})
    again = refund(client, checkout, {"refund_id": "r2", "lines": [{"sku": "tee", "quantity": 1}]})
    problem(again, 422, "refund_exceeds_order")


def test_refund_of_a_sku_not_in_the_order_is_refused(client, checkout, placed):
    response = refund(
        client, checkout, {"refund_id": "r1", "lines": [{"sku": "hat", "quantity": 1}]}
    )
    assert "lines" in problem(response, 422, "validation_error")["errors"]


@pytest.mark.parametrize(
    "body",
    [
        {"refund_id": "r1"},
        {"refund_id": "r1", "amount": 100, "lines": [{"sku": "tee", "quantity": 1}]},
    ],
    ids=["neither", "both"],
)
def test_refund_names_either_lines_or_an_amount(client, checkout, placed, body):
    problem(refund(client, checkout, body), 422, "validation_error")


def test_refund_of_an_unknown_order_is_404(client, checkout):
    problem(refund(client, checkout, {"refund_id": "r1", "amount": 1}, "nope"), 404, "not_found")


def test_same_refund_again_returns_the_first_answer_and_applies_once(client, checkout, placed):
    body = {"refund_id": "r1", "lines": [{"sku": "tee", "quantity": 1}]}
    first = refund(client, checkout, body)
    again = refund(client, checkout, body)
    assert (again.status_code, again.json) == (first.status_code, first.json)
    assert balance(client, checkout)["pending"] == 37


def test_same_refund_id_with_a_different_body_is_a_refund_conflict(client, checkout, placed):
    refund(client, checkout, {"refund_id": "r1", "amount": 1000})
    problem(refund(client, checkout, {"refund_id": "r1", "amount": 2000}), 409, "refund_conflict")
    assert balance(client, checkout)["pending"] == 52


def test_same_refund_id_on_another_order_is_a_refund_conflict(client, checkout, placed):
    order(client, checkout, "o2")
    refund(client, checkout, {"refund_id": "r1", "amount": 1000})
    problem(
        refund(client, checkout, {"refund_id": "r1", "amount": 1000}, "o2"), 409, "refund_conflict"
    )


def test_full_refund_reverses_everything_earned_and_restores_everything_redeemed(
    client, checkout, admin, rule, member
):
    give(client, admin, "c1", 2000)
    held = hold(client, checkout, 1000)
    placed = order(client, checkout, redemption_id=held["redemption_id"]).json
    assert balance(client, checkout) == {"available": 1000, "pending": 52, "held": 0}
    refunds = [
        refund(client, checkout, {"refund_id": "r1", "lines": [{"sku": "tee", "quantity": 1}]}),
        refund(client, checkout, {"refund_id": "r2", "lines": [{"sku": "mug", "quantity": 1}]}),
        refund(client, checkout, {"refund_id": "r3", "lines": [{"sku": "tee", "quantity": 1}]}),
    ]
    assert sum(r.json["points_reversed"] for r in refunds) == placed["points_earned"] == 52
    assert sum(r.json["points_restored"] for r in refunds) == 1000
    assert balance(client, checkout) == {"available": 2000, "pending": 0, "held": 0}


def test_refund_restores_redeemed_points_in_proportion(client, checkout, admin, rule, member):
    give(client, admin, "c1", 1000)
    held = hold(client, checkout, 1000)
    order(client, checkout, redemption_id=held["redemption_id"])
    response = refund(client, checkout, {"refund_id": "r1", "amount": 3100})
    assert (response.json["points_reversed"], response.json["points_restored"]) == (26, 500)
    assert balance(client, checkout) == {"available": 500, "pending": 26, "held": 0}


def test_refund_after_the_points_matured_takes_them_from_available(client, checkout, rule, member):
    order(client, checkout, placed_at=(utcnow() - 20 * DAY).isoformat())
    refund(client, checkout, {"refund_id": "r1", "amount": 3100})
    assert balance(client, checkout) == {"available": 31, "pending": 0, "held": 0}


def test_reversing_points_already_spent_takes_available_below_zero_and_later_earnings_repay(
    client, checkout, admin, app, rule, member
):
    settings(client, admin, pending_days=0, min_redemption_points=1)
    order(client, checkout)  # 62 points, available at once
    spent = hold(client, checkout, 62)
    client.post(f"/v1/redemptions/{spent['redemption_id']}/capture", headers=checkout)
    assert balance(client, checkout)["available"] == 0

    response = refund(client, checkout, {"refund_id": "r1", "amount": 6200})
    assert response.json["points_reversed"] == 62
    assert balance(client, checkout)["available"] == -62
    # In debt, nothing else may take the balance lower.
    response = client.post(
        "/v1/redemptions", json={"member_id": "c1", "points": 1}, headers=checkout
    )
    problem(response, 422, "insufficient_points")

    big = [{"sku": "sofa", "quantity": 1, "unit_price": 10_000}]  # 100 points
    assert order(client, checkout, "o2", lines=big).json["points_earned"] == 100
    assert balance(client, checkout)["available"] == 38
    with app.app_context():
        lots = db.session.scalars(sa.select(PointLot).order_by(PointLot.id)).all()
        assert sum(lot.remaining for lot in lots) == 38


def test_reversing_points_that_are_held_leaves_the_hold_intact_and_its_release_repays(
    client, checkout, admin, rule, member
):
    settings(client, admin, pending_days=0, min_redemption_points=1)
    order(client, checkout)  # 62 points, available at once
    held = hold(client, checkout, 62)
    refund(client, checkout, {"refund_id": "r1", "amount": 6200})
    assert balance(client, checkout) == {"available": -62, "pending": 0, "held": 62}
    client.post(f"/v1/redemptions/{held['redemption_id']}/release", headers=checkout)
    assert balance(client, checkout) == {"available": 0, "pending": 0, "held": 0}


# --- redemptions ---------------------------------------------------------------------------


@pytest.fixture
def funded(client, admin, member):
    """c1 with 1000 available points."""
    give(client, admin, "c1", 1000)
    return "c1"


def test_hold_reserves_points_with_their_value_and_an_expiry(client, checkout, funded):
    response = client.post(
        "/v1/redemptions",
        json={"member_id": "c1", "points": 500, "order_id": "o1"},
        headers=checkout,
    )
    assert response.status_code == 201, response.json
    body = response.json
    assert uuid.UUID(body["redemption_id"])
    assert (body["status"], body["points"], body["order_id"]) == ("held", 500, "o1")
    assert body["value"] == {"amount": 500, "currency": "USD"}
    assert when(body["expires_at"]) - when(body["created_at"]) == dt.timedelta(seconds=900)
    assert balance(client, checkout) == {"available": 500, "pending": 0, "held": 500}


def test_hold_ttl_follows_the_program_settings(client, checkout, admin, funded):
    settings(client, admin, hold_ttl_seconds=60)
    body = hold(client, checkout, 500)
    assert when(body["expires_at"]) - when(body["created_at"]) == dt.timedelta(seconds=60)


def test_held_points_are_not_available_to_anything_else(client, checkout, admin, funded):
    hold(client, checkout, 600)
    response = client.post(
        "/v1/redemptions", json={"member_id": "c1", "points": 500}, headers=checkout
    )
    problem(response, 422, "insufficient_points")
    adjustment = client.post(
        "/v1/admin/members/c1/adjustments", json={"points": -500, "reason": "x"}, headers=admin
    )
    problem(adjustment, 422, "insufficient_points")
    assert hold(client, checkout, 400)["status"] == "held"
    assert balance(client, checkout) == {"available": 0, "pending": 0, "held": 1000}


def test_hold_below_the_minimum_redemption_is_refused(client, checkout, funded):
    response = client.post(
        "/v1/redemptions", json={"member_id": "c1", "points": 99}, headers=checkout
    )
    problem(response, 422, "below_minimum_redemption")
    assert balance(client, checkout)["held"] == 0


def test_hold_for_a_suspended_member_is_refused(client, checkout, admin, funded):
    client.patch("/v1/admin/members/c1", json={"status": "suspended"}, headers=admin)
    response = client.post(
        "/v1/redemptions", json={"member_id": "c1", "points": 100}, headers=checkout
    )
    problem(response, 422, "member_inactive")


def test_hold_for_an_unknown_member_is_404(client, checkout):
    response = client.post(
        "/v1/redemptions", json={"member_id": "nobody", "points": 100}, headers=checkout
    )
    problem(response, 404, "not_found")


def test_capture_spends_the_held_points_and_again_gives_the_same_answer(client, checkout, funded):
    held = hold(client, checkout, 500)
    first = client.post(f"/v1/redemptions/{held['redemption_id']}/capture", headers=checkout)
    assert first.status_code == 200, first.json
    assert first.json["status"] == "captured"
    again = client.post(f"/v1/redemptions/{held['redemption_id']}/capture", headers=checkout)
    assert (again.status_code, again.json) == (200, first.json)
    assert balance(client, checkout) == {"available": 500, "pending": 0, "held": 0}


def test_release_gives_the_points_back_and_again_gives_the_same_answer(client, checkout, funded):
    held = hold(client, checkout, 500)
    first = client.post(f"/v1/redemptions/{held['redemption_id']}/release", headers=checkout)
    assert first.status_code == 200, first.json
    assert first.json["status"] == "released"
    again = client.post(f"/v1/redemptions/{held['redemption_id']}/release", headers=checkout)
    assert (again.status_code, again.json) == (200, first.json)
    assert balance(client, checkout) == {"available": 1000, "pending": 0, "held": 0}


def test_release_after_capture_is_already_captured(client, checkout, funded):
    held = hold(client, checkout, 500)
    client.post(f"/v1/redemptions/{held['redemption_id']}/capture", headers=checkout)
    response = client.post(f"/v1/redemptions/{held['redemption_id']}/release", headers=checkout)
    problem(response, 409, "already_captured")
    assert balance(client, checkout) == {"available": 500, "pending": 0, "held": 0}


def test_capture_after_release_is_already_released(client, checkout, funded):
    held = hold(client, checkout, 500)
    client.post(f"/v1/redemptions/{held['redemption_id']}/release", headers=checkout)
    response = client.post(f"/v1/redemptions/{held['redemption_id']}/capture", headers=checkout)
    problem(response, 409, "already_released")
    assert balance(client, checkout) == {"available": 1000, "pending": 0, "held": 0}


def test_capture_after_the_ttl_is_hold_expired_and_the_points_are_back(
    client, checkout, app, funded
):
    redemption_id = backdated_hold(app, 500, ago=dt.timedelta(seconds=901))
    response = client.post(f"/v1/redemptions/{redemption_id}/capture", headers=checkout)
    problem(response, 409, "hold_expired")
    assert balance(client, checkout) == {"available": 1000, "pending": 0, "held": 0}
    assert client.get(f"/v1/redemptions/{redemption_id}", headers=checkout).json["status"] == (
        "expired"
    )


def test_capture_just_before_the_ttl_succeeds(client, checkout, app, funded):
    redemption_id = backdated_hold(app, 500, ago=dt.timedelta(seconds=840))
    response = client.post(f"/v1/redemptions/{redemption_id}/capture", headers=checkout)
    assert response.status_code == 200, response.json


def test_release_after_the_ttl_is_hold_expired(client, checkout, app, funded):
    redemption_id = backdated_hold(app, 500, ago=dt.timedelta(hours=1))
    response = client.post(f"/v1/redemptions/{redemption_id}/release", headers=checkout)
    problem(response, 409, "hold_expired")
    assert balance(client, checkout) == {"available": 1000, "pending": 0, "held": 0}


def test_an_expired_hold_is_released_on_the_next_read_of_the_member_card(
    client, checkout, app, funded
):
    redemption_id = backdated_hold(app, 500, ago=dt.timedelta(hours=1))
    with app.app_context():
        stored = db.session.scalar(sa.select(Redemption))
        assert stored.status == "held"  # nothing has touched the member since
    assert balance(client, checkout) == {"available": 1000, "pending": 0, "held": 0}
    with app.app_context():
        stored = db.session.scalar(sa.select(Redemption))
        assert stored.status == "expired"
        release = db.session.scalar(
            sa.select(LedgerTransaction).where(
                LedgerTransaction.kind == TransactionKind.RELEASE.value
            )
        )
        assert release.effective_at == stored.expires_at
    assert client.get(f"/v1/redemptions/{redemption_id}", headers=checkout).json["status"] == (
        "expired"
    )


def test_an_expired_hold_is_released_by_the_settle_job_without_any_read(
    client, checkout, app, funded
):
    backdated_hold(app, 500, ago=dt.timedelta(hours=1))
    with app.app_context():
        jobs.settle_due(db.session)
        db.session.expire_all()
        assert db.session.scalar(sa.select(Redemption.status)) == "expired"
        stored = db.session.scalar(sa.select(MemberBalance))
        assert (stored.available, stored.held) == (1000, 0)


def test_capture_or_release_of_an_unknown_redemption_is_404(client, checkout):
    for action in ("capture", "release"):
        response = client.post(f"/v1/redemptions/{uuid.uuid4()}/{action}", headers=checkout)
        problem(response, 404, "not_found")


def test_order_naming_a_held_redemption_captures_it_and_links_it(client, checkout, rule, funded):
    held = hold(client, checkout, 500)
    response = order(client, checkout, redemption_id=held["redemption_id"])
    assert response.status_code == 201, response.json
    assert response.json["redemption_id"] == held["redemption_id"]
    assert response.json["points_redeemed"] == 500
    redemption = client.get(f"/v1/redemptions/{held['redemption_id']}", headers=checkout).json
    assert redemption["status"] == "captured"
    assert balance(client, checkout) == {"available": 500, "pending": 57, "held": 0}


def test_order_naming_a_captured_redemption_links_it(client, checkout, rule, funded):
    held = hold(client, checkout, 500)
    client.post(f"/v1/redemptions/{held['redemption_id']}/capture", headers=checkout)
    response = order(client, checkout, redemption_id=held["redemption_id"])
    assert response.status_code == 201, response.json
    assert (response.json["redemption_id"], response.json["points_earned"]) == (
        held["redemption_id"],
        57,
    )
    assert (
        refund(client, checkout, {"refund_id": "r1", "amount": 6200}).json["points_restored"] == 500
    )
    assert balance(client, checkout) == {"available": 1000, "pending": 0, "held": 0}


def test_a_redemption_pays_for_one_order_only(client, checkout, rule, funded):
    held = hold(client, checkout, 500)
    order(client, checkout, redemption_id=held["redemption_id"])
    response = order(client, checkout, "o2", redemption_id=held["redemption_id"])
    problem(response, 409, "redemption_already_used")
    assert client.get("/v1/orders/o2", headers=checkout).status_code == 404


def test_order_naming_a_released_redemption_is_refused(client, checkout, rule, funded):
    held = hold(client, checkout, 500)
    client.post(f"/v1/redemptions/{held['redemption_id']}/release", headers=checkout)
    problem(order(client, checkout, redemption_id=held["redemption_id"]), 409, "already_released")
    assert client.get("/v1/orders/o1", headers=checkout).status_code == 404


def test_order_naming_an_expired_redemption_is_refused(client, checkout, app, rule, funded):
    redemption_id = backdated_hold(app, 500, ago=dt.timedelta(hours=1))
    problem(order(client, checkout, redemption_id=redemption_id), 409, "hold_expired")
    assert balance(client, checkout) == {"available": 1000, "pending": 0, "held": 0}


def test_order_naming_another_members_redemption_is_refused(client, checkout, admin, rule, funded):
    enroll(client, checkout, "c2")
    give(client, admin, "c2", 1000)
    theirs = hold(client, checkout, 500, "c2")
    response = order(client, checkout, redemption_id=theirs["redemption_id"])
    problem(response, 422, "redemption_member_mismatch")
    assert balance(client, checkout, "c2") == {"available": 500, "pending": 0, "held": 500}


def test_order_naming_an_unknown_redemption_is_refused(client, checkout, rule, funded):
    response = order(client, checkout, redemption_id=str(uuid.uuid4()))
    assert "redemption_id" in problem(response, 422, "validation_error")["errors"]


def test_redemption_worth_more_than_the_payable_share_of_the_order_is_refused(
    client, checkout, admin, rule, funded
):
    give(client, admin, "c1", 9000)
    held = hold(client, checkout, 3101)  # 31.01 on a 62.00 order: more than 50%
    problem(
        order(client, checkout, redemption_id=held["redemption_id"]),
        422,
        "redemption_exceeds_limit",
    )
    assert balance(client, checkout)["held"] == 3101


# --- events --------------------------------------------------------------------------------

REVIEW = {"name": "Review", "kind": "event", "points": 25, "event_type": "review"}


def event(client, checkout, event_id, event_type="review", external_id="c1", **fields):
    return client.post(
        "/v1/events",
        json={"event_id": event_id, "member_id": external_id, "type": event_type, **fields},
        headers=checkout,
    )


def test_event_earns_points_by_its_rule_available_at_once(client, checkout, admin, member):
    review = add_rule(client, admin, REVIEW)
    response = event(client, checkout, "e1")
    assert response.status_code == 201, response.json
    assert response.json["points_earned"] == 25
    assert response.json["breakdown"] == [
        {"rule_id": review["id"], "version": 1, "name": "Review", "kind": "event", "points": 25}
    ]
    assert balance(client, checkout) == {"available": 25, "pending": 0, "held": 0}


def test_custom_event_types_earn_by_their_own_rules(client, checkout, admin, member):
    add_rule(client, admin, REVIEW)
    add_rule(client, admin, {**REVIEW, "name": "Survey", "event_type": "survey_done", "points": 7})
    assert event(client, checkout, "e1", "survey_done").json["points_earned"] == 7


def test_event_without_a_rule_is_recorded_and_earns_nothing(client, checkout, app, member):
    response = event(client, checkout, "e1", "birthday")
    assert response.status_code == 201, response.json
    assert response.json["points_earned"] == 0
    assert balance(client, checkout)["available"] == 0


def test_event_rules_cap_the_count_per_member_per_period(client, checkout, admin, app, member):
    add_rule(client, admin, {**REVIEW, "caps": {"per_member": {"period_days": 30, "count": 3}}})
    earned = [event(client, checkout, f"e{n}").json["points_earned"] for n in range(4)]
    assert earned == [25, 25, 25, 0]
    assert balance(client, checkout)["available"] == 75
    with app.app_context():
        later, _ = events.record_event(
            db.session,
            event_command({"event_id": "e-later", "member_id": "c1", "type": "review"}),
            now=utcnow() + 31 * DAY,
        )
        assert later.points_earned == 25


def test_event_rules_cap_the_points_per_member_per_period(client, checkout, admin, member):
    add_rule(client, admin, {**REVIEW, "caps": {"per_member": {"period_days": 30, "points": 60}}})
    earned = [event(client, checkout, f"e{n}").json["points_earned"] for n in range(4)]
    assert earned == [25, 25, 10, 0]


def test_event_caps_count_per_member(client, checkout, admin, member):
    add_rule(client, admin, {**REVIEW, "caps": {"per_member": {"period_days": 30, "count": 1}}})
    enroll(client, checkout, "c2")
    assert event(client, checkout, "e1").json["points_earned"] == 25
    assert event(client, checkout, "e2", external_id="c2").json["points_earned"] == 25


def test_same_event_again_returns_the_first_answer_and_earns_once(client, checkout, admin, member):
    add_rule(client, admin, REVIEW)
    first = event(client, checkout, "e1")
    again = event(client, checkout, "e1")
    assert (again.status_code, again.json) == (first.status_code, first.json)
    assert balance(client, checkout)["available"] == 25


def test_same_event_id_with_a_different_body_is_an_event_conflict(client, checkout, admin, member):
    add_rule(client, admin, REVIEW)
    event(client, checkout, "e1")
    problem(event(client, checkout, "e1", attributes={"stars": 5}), 409, "event_conflict")
    assert balance(client, checkout)["available"] == 25


def test_event_for_a_suspended_member_earns_nothing(client, checkout, admin, member):
    add_rule(client, admin, REVIEW)
    client.patch("/v1/admin/members/c1", json={"status": "suspended"}, headers=admin)
    problem(event(client, checkout, "e1"), 422, "member_inactive")


def test_event_in_the_future_is_refused(client, checkout, member):
    response = event(client, checkout, "e1", occurred_at=(utcnow() + DAY).isoformat())
    assert "occurred_at" in problem(response, 422, "validation_error")["errors"]


def test_event_rule_window_is_checked_at_occurred_at(client, checkout, admin, member):
    now = utcnow()
    add_rule(
        client,
        admin,
        {
            **REVIEW,
            "starts_at": (now - 10 * DAY).isoformat(),
            "ends_at": (now - 5 * DAY).isoformat(),
        },
    )
    assert event(client, checkout, "e1").json["points_earned"] == 0
    late = event(client, checkout, "e2", occurred_at=(now - 7 * DAY).isoformat())
    assert late.json["points_earned"] == 25


def test_signup_rule_credits_points_on_enrolment_once(client, checkout, admin):
    add_rule(client, admin, {**REVIEW, "name": "Welcome", "event_type": "signup", "points": 100})
    enroll(client, checkout, "c1")
    assert balance(client, checkout) == {"available": 100, "pending": 0, "held": 0}
    enroll(client, checkout, "c1")
    assert balance(client, checkout)["available"] == 100


def test_enrolment_without_a_signup_rule_credits_nothing(client, checkout, app):
    enroll(client, checkout, "c1")
    assert balance(client, checkout)["available"] == 0
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(LedgerTransaction)) == 0


@pytest.fixture
def referral(client, admin, checkout, rule):
    """A referral rule worth 500; "friend" was referred by "host"."""
    add_rule(client, admin, {**REVIEW, "name": "Referral", "event_type": "referral", "points": 500})
    enroll(client, checkout, "host")
    enroll(client, checkout, "friend", referred_by="host")


def test_referrer_is_credited_when_the_referred_members_first_order_is_placed(
    client, checkout, referral
):
    assert balance(client, checkout, "host")["available"] == 0
    assert order(client, checkout, member_id="friend").status_code == 201
    assert balance(client, checkout, "host") == {"available": 500, "pending": 0, "held": 0}
    assert balance(client, checkout, "friend") == {"available": 0, "pending": 62, "held": 0}


def test_referrer_is_credited_once(client, checkout, referral):
    order(client, checkout, member_id="friend")
    order(client, checkout, member_id="friend")  # a retry of the first order
    order(client, checkout, "o2", member_id="friend")
    assert balance(client, checkout, "host")["available"] == 500


def test_referrer_is_not_credited_for_a_refused_order(client, checkout, referral):
    problem(order(client, checkout, member_id="friend", currency="EUR"), 422, "currency_mismatch")
    assert balance(client, checkout, "host")["available"] == 0


def test_referral_to_an_unknown_member_is_refused(client, checkout):
    response = client.post(
        "/v1/members", json={"external_id": "c9", "referred_by": "nobody"}, headers=checkout
    )
    problem(response, 422, "referrer_not_found")


# --- the whole flow ------------------------------------------------------------------------


def test_the_checkout_flow_quote_hold_order_capture_refund(client, checkout, admin, rule, member):
    give(client, admin, "c1", 2000)
    quote = client.post("/v1/orders/quote", json=CART, headers=checkout).json
    assert (quote["points_to_earn"], quote["max_redeemable_points"]) == (62, 2000)
    held = hold(client, checkout, 2000)
    placed = order(client, checkout, redemption_id=held["redemption_id"]).json
    assert (placed["points_earned"], placed["paid"]["amount"]) == (42, 4200)
    captured = client.post(f"/v1/redemptions/{held['redemption_id']}/capture", headers=checkout)
    assert captured.json["status"] == "captured"
    assert balance(client, checkout) == {"available": 0, "pending": 42, "held": 0}
    done = refund(client, checkout, {"refund_id": "r1", "amount": 6200}).json
    assert (done["points_reversed"], done["points_restored"]) == (42, 2000)
    assert balance(client, checkout) == {"available": 2000, "pending": 0, "held": 0}
