"""Reports over HTTP: what the program owes its members (liability) and what happened per day
(activity), both aggregated over the ledger.

Liability is read from the program accounts (issued, adjusted, redeemed, expired) and must
equal the sum of every member's available, pending and held points; its money value follows
the program's point_value. Activity counts, per UTC day, points earned, redeemed (captured
holds and reward redemptions), restored, expired, adjusted (net) and reversed, and new members,
plus members per tier now.

The program earns 1 point per 1.00 spent; everything else runs at the defaults (14-day return
window, points expire 12 months after they are earned). Time is moved with `now=`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from loyalty.db import utcnow
from loyalty.extensions import db
from loyalty.jobs import services as jobs
from loyalty.ledger.policy import add_months
from loyalty.membership import adjustments
from loyalty.orders import refunds
from loyalty.redemptions import services as redemptions
from loyalty.rewards import definitions as reward_definitions
from loyalty.rewards import services as rewards
from loyalty.rewards.definitions import RewardDefinition
from tests.commands import refund_command
from tests.database import emptied_tables
from tests.helpers import ok, order_placed_at

# After every test the whole ledger must verify.
pytestmark = pytest.mark.usefixtures("ledger_verifies_after_each_test")

DAY = dt.timedelta(days=1)


# --- helpers -------------------------------------------------------------------------------


def enroll(client: FlaskClient, checkout: dict[str, str], *external_ids: str) -> None:
    for external_id in external_ids:
        response = client.post("/v1/members", json={"external_id": external_id}, headers=checkout)
        assert response.status_code == 201, response.json


def liability(client: FlaskClient, admin: dict[str, str]) -> dict[str, Any]:
    return ok(client.get("/v1/admin/reports/liability", headers=admin))


def activity(client: FlaskClient, admin: dict[str, str], first: dt.date, last: dt.date) -> Any:
    return ok(
        client.get(
            "/v1/admin/reports/activity",
            query_string={"from": first.isoformat(), "to": last.isoformat()},
            headers=admin,
        )
    )


def card(client: FlaskClient, headers: dict[str, str], external_id: str) -> dict[str, Any]:
    return ok(client.get(f"/v1/members/{external_id}", headers=headers))["balance"]


def adjust(app: Flask, external_id: str, points: int, now: dt.datetime) -> None:
    with app.app_context():
        adjustments.adjust(db.session, external_id, points, "test", "ops", now=now)


def hold(app: Flask, external_id: str, points: int, now: dt.datetime) -> uuid.UUID:
    with app.app_context():
        return redemptions.hold(db.session, external_id, points, now=now).public_id


def capture(app: Flask, redemption_id: uuid.UUID, now: dt.datetime) -> None:
    with app.app_context():
        redemptions.capture(db.session, redemption_id, now=now)


def noon(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(12), dt.UTC)


# --- liability -----------------------------------------------------------------------------


@pytest.fixture
def three_members(app, client, admin, checkout, spend_rule) -> None:
    """c1: 1,000 available and a 50-point order still pending; c2: 300 given, 200 of them
    redeemed (captured); c3: 500 given, 150 of them held."""
    now = utcnow()
    enroll(client, checkout, "c1", "c2", "c3")
    adjust(app, "c1", 1000, now)
    order_placed_at(app, "o1", "c1", 50, now)
    adjust(app, "c2", 300, now)
    capture(app, hold(app, "c2", 200, now), now)
    adjust(app, "c3", 500, now)
    hold(app, "c3", 150, now)


def test_liability_is_the_sum_of_every_members_points(client, admin, checkout, three_members):
    cards = [card(client, checkout, external_id) for external_id in ("c1", "c2", "c3")]

    report = liability(client, admin)

    assert report["available"] == sum(c["available"] for c in cards) == 1000 + 100 + 350
    assert report["pending"] == sum(c["pending"] for c in cards) == 50
    assert report["held"] == sum(c["held"] for c in cards) == 150
    assert report["outstanding"] == 1450 + 50 + 150
    assert report["consistent"] is True


def test_liability_comes_from_the_program_accounts(client, admin, three_members):
    report = liability(client, admin)

    assert report["program_accounts"] == {
        "issued": -50,
        "redeemed": 200,
        "expired": 0,
        "adjusted": -1800,
    }
    assert report["outstanding"] == -sum(report["program_accounts"].values())


def test_liability_is_worth_its_points_at_the_program_point_value(client, admin, three_members):
    assert liability(client, admin)["value"] == {"amount": 1650, "currency": "USD"}

    ok(
        client.patch(
            "/v1/admin/program", json={"point_value": {"points": 100, "amount": 50}}, headers=admin
        )
    )

    assert liability(client, admin)["value"] == {"amount": 825, "currency": "USD"}


def test_liability_rounds_its_value_down(client, admin, checkout, app):
    enroll(client, checkout, "c1")
    adjust(app, "c1", 7, utcnow())
    ok(
        client.patch(
            "/v1/admin/program", json={"point_value": {"points": 3, "amount": 2}}, headers=admin
        )
    )

    assert liability(client, admin)["value"]["amount"] == 4  # 7 * 2 / 3 = 4.67


def test_liability_of_a_new_program_is_zero(client, admin):
    report = liability(client, admin)

    assert (report["available"], report["pending"], report["held"], report["outstanding"]) == (
        0,
        0,
        0,
        0,
    )
    assert report["value"] == {"amount": 0, "currency": "USD"}
    assert report["consistent"] is True


def test_expired_points_are_no_longer_owed_once_settled(app, client, admin, checkout):
    enroll(client, checkout, "c1")
    adjust(app, "c1", 80, utcnow() - dt.timedelta(days=400))
    with app.app_context():
        jobs.settle_due(db.session)

    report = liability(client, admin)

    assert report["outstanding"] == report["available"] == 0
    assert report["program_accounts"]["expired"] == 80
    assert report["consistent"] is True


def test_points_that_expired_are_not_owed_even_before_the_job_ran(app, client, admin, checkout):
    """Balances are right at every request whether or not a job has run: so is liability."""
    enroll(client, checkout, "c1")
    adjust(app, "c1", 80, utcnow() - dt.timedelta(days=400))

    report = liability(client, admin)

    assert report["outstanding"] == report["available"] == 0
    assert report["consistent"] is True


def test_liability_is_for_admins_only(client, checkout, app_key):
    for headers in (checkout, app_key):
        assert client.get("/v1/admin/reports/liability", headers=headers).status_code == 403
        response = client.get(
            "/v1/admin/reports/activity?from=2026-11-01&to=2026-11-02", headers=headers
        )
        assert response.status_code == 403


# --- activity ------------------------------------------------------------------------------


@pytest.fixture
def days() -> list[dt.date]:
    """Eleven days ending today (members are enrolled today: enrolment takes no `now`)."""
    today = utcnow().date()
    return [today - dt.timedelta(days=n) for n in range(10, -1, -1)]


@pytest.fixture
def a_busy_week(app, client, admin, checkout, spend_rule, days) -> None:
    """Day 0: c1 is given 1,000 points and orders for 200.00 (200 points earned).
    Day 1: 100 of c1's points are taken back; 70 of c2's points (given a year ago) expire.
    Day 2: c1 holds 300 points and pays for a 60.00 order with them (300 redeemed, 57 earned).
    Day 3: c1 redeems a 200-point reward.
    Day 4: the 60.00 order is refunded in full (57 reversed, 300 restored).
    """
    enroll(client, checkout, "c1", "c2")
    d = [noon(day) for day in days]
    adjust(app, "c1", 1000, d[0])
    # Placed before the members' enrolment today: they earn because they ask to.
    order_placed_at(app, "o1", "c1", 200, d[0], earn_points=True)
    adjust(app, "c1", -100, d[1])
    adjust(app, "c2", 70, add_months(d[1], -12))
    redemption = hold(app, "c1", 300, d[2])
    order_placed_at(app, "o2", "c1", 60, d[2], redemption_id=redemption, earn_points=True)
    with app.app_context():
        reward = reward_definitions.create_reward(
            db.session, RewardDefinition(**{"name": "Mug", "kind": "product", "cost_points": 200})
        )
        rewards.redeem(db.session, "c1", reward.public_id, now=d[3])
        refunds.refund_order(
            db.session, "o2", refund_command({"refund_id": "r1", "amount": 6000}), now=d[4]
        )
        jobs.settle_due(db.session, now=d[5])


def test_activity_counts_each_kind_of_movement_on_its_day(client, admin, days, a_busy_week):
    report = activity(client, admin, days[0], days[-1])

    zero = {
        "earned": 0,
        "redeemed": 0,
        "restored": 0,
        "expired": 0,
        "adjusted": 0,
        "reversed": 0,
        "new_members": 0,
    }
    expected = [{"date": day.isoformat(), **zero} for day in days]
    expected[0].update(earned=200, adjusted=1000)
    expected[1].update(adjusted=-100, expired=70)
    expected[2].update(earned=57, redeemed=300)
    expected[3].update(redeemed=200)
    expected[4].update(reversed=57, restored=300)
    expected[-1].update(new_members=2)
    assert report["days"] == expected


def test_activity_does_not_count_maturing_holds_or_releases(app, client, admin, checkout, days):
    enroll(client, checkout, "c1")
    adjust(app, "c1", 500, noon(days[0]))
    with app.app_context():
        held = redemptions.hold(db.session, "c1", 200, now=noon(days[1]))
        redemptions.release(db.session, held.public_id, now=noon(days[1]))

    report = activity(client, admin, days[1], days[1])

    [day] = report["days"]
    assert {k: v for k, v in day.items() if k != "date" and v} == {}


def test_activity_counts_members_per_tier_now(app, client, admin, checkout, spend_rule):
    tier = {"code": "silver", "name": "Silver", "rank": 1, "threshold": 100}
    assert client.post("/v1/admin/tiers", json=tier, headers=admin).status_code == 201
    enroll(client, checkout, "c1", "c2", "c3")
    order_placed_at(app, "o1", "c1", 150, utcnow())
    today = utcnow().date()

    report = activity(client, admin, today, today)

    assert report["members_by_tier"] == {"silver": 1, "none": 2}


def test_activity_of_a_single_day_has_one_row(client, admin):
    report = activity(client, admin, dt.date(2026, 11, 1), dt.date(2026, 11, 1))

    assert [day["date"] for day in report["days"]] == ["2026-11-01"]


def test_activity_covers_every_day_of_the_range_in_order(client, admin):
    report = activity(client, admin, dt.date(2026, 2, 26), dt.date(2026, 3, 2))

    assert [day["date"] for day in report["days"]] == [
        "2026-02-26",
        "2026-02-27",
        "2026-02-28",
        "2026-03-01",
        "2026-03-02",
    ]


def test_activity_allows_a_whole_leap_year(client, admin):
    report = activity(client, admin, dt.date(2028, 1, 1), dt.date(2028, 12, 31))

    assert len(report["days"]) == 366


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"from": "2026-11-30", "to": "2026-11-01"}, "to"),
        ({"from": "2028-01-01", "to": "2029-01-01"}, "to"),  # 367 days
        ({"from": "2026-11-01"}, "to"),
        ({"to": "2026-11-30"}, "from"),
        ({"from": "yesterday", "to": "2026-11-30"}, "from"),
        ({"from": "2026-11-01", "to": "2026-11-31"}, "to"),
    ],
)
def test_a_bad_date_range_is_422_naming_the_field(client, admin, query, field):
    response = client.get("/v1/admin/reports/activity", query_string=query, headers=admin)

    assert response.status_code == 422, response.json
    assert response.content_type == "application/problem+json"
    assert response.json["code"] == "validation_error"
    assert field in response.json["errors"]


def test_activity_without_any_parameter_is_422(client, admin):
    response = client.get("/v1/admin/reports/activity", headers=admin)

    assert response.status_code == 422
    assert {"from", "to"} <= set(response.json["errors"])


def test_points_that_expired_count_on_their_day_even_before_the_job_ran(
    app, client, admin, checkout, days
):
    enroll(client, checkout, "c1")
    adjust(app, "c1", 70, add_months(noon(days[1]), -12))

    report = activity(client, admin, days[0], days[-1])

    assert [day["expired"] for day in report["days"]] == [0, 70] + [0] * 9


# --- as of now, while the job is behind -----------------------------------------------------


@pytest.fixture
def a_backlog(app, client, admin, checkout, spend_rule, days) -> None:
    """Nothing read or settled since, so everything below is due and unsettled:
    c1's order of 20 days ago matured 6 days ago; c2's 70 points given a year and 3 days ago
    expired 3 days ago; c3's hold of an hour ago timed out; c4 reached silver with an order 3
    months ago, which counts for 1 month, kept 1 month after: its review is due."""
    tier = {"code": "silver", "name": "Silver", "rank": 1, "threshold": 100}
    response = client.post("/v1/admin/tiers", json={**tier, "retention_months": 1}, headers=admin)
    assert response.status_code == 201
    response = client.patch("/v1/admin/program", json={"tier_window_months": 1}, headers=admin)
    assert response.status_code == 200, response.json
    enroll(client, checkout, "c1", "c2", "c3", "c4")
    now = utcnow()
    order_placed_at(app, "o1", "c1", 80, now - 20 * DAY, earn_points=True)
    adjust(app, "c2", 70, add_months(noon(days[-4]), -12))
    adjust(app, "c3", 500, now - 2 * DAY)
    hold(app, "c3", 200, now - dt.timedelta(hours=1))
    order_placed_at(app, "o4", "c4", 150, add_months(now, -3), earn_points=True)


def reports(client: FlaskClient, admin: dict[str, str], days: list[dt.date]) -> dict[str, Any]:
    return {"liability": liability(client, admin), "activity": activity(client, admin, *days)}


def test_reports_with_a_backlog_equal_the_reports_after_the_job_ran(
    app, client, admin, days, a_backlog
):
    before = reports(client, admin, [days[0], days[-1]])
    with app.app_context():
        summary = jobs.settle_due(db.session)

    after = reports(client, admin, [days[0], days[-1]])

    assert summary.members_settled == 4
    assert before == after
    assert (after["liability"]["available"], after["liability"]["pending"]) == (80 + 500 + 150, 0)
    assert after["liability"]["held"] == 0
    assert [day["expired"] for day in after["activity"]["days"]] == [0] * 7 + [70, 0, 0, 0]
    assert after["activity"]["members_by_tier"] == {"none": 4}


def stored_rows(app: Flask) -> dict[str, list[tuple[Any, ...]]]:
    with app.app_context():
        return {
            table.name: sorted(map(tuple, db.session.execute(sa.select(table))), key=repr)
            for table in emptied_tables()
        }


def test_a_report_writes_nothing_even_with_a_backlog(app, client, admin, days, a_backlog):
    before = stored_rows(app)

    reports(client, admin, [days[0], days[-1]])

    assert stored_rows(app) == before
