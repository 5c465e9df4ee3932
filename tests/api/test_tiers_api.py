"""Tiers over HTTP: the admin's tier catalog, the member card's tier and progress, how
qualifying points move members up at once and down only after their retention, the tier
history, and the benefits a member holds.

The program used below earns 1 point per 1.00 spent and has three tiers:

    Silver    rank 1    100 qualifying points    kept 12 months
    Gold      rank 2    500 qualifying points    kept  6 months, free shipping
    Platinum  rank 3  2,000 qualifying points    kept  3 months, free shipping, x2 points

Unless a test says otherwise the program runs at its defaults (pending_days 14, points expire
12 months after they are earned, a 12-month tier window). While a member qualifies, their tier
is kept until its retention after the moment the qualification would lapse (when the points
leave the window); once they stop qualifying (a refund), at most its retention from then.
Time is moved by calling the services with `now=`; after every test the whole ledger must
verify.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from loyalty.db import utcnow
from loyalty.extensions import db
from loyalty.jobs import services as jobs
from loyalty.ledger import verify as ledger_verify
from loyalty.ledger.policy import add_months
from loyalty.members import lookup
from loyalty.members.models import Member
from loyalty.membership import services as members
from loyalty.orders import refunds
from loyalty.orders import services as orders
from loyalty.program.services import update_settings
from loyalty.tiers import benefits as tier_benefits
from loyalty.tiers import services as tiers
from loyalty.tiers.models import BenefitGrant
from tests.commands import order_command, refund_command

SECOND = dt.timedelta(seconds=1)
DAY = dt.timedelta(days=1)

SPEND = {"name": "1 point per dollar", "kind": "spend", "points": 1, "per_amount": 100}
REVIEW = {"name": "Review", "kind": "event", "points": 25, "event_type": "review"}

SILVER = {"code": "silver", "name": "Silver", "rank": 1, "threshold": 100, "retention_months": 12}
GOLD = {
    "code": "gold",
    "name": "Gold",
    "rank": 2,
    "threshold": 500,
    "retention_months": 6,
    "benefits": [{"code": "free_shipping", "params": {}}],
}
PLATINUM = {
    "code": "platinum",
    "name": "Platinum",
    "rank": 3,
    "threshold": 2000,
    "retention_months": 3,
    "benefits": [
        {"code": "free_shipping", "params": {}},
        {"code": "points_multiplier", "params": {"factor": "2"}},
    ],
}


# --- helpers -------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def ledger_verifies_after_each_test(app: Flask) -> Iterator[None]:
    yield
    with app.app_context():
        report = ledger_verify.verify(db.session)
        assert report.ok, report.problems


@contextmanager
def services(app: Flask) -> Iterator[Session]:
    """A session of its own for calling services directly (as a job or a later request)."""
    with app.app_context():
        yield db.session


@pytest.fixture
def spend_rule(client: FlaskClient, admin: dict[str, str]) -> dict[str, Any]:
    return created(client.post("/v1/admin/rules", json=SPEND, headers=admin))


@pytest.fixture
def program(client: FlaskClient, admin: dict[str, str], spend_rule: dict[str, Any]) -> None:
    """The spend rule and the three tiers."""
    for tier in (SILVER, GOLD, PLATINUM):
        created(client.post("/v1/admin/tiers", json=tier, headers=admin))


@pytest.fixture
def member(client: FlaskClient, checkout: dict[str, str]) -> str:
    created(client.post("/v1/members", json={"external_id": "c1"}, headers=checkout))
    return "c1"


def created(response: TestResponse) -> dict[str, Any]:
    assert response.status_code == 201, response.json
    return response.json


def problem(response: TestResponse, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.json
    assert response.content_type == "application/problem+json"
    assert response.json["code"] == code
    return response.json


def order(
    client: FlaskClient,
    checkout: dict[str, str],
    order_id: str,
    dollars: int,
    external_id: str = "c1",
    **fields: Any,
) -> dict[str, Any]:
    """Place an order worth `dollars` (so `dollars` points under the spend rule)."""
    body = {
        "order_id": order_id,
        "member_id": external_id,
        "currency": "USD",
        "lines": [
            {"sku": "tee", "category": "apparel", "quantity": 1, "unit_price": dollars * 100}
        ],
        **fields,
    }
    return created(client.post("/v1/orders", json=body, headers=checkout))


def refund(
    client: FlaskClient, checkout: dict[str, str], order_id: str, **body: Any
) -> dict[str, Any]:
    response = client.post(f"/v1/orders/{order_id}/refunds", json=body, headers=checkout)
    assert response.status_code == 201, response.json
    return response.json


def order_at(app: Flask, order_id: str, dollars: int, moment: dt.datetime) -> None:
    """An order worth `dollars` placed at `moment`, as the checkout would send it then."""
    body = {
        "order_id": order_id,
        "member_id": "c1",
        "currency": "USD",
        "lines": [{"sku": "tee", "quantity": 1, "unit_price": dollars * 100}],
    }
    with services(app) as session:
        orders.place_order(session, order_command(body), now=moment)


def refund_at(app: Flask, order_id: str, dollars: int, moment: dt.datetime) -> None:
    """`dollars` of the order refunded at `moment`."""
    fields = {"refund_id": f"{order_id}-refund", "amount": dollars * 100}
    with services(app) as session:
        refunds.refund_order(session, order_id, refund_command(fields), now=moment)


def card(client: FlaskClient, headers: dict[str, str], external_id: str = "c1") -> dict[str, Any]:
    response = client.get(f"/v1/members/{external_id}", headers=headers)
    assert response.status_code == 200, response.json
    return response.json


def tier_of(found: dict[str, Any]) -> str | None:
    return found["tier"]["code"] if found["tier"] else None


def history(client: FlaskClient, admin: dict[str, str], external_id: str = "c1") -> list[Any]:
    response = client.get(f"/v1/admin/members/{external_id}/tier-history", headers=admin)
    assert response.status_code == 200, response.json
    return response.json["items"]


def moves(client: FlaskClient, admin: dict[str, str]) -> list[tuple[Any, Any, str]]:
    """The member's tier changes as (from, to, why), newest first."""
    return [(c["from_tier"], c["to_tier"], c["reason"]) for c in history(client, admin)]


