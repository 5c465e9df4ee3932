"""The console's automation pages in a real headless Chromium: the list with how often each
fired, an automation's firings and versions, the simulator and deactivation, and the form
(showing only the chosen trigger kind's parameters)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask import Flask

from loyalty.audit.models import AuditEntry
from loyalty.automations import firing
from loyalty.automations import services as automations
from loyalty.db import utcnow
from loyalty.extensions import db
from loyalty.schemas.automations import AutomationInSchema
from tests.browser.conftest import shot, sign_in
from tests.factories import ApiKeyFactory, MemberFactory, RuleFactory

# The browser talks to a live server in another thread, on its own connections.
pytestmark = pytest.mark.committed

DAY = dt.timedelta(days=1)


@pytest.fixture
def welcomed(live_app: tuple[Flask, str]) -> dict[str, str]:
    """A welcome automation granting 200 points that fired once, for cust_new (enrolled
    after it was created; cust_old, enrolled before, is never welcomed)."""
    app, _ = live_app
    now = utcnow()
    with app.app_context():
        session = db.session()
        rule = RuleFactory(bonus=True, name="Welcome gift", points=200, conditions={})
        body = {
            "name": "Welcome with 200 points",
            "trigger": {"kind": "enrolled", "delay_days": 0},
            "actions": [
                {"type": "webhook"},
                {"type": "grant_points", "rule_id": str(rule.public_id)},
            ],
        }
        welcome = automations.create_automation(
            session, AutomationInSchema().load(body), "seed", now=now - 2 * DAY
        )
        MemberFactory(external_id="cust_old", now=now - 3 * DAY)
        MemberFactory(external_id="cust_new", now=now - DAY)
        assert firing.fire_due(session, now=now).total == 1
        admin_key: str = ApiKeyFactory(name="ops-admin", scopes=("admin",))
    return {"admin": admin_key, "automation": str(welcome.public_id)}


def test_an_admin_sees_what_fired_simulates_and_deactivates_an_automation(
    live_app, welcomed, browser_page
):
    app, base = live_app
    page = browser_page
    sign_in(page, base, welcomed["admin"])

    page.get_by_role("link", name="Automations").click()
    cells = page.locator("#automations tbody tr").first.locator("td").all_inner_texts()
    assert cells[:2] == ["Welcome with 200 points", "enrolled (delay_days 0)"]
    assert "webhook" in cells[2]
    assert "grant the rule's points" in cells[2]
    assert cells[3:] == ["yes", "1", "1", "1"]  # active, version, fired in all, in 7 days
    shot(page, "automations")

    page.get_by_role("link", name="Welcome with 200 points").click()
    assert page.locator("#fired-total").inner_text() == "1"
    rows = page.locator("#firings tbody tr")
    assert rows.count() == 1
    firing_cells = rows.first.locator("td").all_inner_texts()
    assert (firing_cells[0], firing_cells[2], firing_cells[3]) == ("cust_new", "1", "200")
    assert page.locator("#versions tbody tr").count() == 1

    page.fill("#member_id", "cust_old")
    page.get_by_role("button", name="Simulate").click()
    assert "not_due" in page.locator("#simulation").inner_text()
    page.fill("#member_id", "cust_new")
    page.get_by_role("button", name="Simulate").click()
    assert "already_fired" in page.locator("#simulation").inner_text()
    page.fill("#member_id", "nobody")
    page.get_by_role("button", name="Simulate").click()
    assert "No member" in page.locator("#member_id-error").inner_text()
    shot(page, "automation")

    page.get_by_role("button", name="Deactivate").click()
    assert "Inactive as of version 2" in page.locator(".flash").first.inner_text()
    assert page.locator("#automation-active").inner_text() == "no"
    assert page.locator("#versions tbody tr").count() == 2
    page.fill("#member_id", "cust_old")
    page.get_by_role("button", name="Simulate").click()
    assert "automation_inactive" in page.locator("#simulation").inner_text()

    page.locator("#firings").get_by_role("link", name="cust_new").click()
    assert page.locator("#balance-available").inner_text() == "200"
    with app.app_context():
        entries = db.session().query(AuditEntry).filter_by(actor="ops-admin").all()
        assert [(e.action, e.target_id) for e in entries] == [
            ("automation.deactivate", welcomed["automation"])
        ]


@pytest.fixture
def admin_with_bonus_rule(live_app: tuple[Flask, str]) -> dict[str, str]:
    app, _ = live_app
    with app.app_context():
        rule = RuleFactory(bonus=True, name="Welcome gift", points=200, conditions={})
        admin_key: str = ApiKeyFactory(name="ops-admin", scopes=("admin",))
    return {"admin": admin_key, "rule": str(rule.public_id)}


def visible_parameters(page: Any) -> list[str]:
    # A click that navigates returns once the page starts loading: the form's deferred
    # script (which hides the other kinds' fields) runs before the load event.
    page.wait_for_load_state("load")
    return sorted(
        field.get_attribute("id")
        for field in page.locator("#trigger .parameter input").all()
        if field.is_visible()
    )


def test_the_automation_form_shows_only_the_chosen_kinds_parameters(
    live_app, admin_with_bonus_rule, browser_page
):
    app, base = live_app
    page = browser_page
    sign_in(page, base, admin_with_bonus_rule["admin"])
    page.get_by_role("link", name="Automations").click()
    page.get_by_role("link", name="New automation").click()

    assert page.locator("#kind").input_value() == "enrolled"
    assert visible_parameters(page) == ["trigger_delay_days"]
    page.select_option("#kind", "repurchase_due")
    assert visible_parameters(page) == [
        "trigger_default_gap_days",
        "trigger_factor",
        "trigger_min_purchase_days",
    ]
    page.select_option("#kind", "birthday")
    assert visible_parameters(page) == []
    page.select_option("#kind", "inactive")
    assert visible_parameters(page) == ["trigger_days"]
    shot(page, "automation-form")

    # Refused: the page comes back with the error by the field, the kind still chosen and
    # only its fields shown.
    page.fill("#name", "Win-back")
    page.fill("#trigger_days", "0")
    page.get_by_role("button", name="Create automation").click()
    assert "greater than or equal to 1" in page.locator("#trigger_days-error").inner_text()
    assert page.locator("#kind").input_value() == "inactive"
    assert visible_parameters(page) == ["trigger_days"]

    page.fill("#trigger_days", "60")
    page.check("#grant")
    page.select_option("#grant_rule_id", label="Welcome gift")
    page.fill("#grant_points", "50")
    page.get_by_role("button", name="Create automation").click()
    assert "created (version 1)" in page.locator(".flash").first.inner_text()
    assert "inactive (days 60)" in page.locator("h1").inner_text()

    page.get_by_role("link", name="Edit (new version)").click()
    assert visible_parameters(page) == ["trigger_days"]
    assert page.locator("#trigger_days").input_value() == "60"
    page.select_option("#kind", "points_expiring")
    page.fill("#trigger_within_days", "14")
    page.get_by_role("button", name="Save as a new version").click()
    assert "Saved as version 2." in page.locator(".flash").first.inner_text()
    assert "points_expiring (within_days 14)" in page.locator("h1").inner_text()
    with app.app_context():
        entries = db.session().query(AuditEntry).filter_by(actor="ops-admin").all()
        assert [e.action for e in entries] == ["automation.create", "automation.update"]
