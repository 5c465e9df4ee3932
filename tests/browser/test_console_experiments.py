"""The console's experiment pages in a real headless Chromium: the list, an experiment's arms
table and uplift charts with their intervals, the page on a phone without sideways scrolling,
and stopping it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask import Flask

from loyalty.audit.models import AuditEntry
from loyalty.db import utcnow
from loyalty.experiments import services as experiments
from loyalty.experiments.definitions import ArmDefinition, ExperimentDefinition
from loyalty.extensions import db
from tests.browser.conftest import shot, sign_in
from tests.factories import ApiKeyFactory, RuleFactory

# The browser talks to a live server in another thread, on its own connections.
pytestmark = pytest.mark.committed

DAY = dt.timedelta(days=1)


@pytest.fixture
def running(live_app: tuple[Flask, str]) -> dict[str, str]:
    """A running experiment on two rules: control gets "Base earning", "double" both."""
    app, _ = live_app
    now = utcnow()
    with app.app_context():
        session = db.session()
        base = str(RuleFactory(name="Base earning").public_id)
        apparel = str(RuleFactory(name="Apparel x2").public_id)
        definition = ExperimentDefinition(
            key="double-points",
            name="Double points on apparel",
            hypothesis="Double points on apparel lift conversion for more than they cost.",
            target={"kind": "rules", "rule_ids": [base, apparel]},
            arms=(
                ArmDefinition("control", 1, control=True, rule_ids=(base,)),
                ArmDefinition("double", 1, rule_ids=(base, apparel)),
            ),
            starts_at=now - 7 * DAY,
            ends_at=now + 21 * DAY,
            margin="0.35",
        )
        draft = experiments.create_experiment(session, definition, "seed", now=now - 8 * DAY)
        experiments.start_experiment(session, draft.public_id, "seed", now=now - 7 * DAY)
        admin_key: str = ApiKeyFactory(name="ops-admin", scopes=("admin",))
    return {"admin": admin_key, "experiment": str(draft.public_id)}


def scrolls_sideways(page: Any) -> bool:
    return bool(
        page.evaluate("document.documentElement.scrollWidth > document.documentElement.clientWidth")
    )


def test_an_admin_reads_an_experiment_and_stops_it(live_app, running, browser_page):
    app, base = live_app
    page = browser_page
    sign_in(page, base, running["admin"])

    page.get_by_role("link", name="Experiments").click()
    cells = page.locator("#experiments tbody tr").first.locator("td").all_inner_texts()
    assert cells[:3] == ["double-points", "Double points on apparel", "running"]
    shot(page, "experiments")

    page.get_by_role("link", name="double-points").click()
    rows = page.locator("#arms tbody tr")
    assert rows.count() == 2
    assert rows.nth(1).locator("td").all_inner_texts()[:4] == [
        "double",
        "1",
        "no",
        "Base earning, Apparel x2",
    ]
    shot(page, "experiment")

    page.set_viewport_size({"width": 390, "height": 844})
    assert not scrolls_sideways(page)
    shot(page, "experiment-phone")
    page.set_viewport_size({"width": 1280, "height": 900})

    page.get_by_role("button", name="Stop").click()
    assert "Stopped" in page.locator(".flash").first.inner_text()
    assert page.locator("#experiment-status").inner_text() == "stopped"
    with app.app_context():
        entries = db.session().query(AuditEntry).filter_by(actor="ops-admin").all()
        assert [(e.action, e.target_id) for e in entries] == [
            ("experiment.stop", running["experiment"])
        ]
