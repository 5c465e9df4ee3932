"""The console's campaign report pages (/admin/rules/<id>/report,
/admin/automations/<id>/report) through the Flask test client: linked from the rule's and the
automation's pages, the figures as the service computes them, and a bad window said by its
field with a 422."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from loyalty.automations import services as automations
from loyalty.schemas.automations import AutomationInSchema
from tests.factories import ApiKeyFactory, MemberFactory, OrderFactory, RuleFactory
from tests.helpers import services


def sign_in(client: FlaskClient, key: str) -> None:
    page = client.get("/admin/login")
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text) or re.search(
        r'type="hidden" name="csrf_token" value="([^"]+)"', page.text
    )
    assert token, page.text
    response = client.post("/admin/login", data={"api_key": key, "csrf_token": token[1]})
    assert response.status_code == 302, response.text


@pytest.fixture
def signed_in(app: Flask, client: FlaskClient) -> FlaskClient:
    with services(app):
        key: str = ApiKeyFactory(name="ops-admin", scopes=("admin",))
    sign_in(client, key)
    return client


def cell_texts(html: str, row_id: str) -> list[str]:
    row = re.search(rf'<tr id="{row_id}">(.*?)</tr>', html, re.S)
    assert row, html
    return [
        re.sub(r"<[^>]+>", "", cell).strip()
        for cell in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row[1], re.S)
    ]


def test_a_rules_report_is_linked_from_its_page_and_shows_the_figures(app, signed_in):
    with services(app):
        rule = RuleFactory()  # 1 point per 1.00
        MemberFactory(external_id="c1")
        OrderFactory(order_id="o1")  # 62.00: 62 points
        OrderFactory(order_id="o2")  # its return; 62 points more
    path = f"/admin/rules/{rule.public_id}/report"

    assert f'href="{path}"' in signed_in.get(f"/admin/rules/{rule.public_id}").text
    page = signed_in.get(path)

    assert page.status_code == 200
    # members reached, touches, points issued, cost, orders, revenue
    assert cell_texts(page.text, "campaign-total") == [
        "Total",
        "1",
        "2",
        "124",
        "$1.24",
        "1",
        "$62.00",
    ]
    assert "last touch" in page.text


def test_an_automations_report_is_linked_from_its_page(app, signed_in):
    with services(app) as session:
        made = automations.create_automation(
            session,
            AutomationInSchema().load(
                {
                    "name": "Welcome",
                    "trigger": {"kind": "enrolled", "delay_days": 0},
                    "actions": [{"type": "webhook"}],
                }
            ),
            "test",
        )
    path = f"/admin/automations/{made.public_id}/report"

    assert f'href="{path}"' in signed_in.get(f"/admin/automations/{made.public_id}").text
    page = signed_in.get(path, query_string={"window_days": "30"})

    assert page.status_code == 200
    assert "at most 30 days" in page.text
    assert cell_texts(page.text, "campaign-total")[1:] == ["0", "0", "0", "$0.00", "0", "$0.00"]


@pytest.mark.parametrize("days", ["0", "400", "seven"])
def test_a_bad_window_is_said_by_its_field(app, signed_in, days: Any):
    with services(app):
        rule = RuleFactory()

    page = signed_in.get(
        f"/admin/rules/{rule.public_id}/report", query_string={"window_days": days}
    )

    assert page.status_code == 422
    assert 'id="window_days-error"' in page.text
    assert "at most 7 days" in page.text  # the default window's report, under the error
