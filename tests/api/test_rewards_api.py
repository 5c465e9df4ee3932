"""The rewards catalog over HTTP: admins manage rewards, the app lists what a member may
redeem now (and why anything shown is locked), and members redeem rewards for points.

Redeeming deducts the points and hands out the reward's code in one ledger transaction; any
refusal charges nothing and takes no stock. Points are given by admin adjustments, which are
available at once; after every test the whole ledger must verify.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from loyalty.db import utcnow
from loyalty.extensions import db
from loyalty.ledger import queries
from loyalty.ledger.models import LedgerTransaction, TransactionKind
from loyalty.rewards.models import RewardCode, RewardRedemption
from tests.helpers import created, problem

# After every test the whole ledger must verify.
pytestmark = pytest.mark.usefixtures("ledger_verifies_after_each_test")

DAY = dt.timedelta(days=1)

TOTE = {"name": "Tote bag", "kind": "product", "cost_points": 500}
FIVE_OFF = {"name": "5.00 off", "kind": "fixed_discount", "cost_points": 400, "value_amount": 500}
COFFEE = {"name": "Free coffee", "kind": "coupon", "cost_points": 200}


# --- helpers -------------------------------------------------------------------------------


@pytest.fixture
def gold(client: FlaskClient, admin: dict[str, str]) -> None:
    """Two tiers: Silver from 100 qualifying points, Gold from 500."""
    for tier in (
        {"code": "silver", "name": "Silver", "rank": 1, "threshold": 100},
        {"code": "gold", "name": "Gold", "rank": 2, "threshold": 500},
    ):
        assert client.post("/v1/admin/tiers", json=tier, headers=admin).status_code == 201


def iso(moment: dt.datetime) -> str:
    return moment.isoformat()


def add_reward(client: FlaskClient, admin: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    return created(client.post("/v1/admin/rewards", json=body, headers=admin))


def give(client: FlaskClient, admin: dict[str, str], points: int, external_id: str = "c1") -> None:
    response = client.post(
        f"/v1/admin/members/{external_id}/adjustments",
        json={"points": points, "reason": "test"},
        headers=admin,
    )
    assert response.status_code == 201, response.json


def reach_tier(client: FlaskClient, admin: dict[str, str], checkout: dict[str, str], dollars: int):
    """Qualifying points come from orders: place one worth `dollars` under a 1-point rule."""
    rule = {"name": "1 point per dollar", "kind": "spend", "points": 1, "per_amount": 100}
    created(client.post("/v1/admin/rules", json=rule, headers=admin))
    body = {
        "order_id": f"o{dollars}",
        "member_id": "c1",
        "currency": "USD",
        "lines": [{"sku": "tee", "quantity": 1, "unit_price": dollars * 100}],
    }
    created(client.post("/v1/orders", json=body, headers=checkout))


def available(client: FlaskClient, headers: dict[str, str], external_id: str = "c1") -> int:
    response = client.get(f"/v1/members/{external_id}", headers=headers)
    assert response.status_code == 200, response.json
    return response.json["balance"]["available"]


def redeem(
    client: FlaskClient,
    headers: dict[str, str],
    reward_id: str,
    external_id: str = "c1",
    **extra_headers: str,
) -> TestResponse:
    return client.post(
        f"/v1/members/{external_id}/reward-redemptions",
        json={"reward_id": reward_id},
        headers={**headers, **extra_headers},
    )


def catalog(client: FlaskClient, headers: dict[str, str], external_id: str = "c1") -> list[Any]:
    response = client.get(f"/v1/rewards?member_id={external_id}", headers=headers)
    assert response.status_code == 200, response.json
    return response.json["items"]


def shown(client: FlaskClient, headers: dict[str, str]) -> dict[str, tuple[bool, str | None]]:
    """The catalog as {reward name: (redeemable, locked_reason)}."""
    return {i["name"]: (i["redeemable"], i["locked_reason"]) for i in catalog(client, headers)}


def stock(client: FlaskClient, admin: dict[str, str], reward_id: str) -> int | None:
    return client.get(f"/v1/admin/rewards/{reward_id}", headers=admin).json["stock"]


def redeem_transactions(app: Flask) -> list[tuple[str | None, int]]:
    with app.app_context():
        txns = db.session.execute(
            sa.select(LedgerTransaction)
            .where(LedgerTransaction.kind == TransactionKind.REDEEM.value)
            .order_by(LedgerTransaction.id)
        ).scalars()
        return [(txn.reference, queries.member_points_delta(txn)) for txn in txns]


def redemptions(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count(RewardRedemption.id)))


def assert_nothing_charged(app, client, app_key, points_before):
    assert available(client, app_key) == points_before
    assert redeem_transactions(app) == []
    assert redemptions(app) == 0


# --- admin: the catalog --------------------------------------------------------------------


def test_creating_a_reward_returns_201_with_the_reward(client, admin, gold):
    starts_at = (utcnow() - DAY).replace(microsecond=0)
    ends_at = starts_at + 30 * DAY

    body = add_reward(
        client,
        admin,
        {
            **FIVE_OFF,
            "description": "On any order",
            "stock": 100,
            "min_tier": "gold",
            "per_member_limit": 2,
            "valid_days": 30,
            "starts_at": iso(starts_at),
            "ends_at": iso(ends_at),
        },
    )

    assert uuid.UUID(body["id"])
    assert {k: v for k, v in body.items() if k not in ("id", "starts_at", "ends_at")} == {
        "name": "5.00 off",
        "description": "On any order",
        "kind": "fixed_discount",
        "cost_points": 400,
        "value": {"amount": 500, "currency": "USD"},
        "percent_off": None,
        "valid_days": 30,
        "stock": 100,
        "min_tier": "gold",
        "segments": [],
        "per_member_limit": 2,
        "active": True,
    }
    assert dt.datetime.fromisoformat(body["starts_at"]) == starts_at
    assert dt.datetime.fromisoformat(body["ends_at"]) == ends_at


def test_a_reward_is_unlimited_for_anyone_and_always_open_unless_told(client, admin):
    body = add_reward(client, admin, TOTE)

    assert body["stock"] is None
    assert body["min_tier"] is None
    assert body["per_member_limit"] is None
    assert (body["starts_at"], body["ends_at"]) == (None, None)
    assert body["value"] is None
    assert body["active"] is True


def test_a_reward_is_read_by_its_id(client, admin):
    reward = add_reward(client, admin, TOTE)

    response = client.get(f"/v1/admin/rewards/{reward['id']}", headers=admin)

    assert response.status_code == 200
    assert response.json == reward


def test_rewards_are_listed_newest_first(client, admin):
    first = add_reward(client, admin, TOTE)
    second = add_reward(client, admin, FIVE_OFF)

    response = client.get("/v1/admin/rewards", headers=admin)

    assert response.status_code == 200
    assert [r["id"] for r in response.json["items"]] == [second["id"], first["id"]]


def test_patch_changes_only_what_it_names(client, admin):
    reward = add_reward(client, admin, {**TOTE, "stock": 10})

    response = client.patch(
        f"/v1/admin/rewards/{reward['id']}", json={"stock": 50, "cost_points": 600}, headers=admin
    )

    assert response.status_code == 200, response.json
    assert response.json == {**reward, "stock": 50, "cost_points": 600}


def test_patch_sets_and_clears_the_tier_restriction(client, admin, gold):
    reward = add_reward(client, admin, TOTE)
    path = f"/v1/admin/rewards/{reward['id']}"

    assert client.patch(path, json={"min_tier": "gold"}, headers=admin).json["min_tier"] == "gold"
    assert client.patch(path, json={"min_tier": None}, headers=admin).json["min_tier"] is None


def test_patch_naming_nothing_is_422(client, admin):
    reward = add_reward(client, admin, TOTE)

    response = client.patch(f"/v1/admin/rewards/{reward['id']}", json={}, headers=admin)

    problem(response, 422, "validation_error")


def test_deactivating_takes_a_reward_out_of_the_catalog_but_keeps_it(
    client, admin, app_key, member
):
    reward = add_reward(client, admin, TOTE)

    response = client.post(f"/v1/admin/rewards/{reward['id']}/deactivate", headers=admin)

    assert response.status_code == 200
    assert response.json == {**reward, "active": False}
    listed = client.get("/v1/admin/rewards?active=false", headers=admin).json["items"]
    assert [r["id"] for r in listed] == [reward["id"]]
    assert client.get("/v1/admin/rewards?active=true", headers=admin).json["items"] == []
    assert catalog(client, app_key) == []


def test_a_deactivated_reward_can_be_reactivated(client, admin, app_key, member):
    reward = add_reward(client, admin, TOTE)
    client.post(f"/v1/admin/rewards/{reward['id']}/deactivate", headers=admin)

    response = client.patch(
        f"/v1/admin/rewards/{reward['id']}", json={"active": True}, headers=admin
    )

    assert response.json["active"] is True
    assert [i["id"] for i in catalog(client, app_key)] == [reward["id"]]


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [("get", "", None), ("patch", "", {"stock": 1}), ("post", "/deactivate", None)],
)
def test_an_unknown_reward_is_404(client, admin, method, suffix, body):
    path = f"/v1/admin/rewards/{uuid.uuid4()}{suffix}"

    problem(getattr(client, method)(path, json=body, headers=admin), 404, "not_found")


def test_a_reward_id_that_is_not_a_uuid_is_404(client, admin):
    problem(client.get("/v1/admin/rewards/tote", headers=admin), 404, "not_found")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": ""}, "name"),
        ({"kind": "voucher"}, "kind"),
        ({"cost_points": 0}, "cost_points"),
        ({"cost_points": "500"}, "cost_points"),
        ({"stock": -1}, "stock"),
        ({"per_member_limit": 0}, "per_member_limit"),
        ({"kind": "fixed_discount"}, "value_amount"),
        ({"value_amount": 0}, "value_amount"),
        ({"starts_at": "2030-01-02T00:00:00Z", "ends_at": "2030-01-01T00:00:00Z"}, "ends_at"),
        ({"starts_at": "2030-01-01T00:00:00"}, "starts_at"),
        ({"min_tier": "diamond"}, "min_tier"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_an_invalid_reward_is_422_naming_the_field(client, admin, change, field):
    response = client.post("/v1/admin/rewards", json={**TOTE, **change}, headers=admin)

    found = problem(response, 422, "validation_error")
    assert field in found["errors"]
    assert client.get("/v1/admin/rewards", headers=admin).json["items"] == []


def test_the_catalog_is_managed_by_admins_only(client, checkout, app_key):
    for headers in (checkout, app_key):
        assert client.get("/v1/admin/rewards", headers=headers).status_code == 403
        assert client.post("/v1/admin/rewards", json=TOTE, headers=headers).status_code == 403


# --- the member's catalog ------------------------------------------------------------------


def test_the_catalog_shows_what_the_member_can_redeem_cheapest_first(
    client, admin, app_key, member
):
    give(client, admin, 1000)
    tote = add_reward(client, admin, TOTE)
    five_off = add_reward(client, admin, FIVE_OFF)

    items = catalog(client, app_key)

    assert [i["id"] for i in items] == [five_off["id"], tote["id"]]
    assert items[1] == {**tote, "redeemable": True, "locked_reason": None}


def test_the_catalog_hides_inactive_rewards_and_rewards_outside_their_window(
    client, admin, app_key, member
):
    now = utcnow()
    add_reward(client, admin, {**TOTE, "name": "open"})
    add_reward(client, admin, {**TOTE, "name": "inactive", "active": False})
    add_reward(client, admin, {**TOTE, "name": "upcoming", "starts_at": iso(now + DAY)})
    add_reward(
        client,
        admin,
        {**TOTE, "name": "ended", "starts_at": iso(now - 2 * DAY), "ends_at": iso(now - DAY)},
    )
    add_reward(
        client,
        admin,
        {**TOTE, "name": "running", "starts_at": iso(now - DAY), "ends_at": iso(now + DAY)},
    )

    assert sorted(shown(client, app_key)) == ["open", "running"]


def test_a_reward_above_the_members_tier_is_locked_until_they_reach_it(
    client, admin, checkout, app_key, gold, member
):
    give(client, admin, 1000)
    add_reward(client, admin, {**TOTE, "min_tier": "gold"})

    assert shown(client, app_key) == {"Tote bag": (False, "reach Gold")}


def test_a_member_of_the_required_tier_or_above_may_redeem_it(
    client, admin, checkout, app_key, gold, member
):
    give(client, admin, 1000)
    add_reward(client, admin, {**TOTE, "min_tier": "silver"})
    reach_tier(client, admin, checkout, 600)  # Gold

    assert shown(client, app_key) == {"Tote bag": (True, None)}


def test_a_reward_redeemed_up_to_its_per_member_limit_is_locked(client, admin, app_key, member):
    give(client, admin, 2000)
    reward = add_reward(client, admin, {**TOTE, "per_member_limit": 1})
    created(redeem(client, app_key, reward["id"]))

    assert shown(client, app_key) == {"Tote bag": (False, "limit reached")}


def test_a_reward_without_stock_is_shown_out_of_stock(client, admin, app_key, member):
    give(client, admin, 1000)
    add_reward(client, admin, {**TOTE, "stock": 0})

    assert shown(client, app_key) == {"Tote bag": (False, "out of stock")}


def test_a_coupon_whose_pool_is_used_up_is_shown_out_of_stock(client, admin, app_key, member):
    give(client, admin, 1000)
    reward = add_reward(client, admin, {**COFFEE, "codes": ["ONLY-ONE"]})
    created(redeem(client, app_key, reward["id"]))

    assert shown(client, app_key) == {"Free coffee": (False, "out of stock")}


def test_a_reward_the_member_cannot_afford_says_how_many_points_are_missing(
    client, admin, app_key, member
):
    give(client, admin, 120)
    add_reward(client, admin, TOTE)

    assert shown(client, app_key) == {"Tote bag": (False, "380 more points needed")}


def test_pending_points_do_not_count_towards_a_reward(client, admin, checkout, app_key, member):
    reach_tier(client, admin, checkout, 600)  # 600 points, pending for 14 days
    add_reward(client, admin, TOTE)

    assert shown(client, app_key) == {"Tote bag": (False, "500 more points needed")}


def test_the_catalog_of_an_unknown_member_is_404(client, app_key):
    problem(client.get("/v1/rewards?member_id=nobody", headers=app_key), 404, "not_found")


def test_the_catalog_needs_a_member_id(client, app_key):
    found = problem(client.get("/v1/rewards", headers=app_key), 422, "validation_error")

    assert "member_id" in found["errors"]


# --- redeeming -----------------------------------------------------------------------------


def test_redeeming_returns_201_with_a_generated_code_and_deducts_the_points(
    app, client, admin, app_key, member
):
    give(client, admin, 1000)
    reward = add_reward(client, admin, TOTE)

    response = redeem(client, app_key, reward["id"])

    body = created(response)
    assert uuid.UUID(body["id"])
    assert body["reward_id"] == reward["id"]
    assert body["member_id"] == "c1"
    assert body["points"] == 500
    assert body["code"]
    assert dt.datetime.fromisoformat(body["created_at"]).utcoffset() == dt.timedelta(0)
    assert available(client, app_key) == 500
    assert redeem_transactions(app) == [(f"reward:{reward['id']}", -500)]


def test_each_redemption_gets_its_own_generated_code(client, admin, app_key, member):
    give(client, admin, 1000)
    reward = add_reward(client, admin, COFFEE)

    codes = {created(redeem(client, app_key, reward["id"]))["code"] for _ in range(3)}

    assert len(codes) == 3


def test_a_coupon_hands_out_the_loaded_codes_in_the_order_they_were_loaded(
    client, admin, app_key, member
):
    give(client, admin, 1000)
    reward = add_reward(client, admin, {**COFFEE, "codes": ["CAFE-B", "CAFE-A"]})
    client.patch(f"/v1/admin/rewards/{reward['id']}", json={"codes": ["CAFE-C"]}, headers=admin)

    codes = [created(redeem(client, app_key, reward["id"]))["code"] for _ in range(3)]

    assert codes == ["CAFE-B", "CAFE-A", "CAFE-C"]


def test_loading_a_code_twice_adds_it_once(app, client, admin):
    reward = add_reward(client, admin, {**COFFEE, "codes": ["CAFE-A", "CAFE-A"]})

    client.patch(f"/v1/admin/rewards/{reward['id']}", json={"codes": ["CAFE-A"]}, headers=admin)

    with app.app_context():
        assert db.session.scalars(sa.select(RewardCode.code)).all() == ["CAFE-A"]


def test_redeeming_takes_exactly_one_unit_of_stock(client, admin, app_key, member):
    give(client, admin, 2000)
    reward = add_reward(client, admin, {**TOTE, "stock": 3})

    created(redeem(client, app_key, reward["id"]))
    created(redeem(client, app_key, reward["id"]))

    assert stock(client, admin, reward["id"]) == 1


def test_redeeming_an_unlimited_reward_leaves_its_stock_unlimited(client, admin, app_key, member):
    give(client, admin, 1000)
    reward = add_reward(client, admin, TOTE)

    created(redeem(client, app_key, reward["id"]))

    assert stock(client, admin, reward["id"]) is None


def test_the_last_unit_can_be_redeemed_and_then_the_reward_is_out_of_stock(
    app, client, admin, app_key, member
):
    give(client, admin, 2000)
    reward = add_reward(client, admin, {**TOTE, "stock": 1})
    created(redeem(client, app_key, reward["id"]))

    problem(redeem(client, app_key, reward["id"]), 422, "out_of_stock")

    assert stock(client, admin, reward["id"]) == 0
    assert available(client, app_key) == 1500
    assert redemptions(app) == 1


def refused_redemption(client, admin, app_key, points, body, code):
    """c1 given `points` and a reward made from `body`: redeeming it is a 422 `code`."""
    give(client, admin, points)
    reward = add_reward(client, admin, body)
    problem(redeem(client, app_key, reward["id"]), 422, code)
    return reward


def test_a_reward_without_stock_is_422_out_of_stock_and_charges_nothing(
    app, client, admin, app_key, member
):
    reward = refused_redemption(client, admin, app_key, 1000, {**TOTE, "stock": 0}, "out_of_stock")

    assert_nothing_charged(app, client, app_key, 1000)
    assert stock(client, admin, reward["id"]) == 0


def test_a_coupon_whose_pool_is_empty_is_422_out_of_stock_and_charges_nothing(
    app, client, admin, app_key, member
):
    give(client, admin, 1000)
    reward = add_reward(client, admin, {**COFFEE, "codes": ["CAFE-A"]})
    created(redeem(client, app_key, reward["id"]))

    problem(redeem(client, app_key, reward["id"]), 422, "out_of_stock")

    assert available(client, app_key) == 800
    assert redemptions(app) == 1


def test_redeeming_without_enough_points_is_422_insufficient_points_and_charges_nothing(
    app, client, admin, app_key, member
):
    reward = refused_redemption(
        client, admin, app_key, 499, {**TOTE, "stock": 5}, "insufficient_points"
    )

    assert_nothing_charged(app, client, app_key, 499)
    assert stock(client, admin, reward["id"]) == 5


def test_redeeming_above_the_members_tier_is_422_reward_unavailable_and_charges_nothing(
    app, client, admin, app_key, gold, member
):
    give(client, admin, 1000)
    reward = add_reward(client, admin, {**TOTE, "min_tier": "gold", "stock": 5})

    found = problem(redeem(client, app_key, reward["id"]), 422, "reward_unavailable")

    assert "reach Gold" in found["detail"]
    assert_nothing_charged(app, client, app_key, 1000)
    assert stock(client, admin, reward["id"]) == 5


def test_redeeming_past_the_per_member_limit_is_422_reward_unavailable_and_charges_nothing(
    app, client, admin, app_key, member
):
    give(client, admin, 2000)
    reward = add_reward(client, admin, {**TOTE, "per_member_limit": 2, "stock": 5})
    created(redeem(client, app_key, reward["id"]))
    created(redeem(client, app_key, reward["id"]))

    found = problem(redeem(client, app_key, reward["id"]), 422, "reward_unavailable")

    assert "limit reached" in found["detail"]
    assert available(client, app_key) == 1000
    assert redemptions(app) == 2
    assert stock(client, admin, reward["id"]) == 3


def test_the_per_member_limit_counts_each_member_separately(client, admin, checkout, app_key):
    for external_id in ("c1", "c2"):
        client.post("/v1/members", json={"external_id": external_id}, headers=checkout)
        give(client, admin, 1000, external_id)
    reward = add_reward(client, admin, {**TOTE, "per_member_limit": 1})

    created(redeem(client, app_key, reward["id"], "c1"))

    created(redeem(client, app_key, reward["id"], "c2"))


@pytest.mark.parametrize(
    "window",
    [
        pytest.param({"active": False}, id="inactive"),
        pytest.param({"starts_at": 1}, id="not-yet-started"),
        pytest.param({"starts_at": -2, "ends_at": -1}, id="ended"),
    ],
)
def test_redeeming_a_reward_that_is_not_open_is_422_reward_unavailable_and_charges_nothing(
    app, client, admin, app_key, member, window
):
    give(client, admin, 1000)
    now = utcnow()
    body = {
        key: iso(now + value * DAY) if key in ("starts_at", "ends_at") else value
        for key, value in window.items()
    }
    reward = add_reward(client, admin, {**TOTE, "stock": 5, **body})

    problem(redeem(client, app_key, reward["id"]), 422, "reward_unavailable")

    assert_nothing_charged(app, client, app_key, 1000)
    assert stock(client, admin, reward["id"]) == 5


@pytest.mark.parametrize("status", ["suspended", "closed"])
def test_an_inactive_member_cannot_redeem_422_member_inactive(
    app, client, admin, app_key, member, status
):
    give(client, admin, 1000)
    reward = add_reward(client, admin, {**TOTE, "stock": 5})
    response = client.patch("/v1/admin/members/c1", json={"status": status}, headers=admin)
    assert response.status_code == 200, response.json

    problem(redeem(client, app_key, reward["id"]), 422, "member_inactive")

    # Closing forfeited the points; a suspension keeps them.
    assert_nothing_charged(app, client, app_key, 1000 if status == "suspended" else 0)
    assert stock(client, admin, reward["id"]) == 5


def test_redeeming_an_unknown_reward_is_404(app, client, admin, app_key, member):
    give(client, admin, 1000)

    problem(redeem(client, app_key, str(uuid.uuid4())), 404, "not_found")

    assert_nothing_charged(app, client, app_key, 1000)


def test_redeeming_for_an_unknown_member_is_404(client, admin, app_key):
    reward = add_reward(client, admin, {**TOTE, "stock": 5})

    problem(redeem(client, app_key, reward["id"], "nobody"), 404, "not_found")

    assert stock(client, admin, reward["id"]) == 5


@pytest.mark.parametrize("body", [{}, {"reward_id": "tote"}, {"reward_id": None}])
def test_a_redemption_needs_a_reward_id(client, app_key, member, body):
    response = client.post("/v1/members/c1/reward-redemptions", json=body, headers=app_key)

    found = problem(response, 422, "validation_error")
    assert "reward_id" in found["errors"]


def test_replaying_a_redemption_with_its_idempotency_key_redeems_once(
    app, client, admin, app_key, member
):
    give(client, admin, 2000)
    reward = add_reward(client, admin, {**TOTE, "stock": 5})
    first = redeem(client, app_key, reward["id"], **{"Idempotency-Key": "tap-1"})

    again = redeem(client, app_key, reward["id"], **{"Idempotency-Key": "tap-1"})

    assert first.status_code == 201
    assert (again.status_code, again.json) == (first.status_code, first.json)
    assert available(client, app_key) == 1500
    assert stock(client, admin, reward["id"]) == 4
    assert redemptions(app) == 1
    assert len(redeem_transactions(app)) == 1


def test_a_new_idempotency_key_redeems_again(app, client, admin, app_key, member):
    give(client, admin, 2000)
    reward = add_reward(client, admin, TOTE)
    first = created(redeem(client, app_key, reward["id"], **{"Idempotency-Key": "tap-1"}))

    second = created(redeem(client, app_key, reward["id"], **{"Idempotency-Key": "tap-2"}))

    assert second["id"] != first["id"]
    assert available(client, app_key) == 1000


def test_an_idempotency_key_reused_for_another_reward_is_422(client, admin, app_key, member):
    give(client, admin, 2000)
    tote = add_reward(client, admin, TOTE)
    five_off = add_reward(client, admin, FIVE_OFF)
    created(redeem(client, app_key, tote["id"], **{"Idempotency-Key": "tap-1"}))

    response = redeem(client, app_key, five_off["id"], **{"Idempotency-Key": "tap-1"})

    problem(response, 422, "idempotency_key_reused")
    assert available(client, app_key) == 1500


def test_redemptions_are_made_by_the_app(client, admin, checkout, member):
    reward = add_reward(client, admin, TOTE)

    assert redeem(client, checkout, reward["id"]).status_code == 403
    assert client.get("/v1/rewards?member_id=c1", headers=checkout).status_code == 403
