"""Marketing consent on the member: given at enrolment or changed by an admin, each channel
with the time it was last given or withdrawn, shown on the card and carried by webhooks."""

from __future__ import annotations

import sqlalchemy as sa

from loyalty.extensions import db
from loyalty.webhooks.models import OutboxEvent
from tests.helpers import created, ok, problem


def enrol(client, checkout, **fields):
    return created(
        client.post("/v1/members", json={"external_id": "c1", **fields}, headers=checkout)
    )


def change(client, admin, consent):
    return ok(client.patch("/v1/admin/members/c1", json={"consent": consent}, headers=admin))


def payloads(app, event_type):
    with app.app_context():
        return db.session.scalars(
            sa.select(OutboxEvent.payload)
            .where(OutboxEvent.type == event_type)
            .order_by(OutboxEvent.id)
        ).all()


def test_a_member_never_asked_has_consented_to_nothing(client, checkout):
    card = enrol(client, checkout)

    assert card["consent"] == {
        "marketing_email": {"granted": False, "changed_at": None},
        "marketing_sms": {"granted": False, "changed_at": None},
    }


def test_consent_given_at_enrolment_is_on_the_card_with_its_time(client, checkout):
    card = enrol(client, checkout, consent={"marketing_email": True})

    assert card["consent"]["marketing_email"]["granted"] is True
    assert card["consent"]["marketing_email"]["changed_at"] is not None
    assert card["consent"]["marketing_sms"] == {"granted": False, "changed_at": None}


def test_an_admin_withdraws_consent_and_its_time_moves(client, checkout, admin):
    given = enrol(client, checkout, consent={"marketing_email": True})["consent"]

    withdrawn = change(client, admin, {"marketing_email": False})["consent"]

    assert withdrawn["marketing_email"]["granted"] is False
    assert withdrawn["marketing_email"]["changed_at"] >= given["marketing_email"]["changed_at"]


def test_stating_the_same_consent_again_keeps_when_it_was_given(client, checkout, admin):
    given = enrol(client, checkout, consent={"marketing_sms": True})["consent"]

    again = change(client, admin, {"marketing_sms": True})["consent"]

    assert again["marketing_sms"] == given["marketing_sms"]


def test_a_consent_change_is_audited(client, checkout, admin):
    enrol(client, checkout)

    change(client, admin, {"marketing_email": True})

    [entry] = ok(client.get("/v1/admin/audit-log?target_id=c1", headers=admin))["items"]
    assert (entry["before"]["marketing_email"], entry["after"]["marketing_email"]) == (False, True)


def test_webhooks_about_the_member_carry_their_consent(client, checkout, admin, app):
    enrol(client, checkout, consent={"marketing_email": True})
    change(client, admin, {"marketing_sms": True})

    [enrolled] = payloads(app, "member.enrolled")
    [updated] = payloads(app, "member.updated")
    assert enrolled["consent"] == {"marketing_email": True, "marketing_sms": False}
    assert updated["consent"] == {"marketing_email": True, "marketing_sms": True}


def test_consent_is_true_or_false_and_names_known_channels(client, checkout):
    for consent in ({"marketing_email": "yes"}, {"marketing_post": True}, {"marketing_sms": 1}):
        response = client.post(
            "/v1/members", json={"external_id": "c1", "consent": consent}, headers=checkout
        )
        problem(response, 422, "validation_error")
