"""The benefits a member holds: their tier's and those granted to them.

The tiers' program, its defaults and how time is moved: see tests/api/tier_calls.py. After
every test the whole ledger must verify.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from loyalty.db import utcnow
from loyalty.ledger.policy import add_months
from loyalty.members import lookup
from loyalty.orders import refunds
from loyalty.tiers import benefits as tier_benefits
from loyalty.tiers.models import BenefitGrant
from tests.api.tier_calls import (
    DAY,
    SECOND,
    card,
    card_at,
    moves,
    order,
    refund,
)
from tests.commands import refund_command
from tests.factories import OrderFactory
from tests.helpers import ok, problem, services, when

# After every test the whole ledger must verify.
pytestmark = pytest.mark.usefixtures("ledger_verifies_after_each_test")


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


def quote_of_62_dollars(client: FlaskClient, checkout: dict[str, str]) -> dict[str, Any]:
    cart = OrderFactory.build(order_id=None, worth=62, uncategorised=True)
    return ok(client.post("/v1/orders/quote", json=cart, headers=checkout))


def test_the_quote_counts_the_tiers_multiplier_too(client, checkout, program, member):
    order(client, checkout, "o1", 2000)
    quoted = quote_of_62_dollars(client, checkout)

    assert quoted["points_to_earn"] == 124
    assert "tier:platinum" in {c["rule_id"] for c in quoted["breakdown"]}


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
    with services(app) as session:
        # Before the member's enrolment (today): it earns because it asks to.
        OrderFactory(
            order_id="old", worth=dollars, uncategorised=True, now=moment, earn_points=True
        )
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
    quoted = quote_of_62_dollars(client, checkout)

    assert quoted["points_to_earn"] == 62
    assert [c["rule_id"] for c in quoted["breakdown"]] == [spend_rule_id(client, admin)]


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
