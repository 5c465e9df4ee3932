"""The console's automation forms through the Flask test client: a new automation and an
automation's next version (an action the form does not know kept untouched), refusals shown
next to their fields with what was typed, activation, the simulator, CSRF and sign-in.
Every write goes through the API's schemas and services, so it is audited as through the API.

No app context stays pushed across the client's requests (see test_console_security.py).
"""

from __future__ import annotations

import datetime as dt
import html
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from loyalty.audit.models import AuditEntry
from loyalty.automations import services as automations
from loyalty.automations.services import AutomationVersionView
from loyalty.console import automation_forms
from loyalty.db import utcnow
from loyalty.rules import services as rules
from loyalty.schemas.automations import AutomationInSchema
from tests.console import csrf_token, sign_in
from tests.factories import ApiKeyFactory, MemberFactory, RuleFactory, auth
from tests.helpers import services

NEW = "/admin/automations/new"
# A form as a browser without script sends it: every trigger kind's parameter fields, filled
# or not, whatever the kind chosen.
WIN_BACK_FORM = {
    "name": "Win-back after 60 days",
    "kind": "inactive",
    "trigger_delay_days": "5",  # enrolled's: ignored for an inactive trigger
    "trigger_days": "60",
    "trigger_within_days": "",
    "trigger_factor": "1.5",  # repurchase_due's: ignored
    "trigger_segment": "not a key!",  # segment_entered's: ignored, never validated
    "tiers": "gold, silver",
    "segments": "",
    "predicted_value_min": "1000",
    "predicted_value_max": "",
    "metadata": 'vip = true\nplan = gold\ncode = "42"',
    "webhook": "y",
    "dedup_days": "30",
    "active": "y",
}


@pytest.fixture
def admin(app: Flask) -> str:
    """The raw admin key of "ops-admin"."""
    with services(app):
        key: str = ApiKeyFactory(name="ops-admin", scopes=("admin",))
    return key


@pytest.fixture
def bonus_rule(app: Flask) -> str:
    """The public id of an active bonus rule of 200 points, for grant_points actions."""
    with services(app):
        return str(
            RuleFactory(bonus=True, name="Welcome gift", points=200, conditions={}).public_id
        )


def post(client: FlaskClient, path: str, data: dict[str, str], token_from: str) -> TestResponse:
    return client.post(path, data={**data, "csrf_token": csrf_token(client, token_from)})


def create(app: Flask, body: dict[str, Any], now: dt.datetime | None = None) -> str:
    """An automation created through the service (as the API would), by "seed"."""
    with services(app) as session:
        definition = AutomationInSchema().load(body)
        return str(automations.create_automation(session, definition, "seed", now=now).public_id)


def current(app: Flask, automation_id: str) -> AutomationVersionView:
    with services(app) as session:
        return automations.get_automation(session, uuid.UUID(automation_id)).current


def audited(app: Flask) -> list[tuple[str, str, str | None]]:
    with services(app) as session:
        entries = session.scalars(sa.select(AuditEntry).order_by(AuditEntry.id))
        return [(e.actor, e.action, e.target_id) for e in entries if e.target_type == "automation"]


def listed(app: Flask) -> list[str]:
    with services(app) as session:
        found, _ = automations.list_automations(session, active=None, limit=10, after=None)
        return [automation.current.name for automation in found]


def field_error(response: TestResponse, name: str) -> str:
    """The message shown next to the field `name` (empty when there is none)."""
    text = response.text
    marker = f'<p class="error" id="{name}-error">'
    if marker not in text:
        return ""
    return html.unescape(text.split(marker, 1)[1].split("</p>", 1)[0])


# Creating


