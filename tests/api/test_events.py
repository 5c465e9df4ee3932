"""Events over HTTP: the points event, signup and referral rules credit, and their caps."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from loyalty.db import utcnow
from loyalty.events import services as events
from loyalty.extensions import db
from loyalty.ledger.models import (
    LedgerTransaction,
)
from tests.api.checkout_calls import (
    DAY,
    add_rule,
    balance,
    ended_five_days_before,
    enroll,
    order,
)
from tests.commands import event_command
from tests.factories import RuleFactory
from tests.helpers import problem

# After every test the whole ledger must verify.
pytestmark = pytest.mark.usefixtures("ledger_verifies_after_each_test")


def event(client, checkout, event_id, event_type="review", external_id="c1", **fields):
    return client.post(
        "/v1/events",
        json={"event_id": event_id, "member_id": external_id, "type": event_type, **fields},
        headers=checkout,
    )


def add_capped_review(client, admin, **per_member_cap):
    """The review rule, capped per member over 30 days (`count=` or `points=`)."""
    caps = {"per_member": {"period_days": 30, **per_member_cap}}
    add_rule(client, admin, RuleFactory.build(review=True, caps=caps))


def earned_by_events(client, checkout, count):
    """What each of `count` reviews by c1 earned."""
    return [event(client, checkout, f"e{n}").json["points_earned"] for n in range(count)]


def test_event_earns_points_by_its_rule_available_at_once(client, checkout, admin, member):
    review = add_rule(client, admin, RuleFactory.build(review=True))
    response = event(client, checkout, "e1")
    assert response.status_code == 201, response.json
    assert response.json["points_earned"] == 25
    assert response.json["breakdown"] == [
        {"rule_id": review["id"], "version": 1, "name": "Review", "kind": "event", "points": 25}
    ]
    assert balance(client, checkout) == {"available": 25, "pending": 0, "held": 0}


def test_custom_event_types_earn_by_their_own_rules(client, checkout, admin, member):
    add_rule(client, admin, RuleFactory.build(review=True))
    add_rule(
        client,
        admin,
        RuleFactory.build(review=True, name="Survey", event_type="survey_done", points=7),
    )
    assert event(client, checkout, "e1", "survey_done").json["points_earned"] == 7


def test_event_without_a_rule_is_recorded_and_earns_nothing(client, checkout, app, member):
    response = event(client, checkout, "e1", "birthday")
    assert response.status_code == 201, response.json
    assert response.json["points_earned"] == 0
    assert balance(client, checkout)["available"] == 0


def test_event_rules_cap_the_count_per_member_per_period(client, checkout, admin, app, member):
    add_capped_review(client, admin, count=3)
    earned = earned_by_events(client, checkout, 4)
    assert earned == [25, 25, 25, 0]
    assert balance(client, checkout)["available"] == 75
    with app.app_context():
        later, _ = events.record_event(
            db.session,
            event_command({"event_id": "e-later", "member_id": "c1", "type": "review"}),
            now=utcnow() + 31 * DAY,
        )
        assert later.points_earned == 25


def test_event_rules_cap_the_points_per_member_per_period(client, checkout, admin, member):
    add_capped_review(client, admin, points=60)
    earned = earned_by_events(client, checkout, 4)
    assert earned == [25, 25, 10, 0]


def test_event_caps_count_per_member(client, checkout, admin, member):
    add_capped_review(client, admin, count=1)
    enroll(client, checkout, "c2")
    assert event(client, checkout, "e1").json["points_earned"] == 25
    assert event(client, checkout, "e2", external_id="c2").json["points_earned"] == 25


def test_same_event_again_returns_the_first_answer_and_earns_once(client, checkout, admin, member):
    add_rule(client, admin, RuleFactory.build(review=True))
    first = event(client, checkout, "e1")
    again = event(client, checkout, "e1")
    assert (again.status_code, again.json) == (first.status_code, first.json)
    assert balance(client, checkout)["available"] == 25


def test_same_event_id_with_a_different_body_is_an_event_conflict(client, checkout, admin, member):
    add_rule(client, admin, RuleFactory.build(review=True))
    event(client, checkout, "e1")
    problem(event(client, checkout, "e1", attributes={"stars": 5}), 409, "event_conflict")
    assert balance(client, checkout)["available"] == 25


def test_event_for_a_suspended_member_earns_nothing(client, checkout, admin, member):
    add_rule(client, admin, RuleFactory.build(review=True))
    client.patch("/v1/admin/members/c1", json={"status": "suspended"}, headers=admin)
    problem(event(client, checkout, "e1"), 422, "member_inactive")


def test_event_in_the_future_is_refused(client, checkout, member):
    response = event(client, checkout, "e1", occurred_at=(utcnow() + DAY).isoformat())
    assert "occurred_at" in problem(response, 422, "validation_error")["errors"]


def test_event_rule_window_is_checked_at_occurred_at(client, checkout, admin, member):
    now = utcnow()
    add_rule(
        client,
        admin,
        RuleFactory.build(review=True, **ended_five_days_before(now)),
    )
    assert event(client, checkout, "e1").json["points_earned"] == 0
    late = event(client, checkout, "e2", occurred_at=(now - 7 * DAY).isoformat())
    assert late.json["points_earned"] == 25


def test_signup_rule_credits_points_on_enrolment_once(client, checkout, admin):
    add_rule(
        client,
        admin,
        RuleFactory.build(review=True, name="Welcome", event_type="signup", points=100),
    )
    enroll(client, checkout, "c1")
    assert balance(client, checkout) == {"available": 100, "pending": 0, "held": 0}
    enroll(client, checkout, "c1")
    assert balance(client, checkout)["available"] == 100


def test_enrolment_without_a_signup_rule_credits_nothing(client, checkout, app):
    enroll(client, checkout, "c1")
    assert balance(client, checkout)["available"] == 0
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(LedgerTransaction)) == 0


@pytest.fixture
def referral(client, admin, checkout, rule):
    """A referral rule worth 500; "friend" was referred by "host"; no return window, so the
    referral is rewarded with the first order (tests/integration/test_referrals.py waits
    for one)."""
    add_rule(client, admin, RuleFactory.build(referral=True))
    client.patch("/v1/admin/program", json={"pending_days": 0}, headers=admin)
    enroll(client, checkout, "host")
    enroll(client, checkout, "friend", referred_by="host")


def test_referrer_is_credited_when_the_referred_members_first_order_is_placed(
    client, checkout, referral
):
    assert balance(client, checkout, "host")["available"] == 0
    assert order(client, checkout, member_id="friend").status_code == 201
    assert balance(client, checkout, "host") == {"available": 500, "pending": 0, "held": 0}
    assert balance(client, checkout, "friend") == {"available": 62, "pending": 0, "held": 0}


def test_referrer_is_credited_once(client, checkout, referral):
    order(client, checkout, member_id="friend")
    order(client, checkout, member_id="friend")  # a retry of the first order
    order(client, checkout, "o2", member_id="friend")
    assert balance(client, checkout, "host")["available"] == 500


def test_referrer_is_not_credited_for_a_refused_order(client, checkout, referral):
    problem(order(client, checkout, member_id="friend", currency="EUR"), 422, "currency_mismatch")
    assert balance(client, checkout, "host")["available"] == 0


def test_referral_to_an_unknown_member_is_refused(client, checkout):
    response = client.post(
        "/v1/members", json={"external_id": "c9", "referred_by": "nobody"}, headers=checkout
    )
    problem(response, 422, "referrer_not_found")
