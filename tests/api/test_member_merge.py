"""Merging a duplicate member into another: points, lots, holds, orders, history and tier
move in one transaction, and the ledger still verifies."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from loyalty.extensions import db
from loyalty.members.exceptions import MemberClosed
from loyalty.membership import merging
from loyalty.webhooks.models import OutboxEvent
from tests.api.checkout_calls import balance, enroll, give, hold, order, refund, settings
from tests.concurrency import race, race_requests, raised
from tests.helpers import ok, problem

# After every test the whole ledger must verify.
pytestmark = pytest.mark.usefixtures("ledger_verifies_after_each_test")


def merge(client, admin, duplicate="dup", into="c1"):
    return client.post(f"/v1/admin/members/{duplicate}/merge", json={"into": into}, headers=admin)


@pytest.fixture
def pair(client, checkout, admin):
    """c1 with 100 points and its duplicate "dup" with 300."""
    enroll(client, checkout, "c1")
    enroll(client, checkout, "dup")
    give(client, admin, "c1", 100)
    give(client, admin, "dup", 300)


def test_the_duplicates_points_move_to_the_survivor(client, admin, checkout, pair):
    card = ok(merge(client, admin))

    assert card["external_id"] == "c1"
    assert balance(client, checkout) == {"available": 400, "pending": 0, "held": 0}
    assert balance(client, checkout, "dup") == {"available": 0, "pending": 0, "held": 0}
    report = ok(client.get("/v1/admin/reports/liability", headers=admin))
    assert (report["outstanding"], report["consistent"]) == (400, True)


def test_pending_points_move_with_their_order_and_its_refund_reverses_them(
    client, admin, checkout, rule, pair
):
    order(client, checkout, member_id="dup")  # 62 pending

    merge(client, admin)
    assert balance(client, checkout)["pending"] == 62

    refund(client, checkout, {"refund_id": "r1", "amount": 6200})
    assert balance(client, checkout) == {"available": 400, "pending": 0, "held": 0}


def test_an_open_hold_moves_and_can_still_be_captured(client, admin, checkout, pair):
    held = hold(client, checkout, 200, "dup")

    merge(client, admin)

    assert balance(client, checkout) == {"available": 200, "pending": 0, "held": 200}
    captured = client.post(f"/v1/redemptions/{held['redemption_id']}/capture", headers=checkout)
    assert captured.json["status"] == "captured"
    assert balance(client, checkout)["held"] == 0


def test_a_debt_on_the_duplicate_is_repaid_from_the_survivors_points(client, admin, checkout, rule):
    settings(client, admin, pending_days=0, min_redemption_points=1)
    enroll(client, checkout, "c1")
    enroll(client, checkout, "dup")
    give(client, admin, "c1", 100)
    order(client, checkout, member_id="dup")  # 62 available at once
    spent = hold(client, checkout, 62, "dup")
    client.post(f"/v1/redemptions/{spent['redemption_id']}/capture", headers=checkout)
    refund(client, checkout, {"refund_id": "r1", "amount": 6200})
    assert balance(client, checkout, "dup")["available"] == -62

    merge(client, admin)

    assert balance(client, checkout)["available"] == 38


def test_the_survivors_history_lists_the_duplicates_transactions(client, admin, checkout, pair):
    merge(client, admin)

    history = ok(client.get("/v1/members/c1/transactions", headers=checkout))["items"]
    assert [(item["kind"], item["points"]) for item in history] == [
        ("merge", 300),
        ("merge", -300),
        ("adjust", 300),
        ("adjust", 100),
    ]


def test_the_survivor_counts_both_members_qualifying_points_for_their_tier(
    client, admin, checkout, program
):
    enroll(client, checkout, "c1")
    enroll(client, checkout, "dup")
    order(
        client,
        checkout,
        "o1",
        member_id="c1",
        lines=[{"sku": "a", "quantity": 1, "unit_price": 15_000}],
    )
    order(
        client,
        checkout,
        "o2",
        member_id="dup",
        lines=[{"sku": "b", "quantity": 1, "unit_price": 40_000}],
    )
    assert ok(client.get("/v1/members/c1", headers=checkout))["tier"]["code"] == "silver"

    after = ok(merge(client, admin))

    assert (after["tier"]["code"], after["tier_progress"]["qualifying_points"]) == ("gold", 550)


def test_the_survivor_keeps_the_duplicates_higher_tier(client, admin, checkout, program):
    enroll(client, checkout, "c1")
    enroll(client, checkout, "dup")
    order(
        client,
        checkout,
        "o2",
        member_id="dup",
        lines=[{"sku": "b", "quantity": 1, "unit_price": 60_000}],
    )

    after = ok(merge(client, admin))

    assert after["tier"]["code"] == "gold"
    history = ok(client.get("/v1/admin/members/c1/tier-history", headers=admin))["items"]
    assert history[0]["to_tier"] == "gold"


def test_the_duplicate_is_closed_and_can_no_longer_earn(client, admin, checkout, rule, pair):
    merge(client, admin)

    assert ok(client.get("/v1/members/dup", headers=checkout))["status"] == "closed"
    problem(order(client, checkout, member_id="dup"), 422, "member_inactive")


def test_merging_again_answers_the_same_and_moves_nothing_more(client, admin, checkout, pair):
    first = ok(merge(client, admin))

    again = ok(merge(client, admin))

    assert again["balance"] == first["balance"]
    log = ok(client.get("/v1/admin/audit-log?target_id=dup", headers=admin))["items"]
    assert [entry["action"] for entry in log].count("member.merge") == 1


def test_a_member_cannot_be_merged_into_itself(client, admin, pair):
    problem(merge(client, admin, "c1", "c1"), 422, "merge_into_itself")


def test_nothing_merges_into_a_closed_member(client, admin, pair):
    client.patch("/v1/admin/members/c1", json={"status": "closed"}, headers=admin)

    problem(merge(client, admin), 409, "member_closed")


def test_merging_an_unknown_member_is_a_404(client, admin, pair):
    problem(merge(client, admin, "nobody"), 404, "not_found")
    problem(merge(client, admin, "dup", "nobody"), 404, "not_found")


def test_a_merge_is_announced(client, admin, app, pair):
    merge(client, admin)

    with app.app_context():
        payload = db.session.scalar(
            sa.select(OutboxEvent.payload).where(OutboxEvent.type == "member.merged")
        )
    assert payload == {"member_id": "dup", "into": "c1", "available": 300, "pending": 0, "held": 0}


@pytest.mark.committed  # threads, each on its own connection
def test_racing_merges_of_one_pair_merge_once(app, client, checkout, admin):
    enroll(client, checkout, "c1")
    enroll(client, checkout, "dup")
    give(client, admin, "dup", 300)

    responses = race_requests(app, 4, lambda racer: merge(racer, admin))

    assert raised(responses) == []
    assert [response.status_code for response in responses] == [200] * 4
    assert balance(client, checkout) == {"available": 300, "pending": 0, "held": 0}
    log = ok(client.get("/v1/admin/audit-log?target_id=dup", headers=admin))["items"]
    assert [entry["action"] for entry in log].count("member.merge") == 1


@pytest.mark.postgresql_only
@pytest.mark.committed
def test_merges_of_a_pair_either_way_round_never_deadlock(app, client, checkout, admin):
    enroll(client, checkout, "a")
    enroll(client, checkout, "b")
    give(client, admin, "a", 100)
    give(client, admin, "b", 200)

    def either_way(number: int) -> object:
        duplicate, into = ("a", "b") if number % 2 else ("b", "a")
        return merging.merge(db.session, duplicate, into, "test")

    results = race(app, 4, either_way)

    refused = raised(results)
    assert all(isinstance(error, MemberClosed) for error in refused), refused
    assert len(refused) < 4
    statuses = {m: ok(client.get(f"/v1/members/{m}", headers=checkout)) for m in ("a", "b")}
    [survivor] = [m for m, card in statuses.items() if card["status"] == "active"]
    assert statuses[survivor]["balance"]["available"] == 300