def when(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def settings(app: Flask, **changes: Any) -> None:
    with services(app) as session:
        update_settings(session, changes)


def stored_tier(app: Flask, external_id: str = "c1") -> str | None:
    """The member's tier as stored, read without touching (and so reviewing) the member."""
    with services(app) as session:
        member = lookup.find_member(session, external_id)
        return tiers.member_tier_code(session, member)


def card_at(app: Flask, moment: dt.datetime, external_id: str = "c1") -> members.MemberCard:
    """Read the member card the way a request at `moment` would."""
    with services(app) as session:
        found = members.card(session, external_id, now=moment)
        session.expunge_all()
        return found


# --- admin: the tier catalog ---------------------------------------------------------------


def test_creating_a_tier_returns_201_with_the_tier(client, admin):
    body = created(client.post("/v1/admin/tiers", json=PLATINUM, headers=admin))

    assert body == {**PLATINUM, "members": 0}


def test_a_new_tier_is_kept_twelve_months_and_has_no_benefits_unless_told(client, admin):
    body = created(
        client.post(
            "/v1/admin/tiers",
            json={"code": "silver", "name": "Silver", "rank": 1, "threshold": 100},
            headers=admin,
        )
    )

    assert body["retention_months"] == 12
    assert body["benefits"] == []


def test_tiers_are_listed_lowest_rank_first(client, admin, program):
    response = client.get("/v1/admin/tiers", headers=admin)

    assert response.status_code == 200
    assert [t["code"] for t in response.json["items"]] == ["silver", "gold", "platinum"]


def test_a_tier_is_read_by_its_code(client, admin, program):
    response = client.get("/v1/admin/tiers/gold", headers=admin)

    assert response.status_code == 200
    assert response.json == {**GOLD, "members": 0}


def test_a_tier_counts_the_members_in_it(client, admin, checkout, program, member):
    order(client, checkout, "o1", 150)

    assert client.get("/v1/admin/tiers/silver", headers=admin).json["members"] == 1
    assert client.get("/v1/admin/tiers/gold", headers=admin).json["members"] == 0


def test_a_second_tier_with_a_taken_code_is_409_tier_exists(client, admin, program):
    response = client.post("/v1/admin/tiers", json={**GOLD, "rank": 9}, headers=admin)

    problem(response, 409, "tier_exists")


def test_a_second_tier_with_a_taken_rank_is_409_tier_exists(client, admin, program):
    response = client.post("/v1/admin/tiers", json={**GOLD, "code": "gold2"}, headers=admin)

    problem(response, 409, "tier_exists")
    codes = [t["code"] for t in client.get("/v1/admin/tiers", headers=admin).json["items"]]
    assert codes == ["silver", "gold", "platinum"]


def test_patch_changes_only_what_it_names(client, admin, program):
    response = client.patch(
        "/v1/admin/tiers/gold", json={"threshold": 600, "name": "Gold+"}, headers=admin
    )

    assert response.status_code == 200
    assert response.json == {**GOLD, "threshold": 600, "name": "Gold+", "members": 0}
    assert client.get("/v1/admin/tiers/gold", headers=admin).json["threshold"] == 600


def test_patch_replaces_the_benefits(client, admin, program):
    benefits = [{"code": "birthday_gift", "params": {"sku": "cake"}}]

    response = client.patch("/v1/admin/tiers/gold", json={"benefits": benefits}, headers=admin)

    assert response.status_code == 200
    assert response.json["benefits"] == benefits


def test_patch_to_a_rank_another_tier_has_is_409_tier_exists(client, admin, program):
    response = client.patch("/v1/admin/tiers/gold", json={"rank": 1}, headers=admin)

    problem(response, 409, "tier_exists")
    assert client.get("/v1/admin/tiers/gold", headers=admin).json["rank"] == 2


def test_patch_naming_nothing_is_422(client, admin, program):
    problem(client.patch("/v1/admin/tiers/gold", json={}, headers=admin), 422, "validation_error")


def test_deleting_a_tier_nobody_is_in_is_204_and_it_is_gone(client, admin, program):
    response = client.delete("/v1/admin/tiers/platinum", headers=admin)

    assert response.status_code == 204
    assert response.data == b""
    problem(client.get("/v1/admin/tiers/platinum", headers=admin), 404, "not_found")


def test_deleting_a_tier_members_are_in_is_409_tier_in_use(
    client, admin, checkout, program, member
):
    order(client, checkout, "o1", 150)

    problem(client.delete("/v1/admin/tiers/silver", headers=admin), 409, "tier_in_use")
    assert client.get("/v1/admin/tiers/silver", headers=admin).status_code == 200
    assert tier_of(card(client, checkout)) == "silver"


@pytest.mark.parametrize(
    ("method", "body"), [("get", None), ("patch", {"threshold": 1}), ("delete", None)]
)
def test_an_unknown_tier_is_404(client, admin, program, method, body):
    response = getattr(client, method)("/v1/admin/tiers/diamond", json=body, headers=admin)

    problem(response, 404, "not_found")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"code": None}, "code"),
        ({"code": "Gold"}, "code"),
        ({"code": "g" * 33}, "code"),
        ({"name": ""}, "name"),
        ({"rank": 0}, "rank"),
        ({"rank": "2"}, "rank"),
        ({"threshold": -1}, "threshold"),
        ({"threshold": 1.5}, "threshold"),
        ({"retention_months": -1}, "retention_months"),
        ({"benefits": [{"params": {}}]}, "benefits.0.code"),
        ({"benefits": [{"code": "Free Shipping"}]}, "benefits.0.code"),
        ({"benefits": [{"code": "points_multiplier"}]}, "benefits.0.params"),
        ({"benefits": [{"code": "points_multiplier", "params": {}}]}, "benefits.0.params"),
        (
            {"benefits": [{"code": "points_multiplier", "params": {"factor": "x2"}}]},
            "benefits.0.params",
        ),
        ({"colour": "gold"}, "colour"),
    ],
)
def test_an_invalid_tier_is_422_naming_the_field(client, admin, change, field):
    body = {key: value for key, value in {**GOLD, **change}.items() if value is not None}

    found = problem(
        client.post("/v1/admin/tiers", json=body, headers=admin), 422, "validation_error"
    )

    assert field in found["errors"]


