"""The program's time zone over HTTP: an IANA name, UTC by default, changed by PATCH
/admin/program and audited; anything else is a 422 naming the field. The activity report's
days are the zone's."""

from __future__ import annotations

import datetime as dt

import pytest

from loyalty.extensions import db
from loyalty.membership import adjustments
from loyalty.program.services import UNKNOWN_ZONE
from tests.helpers import ok, problem

PROGRAM = "/v1/admin/program"


def test_the_zone_is_utc_until_changed_and_the_change_is_audited(client, admin):
    assert ok(client.get(PROGRAM, headers=admin))["time_zone"] == "UTC"

    changed = ok(client.patch(PROGRAM, json={"time_zone": "Asia/Shanghai"}, headers=admin))

    assert changed["time_zone"] == "Asia/Shanghai"
    assert ok(client.get(PROGRAM, headers=admin))["time_zone"] == "Asia/Shanghai"
    entry = ok(
        client.get("/v1/admin/audit-log", query_string={"target_type": "program"}, headers=admin)
    )["items"][0]
    assert entry["action"] == "program.update"
    assert (entry["before"]["time_zone"], entry["after"]["time_zone"]) == ("UTC", "Asia/Shanghai")


@pytest.mark.parametrize(
    "name",
    ["Mars/Olympus_Mons", "asia/shanghai", "UTC+8", "+08:00", "localtime", "", "x" * 65, 8, None],
)
def test_a_name_that_is_no_iana_zone_is_a_422(client, admin, name):
    response = client.patch(PROGRAM, json={"time_zone": name}, headers=admin)

    body = problem(response, 422, "validation_error")
    assert list(body["errors"]) == ["time_zone"]
    assert ok(client.get(PROGRAM, headers=admin))["time_zone"] == "UTC"


def test_the_refusal_says_what_a_zone_looks_like(client, admin):
    response = client.patch(PROGRAM, json={"time_zone": "Mars/Olympus_Mons"}, headers=admin)

    assert problem(response, 422, "validation_error")["errors"] == {"time_zone": [UNKNOWN_ZONE]}


def test_the_activity_report_counts_the_days_of_the_zone(app, client, admin, checkout):
    response = client.post("/v1/members", json={"external_id": "c1"}, headers=checkout)
    assert response.status_code == 201
    with app.app_context():
        # 07:30 on 15 January in Los Angeles (PST, UTC-8) is 15:30 UTC; 23:30 there is 07:30
        # UTC on the 16th.
        for points, when in ((5, "2026-01-15T15:30:00+00:00"), (7, "2026-01-16T07:30:00+00:00")):
            moment = dt.datetime.fromisoformat(when)
            adjustments.adjust(db.session, "c1", points, "test", "ops", now=moment)
    ok(client.patch(PROGRAM, json={"time_zone": "America/Los_Angeles"}, headers=admin))

    report = ok(
        client.get(
            "/v1/admin/reports/activity",
            query_string={"from": "2026-01-15", "to": "2026-01-16"},
            headers=admin,
        )
    )

    assert [(day["date"], day["adjusted"]) for day in report["days"]] == [
        ("2026-01-15", 12),
        ("2026-01-16", 0),
    ]
