"""Reward codes over HTTP: the checkout validates a member's code (whose it is, what it is
worth, whether it can be used) and consumes it once, before it expires; the app (or an
admin) cancels a redemption whose code is unused, and its points come back into the lots
they were spent from in one ledger transaction, with its unit of stock and pooled code.

Points are given by admin adjustments, available at once. Time moves by a clock the test
sets on the codes' service; after every test the whole ledger must verify.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from loyalty.audit.models import AuditEntry
from loyalty.db import utcnow
from loyalty.extensions import db
from loyalty.ledger.models import LedgerTransaction, PointLot, TransactionKind
from loyalty.ledger.queries import member_points_delta
from loyalty.rewards import codes
from loyalty.rewards.models import RewardAllocation, RewardRedemption
from loyalty.webhooks.models import OutboxEvent
from tests.api.test_rewards_api import FIVE_OFF, add_reward, available, give, redeem, stock
from tests.helpers import created, ok, problem, when

pytestmark = pytest.mark.usefixtures("ledger_verifies_after_each_test")

DAY = dt.timedelta(days=1)
TWELVE_AND_A_HALF = {
    "name": "12.5% off",
    "kind": "percent_discount",
    "cost_points": 300,
    "percent_off": "12.5",
}


def redeemed(
    client: FlaskClient, admin: dict[str, str], app_key: dict[str, str], reward: dict[str, Any]
) -> dict[str, Any]:
    """Member c1's redemption of `reward` (given the points it costs first)."""
    give(client, admin, reward["cost_points"])
    return created(redeem(client, app_key, reward["id"]))


def validate(client: FlaskClient, checkout: dict[str, str], code: str, **body: Any) -> Any:
    return client.post("/v1/reward-codes/validate", json={"code": code, **body}, headers=checkout)


def consume(
    client: FlaskClient,
    checkout: dict[str, str],
    code: str,
    member_id: str = "c1",
    headers: dict[str, str] | None = None,
    **body: Any,
) -> Any:
    return client.post(
        "/v1/reward-codes/consume",
        json={"code": code, "member_id": member_id, **body},
        headers={**checkout, **(headers or {})},
    )


def cancel(
    client: FlaskClient, headers: dict[str, str], redemption_id: str, member_id: str = "c1"
) -> Any:
    return client.post(
        f"/v1/members/{member_id}/reward-redemptions/{redemption_id}/cancel", headers=headers
    )


def events(app: Flask, event_type: str) -> list[dict[str, Any]]:
    with app.app_context():
        return list(
            db.session.scalars(
                sa.select(OutboxEvent.payload)
                .where(OutboxEvent.type == event_type)
                .order_by(OutboxEvent.id)
            )
        )


def restore_transactions(app: Flask) -> list[tuple[str | None, int]]:
    with app.app_context():
        txns = db.session.scalars(
            sa.select(LedgerTransaction)
            .where(LedgerTransaction.kind == TransactionKind.RESTORE.value)
            .order_by(LedgerTransaction.id)
        )
        return [(txn.reference, member_points_delta(txn)) for txn in txns]


@pytest.fixture
def five_off(client: FlaskClient, admin: dict[str, str]) -> dict[str, Any]:
    """5.00 off for 400 points, 10 in stock, its codes honoured for 30 days."""
    return add_reward(client, admin, {**FIVE_OFF, "stock": 10, "valid_days": 30})


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[dt.datetime]:
    """The codes' clock: set clock[0] to move it."""
    moment = [utcnow()]
    monkeypatch.setattr(codes, "utcnow", lambda: moment[0])
    return moment


# --- values and expiry ----------------------------------------------------------------------


def test_a_percent_discount_keeps_its_percentage_exactly(client, admin):
    body = add_reward(client, admin, TWELVE_AND_A_HALF)
    assert (body["kind"], body["percent_off"], body["value"]) == ("percent_discount", "12.5", None)


