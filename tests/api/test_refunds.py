"""Refunds over HTTP: the points they reverse and restore, and what they refuse."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from loyalty.db import utcnow
from loyalty.extensions import db
from loyalty.ledger.models import (
    PointLot,
)
from tests.api.checkout_calls import (
    DAY,
    balance,
    give,
    hold,
    order,
    refund,
    settings,
)
from tests.helpers import problem

# After every test the whole ledger must verify.
pytestmark = pytest.mark.usefixtures("ledger_verifies_after_each_test")


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
    # Placed before c1 enrolled (today): it earns because it asks to.
    order(client, checkout, placed_at=(utcnow() - 20 * DAY).isoformat(), earn_points=True)
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
