"""Every console page on a phone (390 px wide) in a real headless Chromium: none scrolls
sideways. The pages are the console's own GET routes, read from the app's URL map, so a new
page is checked without being listed here; its path parameters are filled from the demo's
data (a route with a parameter this test cannot fill fails, rather than being skipped)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from loyalty import demo
from loyalty.automations.models import Automation
from loyalty.experiments.models import Experiment
from loyalty.extensions import db
from loyalty.grants import services as grants
from loyalty.grants.models import BulkGrant
from loyalty.rewards.models import Reward
from loyalty.rules.models import EarningRule
from loyalty.tiers.models import Tier
from loyalty.webhooks import endpoints
from loyalty.webhooks.models import WebhookEndpoint
from tests.browser.conftest import shot, sign_in
from tests.factories import ApiKeyFactory

pytestmark = pytest.mark.committed

PHONE = {"width": 390, "height": 844}
# Not pages: the stylesheet and scripts, the members' CSV and a member's JSON downloads, the
# language switch (a redirect back to the page it was chosen on).
NOT_PAGES = {
    "console.static",
    "console.member_export",
    "console.export_member",
    "console.choose_language",
}


def path_values() -> dict[str, str]:
    """A value for each path parameter of the console's routes, from the demo's data."""
    session = db.session()
    return {
        "external_id": "cust_1001",
        "rule_id": str(session.scalars(sa.select(EarningRule.public_id).limit(1)).one()),
        "automation_id": str(session.scalars(sa.select(Automation.public_id).limit(1)).one()),
        "experiment_id": str(session.scalars(sa.select(Experiment.public_id).limit(1)).one()),
        "webhook_id": str(session.scalars(sa.select(WebhookEndpoint.public_id).limit(1)).one()),
        "job_id": str(session.scalars(sa.select(BulkGrant.public_id).limit(1)).one()),
        "tier_code": session.scalars(
            sa.select(Tier.code).order_by(Tier.rank.desc()).limit(1)
        ).one(),
        "reward_id": str(session.scalars(sa.select(Reward.public_id).limit(1)).one()),
    }


def pages(app: Flask, values: dict[str, str]) -> list[str]:
    found = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("console.") or rule.endpoint in NOT_PAGES:
            continue
        if "GET" not in (rule.methods or ()):
            continue
        missing = set(rule.arguments) - set(values)
        assert not missing, f"{rule.rule}: no value for {sorted(missing)} (add it above)"
        found.append(rule.build({name: values[name] for name in rule.arguments})[1])
    return sorted(found)


@pytest.fixture
def seeded(live_app: tuple[Flask, str]) -> dict[str, Any]:
    app, _ = live_app
    with app.app_context():
        for _ in demo.seed(db.session()):
            pass
        endpoints.create_endpoint(
            db.session(),
            endpoints.NewWebhook(url="https://shop.example/hooks", event_types=("*",)),
            "seed",
        )
        # A bulk grant, run: its page shows the report's widest lines.
        ids = ("cust_1001", "cust_1002", "a-customer-id-nobody-has-enrolled-yet")
        apology = grants.NewBulkGrant(reason="Sorry for the outage", points=100, member_ids=ids)
        grants.create_job(db.session(), apology, "seed")
        grants.run_due(db.session())
        db.session.commit()
        admin: str = ApiKeyFactory(name="ops-admin", scopes=("admin",))
        return {"admin": admin, "pages": pages(app, path_values())}


def test_no_console_page_scrolls_sideways_on_a_phone(live_app, seeded, browser_page):
    _, base = live_app
    page = browser_page
    page.set_viewport_size(PHONE)
    sign_in(page, base, seeded["admin"])

    wide = []
    for path in seeded["pages"]:
        response = page.goto(f"{base}{path}")
        assert response is not None, path
        assert response.status == 200, path
        if page.evaluate(
            "document.documentElement.scrollWidth > document.documentElement.clientWidth"
        ):
            wide.append(path)
            shot(page, "phone-" + path.strip("/").replace("/", "-"))

    assert wide == []
    assert len(seeded["pages"]) >= 20  # every page was read, not an empty map
