"""Redemption holds over HTTP: reserving, capturing and releasing points, their TTL, and
orders that pay with a hold."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa

from loyalty.extensions import db
from loyalty.jobs import services as jobs
from loyalty.ledger.models import (
    LedgerTransaction,
    MemberBalance,
    Redemption,
    TransactionKind,
)
from tests.api.checkout_calls import (
    backdated_hold,
    balance,
    enroll,
    give,
    hold,
    order,
    refund,
    settings,
)
from tests.helpers import problem, when

# After every test the whole ledger must verify.
pytestmark = pytest.mark.usefixtures("ledger_verifies_after_each_test")


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


@pytest.mark.parametrize(
    ("action", "status", "available"),
    [("capture", "captured", 500), ("release", "released", 1000)],
    ids=["capture spends the held points", "release gives the points back"],
)
def test_capture_or_release_settles_the_hold_and_again_gives_the_same_answer(
    client, checkout, funded, action, status, available
):
    held = hold(client, checkout, 500)
    first = client.post(f"/v1/redemptions/{held['redemption_id']}/{action}", headers=checkout)
    assert first.status_code == 200, first.json
    assert first.json["status"] == status
    again = client.post(f"/v1/redemptions/{held['redemption_id']}/{action}", headers=checkout)
    assert (again.status_code, again.json) == (200, first.json)
    assert balance(client, checkout) == {"available": available, "pending": 0, "held": 0}


@pytest.mark.parametrize(
    ("first", "then", "code", "available"),
    [
        ("capture", "release", "already_captured", 500),
        ("release", "capture", "already_released", 1000),
    ],
    ids=["release after capture", "capture after release"],
)
def test_a_settled_hold_refuses_the_other_action(
    client, checkout, funded, first, then, code, available
):
    held = hold(client, checkout, 500)
    client.post(f"/v1/redemptions/{held['redemption_id']}/{first}", headers=checkout)
    response = client.post(f"/v1/redemptions/{held['redemption_id']}/{then}", headers=checkout)
    problem(response, 409, code)
    assert balance(client, checkout) == {"available": available, "pending": 0, "held": 0}


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
    assert (redemption["status"], redemption["order_id"]) == ("captured", response.json["order_id"])
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
    redemption = client.get(f"/v1/redemptions/{held['redemption_id']}", headers=checkout).json
    assert redemption["order_id"] == response.json["order_id"]
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
