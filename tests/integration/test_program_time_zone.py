"""The program's time zone at work: a Shanghai shop's birthdays start at Shanghai's midnight,
a New York shop's daily report splits at New York's midnight (on the 23-hour day the clocks
spring forward, 8 March 2026, too), its month-long expiry ends on New York's calendar, member
insight counts purchase days of the zone, an automation's delay in days is a day on the
zone's wall clock, and the console writes moments on the zone's clock. Stored times stay
UTC. The tests set the clock with `now=`."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from flask import Flask

from loyalty import days
from loyalty.automations import firing
from loyalty.automations import services as automations
from loyalty.console import formatting
from loyalty.db import transaction
from loyalty.errors import ValidationFailed
from loyalty.events.models import MemberEvent
from loyalty.insight.figures import figures_select
from loyalty.jobs import services as jobs
from loyalty.ledger.models import PointLot
from loyalty.members import lookup
from loyalty.membership import adjustments
from loyalty.membership import services as members
from loyalty.program import config
from loyalty.program.models import ExpiryPolicy
from loyalty.program.services import SettingsChanges, settings_view, update_settings
from loyalty.reports import services as reports
from loyalty.schemas.automations import AutomationInSchema
from tests.factories import MemberFactory
from tests.helpers import order_placed_at, services
from tests.integration.test_console_program import save, signed_in

pytestmark = pytest.mark.usefixtures("ledger_verifies_after_each_test")


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def set_program(app: Flask, **changes) -> None:
    with services(app) as session:
        update_settings(session, SettingsChanges(**changes), "ops")


def enroll(app: Flask, external_id: str, **fields) -> None:
    with services(app) as session:
        members.enroll(session, members.EnrollMember(external_id=external_id, **fields))


def adjust(app: Flask, points: int, now: dt.datetime) -> None:
    with services(app) as session:
        adjustments.adjust(session, "c1", points, "test", "ops", now=now)


def adjusted_per_day(app: Flask, first: dt.date, last: dt.date, now: dt.datetime) -> dict:
    with services(app) as session:
        activity = reports.activity(session, first, last, now)
    return {day.date.isoformat(): day.adjusted for day in activity.days}


def expired_per_day(app: Flask, first: dt.date, last: dt.date, now: dt.datetime) -> dict:
    with services(app) as session:
        activity = reports.activity(session, first, last, now)
    return {day.date.isoformat(): day.expired for day in activity.days}


# --- the setting ---------------------------------------------------------------------------


def test_the_zone_is_read_from_the_cached_settings_and_changes_with_them(app):
    with services(app) as session, transaction(session):
        assert config.current(session).settings.zone is dt.UTC

    set_program(app, time_zone="Asia/Shanghai")

    with services(app) as session, transaction(session):
        assert days.zone_name(config.current(session).settings.zone) == "Asia/Shanghai"


def test_the_service_refuses_a_name_that_is_no_zone(app):
    with services(app) as session, pytest.raises(ValidationFailed) as refused:
        update_settings(session, SettingsChanges(time_zone="Mars/Olympus_Mons"), "ops")

    assert list(refused.value.extra["errors"]) == ["time_zone"]
    with services(app) as session, transaction(session):
        assert config.current(session).settings.time_zone == "UTC"


# --- birthdays -----------------------------------------------------------------------------


def birthday_events(app: Flask) -> list[tuple[str, dt.datetime]]:
    with services(app) as session:
        return [
            (event.event_id, event.occurred_at)
            for event in session.scalars(
                sa.select(MemberEvent).where(MemberEvent.type == "birthday")
            )
        ]


def test_a_shanghai_birthday_starts_at_shanghai_midnight(app):
    set_program(app, time_zone="Asia/Shanghai")
    enroll(app, "c1", birthday=dt.date(1990, 3, 8))

    with services(app) as session:
        # 23:30 on 7 March in Shanghai: not yet.
        assert jobs.grant_birthdays(session, now=utc("2026-03-07 15:30")) == 0
        # 00:30 on 8 March in Shanghai, still the 7th in UTC.
        assert jobs.grant_birthdays(session, now=utc("2026-03-07 16:30")) == 1

    assert birthday_events(app) == [("birthday:c1:2026", utc("2026-03-07 16:00"))]


def test_in_utc_the_same_moment_is_still_the_day_before(app):
    enroll(app, "c1", birthday=dt.date(1990, 3, 8))

    with services(app) as session:
        assert jobs.grant_birthdays(session, now=utc("2026-03-07 16:30")) == 0


# --- the daily report ----------------------------------------------------------------------

# Around New York's short day: 23:30 EST on the 7th, 00:30 EST on the 8th, 23:30 EDT on the
# 8th, 00:30 EDT on the 9th.
MOVES = [
    (utc("2026-03-08 04:30"), 10),
    (utc("2026-03-08 05:30"), 20),
    (utc("2026-03-09 03:30"), 40),
    (utc("2026-03-09 04:30"), 80),
]
FIRST, LAST = dt.date(2026, 3, 7), dt.date(2026, 3, 9)


@pytest.fixture
def moves_around_the_change(app):
    enroll(app, "c1")
    for when, points in MOVES:
        adjust(app, points, when)


@pytest.mark.usefixtures("moves_around_the_change")
def test_the_daily_report_splits_at_new_yorks_midnight_on_the_23_hour_day(app):
    now = utc("2026-03-10 12:00")
    assert adjusted_per_day(app, FIRST, LAST, now) == {
        "2026-03-07": 0,
        "2026-03-08": 30,
        "2026-03-09": 120,
    }

    set_program(app, time_zone="America/New_York")

    assert adjusted_per_day(app, FIRST, LAST, now) == {
        "2026-03-07": 10,
        "2026-03-08": 60,
        "2026-03-09": 80,
    }


@pytest.mark.usefixtures("moves_around_the_change")
def test_east_of_utc_the_report_day_ends_at_shanghai_midnight(app):
    set_program(app, time_zone="Asia/Shanghai")

    # All four moves fall on 8 or 9 March in UTC, but on the 8th or 9th at Shanghai's +8:
    # 12:30, 13:30 on the 8th; 11:30, 12:30 on the 9th.
    assert adjusted_per_day(app, FIRST, LAST, utc("2026-03-10 12:00")) == {
        "2026-03-07": 0,
        "2026-03-08": 30,
        "2026-03-09": 120,
    }
    # One day's report holds exactly that day's moves (its bounds are Shanghai's).
    assert adjusted_per_day(app, LAST, LAST, utc("2026-03-10 12:00")) == {"2026-03-09": 120}


# --- expiry --------------------------------------------------------------------------------


def test_a_months_expiry_ends_on_new_yorks_short_day_and_is_reported_there(app):
    set_program(
        app,
        time_zone="America/New_York",
        expiry_policy=ExpiryPolicy.FIXED,
        expiry_months=1,
    )
    enroll(app, "c1")
    # 23:30 EST on 8 February: it expires at 23:30 EDT on 8 March, 03:30 UTC on the 9th.
    adjust(app, 50, utc("2026-02-09 04:30"))
    with services(app) as session:
        member = lookup.find_member(session, "c1")
        lot = session.scalars(sa.select(PointLot).where(PointLot.member_id == member.id)).one()
        assert lot.expires_at == utc("2026-03-09 03:30")

    # Reported on its day before the job has run, and the same after.
    midnight_after = utc("2026-03-09 04:00")
    expected = {"2026-03-08": 50, "2026-03-09": 0}
    assert expired_per_day(app, dt.date(2026, 3, 8), LAST, midnight_after) == expected
    with services(app) as session:
        jobs.settle_due(session, now=midnight_after)
    assert expired_per_day(app, dt.date(2026, 3, 8), LAST, midnight_after) == expected


# --- member insight ------------------------------------------------------------------------


def purchase_days(app: Flask, zone: dt.tzinfo) -> int:
    with services(app) as session:
        figures = figures_select(utc("2026-03-10 00:00"), "USD", zone).subquery()
        return int(
            session.execute(
                sa.select(figures.c.purchase_days).where(figures.c.orders > 0)
            ).scalar_one()
        )


def test_insight_counts_purchase_days_of_the_programs_zone(app):
    enroll(app, "c1")
    # 23:00 on 7 March and 01:00 on 8 March in Shanghai; both on 7 March in UTC.
    order_placed_at(app, "o1", "c1", 20, utc("2026-03-07 15:00"))
    order_placed_at(app, "o2", "c1", 20, utc("2026-03-07 17:00"))

    assert purchase_days(app, dt.UTC) == 1
    assert purchase_days(app, days.zone("Asia/Shanghai")) == 2
    # West of UTC the two are one day too (07:00 and 09:00 on 7 March in Los Angeles).
    assert purchase_days(app, days.zone("America/Los_Angeles")) == 1


# --- the console ---------------------------------------------------------------------------


def test_the_console_writes_moments_on_the_programs_clock(app):
    moment = utc("2026-03-07 16:30")
    with app.test_request_context("/admin/"):
        assert formatting.moment(moment) == "2026-03-07 16:30 UTC"

    set_program(app, time_zone="Asia/Shanghai")

    with app.test_request_context("/admin/"):
        assert formatting.moment(moment) == "2026-03-08 00:30 CST"
        assert formatting.day(moment) == "2026-03-08"


# --- automations ---------------------------------------------------------------------------


def test_an_automations_one_day_delay_is_a_day_on_new_yorks_wall_clock(app):
    set_program(app, time_zone="America/New_York")
    with services(app) as session:
        body = {"name": "Welcome", "trigger": {"kind": "enrolled", "delay_days": 1}}
        automations.create_automation(
            session,
            AutomationInSchema().load({**body, "actions": [{"type": "webhook"}]}),
            "test",
            now=utc("2026-03-01 12:00"),
        )
        # 10:00 EST on Saturday 7 March; a day later is 10:00 EDT, 23 hours on.
        MemberFactory(external_id="c1", now=utc("2026-03-07 15:00"))

        assert firing.fire_due(session, now=utc("2026-03-08 13:59")).total == 0
        assert firing.fire_due(session, now=utc("2026-03-08 14:00")).total == 1


# --- the console's program page ------------------------------------------------------------


def test_the_program_page_offers_the_zones_and_saves_one(app, client):
    signed_in(app, client)
    page = client.get("/admin/program").text
    assert '<option selected value="UTC">UTC</option>' in page
    assert '<option value="Asia/Shanghai">Asia/Shanghai</option>' in page

    assert save(client, time_zone="America/New_York").status_code == 302

    with services(app) as session:
        assert settings_view(session).time_zone == "America/New_York"


def test_the_program_page_refuses_a_zone_it_does_not_offer(app, client):
    signed_in(app, client)

    response = save(client, time_zone="Mars/Olympus_Mons")

    assert response.status_code == 422
    assert 'id="time_zone-error"' in response.text
    with services(app) as session:
        assert settings_view(session).time_zone == "UTC"
