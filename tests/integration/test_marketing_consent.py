"""Automations and marketing consent: an automation's webhook is the shop's marketing
message, so it reaches only members who consented on a channel; its grants are the
program's and are given either way."""

from __future__ import annotations

import io

import pytest
import sqlalchemy as sa

from loyalty.automations.models import AutomationFiring
from loyalty.imports import services as imports
from loyalty.imports.rows import ImportRejected
from loyalty.membership import services as membership
from loyalty.membership.services import MemberChanges
from tests.factories import MemberFactory
from tests.integration.test_automation_actions import ENROLLED, points_action
from tests.integration.test_automations import DAY, T0, WEBHOOK, automation, fired_for, run

NONE = {"marketing_email": False, "marketing_sms": False}


def firings(session) -> int:
    return session.scalar(sa.select(sa.func.count(AutomationFiring.id)))


def test_a_webhook_only_automation_skips_members_without_consent(session):
    automation(session, ENROLLED)
    MemberFactory(external_id="email", now=T0)
    MemberFactory(external_id="sms", consent={"marketing_sms": True}, now=T0)
    MemberFactory(external_id="none", consent=NONE, now=T0)

    assert run(session, T0) == 2

    assert sorted(fired_for(session)) == ["email", "sms"]
    assert firings(session) == 2


def test_a_member_who_consents_later_is_messaged_while_the_trigger_is_still_due(session):
    automation(session, {"kind": "enrolled", "delay_days": 0})
    MemberFactory(external_id="late", consent=NONE, now=T0)
    assert run(session, T0) == 0

    membership.update_member(
        session, "late", MemberChanges(marketing_email=True), "test", now=T0 + DAY
    )

    assert run(session, T0 + DAY) == 1
    assert fired_for(session) == ["late"]


def test_grants_are_given_without_consent_but_the_webhook_is_withheld(session):
    automation(session, ENROLLED, actions=[WEBHOOK, points_action(200)])
    MemberFactory(external_id="yes", now=T0)
    MemberFactory(external_id="no", consent=NONE, now=T0)

    assert run(session, T0) == 2

    assert fired_for(session) == ["yes"]
    assert membership.card(session, "no", now=T0).available == 200
    assert membership.card(session, "yes", now=T0).available == 200


def test_imported_members_bring_the_consent_the_shop_collected(session):
    rows = "external_id,marketing_email,marketing_sms\na,true,\nb,false,true\nc,,\n"

    imports.import_members(session, io.StringIO(rows))

    consent = {
        external_id: {
            channel: (given.granted, given.changed_at is not None)
            for channel, given in membership.card(session, external_id).consent.items()
        }
        for external_id in ("a", "b", "c")
    }
    assert consent == {
        "a": {"marketing_email": (True, True), "marketing_sms": (False, False)},
        "b": {"marketing_email": (False, True), "marketing_sms": (True, True)},
        "c": {"marketing_email": (False, False), "marketing_sms": (False, False)},
    }


def test_an_import_refuses_consent_that_is_not_true_or_false(session):
    with pytest.raises(ImportRejected) as refused:
        imports.import_members(session, io.StringIO("external_id,marketing_email\na,yes\n"))

    assert "marketing_email: true, false or empty" in repr(refused.value.rejected)