@pytest.mark.parametrize("factor", ["1", "0", "0.5", "101", "1.00001"])
def test_a_points_multiplier_factor_must_be_above_1_and_at_most_100(client, admin, factor):
    benefit = {"code": "points_multiplier", "params": {"factor": factor}}

    response = client.post("/v1/admin/tiers", json={**GOLD, "benefits": [benefit]}, headers=admin)

    found = problem(response, 422, "validation_error")
    assert "benefits.0.params" in found["errors"]


def test_tiers_are_managed_by_admins_only(client, checkout, app_key):
    for headers in (checkout, app_key):
        assert client.get("/v1/admin/tiers", headers=headers).status_code == 403
        assert client.post("/v1/admin/tiers", json=GOLD, headers=headers).status_code == 403


# --- the member card -----------------------------------------------------------------------


def test_a_member_without_a_tier_sees_how_far_the_lowest_tier_is(client, checkout, program, member):
    found = card(client, checkout)

    assert found["tier"] is None
    assert found["tier_progress"] == {
        "qualifying_points": 0,
        "next_tier": {"code": "silver", "name": "Silver", "threshold": 100},
        "points_to_next": 100,
        "retained_until": None,
    }


def test_the_card_shows_the_tier_and_the_progress_to_the_next(
    client, admin, checkout, app_key, program, member
):
    order(client, checkout, "o1", 150)

    found = card(client, app_key)

    assert found["tier"] == {"code": "silver", "name": "Silver"}
    progress = found["tier_progress"]
    assert progress["qualifying_points"] == 150
    assert progress["next_tier"] == {"code": "gold", "name": "Gold", "threshold": 500}
    assert progress["points_to_next"] == 350
    (upgrade,) = history(client, admin)
    # Silver lasts while the order stays in the 12-month window, then 12 months' retention.
    qualified_until = add_months(when(upgrade["changed_at"]), 12)
    assert when(progress["retained_until"]) == add_months(qualified_until, 12)


