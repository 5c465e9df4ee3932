"""Every point explained to the member: the history lists movements by when they took effect,
each earning with its order or event and the rules (and versions) behind it; the lots list
says what is left of each credit and when it expires, however far off.

After every test the whole ledger must verify.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask.testing import FlaskClient

from loyalty.db import utcnow
from tests.api.checkout_calls import order
from tests.api.test_events import event
from tests.factories import RuleFactory
from tests.helpers import created, ok, problem, when

pytestmark = pytest.mark.usefixtures("ledger_verifies_after_each_test")

DAY = dt.timedelta(days=1)


def history(client: FlaskClient, headers: dict[str, str], query: str = "") -> dict[str, Any]:
    return ok(client.get(f"/v1/members/c1/transactions?{query}", headers=headers))


def lots(client: FlaskClient, headers: dict[str, str], query: str = "") -> dict[str, Any]:
    return ok(client.get(f"/v1/members/c1/lots?{query}", headers=headers))


def adjust(client: FlaskClient, admin: dict[str, str], points: int) -> None:
    created(
        client.post(
            "/v1/admin/members/c1/adjustments",
            json={"points": points, "reason": "test"},
            headers=admin,
        )
    )


def all_pages(client: FlaskClient, headers: dict[str, str], path: str) -> list[list[Any]]:
    pages, cursor = [], None
    while True:
        query = f"limit=2&cursor={cursor}" if cursor else "limit=2"
        page = ok(client.get(f"/v1/members/c1/{path}?{query}", headers=headers))
        pages.append(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages


# --- the history --------------------------------------------------------------------------


def test_an_order_placed_months_ago_sits_below_todays_points(client, admin, checkout, member, rule):
    adjust(client, admin, 100)
    placed_at = (utcnow() - 300 * DAY).replace(microsecond=0)
    created(order(client, checkout, "o-old", placed_at=placed_at.isoformat(), earn_points=True))

    items = history(client, checkout)["items"]

    assert [item["kind"] for item in items[:1]] == ["adjust"]
    earned = next(item for item in items if item["kind"] == "earn")
    assert when(earned["effective_at"]) == placed_at
    assert items.index(earned) > 0


def test_an_earning_names_its_order_and_the_rules_behind_it(client, checkout, member, rule):
    created(order(client, checkout, "o-1"))

    [earned] = [i for i in history(client, checkout)["items"] if i["kind"] == "earn"]

    assert (earned["order_id"], earned["event_id"]) == ("o-1", None)
    assert earned["breakdown"] == [
        {
            "rule_id": rule["id"],
            "version": 1,
            "name": rule["name"],
            "kind": "spend",
            "points": earned["points"],
        }
    ]


def test_an_earning_names_its_rules_version_after_the_rule_changed(
    client, admin, checkout, member, rule
):
    created(order(client, checkout, "o-1"))
    ok(client.patch(f"/v1/admin/rules/{rule['id']}", json={"points": 2}, headers=admin))
    created(order(client, checkout, "o-2"))

    versions = {
        i["order_id"]: i["breakdown"][0]["version"]
        for i in history(client, checkout)["items"]
        if i["kind"] == "earn"
    }

    assert versions == {"o-1": 1, "o-2": 2}


def test_an_event_earning_names_its_event_and_rule(client, admin, checkout, member):
    review = created(
        client.post("/v1/admin/rules", json=RuleFactory.build(review=True), headers=admin)
    )
    created(event(client, checkout, "review-1"))

    [earned] = history(client, checkout)["items"]

    assert (earned["event_id"], earned["order_id"]) == ("review-1", None)
    assert [(c["rule_id"], c["version"], c["kind"]) for c in earned["breakdown"]] == [
        (review["id"], 1, "event")
    ]


def test_anything_but_an_earning_has_no_breakdown(client, admin, app_key, member):
    adjust(client, admin, 100)
    [adjusted] = history(client, app_key)["items"]
    assert (adjusted["order_id"], adjusted["event_id"], adjusted["breakdown"]) == (None, None, [])


def test_history_pages_follow_effective_time_without_gaps_or_repeats(
    client, admin, checkout, member, rule
):
    adjust(client, admin, 10)
    adjust(client, admin, 20)
    for days in (30, 10, 20):
        placed_at = (utcnow() - days * DAY).isoformat()
        created(order(client, checkout, f"o-{days}", placed_at=placed_at, earn_points=True))

    pages = all_pages(client, checkout, "transactions")

    items = [item for page in pages for item in page]
    assert [len(page) for page in pages[:-1]] == [2] * (len(pages) - 1)
    assert (
        len({item["id"] for item in items}) == len(items) == len(history(client, checkout)["items"])
    )
    moments = [when(item["effective_at"]) for item in items]
    assert moments == sorted(moments, reverse=True)
    assert [i["order_id"] for i in items if i["kind"] == "earn"] == ["o-10", "o-20", "o-30"]


@pytest.mark.parametrize("cursor", ["nonsense", "dDE", "ZTEyMw", "ZXgueQ"])
def test_a_history_cursor_we_never_made_is_422(client, checkout, member, cursor):
    response = client.get(f"/v1/members/c1/transactions?cursor={cursor}", headers=checkout)
    assert "cursor" in problem(response, 422, "validation_error")["errors"]


# --- the lots -----------------------------------------------------------------------------


def test_lots_say_what_is_left_and_when_it_expires_soonest_first(
    client, admin, checkout, member, rule
):
    created(
        order(
            client,
            checkout,
            "o-old",
            placed_at=(utcnow() - 200 * DAY).isoformat(),
            earn_points=True,
        )
    )
    adjust(client, admin, 100)

    items = lots(client, checkout)["items"]

    assert [(i["credited_by"], i["order_id"]) for i in items] == [
        ("earn", "o-old"),
        ("adjust", None),
    ]
    expiries = [when(i["expires_at"]) for i in items]
    assert expiries == sorted(expiries)
    # Beyond the card's 30-day window: the adjustment expires with the program's policy.
    assert expiries[1] - utcnow() > 30 * DAY
    assert all(i["remaining"] == i["points"] for i in items)


def test_a_pending_lot_says_when_it_becomes_available(client, checkout, member, rule):
    created(order(client, checkout, "o-1"))

    [lot] = lots(client, checkout)["items"]

    assert lot["state"] == "pending"
    assert when(lot["available_at"]) > when(lot["earned_at"])
    assert lot["order_id"] == "o-1"


def test_spent_points_leave_their_lots_soonest_expiring_first(
    client, admin, checkout, member, rule
):
    created(
        order(
            client,
            checkout,
            "o-old",
            placed_at=(utcnow() - 200 * DAY).isoformat(),
            earn_points=True,
        )
    )
    adjust(client, admin, 100)
    old = lots(client, checkout)["items"][0]["points"]

    adjust(client, admin, -(old + 40))

    [left] = lots(client, checkout)["items"]
    assert (left["credited_by"], left["remaining"], left["points"]) == ("adjust", 60, 100)


def test_lots_that_never_expire_come_last(client, admin, checkout, member):
    adjust(client, admin, 10)
    ok(client.patch("/v1/admin/program", json={"expiry": {"policy": "never"}}, headers=admin))
    adjust(client, admin, 20)
    adjust(client, admin, 30)

    pages = all_pages(client, checkout, "lots")

    items = [item for page in pages for item in page]
    assert [(i["points"], i["expires_at"] is None) for i in items] == [
        (10, False),
        (20, True),
        (30, True),
    ]
    assert [len(page) for page in pages] == [2, 1]


def test_the_lots_of_a_new_member_are_none(client, app_key, member):
    assert lots(client, app_key) == {"items": [], "next_cursor": None}


def test_the_lots_of_an_unknown_member_are_404(client, checkout):
    problem(client.get("/v1/members/nobody/lots", headers=checkout), 404, "not_found")


@pytest.mark.parametrize("cursor", ["nonsense", "dDE", "bHgueQ", "bC4w"])
def test_a_lots_cursor_we_never_made_is_422(client, checkout, member, cursor):
    response = client.get(f"/v1/members/c1/lots?cursor={cursor}", headers=checkout)
    assert "cursor" in problem(response, 422, "validation_error")["errors"]


def test_a_refunds_reversal_and_restore_name_the_order(client, checkout, funded, rule):
    held = created(
        client.post("/v1/redemptions", json={"member_id": "c1", "points": 200}, headers=checkout)
    )
    ok(client.post(f"/v1/redemptions/{held['redemption_id']}/capture", headers=checkout))
    created(order(client, checkout, "o-1", redemption_id=held["redemption_id"]))
    created(
        client.post(
            "/v1/orders/o-1/refunds", json={"refund_id": "r-1", "amount": 1000}, headers=checkout
        )
    )

    refunded = {
        i["kind"]: i["order_id"]
        for i in history(client, checkout)["items"]
        if i["reference"] == "refund:r-1"
    }

    assert refunded == {"reverse": "o-1", "restore": "o-1"}
