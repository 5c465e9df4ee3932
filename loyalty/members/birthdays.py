"""Whose birthday it is: the one place a birthday's day is worked out, for the birthday events
of ``jobs run`` and the automations' birthday trigger.

A birthday is a day of the program's time zone (loyalty.days): a Shanghai shop's member
born on 8 March is celebrated from 00:00 on 8 March in Shanghai (16:00 UTC the day before).
"""

from __future__ import annotations

import calendar
import datetime as dt

import sqlalchemy as sa

from loyalty import days
from loyalty.members.models import Member


def program_day(now: dt.datetime, zone: dt.tzinfo) -> tuple[dt.date, dt.datetime]:
    """The program's calendar day at `now` in its time zone `zone`, and the moment (UTC) it
    began."""
    today = days.today(now, zone)
    return today, days.start_of(today, zone)


def birthdays_on(today: dt.date) -> list[tuple[int, int]]:
    """The birthdays (month, day) celebrated on `today`: Feb 29 birthdays on Feb 28 in
    other years."""
    days = [(today.month, today.day)]
    if (today.month, today.day) == (2, 28) and not calendar.isleap(today.year):
        days.append((2, 29))
    return days


def born_on(today: dt.date) -> sa.ColumnElement[bool]:
    """The members whose birthday is celebrated on `today`, as a condition in SQL (EXTRACT
    on PostgreSQL, strftime on SQLite), so only they are read."""
    month, day = sa.extract("month", Member.birthday), sa.extract("day", Member.birthday)
    return sa.and_(
        Member.birthday.is_not(None),
        sa.or_(*(sa.and_(month == m, day == d) for m, d in birthdays_on(today))),
    )