@pytest.mark.parametrize(
    ("given", "kept"), [(15, "15"), ("15", "15"), ("0.25", "0.25"), (100, "100")]
)
def test_a_percentage_is_an_integer_or_a_decimal_string(client, admin, given, kept):
    body = add_reward(client, admin, {**TWELVE_AND_A_HALF, "percent_off": given})
    assert body["percent_off"] == kept


@pytest.mark.parametrize("given", [12.5, "12.345", "0", 0, "100.01", 101, "-5", "1e1", True, ""])
def test_a_percentage_that_is_a_float_or_out_of_range_is_422(client, admin, given):
    response = client.post(
        "/v1/admin/rewards", json={**TWELVE_AND_A_HALF, "percent_off": given}, headers=admin
    )
    assert "percent_off" in problem(response, 422, "validation_error")["errors"]


def test_a_percent_discount_needs_its_percentage(client, admin):
    body = {**TWELVE_AND_A_HALF, "percent_off": None}
    response = client.post("/v1/admin/rewards", json=body, headers=admin)
    assert "percent_off" in problem(response, 422, "validation_error")["errors"]


def test_a_reward_is_worth_an_amount_or_a_percentage_not_both(client, admin):
    both = {**TWELVE_AND_A_HALF, "value_amount": 500}
    response = client.post("/v1/admin/rewards", json=both, headers=admin)
    assert "percent_off" in problem(response, 422, "validation_error")["errors"]


def test_a_change_giving_an_amount_reward_a_percentage_is_422(client, admin, five_off):
    response = client.patch(
        f"/v1/admin/rewards/{five_off['id']}", json={"percent_off": 10}, headers=admin
    )
    assert "percent_off" in problem(response, 422, "validation_error")["errors"]


def test_a_redeemed_code_expires_valid_days_after_it_was_redeemed(
    client, admin, app_key, member, five_off
):
    redemption = redeemed(client, admin, app_key, five_off)
    assert when(redemption["expires_at"]) - when(redemption["created_at"]) == 30 * DAY


def test_a_reward_without_valid_days_gives_codes_that_never_expire(
    client, admin, app_key, checkout, member
):
    redemption = redeemed(client, admin, app_key, add_reward(client, admin, FIVE_OFF))
    assert redemption["expires_at"] is None
    assert ok(validate(client, checkout, redemption["code"]))["expires_at"] is None


# --- validate ---------------------------------------------------------------------------------


def test_validating_says_whose_code_it_is_what_it_is_worth_and_that_it_is_usable(
    client, admin, app_key, checkout, member, five_off
):
    redemption = redeemed(client, admin, app_key, five_off)

    body = ok(validate(client, checkout, redemption["code"], member_id="c1"))

    assert body == {
        "code": redemption["code"],
        "usable": True,
        "status": "active",
        "member_id": "c1",
        "redemption_id": redemption["id"],
        "reward_id": five_off["id"],
        "reward": "5.00 off",
        "kind": "fixed_discount",
        "value": {"type": "fixed_amount", "amount": 500, "currency": "USD", "percent": None},
        "points": 400,
        "created_at": redemption["created_at"],
        "expires_at": redemption["expires_at"],
        "used_at": None,
        "used_order_id": None,
        "cancelled_at": None,
    }


def test_a_percent_code_is_worth_its_percentage(client, admin, app_key, checkout, member):
    redemption = redeemed(client, admin, app_key, add_reward(client, admin, TWELVE_AND_A_HALF))
    body = ok(validate(client, checkout, redemption["code"]))
    assert body["value"] == {
        "type": "percent_off",
        "amount": None,
        "currency": None,
        "percent": "12.5",
    }


def test_a_product_code_is_worth_nothing_off(client, admin, app_key, checkout, member):
    tote = add_reward(client, admin, {"name": "Tote", "kind": "product", "cost_points": 100})
    redemption = redeemed(client, admin, app_key, tote)
    assert ok(validate(client, checkout, redemption["code"]))["value"] is None


