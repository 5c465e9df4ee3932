"""The program's days (loyalty.days): a day, a week and a month in the program's time zone,
east of UTC (Asia/Shanghai, UTC+8), west of it (America/Los_Angeles, UTC-8/-7) and across
New York's daylight-saving changes (8 March 2026, a day of 23 hours; 1 November 2026, 25).
With the default UTC every result is the UTC day, as before the setting."""

from __future__ import annotations

import calendar
import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loyalty import days
from loyalty.ledger import policy as ledger_policy
from loyalty.members.birthdays import program_day
from loyalty.rules.policy import BudgetPeriod, budget_period
from loyalty.tiers import policy as tiers_policy

UTC = dt.UTC
SHANGHAI = days.zone("Asia/Shanghai")
LOS_ANGELES = days.zone("America/Los_Angeles")
NEW_YORK = days.zone("America/New_York")
HOUR = dt.timedelta(hours=1)


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- zone names ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["UTC", "Asia/Shanghai", "America/New_York", "Europe/Berlin"])
def test_an_iana_name_is_a_zone(name):
    assert days.is_zone(name)
    assert days.zone_name(days.zone(name)) == name


@pytest.mark.parametrize(
    "name", ["Mars/Olympus_Mons", "asia/shanghai", "", "+08:00", "localtime", "Factory", "../etc"]
)
def test_anything_else_is_refused(name):
    assert not days.is_zone(name)
    with pytest.raises(days.UnknownTimeZone):
        days.zone(name)


# --- a day ---------------------------------------------------------------------------------


def test_east_of_utc_the_day_starts_the_evening_before_in_utc():
    assert days.today(utc("2026-03-07 15:59"), SHANGHAI) == dt.date(2026, 3, 7)
    assert days.today(utc("2026-03-07 16:00"), SHANGHAI) == dt.date(2026, 3, 8)
    assert days.day_bounds(dt.date(2026, 3, 8), SHANGHAI) == (
        utc("2026-03-07 16:00"),
        utc("2026-03-08 16:00"),
    )


def test_west_of_utc_the_day_starts_the_morning_after_in_utc():
    assert days.today(utc("2026-01-16 07:59"), LOS_ANGELES) == dt.date(2026, 1, 15)
    assert days.start_of(dt.date(2026, 1, 16), LOS_ANGELES) == utc("2026-01-16 08:00")


def test_the_day_clocks_spring_forward_has_23_hours_and_the_day_they_fall_back_25():
    start, end = days.day_bounds(dt.date(2026, 3, 8), NEW_YORK)
    assert (start, end) == (utc("2026-03-08 05:00"), utc("2026-03-09 04:00"))
    assert end - start == 23 * HOUR
    start, end = days.day_bounds(dt.date(2026, 11, 1), NEW_YORK)
    assert end - start == 25 * HOUR


def test_a_day_later_is_the_same_time_on_the_wall_clock_across_a_change():
    # 10:00 EST on Saturday is 15:00 UTC; 10:00 EDT on Sunday is 14:00 UTC: 23 hours later.
    saturday_ten = utc("2026-03-07 15:00")
    assert days.add_days(saturday_ten, 1, NEW_YORK) == utc("2026-03-08 14:00")
    assert days.add_days(utc("2026-03-08 14:00"), -1, NEW_YORK) == saturday_ten
    assert days.add_days(saturday_ten, 1, UTC) == saturday_ten + 24 * HOUR


def test_the_birthday_day_is_the_program_day():
    assert program_day(utc("2026-03-07 16:30"), SHANGHAI) == (
        dt.date(2026, 3, 8),
        utc("2026-03-07 16:00"),
    )
    assert program_day(utc("2026-03-07 16:30"), UTC) == (dt.date(2026, 3, 7), utc("2026-03-07"))


# --- months --------------------------------------------------------------------------------


def test_months_are_counted_on_the_programs_calendar():
    # 02:00 on 31 January in Shanghai (18:00 UTC on the 30th): a month later is 02:00 on
    # 28 February there, not the UTC date's 30 January + 1 month.
    earned = utc("2026-01-30 18:00")
    assert days.add_months(earned, 1, SHANGHAI) == utc("2026-02-27 18:00")
    assert days.add_months(earned, 1, UTC) == utc("2026-02-28 18:00")


def test_a_months_expiry_keeps_the_wall_clock_across_a_change():
    # Earned at 23:30 EST on 8 February: it expires at 23:30 EDT on 8 March, the short day,
    # which is 03:30 UTC on the 9th (an hour earlier in UTC than a month before).
    earned = utc("2026-02-09 04:30")
    expires = ledger_policy.lot_expiry("fixed", 1, earned, NEW_YORK)
    assert expires == utc("2026-03-09 03:30")
    assert days.today(expires, NEW_YORK) == dt.date(2026, 3, 8)
    assert ledger_policy.lot_expiry("fixed", 1, earned) == utc("2026-03-09 04:30")


def test_a_tier_retention_runs_for_months_of_the_programs_calendar():
    gold = tiers_policy.TierView("gold", "Gold", 2, 1000, retention_months=1)
    now = utc("2026-01-30 18:00")  # 31 January in Shanghai
    decision = tiers_policy.review([gold], None, None, 1000, now, None, SHANGHAI)
    assert decision.retained_until == utc("2026-02-27 18:00")


@given(
    st.datetimes(
        min_value=dt.datetime(2000, 1, 1),  # noqa: DTZ001 - hypothesis attaches the zone
        max_value=dt.datetime(2040, 1, 1),  # noqa: DTZ001
        timezones=st.just(UTC),
    ),
    st.integers(min_value=-120, max_value=120),
)
def test_in_utc_months_move_the_utc_date_as_they_always_did(when, months):
    moved = days.add_months(when, months)
    assert moved.time() == when.time()
    assert (moved.year * 12 + moved.month) - (when.year * 12 + when.month) == months
    assert moved.day == min(when.day, calendar.monthrange(moved.year, moved.month)[1])


# --- budget periods ------------------------------------------------------------------------


def test_a_daily_budget_starts_at_the_programs_midnight():
    assert budget_period(BudgetPeriod.DAY, utc("2026-03-07 17:00"), SHANGHAI) == (
        utc("2026-03-07 16:00"),
        utc("2026-03-08 16:00"),
    )
    assert budget_period(BudgetPeriod.DAY, utc("2026-03-08 12:00"), NEW_YORK) == (
        utc("2026-03-08 05:00"),
        utc("2026-03-09 04:00"),
    )


def test_a_weekly_and_a_monthly_budget_follow_the_programs_calendar():
    # 21:00 on Sunday 1 March in Los Angeles is 05:00 UTC on Monday 2 March.
    sunday_evening = utc("2026-03-02 05:00")
    assert budget_period(BudgetPeriod.WEEK, sunday_evening, LOS_ANGELES) == (
        utc("2026-02-23 08:00"),
        utc("2026-03-02 08:00"),
    )
    # Still February in Los Angeles; the month ends at its midnight (PST, UTC-8).
    assert budget_period(BudgetPeriod.MONTH, utc("2026-03-01 07:00"), LOS_ANGELES) == (
        utc("2026-02-01 08:00"),
        utc("2026-03-01 08:00"),
    )
    # December's end in Shanghai starts the new year's month.
    assert budget_period(BudgetPeriod.MONTH, utc("2026-12-31 16:00"), SHANGHAI) == (
        utc("2026-12-31 16:00"),
        utc("2027-01-31 16:00"),
    )
