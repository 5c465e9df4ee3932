"""The admin console in a real headless Chromium (the live server and browser: conftest.py)."""

from __future__ import annotations

import re

import pytest
from flask import Flask

from loyalty.audit.models import AuditEntry
from loyalty.extensions import db
from loyalty.members import lookup
from loyalty.membership import adjustments
from loyalty.program.services import update_settings
from loyalty.settlement import services as settlement
from tests.browser.conftest import shot, sign_in
from tests.commands import program_changes
from tests.factories import ApiKeyFactory, MemberFactory

# The browser talks to a live server in another thread, on its own connections.
pytestmark = pytest.mark.committed


@pytest.fixture
def seeded(live_app: tuple[Flask, str]) -> dict[str, str]:
    app, _ = live_app
    with app.app_context():
        session = db.session()
        update_settings(session, program_changes({"pending_days": 0}))
        MemberFactory(external_id="cust_42", email="grace@example.com", name="Grace Hopper")
        adjustments.adjust(session, "cust_42", 300, "opening balance", "seed")
        admin_key = ApiKeyFactory(name="ops-admin", scopes=("admin",))
        checkout_key = ApiKeyFactory(name="shop-checkout", scopes=("checkout",))
    return {"admin": admin_key, "checkout": checkout_key}


def test_signing_in_with_an_admin_key_opens_the_dashboard(live_app, seeded, browser_page):
    _, base = live_app
    sign_in(browser_page, base, seeded["admin"])

    assert browser_page.url.rstrip("/").endswith("/admin")
    assert browser_page.locator("h1").inner_text() == "Dashboard"
    assert browser_page.locator("#liability-available").inner_text() == "300"
    assert browser_page.locator("svg.chart polyline").count() == 3
    shot(browser_page, "dashboard")


def test_a_wrong_key_or_a_non_admin_key_is_refused(live_app, seeded, browser_page):
    _, base = live_app
    for key in ("lk_not-a-real-key", seeded["checkout"]):
        sign_in(browser_page, base, key)
        assert "/admin/login" in browser_page.url
        assert "not an admin key" in browser_page.locator(".flash.error").inner_text()
    shot(browser_page, "login")
    browser_page.goto(f"{base}/admin/members")
    assert "/admin/login" in browser_page.url


def test_an_admin_finds_a_member_adjusts_points_and_sees_the_audit_entry(
    live_app, seeded, browser_page
):
    app, base = live_app
    sign_in(browser_page, base, seeded["admin"])

    browser_page.goto(f"{base}/admin/members")
    browser_page.fill("#q", "grace@")
    browser_page.click("form.search button")
    shot(browser_page, "members")
    browser_page.get_by_role("link", name="cust_42").click()
    assert browser_page.locator("#balance-available").inner_text() == "300"

    browser_page.fill("#points", "-120")
    browser_page.fill("#reason", "Duplicate welcome bonus")
    browser_page.get_by_role("button", name="Adjust").click()

    assert browser_page.locator("#balance-available").inner_text() == "180"
    assert "Adjusted by -120 points." in browser_page.locator(".flash").first.inner_text()
    assert "Duplicate welcome bonus" in browser_page.locator("#history").inner_text()
    shot(browser_page, "member")

    browser_page.get_by_role("link", name="Audit log for this member").click()
    row = browser_page.locator("#audit tbody tr").first.inner_text()
    assert "ops-admin" in row
    assert "points.adjust" in row
    shot(browser_page, "audit")
    with app.app_context():
        entries = db.session().query(AuditEntry).filter_by(actor="ops-admin").all()
        assert [(e.action, e.target_id, e.after["points"]) for e in entries] == [
            ("points.adjust", "cust_42", -120)
        ]


def test_an_admin_creates_a_rule_then_simulates_a_cart_with_it(live_app, seeded, browser_page):
    _, base = live_app
    sign_in(browser_page, base, seeded["admin"])

    browser_page.goto(f"{base}/admin/rules/new")
    browser_page.fill("#name", "")
    browser_page.get_by_role("button", name="Create rule").click()
    assert "Missing data for required field." in browser_page.locator("#name-error").inner_text()

    browser_page.select_option("#kind", "spend")
    browser_page.fill("#name", "2 points per dollar")
    browser_page.fill("#points", "2")
    browser_page.fill("#per_amount", "100")
    browser_page.get_by_role("button", name="Create rule").click()
    assert "created (version 1)" in browser_page.locator(".flash").first.inner_text()
    shot(browser_page, "rule")

    browser_page.goto(f"{base}/admin/rules/simulate")
    browser_page.fill("#cart", "tee-black-m, apparel, 2, 2500")
    browser_page.fill("#draft_name", "Apparel bonus")
    browser_page.select_option("#draft_kind", "bonus")
    browser_page.fill("#draft_points", "50")
    browser_page.get_by_role("button", name="Simulate").click()
    result = browser_page.locator("#result").inner_text()
    assert re.search(r"150 points", result)  # 100 from the rule on 50.00, 50 from the draft
    assert "2 points per dollar" in result
    assert "Apparel bonus" in result
    shot(browser_page, "simulator")

    browser_page.goto(f"{base}/admin/rules")
    assert "2 points per dollar" in browser_page.locator("table").inner_text()
    shot(browser_page, "rules")


def test_a_form_post_without_the_csrf_token_is_refused(live_app, seeded, browser_page):
    app, base = live_app
    sign_in(browser_page, base, seeded["admin"])

    response = browser_page.request.post(
        f"{base}/admin/members/cust_42/adjust", form={"points": "1000", "reason": "forged"}
    )

    assert response.status == 400
    assert "security token" in response.text()
    with app.app_context():
        balance = settlement.settled_balance(
            db.session(), lookup.find_member(db.session(), "cust_42")
        )
        assert balance.available == 300


def test_every_console_page_renders(live_app, seeded, browser_page):
    _, base = live_app
    sign_in(browser_page, base, seeded["admin"])
    for name, path in [
        ("tiers", "/admin/tiers"),
        ("rewards", "/admin/rewards"),
        ("program", "/admin/program"),
        ("webhooks", "/admin/webhooks"),
    ]:
        response = browser_page.goto(f"{base}{path}")
        assert response is not None
        assert response.status == 200
        shot(browser_page, name)
    browser_page.set_viewport_size({"width": 390, "height": 844})
    browser_page.goto(f"{base}/admin/members/cust_42")
    shot(browser_page, "member-phone")


def test_signing_out_ends_the_session(live_app, seeded, browser_page):
    _, base = live_app
    sign_in(browser_page, base, seeded["admin"])
    browser_page.get_by_role("button", name="Sign out").click()
    browser_page.goto(f"{base}/admin/")
    assert "/admin/login" in browser_page.url