def test_in_the_top_tier_there_is_no_next_tier(client, checkout, program, member):
    order(client, checkout, "o1", 2500)

    progress = card(client, checkout)["tier_progress"]

    assert progress["next_tier"] is None
    assert progress["points_to_next"] is None
    assert progress["qualifying_points"] == 2500


def test_a_program_without_tiers_shows_no_tier_and_no_next_tier(client, checkout, member):
    found = card(client, checkout)

    assert found["tier"] is None
    assert found["tier_progress"] == {
        "qualifying_points": 0,
        "next_tier": None,
        "points_to_next": None,
        "retained_until": None,
    }


def test_an_entry_tier_with_a_zero_threshold_applies_from_enrolment(client, admin, checkout):
    entry = {"code": "member", "name": "Member", "rank": 1, "threshold": 0}
    created(client.post("/v1/admin/tiers", json=entry, headers=admin))

    enrolled = created(client.post("/v1/members", json={"external_id": "c1"}, headers=checkout))

    assert enrolled["tier"] == {"code": "member", "name": "Member"}
    assert moves(client, admin) == [(None, "member", "qualified")]


# --- qualifying points ---------------------------------------------------------------------


def test_points_earned_from_orders_qualify(client, checkout, program, member):
    order(client, checkout, "o1", 60)
    order(client, checkout, "o2", 50)

    found = card(client, checkout)

    assert found["tier_progress"]["qualifying_points"] == 110
    assert tier_of(found) == "silver"


def test_points_earned_from_events_qualify(client, admin, checkout, program, member):
    created(client.post("/v1/admin/rules", json=REVIEW, headers=admin))
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


# --- moving up -----------------------------------------------------------------------------


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
    body = {
        "order_id": "o1",
        "member_id": "c1",
        "currency": "USD",
        "lines": [{"sku": "tee", "quantity": 1, "unit_price": 60000}],
    }
    first = client.post("/v1/orders", json=body, headers=checkout)

    again = client.post("/v1/orders", json=body, headers=checkout)

    assert (again.status_code, again.json) == (first.status_code, first.json)

    assert moves(client, admin) == [(None, "gold", "qualified")]
    assert card(client, checkout)["tier_progress"]["qualifying_points"] == 600


# --- keeping a tier and moving down --------------------------------------------------------


def test_a_full_refund_does_not_downgrade_before_the_retention_period_ends(
    client, admin, checkout, program, member
):
    placed = order(client, checkout, "o1", 600)
    # Gold while the order stays in the 12-month window, then its 6 months' retention.
    qualified_until = add_months(when(placed["placed_at"]), 12)
    retained_until = when(card(client, checkout)["tier_progress"]["retained_until"])
    assert retained_until == add_months(qualified_until, 6)

    refunded = refund(client, checkout, "o1", refund_id="r1", amount=60000)

    found = card(client, checkout)
    assert tier_of(found) == "gold"
    assert found["tier_progress"]["qualifying_points"] == 0
    # The refund ended the qualification: the retention runs from it.
    assert when(found["tier_progress"]["retained_until"]) == add_months(
        when(refunded["created_at"]), 6
    )
    assert moves(client, admin) == [(None, "gold", "qualified")]


def test_a_member_is_kept_in_their_tier_until_the_last_moment_of_retention(
    app, client, checkout, program, member
):
    order(client, checkout, "o1", 600)
    refund(client, checkout, "o1", refund_id="r1", amount=60000)
    retained_until = when(card(client, checkout)["tier_progress"]["retained_until"])

    found = card_at(app, retained_until - SECOND)

    assert found.progress.tier is not None
    assert found.progress.tier.code == "gold"


