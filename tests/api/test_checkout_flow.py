"""The whole checkout over HTTP, from the quote to the refund."""

from __future__ import annotations

import pytest

from tests.api.checkout_calls import (
    CART,
    balance,
    give,
    hold,
    order,
    refund,
)

# After every test the whole ledger must verify.
pytestmark = pytest.mark.usefixtures("ledger_verifies_after_each_test")


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
