"""The console's experiment pages in a real headless Chromium: the list, a running
experiment's arms table with its results and its uplift charts with their intervals, the
page on a phone without sideways scrolling, and stopping it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask import Flask

from loyalty.audit.models import AuditEntry
from loyalty.db import utcnow
from loyalty.experiments import services as experiments
from loyalty.extensions import db
from tests.browser.conftest import shot, sign_in
from tests.experiments import definition, expose
from tests.factories import ApiKeyFactory, MemberFactory, OrderFactory, RuleFactory

# The browser talks to a live server in another thread, on its own connections.
pytestmark = pytest.mark.committed

DAY = dt.timedelta(days=1)


HOLDOUT = [f"h{n}" for n in range(8)]
SHIPPED = [f"f{n}" for n in range(8)]


@pytest.fixture
def running(live_app: tuple[Flask, str]) -> dict[str, str]:
    """A free-shipping experiment running for a week: eight members an arm exposed, two of
    the holdout and five of those given free shipping ordered."""
    app, _ = live_app
    now = utcnow()
    start = now - 7 * DAY
    with app.app_context():
        session = db.session()
        RuleFactory()
        for member in HOLDOUT + SHIPPED:
            MemberFactory(external_id=member, now=start - 30 * DAY)
        draft = experiments.create_experiment(
            session,
            definition(
                key="free-shipping",
                name="Free shipping for the lapsed",
                target={"kind": "benefit", "code": "free_shipping"},
                starts_at=start,
                ends_at=now + 21 * DAY,
            ),
            "seed",
            start - DAY,
        )
        experiments.start_experiment(session, draft.public_id, "seed", start)
        expose(session, draft, HOLDOUT, "holdout", start + DAY)
        expose(session, draft, SHIPPED, "fires", start + DAY)
        for n, member in enumerate(HOLDOUT[:2] + SHIPPED[:5]):
            OrderFactory(order_id=f"o{n}", member_id=member, worth=30, now=start + 2 * DAY)
        admin_key: str = ApiKeyFactory(name="ops-admin", scopes=("admin",))
    return {"admin": admin_key, "experiment": str(draft.public_id)}


def scrolls_sideways(page: Any) -> bool:
    return bool(
        page.evaluate("document.documentElement.scrollWidth > document.documentElement.clientWidth")
    )


def test_an_admin_reads_an_experiments_results_and_stops_it(live_app, running, browser_page):
    app, base = live_app
    page = browser_page
    sign_in(page, base, running["admin"])

    page.get_by_role("link", name="Experiments").click()
    cells = page.locator("#experiments tbody tr").first.locator("td").all_inner_texts()
    assert cells[:3] == ["free-shipping", "Free shipping for the lapsed", "running"]
    assert cells[5] == "no"
    shot(page, "experiments")

    page.get_by_role("link", name="free-shipping").click()
    rows = page.locator("#arms tbody tr")
    assert rows.count() == 2
    holdout = rows.nth(0).locator("td").all_inner_texts()
    assert holdout[:7] == ["holdout", "1", "yes", "nothing (holdout)", "8", "2", "25.0%"]
    shipped = rows.nth(1).locator("td").all_inner_texts()
    assert shipped[:7] == ["fires", "1", "no", "the benefit free_shipping", "8", "5", "62.5%"]
    (treated,) = page.locator("#uplifts tbody tr").all()
    uplifts = treated.locator("td").all_inner_texts()
    assert uplifts[0] == "fires"
    conversion = uplifts[1].splitlines()
    assert conversion[0] == "+37.5 pp"
    assert " to " in conversion[1]
    assert conversion[2].startswith("p = ")
    assert "fit the weights" in page.locator("#sample-ratio-fits").inner_text()
    for chart in ("#conversion_uplift-chart", "#net_value_per_member_uplift-chart"):
        interval = page.locator(f"{chart} [data-arm=fires] rect.interval")
        box = interval.bounding_box()
        assert box is not None
        assert box["width"] > 0
        assert page.locator(f"{chart} [data-arm=fires] circle.estimate").is_visible()
        zero = page.locator(f"{chart} line.zero").bounding_box()
        assert zero is not None
        assert zero["height"] > 0
    shot(page, "experiment")

    assert not scrolls_sideways(page)
    page.set_viewport_size({"width": 390, "height": 844})
    assert not scrolls_sideways(page)
    shot(page, "experiment-phone")
    page.set_viewport_size({"width": 1280, "height": 900})

    page.get_by_role("button", name="Stop").click()
    assert "Stopped" in page.locator(".flash").first.inner_text()
    assert page.locator("#experiment-status").inner_text() == "stopped"
    assert page.locator("#promote").is_visible()
    with app.app_context():
        entries = db.session().query(AuditEntry).filter_by(actor="ops-admin").all()
        assert [(e.action, e.target_id) for e in entries] == [
            ("experiment.stop", running["experiment"])
        ]