@pytest.mark.parametrize(
    "program_settings",
    [
        pytest.param({}, id="points-pending-and-expiring"),
        pytest.param(
            {"pending_days": 0, "expiry_policy": "never"}, id="points-available-and-never-expiring"
        ),
    ],
)
def test_after_retention_the_next_card_read_downgrades_the_member(
    app, client, admin, checkout, program, member, program_settings
):
    settings(app, **program_settings)
    order(client, checkout, "o1", 600)
    refund(client, checkout, "o1", refund_id="r1", amount=60000)
    retained_until = when(card(client, checkout)["tier_progress"]["retained_until"])
    later = retained_until + SECOND

    found = card_at(app, later)

    assert found.progress.tier is None
    assert found.progress.retained_until is None
    assert found.progress.next_tier is not None
    assert found.progress.next_tier.code == "silver"
    (downgrade, _) = history(client, admin)
    assert (downgrade["from_tier"], downgrade["to_tier"]) == ("gold", None)
    assert downgrade["reason"] == "retention_expired"
    assert downgrade["qualifying_points"] == 0
    assert when(downgrade["changed_at"]) == later


def test_after_retention_a_member_drops_to_the_highest_tier_they_still_qualify_for(
    app, client, admin, checkout, program, member
):
    first = order(client, checkout, "o1", 150)
    order(client, checkout, "o2", 500)
    refunded = refund(client, checkout, "o2", refund_id="r1", amount=50000)
    retained_until = when(card(client, checkout)["tier_progress"]["retained_until"])
    assert retained_until == add_months(when(refunded["created_at"]), 6)

    found = card_at(app, retained_until + SECOND)

    assert found.progress.tier is not None
    assert found.progress.tier.code == "silver"
    assert found.progress.qualifying_points == 150
    # Silver lasts while the first order stays in the 12-month window, then 12 months.
    silver_qualified_until = add_months(when(first["placed_at"]), 12)
    assert found.progress.retained_until == add_months(silver_qualified_until, 12)
    assert moves(client, admin)[0] == ("gold", "silver", "retention_expired")


def test_a_member_still_qualifying_when_retention_ends_keeps_the_tier_for_another_period(
    app, client, admin, checkout, program, member
):
    settings(app, pending_days=0)
    start = utcnow()
    order_at(app, "o1", 600, start)
    retained_until = card_at(app, start).progress.retained_until
    assert retained_until == add_months(add_months(start, 12), 6)
    again = add_months(start, 10)
    order_at(app, "o2", 600, again)  # Gold again before the first order leaves the window
    later = retained_until + SECOND

    found = card_at(app, later)

    assert found.progress.tier is not None
    assert found.progress.tier.code == "gold"
    assert found.progress.qualifying_points == 600
    # Kept while the second order stays in the window, then another 6 months.
    assert found.progress.retained_until == add_months(add_months(again, 12), 6)
    assert moves(client, admin) == [(None, "gold", "qualified")]


def test_a_member_qualifying_when_retention_ends_under_a_longer_window_keeps_the_tier(
    app, client, admin, checkout, program, member
):
    settings(app, tier_window_months=3)
    start = utcnow()
    order_at(app, "o1", 600, start)
    retained_until = card_at(app, start).progress.retained_until
    assert retained_until == add_months(add_months(start, 3), 6)
    settings(app, tier_window_months=12)  # the order counts again when the retention ends
    later = retained_until + SECOND

    found = card_at(app, later)

    assert found.progress.tier is not None
    assert found.progress.tier.code == "gold"
    assert found.progress.qualifying_points == 600
    assert found.progress.retained_until == add_months(add_months(start, 12), 6)
    assert moves(client, admin) == [(None, "gold", "qualified")]


def test_a_member_who_qualified_once_keeps_the_tier_for_its_retention_after_the_lapse(
    app, client, admin, checkout, program, member
):
    # The example: Gold reached once; the order leaves the 12-month window; a later
    # order (Silver's worth) reviews the member, which does not restart Gold's retention.
    start = utcnow()
    order_at(app, "o1", 600, start)
    lapse = add_months(start, 12)
    ends = add_months(lapse, 6)  # not add_months(after_lapse, 6): the retention from the review
    assert card_at(app, start).progress.retained_until == ends
    after_lapse = add_months(start, 14)
    order_at(app, "o2", 150, after_lapse)

    reviewed = card_at(app, after_lapse)
    kept = card_at(app, ends - SECOND)
    found = card_at(app, ends)

    assert reviewed.progress.tier is not None
    assert reviewed.progress.tier.code == "gold"
    assert reviewed.progress.qualifying_points == 150
    assert reviewed.progress.retained_until == ends
    assert kept.progress.tier is not None
    assert kept.progress.tier.code == "gold"
    assert found.progress.tier is not None
    assert found.progress.tier.code == "silver"
    assert found.progress.retained_until == add_months(add_months(after_lapse, 12), 12)
    (downgrade, _) = history(client, admin)
    assert (downgrade["from_tier"], downgrade["to_tier"]) == ("gold", "silver")
    assert downgrade["reason"] == "retention_expired"
    assert when(downgrade["changed_at"]) == ends