def test_an_admin_creates_an_automation_and_it_is_audited_as_through_the_api(
    app, client, admin, bonus_rule
):
    sign_in(client, admin)

    response = post(
        client,
        NEW,
        {**WIN_BACK_FORM, "grant": "y", "grant_rule_id": bonus_rule, "grant_points": "50"},
        NEW,
    )

    assert response.status_code == 302, response.text
    automation_id = response.location.rsplit("/", 1)[1]
    version = current(app, automation_id)
    assert (version.version, version.name, version.active) == (1, "Win-back after 60 days", True)
    assert version.trigger == {"kind": "inactive", "days": 60}
    assert version.conditions == {
        "tiers": ["gold", "silver"],
        "predicted_value": {"min": 1000, "max": None},
        "metadata": {"vip": True, "plan": "gold", "code": "42"},
    }
    assert version.actions == (
        {"type": "webhook"},
        {"type": "grant_points", "rule_id": bonus_rule, "points": 50},
    )
    assert version.dedup_days == 30
    assert version.actor == "ops-admin"
    assert audited(app) == [("ops-admin", "automation.create", automation_id)]
    page = client.get(response.location)
    assert "created (version 1)" in page.text


def test_an_admin_creates_a_cart_abandoned_automation_with_its_hours(app, client, admin):
    sign_in(client, admin)
    typed = {**WIN_BACK_FORM, "name": "Your cart", "kind": "cart_abandoned"}

    response = post(client, NEW, {**typed, "trigger_after_hours": "4"}, NEW)

    assert response.status_code == 302, response.text
    version = current(app, response.location.rsplit("/", 1)[1])
    assert version.trigger == {"kind": "cart_abandoned", "after_hours": 4}
    assert 'data-kinds="cart_abandoned"' in client.get(NEW).text


def test_the_new_form_offers_the_active_bonus_rules_to_grant_through(
    app, client, admin, bonus_rule
):
    with services(app):
        spend = RuleFactory(name="Base earning")
    sign_in(client, admin)

    page = client.get(NEW)

    assert f'<option value="{bonus_rule}">Welcome gift</option>' in page.text
    assert str(spend.public_id) not in page.text


def test_every_trigger_parameter_field_comes_from_the_schema_with_the_kinds_taking_it(
    client, admin
):
    sign_in(client, admin)

    page = client.get(NEW).text

    for parameter in automation_forms.TRIGGER_PARAMETERS:
        assert f'data-kinds="{" ".join(parameter.kinds)}"' in page
        assert f'id="{parameter.field_name}"' in page
    assert 'data-kinds="points_expiring tier_at_risk"' in page  # within_days
    assert 'data-kinds="segment_entered segment_left"' in page


# Refusals


def test_refusals_are_shown_next_to_their_fields_with_what_was_typed(app, client, admin):
    sign_in(client, admin)
    typed = {
        **WIN_BACK_FORM,
        "name": "",
        "trigger_days": "sixty",
        "tiers": "gold, " + "x" * 65,
        "predicted_value_min": "500",
        "predicted_value_max": "100",
        "metadata": "vip = true\nno value here",
        "dedup_days": "0",
    }

    response = post(client, NEW, typed, NEW)

    assert response.status_code == 422
    assert field_error(response, "name") == "Length must be between 1 and 200."
    assert field_error(response, "trigger_days") == "Not a valid integer."
    assert field_error(response, "tiers") == "Length must be between 1 and 64."
    assert field_error(response, "metadata") == "Line 2: write key = value."
    assert "greater than or equal to 1" in field_error(response, "dedup_days")
    assert 'value="sixty"' in response.text
    assert "x" * 65 in response.text
    assert "no value here</textarea>" in response.text
    assert 'value="0"' in response.text
    assert listed(app) == []


