"""Erasing a member's personal data: the profile is cleared and the customer id replaced by a
pseudonym everywhere, while the ledger keeps its amounts and still verifies."""

from __future__ import annotations

import hashlib
import hmac

import pytest
import sqlalchemy as sa

from loyalty.extensions import db
from loyalty.webhooks.models import OutboxEvent
from tests.api.checkout_calls import add_rule, enroll, give, order
from tests.concurrency import race_requests, raised
from tests.factories import RuleFactory
from tests.helpers import created, ok, problem

# After every test the whole ledger must verify.
pytestmark = pytest.mark.usefixtures("ledger_verifies_after_each_test")

PROFILE = {
    "external_id": "c1",
    "email": "ada@example.com",
    "name": "Ada Lovelace",
    "birthday": "1815-12-10",
    "metadata": {"city": "London"},
}


def erase(client, admin, external_id="c1"):
    return client.post(f"/v1/admin/members/{external_id}/erasure", headers=admin)


@pytest.fixture
def ada(client, checkout, admin):
    """c1 with a full profile and 500 points."""
    created(client.post("/v1/members", json=PROFILE, headers=checkout))
    give(client, admin, "c1", 500)
    return "c1"


def test_erasure_answers_with_the_pseudonym_that_now_stands_for_the_member(client, admin, app, ada):
    answer = ok(erase(client, admin))

    digest = hmac.new(app.config["SECRET_KEY"].encode(), b"c1", hashlib.sha256).hexdigest()
    assert answer["member_id"].startswith(f"erased:{digest[:32]}:")
    assert set(answer) == {"member_id", "erased_at"}


def test_an_erased_member_keeps_no_personal_data_and_is_closed(client, admin, checkout, ada):
    pseudonym = ok(erase(client, admin))["member_id"]

    card = ok(client.get(f"/v1/members/{pseudonym}", headers=checkout))
    assert {key: card[key] for key in ("email", "name", "birthday", "metadata", "status")} == {
        "email": None,
        "name": None,
        "birthday": None,
        "metadata": {},
        "status": "closed",
    }
    problem(client.get("/v1/members/c1", headers=checkout), 404, "not_found")


def test_the_ledger_keeps_the_amounts_under_the_pseudonym(client, admin, checkout, ada):
    pseudonym = ok(erase(client, admin))["member_id"]

    history = ok(client.get(f"/v1/members/{pseudonym}/transactions", headers=checkout))
    assert [(item["kind"], item["points"]) for item in history["items"]] == [
        ("forfeit", -500),
        ("adjust", 500),
    ]
    report = ok(client.get("/v1/admin/reports/liability", headers=admin))
    assert (report["outstanding"], report["consistent"]) == (0, True)


def test_an_erased_member_can_no_longer_earn(client, admin, checkout, rule, ada):
    pseudonym = ok(erase(client, admin))["member_id"]

    problem(order(client, checkout, member_id=pseudonym), 422, "member_inactive")


def test_erasing_again_answers_the_same_by_the_old_id_or_the_pseudonym(client, admin, ada):
    first = ok(erase(client, admin))

    assert ok(erase(client, admin)) == first
    assert ok(erase(client, admin, first["member_id"])) == first
    log = ok(client.get("/v1/admin/audit-log", headers=admin))["items"]
    assert [entry["action"] for entry in log].count("member.erase") == 1


def test_erasing_nobody_is_a_404(client, admin):
    problem(erase(client, admin, "nobody"), 404, "not_found")


def test_a_customer_erased_can_enrol_again_and_be_erased_again(client, admin, checkout, ada):
    first = ok(erase(client, admin))["member_id"]

    again = created(client.post("/v1/members", json={"external_id": "c1"}, headers=checkout))
    second = ok(erase(client, admin))["member_id"]

    assert again["balance"]["available"] == 0
    assert second != first
    assert second.rsplit(":", 1)[0] == first.rsplit(":", 1)[0]