def test_a_full_refund_ends_the_qualification_so_the_downgrade_comes_its_retention_later(
    app, client, admin, checkout, program, member
):
    start = utcnow()
    order_at(app, "o1", 600, start)  # Gold until 6 months after start + 12 months
    refunded_at = add_months(start, 2)
    ends = add_months(refunded_at, 6)

    refund_at(app, "o1", 600, refunded_at)

    refunded = card_at(app, refunded_at)
    kept = card_at(app, ends - SECOND)
    found = card_at(app, ends)
    assert refunded.progress.tier is not None
    assert refunded.progress.tier.code == "gold"
    assert refunded.progress.qualifying_points == 0
    assert refunded.progress.retained_until == ends
    assert kept.progress.tier is not None
    assert kept.progress.tier.code == "gold"
    assert found.progress.tier is None
    assert found.progress.retained_until is None
    (downgrade, _) = history(client, admin)
    assert (downgrade["from_tier"], downgrade["to_tier"]) == ("gold", None)
    assert downgrade["reason"] == "retention_expired"
    assert when(downgrade["changed_at"]) == ends


def test_the_job_downgrades_a_member_whose_retention_ended_without_any_read(
    app, client, admin, checkout, program, member
):
    settings(app, pending_days=0, expiry_policy="never")
    order(client, checkout, "o1", 600)
    refund(client, checkout, "o1", refund_id="r1", amount=60000)
    with services(app) as session:
        retained_until = session.scalar(sa.select(Member.tier_retained_until))
    later = retained_until + SECOND

    with services(app) as session:
        summary = jobs.settle_due(session, now=later)

    assert summary.members_settled == 1
    assert stored_tier(app) is None
    assert client.get("/v1/admin/tiers/gold", headers=admin).json["members"] == 0
    assert moves(client, admin)[0] == ("gold", None, "retention_expired")


def test_the_job_leaves_a_member_alone_while_their_tier_is_retained(
    app, client, admin, checkout, program, member
):
    order(client, checkout, "o1", 600)
    refund(client, checkout, "o1", refund_id="r1", amount=60000)
    with services(app) as session:
        retained_until = session.scalar(sa.select(Member.tier_retained_until))

    with services(app) as session:
        jobs.settle_due(session, now=retained_until - SECOND)

    assert stored_tier(app) == "gold"
    assert moves(client, admin) == [(None, "gold", "qualified")]


# --- tier history --------------------------------------------------------------------------


def test_tier_history_lists_every_change_newest_first(
    app, client, admin, checkout, program, member
):
    order(client, checkout, "o1", 150)
    order(client, checkout, "o2", 500)
    refund(client, checkout, "o2", refund_id="r1", amount=50000)
    retained_until = when(card(client, checkout)["tier_progress"]["retained_until"])
    card_at(app, retained_until + SECOND)

    items = history(client, admin)

    assert [(c["from_tier"], c["to_tier"], c["reason"], c["qualifying_points"]) for c in items] == [
        ("gold", "silver", "retention_expired", 150),
        ("silver", "gold", "qualified", 650),
        (None, "silver", "qualified", 150),
    ]
    assert set(items[0]) == {"from_tier", "to_tier", "reason", "qualifying_points", "changed_at"}
    stamps = [when(c["changed_at"]) for c in items]
    assert all(stamp.utcoffset() == dt.timedelta(0) for stamp in stamps)
    assert stamps == sorted(stamps, reverse=True)


def test_tier_history_of_a_member_who_never_changed_tier_is_empty(client, admin, member):
    assert history(client, admin) == []


def test_tier_history_of_an_unknown_member_is_404(client, admin):
    response = client.get("/v1/admin/members/nobody/tier-history", headers=admin)

    problem(response, 404, "not_found")