def test_validating_changes_nothing(client, admin, app_key, checkout, member, five_off):
    redemption = redeemed(client, admin, app_key, five_off)
    for _ in range(2):
        ok(validate(client, checkout, redemption["code"]))
    assert ok(consume(client, checkout, redemption["code"]))["status"] == "used"


def test_another_members_code_is_not_usable_for_this_member(
    client, admin, app_key, checkout, member, five_off
):
    redemption = redeemed(client, admin, app_key, five_off)
    created(client.post("/v1/members", json={"external_id": "c2"}, headers=checkout))

    body = ok(validate(client, checkout, redemption["code"], member_id="c2"))

    assert (body["usable"], body["status"], body["member_id"]) == (False, "active", "c1")


def test_an_unknown_code_is_404(client, checkout):
    problem(validate(client, checkout, "LOY-NOSUCHCODE"), 404, "not_found")


def test_a_code_past_its_expiry_is_expired_and_not_usable(
    client, admin, app_key, checkout, member, five_off, clock
):
    redemption = redeemed(client, admin, app_key, five_off)
    clock[0] = when(redemption["expires_at"]) - dt.timedelta(seconds=1)
    assert ok(validate(client, checkout, redemption["code"]))["usable"] is True

    clock[0] = when(redemption["expires_at"])
    body = ok(validate(client, checkout, redemption["code"]))

    assert (body["usable"], body["status"]) == (False, "expired")


# --- consume ----------------------------------------------------------------------------------


def test_consuming_uses_the_code_for_the_order(
    client, admin, app_key, checkout, member, five_off, clock
):
    redemption = redeemed(client, admin, app_key, five_off)

    body = ok(consume(client, checkout, redemption["code"], order_id="o-1"))

    assert (body["status"], body["usable"], body["used_order_id"]) == ("used", False, "o-1")
    assert when(body["used_at"]) == clock[0]
    after = ok(validate(client, checkout, redemption["code"], member_id="c1"))
    assert (after["status"], after["usable"]) == ("used", False)


def test_a_used_code_cannot_be_used_again(client, admin, app_key, checkout, member, five_off):
    code = redeemed(client, admin, app_key, five_off)["code"]
    ok(consume(client, checkout, code, order_id="o-1"))

    again = problem(consume(client, checkout, code, order_id="o-2"), 409, "reward_code_used")
    assert again["used_order_id"] == "o-1"
    problem(consume(client, checkout, code), 409, "reward_code_used")


def test_consuming_again_for_the_same_order_is_a_retry_with_the_same_answer(
    client, admin, app_key, checkout, member, five_off
):
    code = redeemed(client, admin, app_key, five_off)["code"]
    first = ok(consume(client, checkout, code, order_id="o-1"))

    assert ok(consume(client, checkout, code, order_id="o-1")) == first
    assert len(events(client.application, "reward.code_used")) == 1


def test_a_consume_replayed_with_its_idempotency_key_uses_the_code_once(
    client, admin, app_key, checkout, member, five_off
):
    code = redeemed(client, admin, app_key, five_off)["code"]
    key = {"Idempotency-Key": "consume-1"}
    first = consume(client, checkout, code, headers=key)
    again = consume(client, checkout, code, headers=key)

    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json == first.json
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(events(client.application, "reward.code_used")) == 1


def test_a_code_is_used_only_by_its_member(client, admin, app_key, checkout, member, five_off):
    code = redeemed(client, admin, app_key, five_off)["code"]
    created(client.post("/v1/members", json={"external_id": "c2"}, headers=checkout))

    problem(consume(client, checkout, code, member_id="c2"), 422, "reward_code_member_mismatch")
    assert ok(validate(client, checkout, code))["status"] == "active"