def test_the_services_refusals_are_shown_next_to_their_fields_too(app, client, admin):
    sign_in(client, admin)
    spend_rule = "00000000-0000-4000-8000-000000000000"

    response = post(
        client,
        NEW,
        {
            **WIN_BACK_FORM,
            "segments": "no_such_segment",
            "predicted_value_min": "500",
            "predicted_value_max": "100",
            "grant": "y",
            "grant_rule_id": spend_rule,
        },
        NEW,
    )

    # The definition's checks run first (max below min), then the database's.
    assert response.status_code == 422
    assert field_error(response, "predicted_value_max") == "Must not be below min."
    assert 'value="no_such_segment"' in response.text
    assert listed(app) == []

    response = post(
        client,
        NEW,
        {**WIN_BACK_FORM, "grant": "y", "grant_rule_id": spend_rule},
        NEW,
    )
    assert response.status_code == 422
    assert "Not an active earning rule of kind bonus." in field_error(response, "grant_rule_id")
    # The rule chosen stays chosen, said to be no active bonus rule.
    assert f'<option selected value="{spend_rule}">' in response.text

    response = post(client, NEW, {**WIN_BACK_FORM, "segments": "no_such_segment"}, NEW)
    assert response.status_code == 422
    assert "no_such_segment" in field_error(response, "segments")
    assert listed(app) == []


@pytest.mark.parametrize(
    ("typed", "api_trigger"),
    [
        ({"kind": "inactive", "trigger_days": "0"}, {"kind": "inactive", "days": 0}),
        ({"kind": "inactive", "trigger_days": "6.5"}, {"kind": "inactive", "days": "6.5"}),
        ({"kind": "inactive"}, {"kind": "inactive"}),
        (
            {"kind": "repurchase_due", "trigger_default_gap_days": "30", "trigger_factor": "x"},
            {"kind": "repurchase_due", "default_gap_days": 30, "factor": "x"},
        ),
        (
            {"kind": "segment_left", "trigger_segment": "Not a key"},
            {"kind": "segment_left", "segment": "Not a key"},
        ),
        (
            {"kind": "reward_affordable", "trigger_reward_id": "r1"},
            {"kind": "reward_affordable", "reward_id": "r1"},
        ),
        ({"kind": "cart_left"}, {"kind": "cart_left"}),
        ({"kind": "cart_abandoned"}, {"kind": "cart_abandoned"}),
        (
            {"kind": "cart_abandoned", "trigger_after_hours": "721"},
            {"kind": "cart_abandoned", "after_hours": 721},
        ),
    ],
)
def test_the_form_refuses_a_trigger_with_the_apis_own_message(client, admin, typed, api_trigger):
    api = client.post(
        "/v1/admin/automations",
        json={"name": "x", "trigger": api_trigger, "actions": [{"type": "webhook"}]},
        headers=auth(admin),
    )
    assert api.status_code == 422
    ((key, messages),) = api.json["errors"].items()
    sign_in(client, admin)

    response = post(client, NEW, {"name": "x", "webhook": "y", **typed}, NEW)

    assert response.status_code == 422
    name = "kind" if key == "trigger.kind" else "trigger_" + key.removeprefix("trigger.")
    assert field_error(response, name) == " ".join(messages)


def test_a_trigger_missing_its_required_parameter_is_refused_by_the_field(client, admin):
    sign_in(client, admin)

    response = post(client, NEW, {**WIN_BACK_FORM, "trigger_days": ""}, NEW)

    assert response.status_code == 422
    assert field_error(response, "trigger_days") == "Required for inactive triggers."


def test_an_automation_needs_an_action(app, client, admin):
    sign_in(client, admin)
    without_webhook = {k: v for k, v in WIN_BACK_FORM.items() if k != "webhook"}

    response = post(client, NEW, without_webhook, NEW)

    assert response.status_code == 422
    assert 'id="actions-error"' in response.text
    assert listed(app) == []


# Editing


