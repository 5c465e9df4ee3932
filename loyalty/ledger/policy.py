"""Pure ledger arithmetic: expiry dates, consumption order, debt repayment, settlement order.

No I/O here, so every rule is covered by fast unit and property tests.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# Months are counted on the program's calendar, in its time zone.
from loyalty.days import UTC, add_months

# The most points one movement may carry: wide enough for any real balance, narrow enough
# that no sum can overflow a BIGINT.
MAX_POINTS = 1_000_000_000


class NotEnoughPoints(Exception):
    """The lots hold fewer points than the debit asks for."""


def lot_expiry(
    policy: str, months: int | None, earned_at: dt.datetime, tz: dt.tzinfo = UTC
) -> dt.datetime | None:
    """When a lot earned at `earned_at` expires under the program's expiry policy: its
    months counted on the calendar of the program's zone `tz`.

    Under "inactivity" this is the expiry if the member does nothing more; every later
    activity pushes all their lots out again.
    """
    if policy == "never" or months is None:
        return None
    return add_months(earned_at, months, tz)


@dataclass(frozen=True, slots=True)
class LotView:
    id: int
    remaining: int
    available_at: dt.datetime
    expires_at: dt.datetime | None


def consumption_order(lot: LotView) -> tuple[bool, dt.datetime, dt.datetime, int]:
    """Soonest-expiring first; lots that never expire last; then oldest first."""
    far = lot.available_at
    return (lot.expires_at is None, lot.expires_at or far, lot.available_at, lot.id)


def plan_consumption(lots: Iterable[LotView], points: int) -> list[tuple[int, int]]:
    """Which lots give how many points to a debit of `points`: [(lot id, points taken)].

    Raises NotEnoughPoints when the lots together hold fewer than `points`.
    """
    plan: list[tuple[int, int]] = []
    needed = points
    for lot in sorted(lots, key=consumption_order):
        if needed == 0:
            break
        take = min(lot.remaining, needed)
        if take > 0:
            plan.append((lot.id, take))
            needed -= take
    if needed:
        raise NotEnoughPoints(f"short by {needed} points")
    return plan


def lot_remaining_after_credit(available_before: int, credited: int) -> int:
    """Points a newly available lot keeps once it has paid the member's debt.

    Only refund reversals take `available` below zero; the next points to become available
    repay that debt first, and only what is left stays spendable in the lot.
    """
    return min(credited, max(0, available_before + credited))


@dataclass(frozen=True, slots=True)
class DueLot:
    id: int
    state: str
    remaining: int
    available_at: dt.datetime
    expires_at: dt.datetime | None


def due_events(lots: Sequence[DueLot], now: dt.datetime) -> list[tuple[dt.datetime, str, int]]:
    """The maturing and expiring that happened by `now`, in the order they happened.

    Returns [(when, "mature" | "expire", lot id)]. At the same instant a lot matures before
    anything expires, so points that become available and expire together are still
    accounted as available first.
    """
    events: list[tuple[dt.datetime, int, str, int]] = []
    for lot in lots:
        if lot.state == "pending" and lot.available_at <= now:
            events.append((lot.available_at, 0, "mature", lot.id))
        if (
            lot.state in ("pending", "available")
            and lot.remaining > 0
            and lot.expires_at is not None
            and lot.expires_at <= now
        ):
            events.append((lot.expires_at, 1, "expire", lot.id))
    events.sort()
    return [(when, kind, lot_id) for when, _, kind, lot_id in events]