def test_an_expired_code_cannot_be_used(client, admin, app_key, checkout, member, five_off, clock):
    redemption = redeemed(client, admin, app_key, five_off)
    clock[0] = when(redemption["expires_at"])

    problem(consume(client, checkout, redemption["code"]), 409, "reward_code_expired")
    clock[0] = when(redemption["expires_at"]) - DAY
    assert ok(consume(client, checkout, redemption["code"]))["status"] == "used"


def test_consuming_an_unknown_code_is_404(client, checkout, member):
    problem(consume(client, checkout, "LOY-NOSUCHCODE"), 404, "not_found")


def test_consuming_announces_the_code_used(
    client, admin, app_key, checkout, member, five_off, clock
):
    redemption = redeemed(client, admin, app_key, five_off)
    ok(consume(client, checkout, redemption["code"], order_id="o-1"))

    assert events(client.application, "reward.code_used") == [
        {
            "id": redemption["id"],
            "member_id": "c1",
            "reward_id": five_off["id"],
            "reward": "5.00 off",
            "code": redemption["code"],
            "order_id": "o-1",
            "used_at": clock[0].isoformat(),
        }
    ]


@pytest.mark.parametrize("path", ["validate", "consume"])
def test_codes_are_the_checkouts(client, app_key, path):
    body = {"code": "LOY-1", "member_id": "c1"}
    response = client.post(f"/v1/reward-codes/{path}", json=body, headers=app_key)
    problem(response, 403, "forbidden")


# --- cancel -----------------------------------------------------------------------------------


def test_cancelling_gives_the_points_and_the_unit_back_in_one_ledger_transaction(
    app, client, admin, app_key, checkout, member, five_off
):
    redemption = redeemed(client, admin, app_key, five_off)
    assert (available(client, app_key), stock(client, admin, five_off["id"])) == (0, 9)

    body = ok(cancel(client, app_key, redemption["id"]))

    assert (body["status"], body["usable"]) == ("cancelled", False)
    assert body["cancelled_at"] is not None
    assert (available(client, app_key), stock(client, admin, five_off["id"])) == (400, 10)
    assert restore_transactions(app) == [(f"reward_redemption:{redemption['id']}", 400)]


def test_cancelled_points_go_back_into_the_lots_they_were_spent_from(
    app, client, admin, app_key, member, five_off
):
    give(client, admin, 100)
    give(client, admin, 300)
    created(redeem(client, app_key, five_off["id"]))
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(RewardAllocation.id))) == 2
        assert db.session.scalars(sa.select(PointLot.remaining)).all() == [0, 0]

    [redemption_id] = redemption_ids(app)
    ok(cancel(client, app_key, redemption_id))

    with app.app_context():
        lots = db.session.scalars(sa.select(PointLot).order_by(PointLot.id)).all()
        assert [(lot.points, lot.remaining) for lot in lots] == [(100, 100), (300, 300)]


def redemption_ids(app: Flask) -> list[str]:
    with app.app_context():
        return [str(i) for i in db.session.scalars(sa.select(RewardRedemption.public_id))]


def test_a_cancelled_code_cannot_be_used(client, admin, app_key, checkout, member, five_off):
    redemption = redeemed(client, admin, app_key, five_off)
    ok(cancel(client, app_key, redemption["id"]))

    assert ok(validate(client, checkout, redemption["code"]))["status"] == "cancelled"
    problem(consume(client, checkout, redemption["code"]), 409, "reward_code_cancelled")


def test_cancelling_again_gives_back_nothing_more(app, client, admin, app_key, member, five_off):
    redemption = redeemed(client, admin, app_key, five_off)
    first = ok(cancel(client, app_key, redemption["id"]))

    assert ok(cancel(client, app_key, redemption["id"])) == first
    assert available(client, app_key) == 400
    assert len(restore_transactions(app)) == 1
    assert len(events(app, "reward.redemption_cancelled")) == 1