def test_tier_history_is_for_admins_only(client, checkout, app_key, member):
    for headers in (checkout, app_key):
        response = client.get("/v1/admin/members/c1/tier-history", headers=headers)
        assert response.status_code == 403


# --- benefits ------------------------------------------------------------------------------


def benefits(client: FlaskClient, headers: dict[str, str], external_id: str = "c1") -> list[Any]:
    response = client.get(f"/v1/members/{external_id}/benefits", headers=headers)
    assert response.status_code == 200, response.json
    return response.json["items"]


def grant(client: FlaskClient, admin: dict[str, str], **body: Any) -> TestResponse:
    for field in ("starts_at", "ends_at"):
        if isinstance(body.get(field), dt.datetime):
            body[field] = body[field].isoformat()
    return client.post("/v1/admin/members/c1/benefits", json=body, headers=admin)


def test_a_tiers_points_multiplier_applies_to_earning_without_a_rule_for_it(
    client, checkout, program, member
):
    order(client, checkout, "o1", 2000)  # reaches Platinum: x2 from the next order on

    placed = order(client, checkout, "o2", 62)

    assert placed["points_earned"] == 124
    contributions = {c["rule_id"]: (c["kind"], c["points"]) for c in placed["breakdown"]}
    assert contributions["tier:platinum"] == ("multiplier", 62)


def test_the_order_that_reaches_a_tier_earns_without_its_multiplier(
    client, checkout, program, member
):
    placed = order(client, checkout, "o1", 2000)

    assert placed["points_earned"] == 2000
    assert all(not c["rule_id"].startswith("tier:") for c in placed["breakdown"])


def test_the_quote_counts_the_tiers_multiplier_too(client, checkout, program, member):
    order(client, checkout, "o1", 2000)
    cart = {
        "member_id": "c1",
        "currency": "USD",
        "lines": [{"sku": "tee", "quantity": 1, "unit_price": 6200}],
    }

    response = client.post("/v1/orders/quote", json=cart, headers=checkout)

    assert response.status_code == 200, response.json
    assert response.json["points_to_earn"] == 124
    assert "tier:platinum" in {c["rule_id"] for c in response.json["breakdown"]}


def test_a_member_holds_their_tiers_benefits(client, checkout, app_key, program, member):
    order(client, checkout, "o1", 2000)

    assert benefits(client, app_key) == [
        {"code": "free_shipping", "params": {}, "source": "tier", "ends_at": None},
        {"code": "points_multiplier", "params": {"factor": "2"}, "source": "tier", "ends_at": None},
    ]


def test_a_member_without_a_tier_or_grants_holds_no_benefits(client, app_key, program, member):
    assert benefits(client, app_key) == []


def test_a_granted_benefit_is_held_besides_the_tiers(
    client, admin, checkout, app_key, program, member
):
    order(client, checkout, "o1", 600)
    ends_at = (utcnow() + 30 * DAY).replace(microsecond=0)

    response = grant(
        client,
        admin,
        code="birthday_gift",
        params={"sku": "cake"},
        reason="VIP complaint",
        ends_at=ends_at,
    )

    assert response.status_code == 201, response.json
    assert response.json == {
        "code": "birthday_gift",
        "params": {"sku": "cake"},
        "source": "grant",
        "ends_at": response.json["ends_at"],
    }
    assert when(response.json["ends_at"]) == ends_at
    held = benefits(client, app_key)
    assert [(b["code"], b["source"]) for b in held] == [
        ("free_shipping", "tier"),
        ("birthday_gift", "grant"),
    ]
    assert when(held[1]["ends_at"]) == ends_at


def test_expired_and_not_yet_started_grants_are_not_held(client, admin, app_key, member):
    now = utcnow()
    grant(client, admin, code="expired", starts_at=now - 10 * DAY, ends_at=now - DAY)
    grant(client, admin, code="upcoming", starts_at=now + DAY)
    grant(client, admin, code="current", starts_at=now - DAY, ends_at=now + DAY)
    grant(client, admin, code="forever")

    assert [b["code"] for b in benefits(client, app_key)] == ["current", "forever"]


def test_a_grant_ends_at_its_end_time(app, client, admin, member):
    ends_at = utcnow() + DAY
    assert grant(client, admin, code="free_shipping", ends_at=ends_at).status_code == 201

    with services(app) as session:
        member = lookup.find_member(session, "c1")
        before = tier_benefits.member_benefits(session, member, now=ends_at - SECOND)
        after = tier_benefits.member_benefits(session, member, now=ends_at)

    assert [b.code for b in before] == ["free_shipping"]
    assert after == []


