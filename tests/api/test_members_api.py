"""Members: enrolment, the member card, the points history, and the admin's changes."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from loyalty.db import transaction, utcnow
from loyalty.extensions import db
from loyalty.members import lookup
from loyalty.members.models import Member
from tests.concurrency import race_requests, raised
from tests.helpers import credit_earned

CARD_FIELDS = {
    "external_id",
    "status",
    "email",
    "name",
    "birthday",
    "metadata",
    "referral_code",
    "enrolled_at",
    "consent",
    "tier",
    "tier_progress",
    "balance",
}


def enrol(client: FlaskClient, headers: dict[str, str], **fields: Any) -> TestResponse:
    return client.post("/v1/members", json=fields, headers=headers)


def adjust(
    client: FlaskClient, headers: dict[str, str], points: int, reason: str = "goodwill"
) -> TestResponse:
    return client.post(
        "/v1/admin/members/m1/adjustments",
        json={"points": points, "reason": reason},
        headers=headers,
    )


def earn(app: Flask, external_id: str, points: int, at: dt.datetime) -> None:
    """Points earned at `at` the way an order earns them: pending for the return window."""
    with app.app_context():
        session = db.session
        with transaction(session):
            member = lookup.find_member(session, external_id)
            credit_earned(session, member.id, points, at, reference="test-order")


def members_named(app: Flask, external_id: str) -> int:
    with app.app_context():
        return db.session.scalar(
            sa.select(sa.func.count(Member.id)).where(Member.external_id == external_id)
        )


def rfc3339_utc(value: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(value)
    assert parsed.utcoffset() == dt.timedelta(0), value
    return parsed


@pytest.fixture
def member(client: FlaskClient, checkout: dict[str, str]) -> str:
    assert enrol(client, checkout, external_id="m1").status_code == 201
    return "m1"


# --- enrolment ----------------------------------------------------------------------------------


def test_enrolment_answers_201_with_the_member_card(client, checkout):
    response = enrol(
        client,
        checkout,
        external_id="cust_1001",
        email="ada@example.com",
        name="Ada Lovelace",
        birthday="1815-12-10",
        metadata={"store": "north", "vip": True, "visits": 3},
    )

    assert response.status_code == 201
    card = response.json
    assert set(card) == CARD_FIELDS
    assert card["external_id"] == "cust_1001"
    assert card["status"] == "active"
    assert card["email"] == "ada@example.com"
    assert card["name"] == "Ada Lovelace"
    assert card["birthday"] == "1815-12-10"
    assert card["metadata"] == {"store": "north", "vip": True, "visits": 3}
    assert abs(rfc3339_utc(card["enrolled_at"]) - utcnow()) < dt.timedelta(minutes=1)
    assert card["balance"] == {"available": 0, "pending": 0, "held": 0, "expiring_soon": []}


def test_enrolling_an_enrolled_customer_again_answers_200_with_the_existing_member(
    client, checkout
):
    first = enrol(client, checkout, external_id="m1", email="first@example.com")

    again = enrol(client, checkout, external_id="m1", email="second@example.com")

    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json == first.json


@pytest.mark.committed  # threads or processes, each on its own connection
def test_racing_enrolments_of_one_customer_make_one_member(app, checkout):
    racers = 4
    responses = race_requests(
        app, racers, lambda client: enrol(client, checkout, external_id="racer")
    )

    assert raised(responses) == []
    statuses = [response.status_code for response in responses]
    assert sorted(statuses) == [200] * (racers - 1) + [201]
    assert members_named(app, "racer") == 1


def test_enrolment_accepts_every_value_at_its_limit(client, checkout):
    today = dt.datetime.now(dt.UTC).date().isoformat()
    response = enrol(
        client,
        checkout,
        external_id="A" + "a.b_c:d@e+f-9" * 9 + "x" * 10,
        birthday=today,
        name="n" * 200,
        metadata={
            "k" * 40: "v" * 500,
            **{f"key{i}": i for i in range(48)},
            "nothing": None,
        },
    )

    assert response.status_code == 201, response.json
    assert len(response.json["external_id"]) == 128
    assert len(response.json["metadata"]) == 50


TOMORROW = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)).isoformat()


@pytest.mark.parametrize(
    ("fields", "invalid"),
    [
        ({"external_id": "has space"}, "external_id"),
        ({"external_id": "-starts-with-dash"}, "external_id"),
        ({"external_id": "ümlaut"}, "external_id"),
        ({"external_id": "a/b"}, "external_id"),
        ({"external_id": ""}, "external_id"),
        ({"external_id": "x" * 129}, "external_id"),
        ({"external_id": 1001}, "external_id"),
        ({"external_id": "m1", "email": "not-an-email"}, "email"),
        ({"external_id": "m1", "birthday": TOMORROW}, "birthday"),
        ({"external_id": "m1", "birthday": "1990-13-01"}, "birthday"),
        ({"external_id": "m1", "name": "n" * 201}, "name"),
        ({"external_id": "m1", "referred_by": "bad id"}, "referred_by"),
        ({"external_id": "m1", "metadata": {f"k{i}": i for i in range(51)}}, "metadata"),
        ({"external_id": "m1", "metadata": {"k" * 41: 1}}, "metadata"),
        ({"external_id": "m1", "metadata": {"k": "v" * 501}}, "metadata"),
        ({"external_id": "m1", "metadata": {"k": {"nested": 1}}}, "metadata"),
        ({"external_id": "m1", "metadata": {"k": [1, 2]}}, "metadata"),
        ({"external_id": "m1", "metadata": {"k": 1.5}}, "metadata"),
        ({"external_id": "m1", "metadata": "not an object"}, "metadata"),
    ],
)
def test_enrolment_validates_each_field(app, client, checkout, fields, invalid):
    response = enrol(client, checkout, **fields)

    assert response.status_code == 422
    assert response.json["code"] == "validation_error"
    assert list(response.json["errors"]) == [invalid]
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Member.id))) == 0


def test_enrolment_with_an_unknown_referrer_is_a_422_referrer_not_found(app, client, checkout):
    response = enrol(client, checkout, external_id="m2", referred_by="nobody")

    assert response.status_code == 422
    assert response.json["code"] == "referrer_not_found"
    assert members_named(app, "m2") == 0


def test_enrolment_with_a_known_referrer_succeeds(client, checkout, member):
    assert enrol(client, checkout, external_id="m2", referred_by=member).status_code == 201


# --- the member card ------------------------------------------------------------------------


def test_an_unknown_member_is_a_404(client, checkout):
    response = client.get("/v1/members/nobody", headers=checkout)

    assert response.status_code == 404
    assert response.json["code"] == "not_found"


def test_the_app_may_read_the_card(client, app_key, member):
    response = client.get(f"/v1/members/{member}", headers=app_key)

    assert response.status_code == 200
    assert set(response.json) == CARD_FIELDS


def test_the_card_shows_available_pending_and_soon_expiring_points(
    app, client, admin, checkout, member
):
    now = utcnow()
    earn(app, member, 100, at=now)  # in the 14-day return window
    earn(app, member, 30, at=now - dt.timedelta(days=340))  # expires in about 25 days
    assert adjust(client, admin, 50).status_code == 201  # available at once, expires in a year

    balance = client.get(f"/v1/members/{member}", headers=checkout).json["balance"]

    assert (balance["available"], balance["pending"], balance["held"]) == (80, 100, 0)
    [soon] = balance["expiring_soon"]
    assert soon["points"] == 30
    expires_at = rfc3339_utc(soon["expires_at"])
    assert now + dt.timedelta(days=20) < expires_at < now + dt.timedelta(days=30)


def test_points_past_their_return_window_are_available_without_a_batch_job(
    app, client, checkout, member
):
    earn(app, member, 100, at=utcnow() - dt.timedelta(days=15))

    balance = client.get(f"/v1/members/{member}", headers=checkout).json["balance"]

    assert (balance["available"], balance["pending"]) == (100, 0)


def test_points_past_their_expiry_are_gone_without_a_batch_job(app, client, checkout, member):
    earn(app, member, 100, at=utcnow() - dt.timedelta(days=400))

    card = client.get(f"/v1/members/{member}", headers=checkout).json
    history = client.get(f"/v1/members/{member}/transactions", headers=checkout).json

    assert (card["balance"]["available"], card["balance"]["pending"]) == (0, 0)
    assert [(t["kind"], t["points"]) for t in history["items"]] == [
        ("expire", -100),
        ("mature", 0),
        ("earn", 100),
    ]


# --- the points history ------------------------------------------------------------------------


def test_the_history_lists_transactions_newest_first_with_balanced_entries(
    client, admin, checkout, member
):
    adjust(client, admin, 300, reason="welcome")
    adjust(client, admin, -100, reason="correction")

    page = client.get(f"/v1/members/{member}/transactions", headers=checkout).json

    assert page["next_cursor"] is None
    newest, oldest = page["items"]
    assert (newest["points"], newest["reason"], newest["kind"]) == (-100, "correction", "adjust")
    assert (oldest["points"], oldest["reason"], oldest["kind"]) == (300, "welcome", "adjust")
    assert newest["entries"] == [
        {"account": "available", "amount": -100},
        {"account": "adjusted", "amount": 100},
    ]
    for item in page["items"]:
        assert set(item) == {
            "id",
            "kind",
            "points",
            "effective_at",
            "created_at",
            "reference",
            "reason",
            "order_id",
            "event_id",
            "breakdown",
            "entries",
        }
        assert sum(entry["amount"] for entry in item["entries"]) == 0
        rfc3339_utc(item["created_at"])
    assert rfc3339_utc(newest["created_at"]) >= rfc3339_utc(oldest["created_at"])


def test_the_history_pages_with_a_cursor_until_it_is_null(client, admin, checkout, member):
    for points in (10, 20, 30, 40, 50):
        adjust(client, admin, points)

    pages, cursor = [], ""
    while True:
        query = f"limit=2&cursor={cursor}" if cursor else "limit=2"
        page = client.get(f"/v1/members/{member}/transactions?{query}", headers=checkout).json
        pages.append([item["points"] for item in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert pages == [[50, 40], [30, 20], [10]]


def test_a_page_that_ends_the_history_exactly_has_no_next_cursor(client, admin, checkout, member):
    for points in (10, 20):
        adjust(client, admin, points)

    page = client.get(f"/v1/members/{member}/transactions?limit=2", headers=checkout).json

    assert len(page["items"]) == 2
    assert page["next_cursor"] is None


def test_the_history_of_a_new_member_is_empty(client, app_key, member):
    page = client.get(f"/v1/members/{member}/transactions", headers=app_key).json

    assert page == {"items": [], "next_cursor": None}


def test_the_history_accepts_the_largest_limit(client, checkout, member):
    response = client.get(f"/v1/members/{member}/transactions?limit=200", headers=checkout)

    assert response.status_code == 200


@pytest.mark.parametrize("limit", ["201", "0", "-1", "ten", "1.5"])
def test_a_limit_outside_1_to_200_is_a_422(client, checkout, member, limit):
    response = client.get(f"/v1/members/{member}/transactions?limit={limit}", headers=checkout)

    assert response.status_code == 422
    assert list(response.json["errors"]) == ["limit"]


def _b64(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor!",
        _b64("x12"),
        _b64("tabc"),
        _b64("t-5"),
        _b64("t0"),
        _b64("t" + "9" * 30),
        "%C3%BF%C3%BE",  # not base64 (not UTF-8 at all, %FF%FE, is a 400 malformed_url)
        "c" * 101,
    ],
)
def test_a_cursor_we_never_made_is_a_422(client, checkout, member, cursor):
    response = client.get(f"/v1/members/{member}/transactions?cursor={cursor}", headers=checkout)

    assert response.status_code == 422
    assert response.json["code"] == "validation_error"
    assert list(response.json["errors"]) == ["cursor"]


def test_the_history_of_an_unknown_member_is_a_404(client, checkout):
    assert client.get("/v1/members/nobody/transactions", headers=checkout).status_code == 404


# --- admin adjustments ---------------------------------------------------------------------


def test_an_adjustment_adds_points_available_at_once(client, admin, checkout, member):
    response = adjust(client, admin, 500, reason="Apology for a late delivery")

    assert response.status_code == 201
    txn = response.json
    assert (txn["kind"], txn["points"], txn["reason"]) == (
        "adjust",
        500,
        "Apology for a late delivery",
    )
    assert txn["entries"] == [
        {"account": "adjusted", "amount": -500},
        {"account": "available", "amount": 500},
    ]
    assert client.get(f"/v1/members/{member}", headers=checkout).json["balance"]["available"] == 500


def test_a_negative_adjustment_removes_points(client, admin, checkout, member):
    adjust(client, admin, 500)

    response = adjust(client, admin, -200, reason="Double credit")

    assert response.status_code == 201
    assert response.json["points"] == -200
    assert client.get(f"/v1/members/{member}", headers=checkout).json["balance"]["available"] == 300


@pytest.mark.parametrize(
    ("body", "invalid"),
    [
        ({"points": 10}, "reason"),
        ({"points": 10, "reason": ""}, "reason"),
        ({"points": 10, "reason": "r" * 501}, "reason"),
        ({"reason": "goodwill"}, "points"),
        ({"points": 0, "reason": "goodwill"}, "points"),
        ({"points": "10", "reason": "goodwill"}, "points"),
        ({"points": 1.5, "reason": "goodwill"}, "points"),
        ({"points": True, "reason": "goodwill"}, "points"),
        ({"points": 1_000_000_001, "reason": "goodwill"}, "points"),
    ],
)
def test_an_adjustment_is_validated(client, admin, checkout, member, body, invalid):
    response = client.post(f"/v1/admin/members/{member}/adjustments", json=body, headers=admin)

    assert response.status_code == 422
    assert response.json["code"] == "validation_error"
    assert list(response.json["errors"]) == [invalid]
    assert client.get(f"/v1/members/{member}/transactions", headers=checkout).json["items"] == []


def test_removing_more_points_than_available_is_a_422_insufficient_points(
    client, admin, checkout, member
):
    adjust(client, admin, 100)

    response = adjust(client, admin, -101)

    assert response.status_code == 422
    assert response.json["code"] == "insufficient_points"
    assert client.get(f"/v1/members/{member}", headers=checkout).json["balance"]["available"] == 100


@pytest.mark.committed  # threads or processes, each on its own connection
def test_simultaneous_removals_never_take_the_balance_below_zero(
    app, client, admin, checkout, member
):
    adjust(client, admin, 1000)

    responses = race_requests(app, 5, lambda own_client: adjust(own_client, admin, -300))

    assert raised(responses) == []
    statuses = [response.status_code for response in responses]
    assert sorted(statuses) == [201, 201, 201, 422, 422]
    assert client.get(f"/v1/members/{member}", headers=checkout).json["balance"]["available"] == 100


def test_pending_points_cannot_be_removed(app, client, admin, member):
    earn(app, member, 100, at=utcnow())

    response = adjust(client, admin, -1)

    assert response.status_code == 422
    assert response.json["code"] == "insufficient_points"


def test_a_closed_member_cannot_be_adjusted(client, admin, member):
    adjust(client, admin, 100)
    client.patch(f"/v1/admin/members/{member}", json={"status": "closed"}, headers=admin)

    for points in (50, -50):
        response = adjust(client, admin, points)
        assert response.status_code == 422
        assert response.json["code"] == "member_inactive"


def test_adjusting_an_unknown_member_is_a_404(client, admin):
    response = client.post(
        "/v1/admin/members/nobody/adjustments",
        json={"points": 5, "reason": "goodwill"},
        headers=admin,
    )

    assert response.status_code == 404


# --- admin member changes ------------------------------------------------------------------


def set_status(client: FlaskClient, admin: dict[str, str], status: str) -> TestResponse:
    return client.patch("/v1/admin/members/m1", json={"status": status}, headers=admin)


def test_a_member_can_be_suspended_and_reactivated(client, admin, member):
    suspended = set_status(client, admin, "suspended")
    active = set_status(client, admin, "active")

    assert (suspended.status_code, suspended.json["status"]) == (200, "suspended")
    assert (active.status_code, active.json["status"]) == (200, "active")


def test_a_suspended_member_can_be_closed(client, admin, member):
    set_status(client, admin, "suspended")

    response = set_status(client, admin, "closed")

    assert (response.status_code, response.json["status"]) == (200, "closed")


@pytest.mark.parametrize(
    "change",
    [
        {"status": "active"},
        {"status": "suspended"},
        {"status": "closed"},
        {"name": "Back again"},
        {"metadata": {}},
    ],
)
def test_closing_is_final(client, admin, checkout, member, change):
    assert set_status(client, admin, "closed").status_code == 200

    response = client.patch(f"/v1/admin/members/{member}", json=change, headers=admin)

    assert response.status_code == 409
    assert response.json["code"] == "member_closed"
    assert client.get(f"/v1/members/{member}", headers=checkout).json["status"] == "closed"


def test_an_admin_can_change_the_profile(client, admin, member):
    response = client.patch(
        f"/v1/admin/members/{member}",
        json={"email": "new@example.com", "name": "New Name", "metadata": {"tier": "gold"}},
        headers=admin,
    )

    assert response.status_code == 200
    assert (response.json["email"], response.json["name"], response.json["metadata"]) == (
        "new@example.com",
        "New Name",
        {"tier": "gold"},
    )
    assert response.json["status"] == "active"


@pytest.mark.parametrize(
    ("body", "invalid"),
    [
        ({"status": "deleted"}, "status"),
        ({"email": "nope"}, "email"),
        ({"external_id": "m9"}, "external_id"),
        ({}, "_schema"),
    ],
)
def test_a_member_change_is_validated(client, admin, member, body, invalid):
    response = client.patch(f"/v1/admin/members/{member}", json=body, headers=admin)

    assert response.status_code == 422
    assert list(response.json["errors"]) == [invalid]


def test_changing_an_unknown_member_is_a_404(client, admin):
    response = client.patch("/v1/admin/members/nobody", json={"status": "closed"}, headers=admin)

    assert response.status_code == 404