def test_a_used_code_cannot_be_cancelled(app, client, admin, app_key, checkout, member, five_off):
    redemption = redeemed(client, admin, app_key, five_off)
    ok(consume(client, checkout, redemption["code"]))

    problem(cancel(client, app_key, redemption["id"]), 409, "reward_code_used")
    assert (available(client, app_key), stock(client, admin, five_off["id"])) == (0, 9)
    assert restore_transactions(app) == []


def test_an_expired_code_cannot_be_cancelled(app, client, admin, app_key, member, five_off, clock):
    redemption = redeemed(client, admin, app_key, five_off)
    clock[0] = when(redemption["expires_at"])

    problem(cancel(client, app_key, redemption["id"]), 409, "reward_code_expired")
    assert restore_transactions(app) == []


def test_a_cancelled_pooled_code_goes_back_to_the_pool_for_the_next_member(
    client, admin, app_key, checkout, member
):
    coffee = add_reward(
        client, admin, {"name": "Coffee", "kind": "coupon", "cost_points": 200, "codes": ["CAFE"]}
    )
    first = redeemed(client, admin, app_key, coffee)
    ok(cancel(client, app_key, first["id"]))
    created(client.post("/v1/members", json={"external_id": "c2"}, headers=checkout))
    give(client, admin, 200, "c2")

    second = created(redeem(client, app_key, coffee["id"], "c2"))

    assert second["code"] == first["code"] == "CAFE"
    body = ok(validate(client, checkout, "CAFE"))
    assert (body["member_id"], body["status"]) == ("c2", "active")
    assert ok(consume(client, checkout, "CAFE", member_id="c2"))["status"] == "used"


def test_a_cancelled_redemption_no_longer_counts_against_the_per_member_limit(
    client, admin, app_key, member
):
    once = add_reward(client, admin, {**FIVE_OFF, "per_member_limit": 1})
    redemption = redeemed(client, admin, app_key, once)
    ok(cancel(client, app_key, redemption["id"]))

    assert created(redeem(client, app_key, once["id"]))["code"] != redemption["code"]


def test_cancelling_is_audited_and_announced(app, client, admin, app_key, member, five_off):
    redemption = redeemed(client, admin, app_key, five_off)
    body = ok(cancel(client, admin, redemption["id"]))

    with app.app_context():
        entry = db.session.scalars(
            sa.select(AuditEntry).where(AuditEntry.action == "reward_redemption.cancel")
        ).one()
        assert (entry.target_id, entry.before["status"], entry.after["status"]) == (
            redemption["id"],
            "active",
            "cancelled",
        )
    assert events(app, "reward.redemption_cancelled") == [
        {
            "id": redemption["id"],
            "member_id": "c1",
            "reward_id": five_off["id"],
            "reward": "5.00 off",
            "code": redemption["code"],
            "points_restored": 400,
            "cancelled_at": body["cancelled_at"],
        }
    ]


def test_another_members_redemption_cannot_be_cancelled_through_this_member(
    client, admin, app_key, checkout, member, five_off
):
    redemption = redeemed(client, admin, app_key, five_off)
    created(client.post("/v1/members", json={"external_id": "c2"}, headers=checkout))

    problem(cancel(client, app_key, redemption["id"], member_id="c2"), 404, "not_found")


def test_cancelling_is_for_the_app_and_admins(client, admin, app_key, checkout, member, five_off):
    redemption = redeemed(client, admin, app_key, five_off)
    problem(cancel(client, checkout, redemption["id"]), 403, "forbidden")


def test_a_redemption_from_before_lots_were_kept_is_cancelled_into_a_new_lot(
    app, client, admin, app_key, member, five_off
):
    redemption = redeemed(client, admin, app_key, five_off)
    with app.app_context():
        db.session.execute(sa.delete(RewardAllocation))
        db.session.commit()

    ok(cancel(client, app_key, redemption["id"]))

    assert available(client, app_key) == 400
    with app.app_context():
        remaining = db.session.scalars(sa.select(PointLot.remaining).order_by(PointLot.id))
        assert remaining.all() == [0, 400]