def test_an_edit_saves_the_whole_form_as_the_next_version(app, client, admin):
    automation_id = create(
        app,
        {
            "name": "Win-back",
            "trigger": {"kind": "inactive", "days": 60},
            "conditions": {"tiers": ["gold"], "metadata": {"vip": True, "code": "42"}},
            "actions": [{"type": "webhook"}],
            "dedup_days": 90,
        },
    )
    sign_in(client, admin)
    edit = f"/admin/automations/{automation_id}/edit"

    page = client.get(edit)
    assert 'id="trigger_days" name="trigger_days" type="number" value="60"' in page.text
    assert 'value="gold"' in page.text
    assert 'vip = true\ncode = "42"</textarea>' in html.unescape(page.text)
    form = {
        "name": "Points expiring soon",
        "kind": "points_expiring",
        "trigger_days": "60",  # the old kind's: ignored
        "trigger_within_days": "14",
        "tiers": "",  # removed
        "metadata": 'vip = true\ncode = "42"',  # as shown: the same values
        "webhook": "y",
        "dedup_days": "",  # cleared
        "active": "y",
    }
    response = post(client, edit, form, edit)

    assert response.status_code == 302, response.text
    version = current(app, automation_id)
    assert version.version == 2
    assert version.name == "Points expiring soon"
    assert version.trigger == {"kind": "points_expiring", "within_days": 14}
    assert version.conditions == {"metadata": {"vip": True, "code": "42"}}
    assert version.dedup_days is None
    assert audited(app) == [
        ("seed", "automation.create", automation_id),
        ("ops-admin", "automation.update", automation_id),
    ]
    assert "Saved as version 2." in client.get(response.location).text


def test_an_edit_keeps_an_action_the_form_does_not_know_untouched(
    app, client, admin, bonus_rule, monkeypatch
):
    # The form knowing only webhooks stands for an action type added after it (a coupon).
    monkeypatch.setattr(automation_forms, "FORM_ACTIONS", ("webhook",))
    grant = {"type": "grant_points", "rule_id": bonus_rule, "points": 75}
    automation_id = create(
        app,
        {
            "name": "Welcome",
            "trigger": {"kind": "enrolled", "delay_days": 0},
            "actions": [{"type": "webhook"}, grant],
        },
    )
    sign_in(client, admin)
    edit = f"/admin/automations/{automation_id}/edit"

    page = client.get(edit)
    assert 'id="kept-actions"' in page.text
    assert 'id="grant_points"' not in page.text
    form = {"name": "Welcome (renamed)", "kind": "enrolled", "trigger_delay_days": "1"}
    # Sent anyway (a stale page, a forged post): the form does not read them.
    forged = {"grant": "y", "grant_rule_id": "", "grant_points": "999"}
    response = post(client, edit, {**form, **forged, "active": "y"}, edit)

    assert response.status_code == 302, response.text
    version = current(app, automation_id)
    assert (version.version, version.name) == (2, "Welcome (renamed)")
    assert version.actions == (grant,)  # the webhook unticked, the grant as it was


def test_a_refused_edit_shows_the_form_again_and_saves_nothing(app, client, admin):
    automation_id = create(
        app,
        {
            "name": "Win-back",
            "trigger": {"kind": "inactive", "days": 60},
            "actions": [{"type": "webhook"}],
        },
    )
    sign_in(client, admin)
    edit = f"/admin/automations/{automation_id}/edit"

    response = post(
        client, edit, {"name": "Win-back", "kind": "inactive", "trigger_days": "4000"}, edit
    )

    assert response.status_code == 422
    assert "less than or equal to 3650" in field_error(response, "trigger_days")
    assert 'value="4000"' in response.text
    assert current(app, automation_id).version == 1


def test_editing_an_unknown_automation_is_the_404_page(client, admin):
    sign_in(client, admin)

    response = client.get("/admin/automations/00000000-0000-4000-8000-000000000000/edit")

    assert response.status_code == 404
    assert "No automation" in response.text


# Activating, simulating


