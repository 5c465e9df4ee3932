"""Member insight in the console, in a real headless Chromium: the insight page (RFM heat
maps, segments, predicted value, the model and its evaluation), the member list's filters and
CSV export, and a member's insight on their page. The program is the demo's: its shoppers
have two years of history, refreshed as of the moment the demo was seeded."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

import pytest
from flask import Flask

from loyalty import demo
from loyalty.extensions import db
from loyalty.insight import queries, summary
from loyalty.insight.segments import LABELS, Segment
from tests.browser.conftest import shot, sign_in
from tests.factories import ApiKeyFactory, MemberFactory

pytestmark = pytest.mark.committed

NOW = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def program(live_app: tuple[Flask, str]) -> dict[str, object]:
    app, _ = live_app
    with app.app_context():
        session = db.session()
        for _ in demo.seed(session, now=NOW):
            pass
        found = summary.summary(session)
        admin_key = ApiKeyFactory(name="analyst", scopes=("admin",))
    biggest = max(found.segments, key=lambda s: s.members)
    return {"admin": admin_key, "summary": found, "biggest": biggest}


def test_before_any_refresh_the_insight_page_says_how_to_get_one(live_app, browser_page):
    app, base = live_app
    with app.app_context():
        admin_key = ApiKeyFactory(name="analyst", scopes=("admin",))
        MemberFactory(external_id="ada")
    sign_in(browser_page, base, admin_key)
    browser_page.goto(f"{base}/admin/insight")
    assert "loyalty insight refresh" in browser_page.locator("#not-refreshed").inner_text()
    browser_page.goto(f"{base}/admin/members/ada")
    assert "No insight refresh has run yet" in browser_page.locator("#insight").inner_text()


def test_the_insight_page_draws_the_grid_segments_value_and_model(live_app, program, browser_page):
    _, base = live_app
    summary = program["summary"]
    sign_in(browser_page, base, program["admin"])
    browser_page.get_by_role("link", name="Insight").click()

    assert browser_page.locator("h1").inner_text() == "Member insight"
    assert browser_page.locator("#buyers").inner_text() == f"{summary.refresh.buyers:,}"
    # Both heat maps have the 25 cells, and their values are the summary's.
    for map_id, value in (("heat-members", "members"), ("heat-revenue", "revenue")):
        cells = browser_page.locator(f"#{map_id} g.cell")
        assert cells.count() == 25
        drawn = {
            (int(c.get_attribute("data-r")), int(c.get_attribute("data-fm"))): int(
                c.get_attribute("data-value")
            )
            for c in cells.all()
        }
        assert drawn == {(c.recency_score, c.fm_score): getattr(c, value) for c in summary.rfm_grid}
    # The fullest cell is the darkest.
    cells = browser_page.locator("#heat-members g.cell rect").all()
    opacities = [float(c.get_attribute("fill-opacity")) for c in cells]
    assert max(opacities) == pytest.approx(1.0)

    rows = browser_page.locator("#segments tbody tr")
    assert rows.count() == len(Segment)
    biggest = program["biggest"]
    row = rows.filter(has=browser_page.get_by_role("link", name=biggest.label, exact=True))
    assert f"{biggest.members:,}" in row.inner_text()

    assert browser_page.locator("#model-status").inner_text() == "fitted"
    params = browser_page.locator("#model-params").inner_text()
    for name in ("bg_nbd", "gamma_gamma", "r =", "alpha =", "a =", "b =", "p =", "q =", "v ="):
        assert name in params
    assert browser_page.locator("#value-chart rect.bar").count() == 10
    assert browser_page.locator("#deciles tbody tr").count() == 10
    shot(browser_page, "insight")


def test_an_admin_evaluates_the_model_at_a_split(live_app, program, browser_page):
    _, base = live_app
    sign_in(browser_page, base, program["admin"])
    browser_page.goto(f"{base}/admin/insight")

    browser_page.fill("#split", (NOW - dt.timedelta(days=180)).date().isoformat())
    browser_page.get_by_role("button", name="Evaluate").click()

    total = browser_page.locator("#evaluation-total").inner_text()
    assert re.search(r"over 180 days: predicted [\d,.]+ repeat purchase days, actual \d+", total)
    assert browser_page.locator("#evaluation tbody tr").count() == 8  # "0" to "6" and "7+"
    assert browser_page.locator("#evaluation-chart rect.bar").count() == 16
    shot(browser_page, "insight-evaluation")

    browser_page.fill("#split", (NOW + dt.timedelta(days=1)).date().isoformat())
    browser_page.get_by_role("button", name="Evaluate").click()
    assert "at least a day before" in browser_page.locator("#evaluation-refused").inner_text()


def test_the_members_page_filters_by_segment_and_exports_what_it_shows(
    live_app, program, browser_page
):
    _, base = live_app
    biggest = program["biggest"]
    sign_in(browser_page, base, program["admin"])
    browser_page.goto(f"{base}/admin/insight")
    browser_page.locator("#segments").get_by_role("link", name=biggest.label, exact=True).click()

    assert browser_page.locator("#segment").input_value() == biggest.segment.value
    rows = browser_page.locator("#members tbody tr")
    shown = min(biggest.members, 50)
    assert rows.count() == shown
    assert all(LABELS[biggest.segment] in r.inner_text() for r in rows.all())
    shot(browser_page, "members-filtered")

    if biggest.members > 50:
        browser_page.locator("#next").click()
        assert rows.count() == min(biggest.members - 50, 50)
        assert browser_page.locator("#segment").input_value() == biggest.segment.value

    with browser_page.expect_download() as download:
        browser_page.locator("#export").click()
    exported = list(csv.DictReader(io.StringIO(download.value.path().read_text())))
    assert len(exported) == biggest.members
    assert {r["segment"] for r in exported} == {biggest.segment.value}


def test_the_members_page_filters_by_scores_value_and_text(live_app, program, browser_page):
    _, base = live_app
    sign_in(browser_page, base, program["admin"])
    browser_page.goto(f"{base}/admin/members")

    browser_page.select_option("#recency_score", "5")
    browser_page.fill("#predicted_value_min", "1.50")
    browser_page.get_by_role("button", name="Search").click()
    rows = browser_page.locator("#members tbody tr").all()
    assert rows
    for row in rows:
        scores = row.locator("td").nth(6).inner_text().split()
        assert scores[0] == "5"

    browser_page.fill("#predicted_value_min", "a lot")
    browser_page.get_by_role("button", name="Search").click()
    assert "An amount in USD" in browser_page.locator("#predicted_value_min-error").inner_text()
    assert browser_page.locator("#members").count() == 0

    browser_page.goto(f"{base}/admin/members?q=SHOPPER_0001")
    assert browser_page.locator("#members tbody tr").count() == 1


def test_a_members_page_shows_their_segment_chance_alive_and_value(live_app, program, browser_page):
    app, base = live_app
    with app.app_context():
        rows, _ = queries.list_members(
            db.session(), queries.MemberFilters(predicted_value_min=1), 1, None
        )
    member = rows[0]
    figures = member.insight or {}
    sign_in(browser_page, base, program["admin"])
    browser_page.goto(f"{base}/admin/members/{member.external_id}")

    card = browser_page.locator("#insight")
    assert (
        browser_page.locator("#insight-segment").inner_text() == LABELS[Segment(figures["segment"])]
    )
    assert browser_page.locator("#insight-alive").inner_text() == (
        f"{figures['probability_alive'] * 100:.0f}%"
    )
    assert browser_page.locator("#insight-value").inner_text().startswith("$")
    assert f"{figures['orders']} orders" in card.inner_text()
    shot(browser_page, "member-insight")
