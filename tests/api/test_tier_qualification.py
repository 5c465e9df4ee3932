"""Which points qualify for a tier, and how qualifying points move members up at once.

The tiers' program, its defaults and how time is moved: see tests/api/tier_calls.py. After
every test the whole ledger must verify.
"""

from __future__ import annotations

import pytest

from loyalty.db import utcnow
from tests.api.tier_calls import (
    DAY,
    card,
    card_at,
    history,
    moves,
    order,
    refund,
    stored_tier,
    tier_of,
)
from tests.factories import OrderFactory, RuleFactory
from tests.helpers import created

# After every test the whole ledger must verify.
pytestmark = pytest.mark.usefixtures("ledger_verifies_after_each_test")


def test_points_earned_from_orders_qualify(client, checkout, program, member):
    order(client, checkout, "o1", 60)
    order(client, checkout, "o2", 50)

    found = card(client, checkout)

    assert found["tier_progress"]["qualifying_points"] == 110
    assert tier_of(found) == "silver"


def test_points_earned_from_events_qualify(client, admin, checkout, program, member):
    created(client.post("/v1/admin/rules", json=RuleFactory.build(review=True), headers=admin))
    order(client, checkout, "o1", 80)

    created(
        client.post(
            "/v1/events",
            json={"event_id": "e1", "member_id": "c1", "type": "review"},
            headers=checkout,
        )
    )

    found = card(client, checkout)
    assert found["tier_progress"]["qualifying_points"] == 105
    assert tier_of(found) == "silver"


def test_adjusted_points_do_not_qualify(client, admin, checkout, program, member):
    response = client.post(
        "/v1/admin/members/c1/adjustments",
        json={"points": 5000, "reason": "goodwill"},
        headers=admin,
    )
    assert response.status_code == 201

    found = card(client, checkout)

    assert found["balance"]["available"] == 5000
    assert found["tier_progress"]["qualifying_points"] == 0
    assert found["tier"] is None


def test_a_refund_takes_its_reversed_points_off_the_qualifying_points(
    client, checkout, program, member
):
    order(client, checkout, "o1", 200)

    refund(client, checkout, "o1", refund_id="r1", amount=5000)

    assert card(client, checkout)["tier_progress"]["qualifying_points"] == 150


def test_points_restored_by_a_refund_do_not_qualify(client, admin, checkout, program, member):
    client.post(
        "/v1/admin/members/c1/adjustments",
        json={"points": 1000, "reason": "goodwill"},
        headers=admin,
    )
    hold = created(
        client.post("/v1/redemptions", json={"member_id": "c1", "points": 500}, headers=checkout)
    )
    placed = order(client, checkout, "o1", 62, redemption_id=hold["redemption_id"])
    assert placed["points_earned"] == 57  # earned on the 57.00 paid in money

    refund(client, checkout, "o1", refund_id="r1", amount=6200)

    found = card(client, checkout)
    assert found["balance"]["available"] == 1000  # the 500 redeemed points came back
    assert found["tier_progress"]["qualifying_points"] == 0


def test_only_earnings_inside_the_programs_tier_window_qualify(
    app, client, admin, checkout, program, member
):
    response = client.patch("/v1/admin/program", json={"tier_window_months": 3}, headers=admin)
    assert response.status_code == 200
    now = utcnow()
    order(client, checkout, "o1", 40, placed_at=(now - 100 * DAY).isoformat())
    order(client, checkout, "o2", 70)

    assert card(client, checkout)["tier_progress"]["qualifying_points"] == 70
    assert card_at(app, now + 80 * DAY).progress.qualifying_points == 70
    assert card_at(app, now + 100 * DAY).progress.qualifying_points == 0


def test_the_order_that_crosses_a_threshold_upgrades_the_member_with_it(
    app, client, admin, checkout, program, member
):
    placed = order(client, checkout, "o1", 150)

    # Nothing has read the member since: the order itself moved them.
    assert stored_tier(app) == "silver"
    (upgrade,) = history(client, admin)
    assert (upgrade["from_tier"], upgrade["to_tier"]) == (None, "silver")
    assert upgrade["reason"] == "qualified"
    assert upgrade["qualifying_points"] == placed["points_earned"] == 150
    found = card(client, checkout)
    assert tier_of(found) == "silver"
    assert found["tier_progress"]["qualifying_points"] == placed["points_earned"]


def test_an_order_that_fails_upgrades_no_one(client, admin, checkout, program, member):
    body = {
        "order_id": "o1",
        "member_id": "c1",
        "currency": "EUR",
        "lines": [{"sku": "tee", "quantity": 1, "unit_price": 15000}],
    }

    assert client.post("/v1/orders", json=body, headers=checkout).status_code == 422

    assert card(client, checkout)["tier"] is None
    assert history(client, admin) == []


def test_an_order_crossing_two_thresholds_lands_in_the_higher_tier_with_one_change(
    client, admin, checkout, program, member
):
    order(client, checkout, "o1", 600)

    assert tier_of(card(client, checkout)) == "gold"
    assert moves(client, admin) == [(None, "gold", "qualified")]


def test_an_order_crossing_two_thresholds_from_a_lower_tier_skips_the_one_between(
    client, admin, checkout, program, member
):
    order(client, checkout, "o1", 150)

    order(client, checkout, "o2", 2000)

    assert tier_of(card(client, checkout)) == "platinum"
    assert moves(client, admin) == [
        ("silver", "platinum", "qualified"),
        (None, "silver", "qualified"),
    ]


def test_replaying_the_order_that_upgraded_changes_nothing_more(
    client, admin, checkout, program, member
):
    body = OrderFactory.build(worth=600, uncategorised=True)
    first = client.post("/v1/orders", json=body, headers=checkout)

    again = client.post("/v1/orders", json=body, headers=checkout)

    assert (again.status_code, again.json) == (first.status_code, first.json)

    assert moves(client, admin) == [(None, "gold", "qualified")]
    assert card(client, checkout)["tier_progress"]["qualifying_points"] == 600