def test_an_admin_deactivates_and_activates_an_automation(app, client, admin):
    automation_id = create(
        app,
        {"name": "Birthday", "trigger": {"kind": "birthday"}, "actions": [{"type": "webhook"}]},
    )
    sign_in(client, admin)
    page = f"/admin/automations/{automation_id}"
    assert post(client, f"{page}/deactivate", {}, page).status_code == 302

    response = post(client, f"{page}/activate", {}, page)

    assert response.status_code == 302
    with services(app) as session:
        automation = automations.get_automation(session, uuid.UUID(automation_id))
        assert (automation.active, automation.current.version) == (True, 3)
    assert "Active as of version 3" in client.get(page).text
    assert [action for _, action, _ in audited(app)] == [
        "automation.create",
        "automation.deactivate",
        "automation.update",  # as a PATCH of active through the API
    ]
    # Again: nothing changes.
    assert post(client, f"{page}/activate", {}, page).status_code == 302
    assert current(app, automation_id).version == 3


def test_activating_through_a_rule_no_longer_granting_is_refused(app, client, admin, bonus_rule):
    automation_id = create(
        app,
        {
            "name": "Welcome",
            "trigger": {"kind": "enrolled", "delay_days": 0},
            "actions": [{"type": "grant_points", "rule_id": bonus_rule}],
            "active": False,
        },
    )
    with services(app) as session:
        rules.deactivate_rule(session, uuid.UUID(bonus_rule), "seed")
    sign_in(client, admin)
    page = f"/admin/automations/{automation_id}"

    response = post(client, f"{page}/activate", {}, page)

    assert response.status_code == 302
    assert "Not activated" in html.unescape(client.get(page).text)
    assert current(app, automation_id).version == 1


def test_the_simulator_says_what_would_fire_for_a_member_and_why(app, client, admin):
    yesterday = utcnow() - dt.timedelta(days=1)
    automation_id = create(
        app,
        {
            "name": "VIP welcome",
            "trigger": {"kind": "enrolled", "delay_days": 0},
            "conditions": {"metadata": {"vip": True}},
            "actions": [{"type": "webhook"}],
        },
        now=yesterday,
    )
    with services(app):
        MemberFactory(external_id="cust_vip", metadata={"vip": True})
        MemberFactory(external_id="cust_plain")
    sign_in(client, admin)
    page = f"/admin/automations/{automation_id}"

    due = client.get(f"{page}?member_id=cust_vip").text
    held_back = client.get(f"{page}?member_id=cust_plain").text

    assert "<strong>Due</strong>" in due
    assert "It would fire at the next jobs run." in due
    assert "<strong>Not due</strong>" in held_back
    assert "condition_failed" in held_back
    assert "<code>metadata.vip</code>" in held_back
    assert audited(app) == [("seed", "automation.create", automation_id)]


# CSRF and sign-in


@pytest.mark.parametrize("sent", [None, "not-the-token"])
def test_every_automation_write_needs_the_csrf_token(app, client, admin, sent):
    automation_id = create(
        app,
        {"name": "Birthday", "trigger": {"kind": "birthday"}, "actions": [{"type": "webhook"}]},
    )
    sign_in(client, admin)
    extra = {} if sent is None else {"csrf_token": sent}
    page = f"/admin/automations/{automation_id}"

    for path in (NEW, f"{page}/edit", f"{page}/activate", f"{page}/deactivate"):
        response = client.post(path, data={**WIN_BACK_FORM, **extra})
        assert response.status_code == 400, path
        assert "security token" in response.text

    assert listed(app) == ["Birthday"]
    assert current(app, automation_id).version == 1


def test_a_key_without_the_admin_scope_cannot_manage_automations(app, client):
    with services(app):
        checkout_key: str = ApiKeyFactory(name="shop-checkout", scopes=("checkout",))
    token = csrf_token(client, "/admin/login")
    refused = client.post("/admin/login", data={"api_key": checkout_key, "csrf_token": token})
    assert refused.status_code == 401

    for response in (
        client.get(NEW),
        client.post(NEW, data={**WIN_BACK_FORM, "csrf_token": token}),
    ):
        assert response.status_code == 302
        assert "/admin/login" in response.location
    assert listed(app) == []
