"""The console's catalog forms in a real headless Chromium: an admin creates a tier with a
benefit, then a reward only that tier may redeem, each audited under their key; and
registers a webhook on a phone, its secret shown once on a page that fits the screen."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from flask import Flask

from loyalty.audit.models import AuditEntry
from loyalty.extensions import db
from loyalty.rewards import definitions as rewards
from loyalty.tiers import definitions as tiers
from loyalty.webhooks import endpoints as webhooks
from loyalty.webhooks.models import WebhookEndpoint
from tests.browser.conftest import shot, sign_in
from tests.factories import ApiKeyFactory

# The browser talks to a live server in another thread, on its own connections.
pytestmark = pytest.mark.committed


@pytest.fixture
def admin(live_app: tuple[Flask, str]) -> str:
    app, _ = live_app
    with app.app_context():
        key: str = ApiKeyFactory(name="ops-admin", scopes=("admin",))
    return key


def test_an_admin_creates_a_tier_with_a_benefit_and_a_reward_for_it(live_app, admin, browser_page):
    app, base = live_app
    page = browser_page
    sign_in(page, base, admin)

    page.get_by_role("link", name="Tiers").click()
    page.get_by_role("link", name="New tier").click()
    page.fill("#code", "gold")
    page.fill("#name", "Gold")
    page.fill("#rank", "2")
    page.fill("#threshold", "500")
    page.fill("#benefits-0-code", "points_multiplier")
    page.fill("#benefits-0-params", "factor = 1.5")
    shot(page, "tier-form")
    page.get_by_role("button", name="Create tier").click()

    assert page.locator(".flash.ok").inner_text() == "Tier 'Gold' created."
    row = page.locator("tbody tr").first.locator("td").all_inner_texts()
    assert row[1] == "Gold gold"
    assert 'points_multiplier {"factor": "1.5"}' in row[4]

    page.get_by_role("link", name="Rewards", exact=True).click()
    page.get_by_role("link", name="New reward").click()
    page.fill("#name", "Free socks")
    page.select_option("#kind", "product")
    page.fill("#cost_points", "300")
    page.fill("#stock", "25")
    page.select_option("#min_tier", "gold")
    page.fill("#ends_at", "2030-06-30T18:00")
    shot(page, "reward-form")
    page.get_by_role("button", name="Create reward").click()

    assert page.locator(".flash.ok").inner_text() == "Reward 'Free socks' created."
    cells = page.locator("tbody tr").first.locator("td").all_inner_texts()
    assert cells[:6] == ["Free socks", "product", "300", "—", "25", "gold"]
    with app.app_context():
        session = db.session()
        assert tiers.find_tier(session, "gold").benefits == (
            {"code": "points_multiplier", "params": {"factor": "1.5"}},
        )
        [socks] = rewards.list_rewards(session)
        assert socks.ends_at is not None
        assert socks.ends_at.isoformat() == "2030-06-30T18:00:00+00:00"
        actions = session.scalars(
            sa.select(AuditEntry.action).where(AuditEntry.actor == "ops-admin")
        ).all()
        assert {"tier.create", "reward.create"} <= set(actions)


def test_an_admin_registers_a_webhook_on_a_phone_and_sees_its_secret_once(
    live_app, admin, browser_page
):
    app, base = live_app
    page = browser_page
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, base, admin)

    page.goto(f"{base}/admin/webhooks/new")
    page.fill("#url", "https://shop.example/hooks/a-rather-long-path/for-the-loyalty-events")
    page.check("input[value='tier.changed']")
    page.get_by_role("button", name="Register").click()

    secret = page.locator("#secret").inner_text()
    with app.app_context():
        [endpoint] = webhooks.list_endpoints(db.session())
        stored = db.session.scalars(sa.select(WebhookEndpoint.secret)).one()
    assert secret == stored
    assert endpoint.event_types == ("tier.changed",)
    assert not page.evaluate(
        "document.documentElement.scrollWidth > document.documentElement.clientWidth"
    )
    shot(page, "webhook-created-phone")
    page.get_by_role("link", name="Its deliveries").click()
    assert secret not in page.content()
