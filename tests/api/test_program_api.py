"""Program settings: read them, change some, and never store a value that does not validate."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from loyalty.db import transaction, utcnow
from loyalty.extensions import db
from loyalty.ledger.models import PointLot
from loyalty.members import lookup
from tests.helpers import credit_earned

PROGRAM = "/v1/admin/program"
REFERRAL = {"referrer_points": 500, "friend_points": 250, "max_per_period": 3, "period_days": 30}
DEFAULTS = {
    "currency": "USD",
    "point_value": {"points": 100, "amount": 100},
    "pending_days": 14,
    "expiry": {"policy": "fixed", "months": 12},
    "hold_ttl_seconds": 900,
    "max_redemption_percent": 50,
    "min_redemption_points": 100,
    "tier_window_months": 12,
    "referral": {
        "referrer_points": 0,
        "friend_points": 0,
        "max_per_period": None,
        "period_days": 30,
    },
    "time_zone": "UTC",
}


def settings(client: FlaskClient, admin: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = client.get(PROGRAM, headers=admin).json
    body.pop("updated_at")
    return body


def patch(client: FlaskClient, admin: dict[str, str], changes: Any) -> TestResponse:
    return client.patch(PROGRAM, json=changes, headers=admin)


def test_the_program_starts_with_the_defaults(client, admin):
    response = client.get(PROGRAM, headers=admin)

    assert response.status_code == 200
    body = response.json
    updated_at = dt.datetime.fromisoformat(body.pop("updated_at"))
    assert updated_at.utcoffset() == dt.timedelta(0)
    assert body == DEFAULTS


def test_a_patch_changes_only_what_it_names(client, admin):
    response = patch(
        client, admin, {"pending_days": 30, "point_value": {"points": 10, "amount": 5}}
    )

    expected = {**DEFAULTS, "pending_days": 30, "point_value": {"points": 10, "amount": 5}}
    assert response.status_code == 200
    assert {k: v for k, v in response.json.items() if k != "updated_at"} == expected
    assert settings(client, admin) == expected


def test_a_patch_moves_updated_at(client, admin):
    before = dt.datetime.fromisoformat(client.get(PROGRAM, headers=admin).json["updated_at"])

    after = dt.datetime.fromisoformat(patch(client, admin, {"pending_days": 0}).json["updated_at"])

    assert after > before


def test_every_setting_can_be_changed(client, admin):
    changes = {
        "currency": "EUR",
        "point_value": {"points": 1, "amount": 1},
        "pending_days": 0,
        "expiry": {"policy": "inactivity", "months": 18},
        "hold_ttl_seconds": 60,
        "max_redemption_percent": 100,
        "min_redemption_points": 0,
        "tier_window_months": 24,
        "referral": {
            "referrer_points": 500,
            "friend_points": 250,
            "max_per_period": 10,
            "period_days": 7,
        },
        "time_zone": "Asia/Shanghai",
    }

    assert patch(client, admin, changes).status_code == 200
    assert settings(client, admin) == changes


@pytest.mark.parametrize(
    ("changes", "invalid"),
    [
        ({"hold_ttl_seconds": -1}, "hold_ttl_seconds"),
        ({"hold_ttl_seconds": 0}, "hold_ttl_seconds"),
        ({"hold_ttl_seconds": 7 * 86400 + 1}, "hold_ttl_seconds"),
        ({"hold_ttl_seconds": "900"}, "hold_ttl_seconds"),
        ({"hold_ttl_seconds": None}, "hold_ttl_seconds"),
        ({"currency": "usd"}, "currency"),
        ({"currency": "US"}, "currency"),
        ({"currency": "USDX"}, "currency"),
        ({"currency": 840}, "currency"),
        ({"max_redemption_percent": 101}, "max_redemption_percent"),
        ({"max_redemption_percent": -1}, "max_redemption_percent"),
        ({"max_redemption_percent": 50.5}, "max_redemption_percent"),
        ({"pending_days": -1}, "pending_days"),
        ({"pending_days": 366}, "pending_days"),
        ({"pending_days": True}, "pending_days"),
        ({"min_redemption_points": -1}, "min_redemption_points"),
        ({"tier_window_months": 0}, "tier_window_months"),
        ({"tier_window_months": 121}, "tier_window_months"),
        ({"point_value": {"points": 0, "amount": 100}}, "point_value.points"),
        ({"point_value": {"points": 100, "amount": -1}}, "point_value.amount"),
        ({"point_value": {"points": 100}}, "point_value.amount"),
        ({"point_value": {"points": 100, "amount": 100, "extra": 1}}, "point_value.extra"),
        ({"point_value": 100}, "point_value._schema"),
        ({"expiry": {"policy": "fixed"}}, "expiry.months"),
        ({"expiry": {"policy": "inactivity", "months": None}}, "expiry.months"),
        ({"expiry": {"policy": "fixed", "months": 0}}, "expiry.months"),
        ({"expiry": {"policy": "fixed", "months": 121}}, "expiry.months"),
        ({"expiry": {"policy": "sometimes", "months": 12}}, "expiry.policy"),
        ({"expiry": {"months": 12}}, "expiry.policy"),
        (
            {"referral": {"referrer_points": 500, "max_per_period": None, "period_days": 30}},
            "referral.friend_points",
        ),
        (
            {"referral": {**REFERRAL, "referrer_points": -1}},
            "referral.referrer_points",
        ),
        ({"referral": {**REFERRAL, "friend_points": 1.5}}, "referral.friend_points"),
        ({"referral": {**REFERRAL, "max_per_period": -1}}, "referral.max_per_period"),
        ({"referral": {**REFERRAL, "period_days": 0}}, "referral.period_days"),
        ({"referral": {**REFERRAL, "period_days": None}}, "referral.period_days"),
        ({"updated_at": "2030-01-01T00:00:00+00:00"}, "updated_at"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_every_setting_is_validated(client, admin, changes, invalid):
    response = patch(client, admin, changes)

    assert response.status_code == 422
    assert response.json["code"] == "validation_error"
    assert list(response.json["errors"]) == [invalid]
    assert settings(client, admin) == DEFAULTS


def test_a_valid_setting_beside_an_invalid_one_is_not_stored(client, admin):
    response = patch(client, admin, {"pending_days": 3, "hold_ttl_seconds": -1})

    assert response.status_code == 422
    assert settings(client, admin) == DEFAULTS


def test_an_empty_patch_is_a_422(client, admin):
    response = patch(client, admin, {})

    assert response.status_code == 422
    assert response.json["code"] == "validation_error"
    assert list(response.json["errors"]) == ["_schema"]


def test_a_patch_without_a_body_is_a_422(client, admin):
    response = client.patch(PROGRAM, headers=admin)

    assert response.status_code == 422
    assert list(response.json["errors"]) == ["_schema"]


def test_the_never_policy_clears_the_months(client, admin):
    response = patch(client, admin, {"expiry": {"policy": "never"}})

    assert response.status_code == 200
    assert response.json["expiry"] == {"policy": "never", "months": None}


def test_the_never_policy_ignores_months_sent_with_it(client, admin):
    response = patch(client, admin, {"expiry": {"policy": "never", "months": 24}})

    assert response.json["expiry"] == {"policy": "never", "months": None}


def test_leaving_the_never_policy_needs_months(client, admin):
    patch(client, admin, {"expiry": {"policy": "never"}})

    refused = patch(client, admin, {"expiry": {"policy": "fixed"}})
    accepted = patch(client, admin, {"expiry": {"policy": "fixed", "months": 6}})

    assert refused.status_code == 422
    assert list(refused.json["errors"]) == ["expiry.months"]
    assert accepted.json["expiry"] == {"policy": "fixed", "months": 6}


def test_changing_other_settings_keeps_the_expiry(client, admin):
    patch(client, admin, {"expiry": {"policy": "never"}})

    response = patch(client, admin, {"hold_ttl_seconds": 120})

    assert response.status_code == 200
    assert response.json["expiry"] == {"policy": "never", "months": None}


def test_only_an_admin_may_read_the_settings(client, checkout, app_key):
    assert client.get(PROGRAM, headers=checkout).status_code == 403
    assert client.get(PROGRAM, headers=app_key).status_code == 403


# --- settings apply from now on -----------------------------------------------------------


def earn(app: Flask, external_id: str, points: int) -> PointLot:
    """Points earned now the way an order earns them, under the current settings."""
    with app.app_context():
        session = db.session
        with transaction(session):
            member = lookup.find_member(session, external_id)
            return credit_earned(session, member.id, points, utcnow())


def test_a_new_return_window_applies_to_later_earnings_only(app, client, admin, checkout):
    client.post("/v1/members", json={"external_id": "m1"}, headers=checkout)
    earlier = earn(app, "m1", 100)

    patch(client, admin, {"pending_days": 0})
    later = earn(app, "m1", 40)

    balance = client.get("/v1/members/m1", headers=checkout).json["balance"]
    assert (balance["pending"], balance["available"]) == (100, 40)
    assert earlier.available_at - earlier.created_at > dt.timedelta(days=13)
    assert later.available_at <= later.created_at


def test_a_new_expiry_policy_applies_to_later_earnings_only(app, client, admin, checkout):
    client.post("/v1/members", json={"external_id": "m1"}, headers=checkout)
    earlier = earn(app, "m1", 100)

    patch(client, admin, {"expiry": {"policy": "never"}})
    later = earn(app, "m1", 40)

    assert earlier.expires_at is not None
    assert later.expires_at is None
