"""How the console writes figures: money in its currency's own digits, moments in UTC, shares
given in basis points as percentages."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from babel.numbers import format_currency, get_currency_precision

LOCALE = "en_US"


def money(minor: int | None, currency: str) -> str:
    """An amount in minor units (cents, yen, fils) with its symbol: 123456 USD is $1,234.56,
    1234 JPY is ¥1,234. Exact: the minor units are shifted as a Decimal, never a float."""
    if minor is None:
        return "—"
    major = Decimal(int(minor)).scaleb(-get_currency_precision(currency))
    return format_currency(major, currency, locale=LOCALE)


def moment(value: dt.datetime | None) -> str:
    return "—" if value is None else value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


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
        return f"{count} earning rule{'s' if count != 1 else ''}"
    if value["kind"] == "automation":
        return "an automation"
    return f"benefit {value['code']}"


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
