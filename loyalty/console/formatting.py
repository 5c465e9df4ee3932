"""How the console writes figures, in the reader's locale (Babel's data): money in its
currency's own digits and symbol, counts with the locale's grouping, moments and days in the
locale's words, shares given in basis points as percentages."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from babel import Locale
from babel.dates import format_date, format_time
from babel.numbers import format_currency, format_decimal, get_currency_precision
from flask import current_app, g, has_app_context
from flask_babel import get_locale, gettext, ngettext

from loyalty.extensions import db
from loyalty.program import config


def zone() -> dt.tzinfo:
    """The program's time zone, the one the console shows every moment and day in (read
    once per request from the cached settings; UTC outside an app, or in one with no
    database, such as a bare app rendering figures)."""
    if not has_app_context() or "sqlalchemy" not in current_app.extensions:
        return dt.UTC
    if "program_zone" not in g:
        g.program_zone = config.current(db.session()).settings.zone
    return g.program_zone  # type: ignore[no-any-return]


def locale() -> Locale:
    """The request's locale (loyalty.console.language); English outside a request."""
    return get_locale() or Locale.parse("en_US")


def _date_format(where: Locale) -> str:
    # English keeps the ISO dates the console has always shown; another language gets its
    # locale's own medium date (2026年3月8日).
    return "yyyy-MM-dd" if where.language == "en" else "medium"


def local(value: dt.datetime) -> dt.datetime:
    """A stored moment on the console's clock (the program's time zone)."""
    return value.astimezone(zone())


def day(value: dt.date | dt.datetime | None) -> str:
    """A date (of a moment: its day on the console's clock) in the locale: 2026-03-08, or
    2026年3月8日 in Chinese."""
    if value is None:
        return "—"
    if isinstance(value, dt.datetime):
        value = local(value).date()
    where = locale()
    return format_date(value, _date_format(where), locale=where)


def clock(value: dt.datetime | None, seconds: bool = False) -> str:
    """A moment's time of day on the console's clock, 24-hour: 14:05 (14:05:09)."""
    if value is None:
        return "—"
    return format_time(local(value), "HH:mm:ss" if seconds else "HH:mm", locale=locale())


def moment(value: dt.datetime | None, seconds: bool = False) -> str:
    """A moment as its day, time and zone: 2026-03-08 14:05 UTC, 2026年3月8日 14:05 UTC."""
    if value is None:
        return "—"
    return f"{day(value)} {clock(value, seconds)} {local(value).tzname()}"


def number(value: int | float | Decimal | None) -> str:
    """A count with the locale's grouping: 1,234,567."""
    return "—" if value is None else format_decimal(value, locale=locale())


def decimal1(value: float | None) -> str:
    """A figure with one decimal and the locale's grouping: 1,234.5."""
    return "—" if value is None else format_decimal(value, "#,##0.0", locale=locale())


def points(value: int) -> str:
    """A number of points in words: 1,234 points, 1,234 积分."""
    return str(ngettext("%(count)s point", "%(count)s points", value, count=number(value)))


def money(minor: int | None, currency: str) -> str:
    """An amount in minor units (cents, yen, fils) with its symbol: 123456 USD is $1,234.56,
    1234 JPY is ¥1,234. Exact: the minor units are shifted as a Decimal, never a float."""
    if minor is None:
        return "—"
    major = Decimal(int(minor)).scaleb(-get_currency_precision(currency))
    return format_currency(major, currency, locale=locale())


def percent_bp(basis_points: int) -> str:
    """A share in basis points as a percentage with two decimals (1234 is 12.34%)."""
    return f"{Decimal(basis_points).scaleb(-2):.2f}%"


def trigger(value: Mapping[str, Any]) -> str:
    """An automation's trigger as its kind and parameters: inactive (days 60)."""
    parameters = ", ".join(f"{name} {setting}" for name, setting in value.items() if name != "kind")
    return f"{value['kind']} ({parameters})" if parameters else str(value["kind"])


def experiment_target(value: Mapping[str, Any]) -> str:
    """An experiment's target in words: 2 earning rules, an automation, benefit free_shipping."""
    if value["kind"] == "rules":
        count = len(value["rule_ids"])
        return str(ngettext("%(num)s earning rule", "%(num)s earning rules", count))
    if value["kind"] == "automation":
        return str(gettext("an automation"))
    return str(gettext("benefit %(code)s", code=value["code"]))


def rate(share: float | None) -> str:
    """A share of members (0-1) as a percentage with one decimal: 0.1234 is 12.3%."""
    return "—" if share is None else f"{share * 100:.1f}%"


def rate_difference(difference: float | None) -> str:
    """A difference of two rates (0-1) in percentage points, signed: 0.021 is +2.1 pp."""
    return "—" if difference is None else f"{difference * 100:+.1f} pp"


def relative(change: float | None) -> str:
    """A relative change, signed: 0.25 is +25.0%."""
    return "—" if change is None else f"{change * 100:+.1f}%"


def money_mean(minor: float | None, currency: str, signed: bool = False) -> str:
    """A mean (or a difference of means) of minor units, which is rarely whole: rounded half
    up to the minor unit, as the reports round, and written as money; `signed` shows a
    gain's plus."""
    if minor is None:
        return "—"
    rounded = int(Decimal(minor).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    text = money(rounded, currency)
    return f"+{text}" if signed and rounded > 0 else text


def p_value(p: float | None) -> str:
    """A p-value as a reader needs it: below 0.001 it is only that small."""
    if p is None:
        return "p —"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"
