"""Quotes over HTTP: what an order would earn and how many points it could redeem.

The program runs at its defaults unless a test says otherwise (see tests/api/checkout_calls.py).
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from loyalty.extensions import db
from loyalty.orders.models import QuotedCart
from tests.api.checkout_calls import (
    CART,
    add_rule,
    balance,
    give,
    hold,
    order,
    settings,
    table_counts,
)
from tests.factories import MUG, RuleFactory
from tests.helpers import problem

# After every test the whole ledger must verify.
pytestmark = pytest.mark.usefixtures("ledger_verifies_after_each_test")


def test_quote_shows_points_to_earn_with_a_breakdown_naming_rule_and_version(
    client, checkout, rule, member
):
    response = client.post("/v1/orders/quote", json=CART, headers=checkout)
    assert response.status_code == 200, response.json
    assert response.json["points_to_earn"] == 62
    assert response.json["breakdown"] == [
        {
            "rule_id": rule["id"],
            "version": 1,
            "name": RuleFactory.build()["name"],
            "kind": "spend",
            "points": 62,
        }
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


# --- cart_id: the quote records the cart for the cart_abandoned trigger ----------------------


def quoted_carts(app):
    with app.app_context():
        return [
            (c.cart_id, c.amount, c.currency, c.points_to_earn, c.items, c.first_quoted_at)
            for c in db.session.scalars(sa.select(QuotedCart).order_by(QuotedCart.id))
        ]


def test_quote_with_a_cart_id_records_the_cart_and_answers_as_without(
    client, checkout, app, rule, member
):
    without = client.post("/v1/orders/quote", json=CART, headers=checkout)
    response = client.post("/v1/orders/quote", json={**CART, "cart_id": "cart-1"}, headers=checkout)

    assert response.status_code == 200, response.json
    assert response.json == without.json
    [(cart_id, amount, currency, points, items, _)] = quoted_carts(app)
    assert (cart_id, amount, currency, points, items) == ("cart-1", 6200, "USD", 62, CART["lines"])


def test_quoting_a_cart_again_updates_it_and_keeps_its_first_quote(
    client, checkout, app, rule, member
):
    body = {**CART, "cart_id": "cart-1"}
    client.post("/v1/orders/quote", json=body, headers=checkout)
    [(*_, first)] = quoted_carts(app)

    response = client.post("/v1/orders/quote", json={**body, "lines": [MUG]}, headers=checkout)

    assert response.status_code == 200, response.json
    assert quoted_carts(app) == [("cart-1", 1200, "USD", 12, [MUG], first)]


@pytest.mark.parametrize("cart_id", ["", "x" * 101, 42, ["cart-1"]])
def test_quote_with_an_invalid_cart_id_is_422(client, checkout, app, member, cart_id):
    response = client.post("/v1/orders/quote", json={**CART, "cart_id": cart_id}, headers=checkout)

    assert "cart_id" in problem(response, 422, "validation_error")["errors"]
    assert quoted_carts(app) == []


def test_quote_with_a_cart_id_of_100_characters_is_recorded(client, checkout, app, member):
    body = {**CART, "cart_id": "x" * 100}
    assert client.post("/v1/orders/quote", json=body, headers=checkout).status_code == 200
    assert [cart[0] for cart in quoted_carts(app)] == ["x" * 100]


def test_a_refused_quote_with_a_cart_id_records_nothing(client, checkout, app, admin, member):
    unknown = {**CART, "member_id": "nobody", "cart_id": "cart-1"}
    problem(client.post("/v1/orders/quote", json=unknown, headers=checkout), 404, "not_found")
    client.patch("/v1/admin/members/c1", json={"status": "suspended"}, headers=admin)
    suspended = {**CART, "cart_id": "cart-1"}
    problem(
        client.post("/v1/orders/quote", json=suspended, headers=checkout), 422, "member_inactive"
    )

    assert quoted_carts(app) == []