def test_the_audit_log_keeps_what_was_done_without_the_person(client, admin, ada):
    client.patch("/v1/admin/members/c1", json={"name": "Ada King"}, headers=admin)

    pseudonym = ok(erase(client, admin))["member_id"]

    assert ok(client.get("/v1/admin/audit-log?target_id=c1", headers=admin))["items"] == []
    entries = ok(client.get(f"/v1/admin/audit-log?target_id={pseudonym}", headers=admin))["items"]
    assert [entry["action"] for entry in entries] == [
        "member.erase",
        "member.update",
        "points.adjust",
    ]
    text = repr(entries)
    assert "Ada" not in text
    assert "ada@example.com" not in text


def test_webhook_payloads_name_the_pseudonym_and_not_the_person(client, admin, app, ada):
    pseudonym = ok(erase(client, admin))["member_id"]

    with app.app_context():
        payloads = db.session.scalars(sa.select(OutboxEvent.payload)).all()
    assert {payload["member_id"] for payload in payloads} == {pseudonym}
    assert "Ada" not in repr(payloads)
    assert "ada@example.com" not in repr(payloads)


def test_event_attributes_are_forgotten_and_event_ids_carry_the_pseudonym(
    client, admin, checkout, ada
):
    event = {"event_id": "e1", "member_id": "c1", "type": "review", "attributes": {"text": "Ada"}}
    client.post("/v1/events", json=event, headers=checkout)

    pseudonym = ok(erase(client, admin))["member_id"]

    exported = ok(client.get(f"/v1/admin/members/{pseudonym}/export", headers=admin))
    assert [(item["event_id"], item["attributes"]) for item in exported["events"]] == [
        (f"signup:{pseudonym}", {}),
        ("e1", {}),
    ]


def test_the_referral_the_referrer_earned_names_the_pseudonym(client, admin, checkout, rule):
    add_rule(client, admin, RuleFactory.build(referral=True))
    # No return window: the friend's first order rewards the referral at once.
    client.patch("/v1/admin/program", json={"pending_days": 0}, headers=admin)
    enroll(client, checkout, "host")
    enroll(client, checkout, "friend", referred_by="host")
    order(client, checkout, member_id="friend")

    pseudonym = ok(erase(client, admin, "friend"))["member_id"]

    exported = ok(client.get("/v1/admin/members/host/export", headers=admin))
    referrals = [event for event in exported["events"] if event["type"] == "referral"]
    assert [(event["event_id"], event["attributes"]) for event in referrals] == [
        (f"referral:{pseudonym}", {"referred": pseudonym})
    ]
    assert exported["balance"]["available"] == 500  # the referrer keeps what they earned


def test_a_stored_answer_showing_the_member_is_not_replayed_after_erasure(
    client, admin, checkout, ada
):
    keyed = {**checkout, "Idempotency-Key": "enrol-ada"}
    first = client.post("/v1/members", json=PROFILE, headers=keyed)
    assert first.json["email"] == "ada@example.com"

    erase(client, admin)

    again = client.post("/v1/members", json=PROFILE, headers=keyed)
    assert again.status_code == 201  # enrolled anew, not the erased member's card replayed


@pytest.mark.committed  # threads, each on its own connection
def test_racing_erasures_of_one_member_erase_once(app, client, admin, checkout):
    created(client.post("/v1/members", json=PROFILE, headers=checkout))
    give(client, admin, "c1", 500)

    responses = race_requests(app, 4, lambda racer: erase(racer, admin))

    assert raised(responses) == []
    assert [response.status_code for response in responses] == [200] * 4
    assert len({response.json["member_id"] for response in responses}) == 1
    log = ok(client.get("/v1/admin/audit-log", headers=admin))["items"]
    assert [entry["action"] for entry in log].count("member.erase") == 1


def test_referral_webhooks_name_an_erased_referrer_by_the_pseudonym(client, admin, checkout, app):
    enroll(client, checkout, "host")
    enroll(client, checkout, "friend", referred_by="host")

    pseudonym = ok(erase(client, admin, "host"))["member_id"]

    with app.app_context():
        payloads = db.session.scalars(
            sa.select(OutboxEvent.payload).where(OutboxEvent.type == "referral.linked")
        ).all()
    assert [payload["referrer_id"] for payload in payloads] == [pseudonym]
