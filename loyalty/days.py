"""The program's days: calendar arithmetic in the program's time zone (an IANA name, UTC by
default), for everything the program states in days, weeks or months (birthdays, daily
reports, budget periods, caps and windows in days, expiry and tier months, automation delays).

Stored times stay UTC: every function takes and returns aware moments and converts only to
find a day's or month's edge. Days and months move the local wall clock, so across a
daylight-saving change "one day" is 23 or 25 hours and a lot earned at 10:00 expires at 10:00.
Pure: no I/O, so the arithmetic is covered by fast unit tests.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
import zoneinfo

DEFAULT_ZONE = "UTC"
UTC = dt.UTC
# Day numbers (days since this date) are how SQL compares days on every database.
EPOCH = dt.date(1970, 1, 1)


class UnknownTimeZone(ValueError):
    """A name that is not an IANA time zone this system knows."""


# Files of the tz database that name no zone of their own (the machine's zone, a template).
_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})


@functools.cache
def available_zones() -> frozenset[str]:
    """The IANA zone names this system knows (read once: the tz database's file list)."""
    return frozenset(zoneinfo.available_timezones() - _NOT_ZONES) | {DEFAULT_ZONE}


def is_zone(name: str) -> bool:
    """Whether `name` is a time zone the program may use (an IANA name this system knows)."""
    return name in available_zones()


@functools.cache
def zone(name: str) -> dt.tzinfo:
    """The time zone called `name` (UTC is the stdlib's). Raises UnknownTimeZone."""
    if name == DEFAULT_ZONE:
        return UTC
    if not is_zone(name):
        raise UnknownTimeZone(name)
    return zoneinfo.ZoneInfo(name)


def zone_name(tz: dt.tzinfo) -> str:
    """The IANA name of a zone from ``zone`` (UTC's is "UTC")."""
    return str(getattr(tz, "key", DEFAULT_ZONE))


def day_number(day: dt.date) -> int:
    """`day` as days since ``EPOCH``, as SQL's ``loyalty.db.day_number`` counts them."""
    return (day - EPOCH).days


def _utc(local: dt.datetime) -> dt.datetime:
    return local.astimezone(UTC)


def _local(when: dt.datetime, tz: dt.tzinfo) -> dt.datetime:
    # A naive moment is a stored UTC one read back without its zone (raw SQL on SQLite).
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(tz)


def today(now: dt.datetime, tz: dt.tzinfo) -> dt.date:
    """The calendar day it is at `now` in `tz`."""
    return _local(now, tz).date()


def start_of(day: dt.date, tz: dt.tzinfo) -> dt.datetime:
    """The moment (UTC) `day` begins in `tz`: its local midnight (where a clock change skips
    midnight, the moment the day's clock starts)."""
    return _utc(dt.datetime.combine(day, dt.time(), tz))


def day_bounds(day: dt.date, tz: dt.tzinfo) -> tuple[dt.datetime, dt.datetime]:
    """The moments (UTC) `day` begins and the next day begins in `tz` (23, 24 or 25 hours
    apart)."""
    return start_of(day, tz), start_of(day + dt.timedelta(days=1), tz)


def add_days(when: dt.datetime, days: int, tz: dt.tzinfo) -> dt.datetime:
    """`when` moved by whole days on the wall clock of `tz` (UTC): the same local time `days`
    days later (or earlier, when negative)."""
    return _utc(_local(when, tz) + dt.timedelta(days=days))


def add_months(when: dt.datetime, months: int, tz: dt.tzinfo = UTC) -> dt.datetime:
    """`when` moved by whole calendar months of `tz` (UTC), clamped to the month's last day
    (Jan 31 + 1 = Feb 28/29), the way people read "expires in 12 months"."""
    local = _local(when, tz)
    month_index = local.month - 1 + months
    year, month = local.year + month_index // 12, month_index % 12 + 1
    day = min(local.day, calendar.monthrange(year, month)[1])
    return _utc(local.replace(year=year, month=month, day=day))


def week_start(day: dt.date) -> dt.date:
    """The Monday of `day`'s ISO week."""
    return day - dt.timedelta(days=day.weekday())


def month_start(day: dt.date) -> dt.date:
    """The first day of `day`'s month."""
    return day.replace(day=1)


def next_month(day: dt.date) -> dt.date:
    """The first day of the month after `day`'s."""
    first = month_start(day)
    return (
        first.replace(year=first.year + 1, month=1)
        if first.month == 12
        else (first.replace(month=first.month + 1))
    )
