"""What a reward's code is worth and where it stands: pure functions, no I/O."""

from __future__ import annotations

import datetime as dt
import enum
import re
from dataclasses import dataclass

# Hundredths of a percent in a whole one: 1250 basis points are 12.5%.
BPS_PER_PERCENT = 100
MAX_PERCENT_OFF_BPS = 100 * BPS_PER_PERCENT

# An integer or a decimal with at most two places: "15", "12.5", "0.25". No exponent, no
# sign, nothing a float could round.
_PERCENT = re.compile(r"(?P<whole>\d{1,3})(?:\.(?P<fraction>\d{1,2}))?")


def parse_percent(text: str) -> int:
    """The percentage `text` ("12.5") in basis points (1250). Raises ValueError for anything
    but an integer or a decimal of at most two places from 0.01 to 100."""
    match = _PERCENT.fullmatch(text)
    if match is None:
        raise ValueError("Must be a number from 0.01 to 100 with at most two decimal places.")
    bps = int(match["whole"]) * BPS_PER_PERCENT + int((match["fraction"] or "").ljust(2, "0"))
    if not 0 < bps <= MAX_PERCENT_OFF_BPS:
        raise ValueError("Must be a number from 0.01 to 100 with at most two decimal places.")
    return bps


def format_percent(bps: int) -> str:
    """Basis points as the shortest exact decimal: 1250 is "12.5", 1500 is "15"."""
    whole, fraction = divmod(bps, BPS_PER_PERCENT)
    return f"{whole}.{fraction:02d}".rstrip("0").rstrip(".") if fraction else str(whole)


class ValueType(enum.StrEnum):
    FIXED_AMOUNT = "fixed_amount"
    PERCENT_OFF = "percent_off"


@dataclass(frozen=True, slots=True)
class RewardValue:
    """What a code takes off an order: an amount in minor units of `currency`, or a
    percentage in basis points."""

    type: ValueType
    amount: int | None = None
    currency: str | None = None
    percent_off_bps: int | None = None


def reward_value(
    value_amount: int | None, percent_off_bps: int | None, currency: str
) -> RewardValue | None:
    """The value a reward's code carries; None for a reward that takes nothing off (a
    product, a coupon without a value)."""
    if percent_off_bps is not None:
        return RewardValue(ValueType.PERCENT_OFF, percent_off_bps=percent_off_bps)
    if value_amount is not None:
        return RewardValue(ValueType.FIXED_AMOUNT, amount=value_amount, currency=currency)
    return None


class CodeState(enum.StrEnum):
    ACTIVE = "active"
    USED = "used"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


def code_state(stored: str, expires_at: dt.datetime | None, now: dt.datetime) -> CodeState:
    """Where a code stands at `now`, from its stored status ("active", "used" or
    "cancelled") and expiry: an active code is expired from its `expires_at` on."""
    state = CodeState(stored)
    if state == CodeState.ACTIVE and expires_at is not None and expires_at <= now:
        return CodeState.EXPIRED
    return state


def code_expiry(valid_days: int | None, redeemed_at: dt.datetime) -> dt.datetime | None:
    """When a code redeemed at `redeemed_at` stops being honoured (None: never)."""
    return None if valid_days is None else redeemed_at + dt.timedelta(days=valid_days)