def test_a_downgraded_member_loses_the_tiers_benefits(app, client, checkout, program, member):
    order(client, checkout, "o1", 600)
    refund(client, checkout, "o1", refund_id="r1", amount=60000)
    retained_until = when(card(client, checkout)["tier_progress"]["retained_until"])

    card_at(app, retained_until + SECOND)

    assert benefits(client, checkout) == []


def reached_and_refunded_at(app: Flask, moment: dt.datetime, dollars: int) -> None:
    """An order worth `dollars` placed at `moment` and refunded in full a day later: the
    member reached a tier then and has qualified for nothing since."""
    body = {
        "order_id": "old",
        "member_id": "c1",
        "currency": "USD",
        "lines": [{"sku": "tee", "quantity": 1, "unit_price": dollars * 100}],
    }
    with services(app) as session:
        orders.place_order(session, order_command(body), now=moment)
        refunds.refund_order(
            session,
            "old",
            refund_command({"refund_id": "old-refund", "amount": dollars * 100}),
            now=moment + DAY,
        )


def test_benefits_read_after_the_retention_ran_out_no_longer_include_the_tiers(
    app, client, admin, checkout, program, member
):
    reached_and_refunded_at(app, add_months(utcnow(), -7), 600)  # Gold, kept 6 months

    assert benefits(client, checkout) == []
    assert moves(client, admin)[0] == ("gold", None, "retention_expired")


def test_a_quote_after_the_retention_ran_out_earns_without_the_lost_tiers_multiplier(
    app, client, admin, checkout, program, member
):
    reached_and_refunded_at(app, add_months(utcnow(), -4), 2000)  # Platinum, kept 3 months
    cart = {
        "member_id": "c1",
        "currency": "USD",
        "lines": [{"sku": "tee", "quantity": 1, "unit_price": 6200}],
    }

    response = client.post("/v1/orders/quote", json=cart, headers=checkout)

    assert response.status_code == 200, response.json
    assert response.json["points_to_earn"] == 62
    assert [c["rule_id"] for c in response.json["breakdown"]] == [spend_rule_id(client, admin)]


def test_an_order_after_the_retention_ran_out_earns_without_the_lost_tiers_multiplier(
    app, client, admin, checkout, program, member
):
    reached_and_refunded_at(app, add_months(utcnow(), -4), 2000)  # Platinum, kept 3 months

    placed = order(client, checkout, "o1", 62)

    assert placed["points_earned"] == 62
    assert [c["rule_id"] for c in placed["breakdown"]] == [spend_rule_id(client, admin)]


def spend_rule_id(client: FlaskClient, admin: dict[str, str]) -> str:
    (rule,) = client.get("/v1/admin/rules", headers=admin).json["items"]
    return rule["id"]


def test_benefits_may_be_read_by_the_app_and_the_checkout(client, checkout, app_key, member):
    for headers in (app_key, checkout):
        assert client.get("/v1/members/c1/benefits", headers=headers).status_code == 200


def test_benefits_of_an_unknown_member_are_404(client, app_key):
    problem(client.get("/v1/members/nobody/benefits", headers=app_key), 404, "not_found")


def test_granting_to_an_unknown_member_is_404(client, admin):
    response = client.post(
        "/v1/admin/members/nobody/benefits", json={"code": "free_shipping"}, headers=admin
    )

    problem(response, 404, "not_found")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "code"),
        ({"code": "Free Shipping"}, "code"),
        ({"code": "points_multiplier"}, "params"),
        ({"code": "free_shipping", "ends_at": "2030-01-01T00:00:00"}, "ends_at"),
        ({"code": "free_shipping", "reason": "x" * 501}, "reason"),
    ],
)
def test_an_invalid_grant_is_422_naming_the_field(client, admin, member, body, field):
    found = problem(
        client.post("/v1/admin/members/c1/benefits", json=body, headers=admin),
        422,
        "validation_error",
    )

    assert field in found["errors"]


def test_benefits_are_granted_by_admins_only(client, checkout, app_key, member):
    for headers in (checkout, app_key):
        response = client.post(
            "/v1/admin/members/c1/benefits", json={"code": "free_shipping"}, headers=headers
        )
        assert response.status_code == 403


def test_a_grant_is_recorded_with_who_granted_it(app, client, admin, member):
    grant(client, admin, code="free_shipping", reason="late parcel")

    with services(app) as session:
        stored = session.execute(sa.select(BenefitGrant)).scalar_one()
        assert stored.reason == "late parcel"
        assert stored.actor is not None
