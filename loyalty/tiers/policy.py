"""Pure tier arithmetic: which tier qualifying points reach, and when a member moves.

- A member is in the highest tier whose threshold their qualifying points reach, and moves
  up the moment they reach it.
- While they qualify, their tier is kept until its retention period after the moment their
  qualification would lapse (when enough points leave the rolling window).
- Once they no longer qualify (points left the window, or a refund took them back), the
  retention runs from that moment; they move down only when it has run out, and then to the
  highest tier they qualify for now (possibly none).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from loyalty.days import UTC, add_months


@dataclass(frozen=True, slots=True)
class TierView:
    code: str
    name: str
    rank: int
    threshold: int
    retention_months: int


@dataclass(frozen=True, slots=True)
class Decision:
    tier: TierView | None
    retained_until: dt.datetime | None
    reason: str | None  # "qualified" or "retention_expired" when the tier changes


def qualified_tier(tiers: Sequence[TierView], points: int) -> TierView | None:
    """The highest-ranked tier whose threshold `points` reach."""
    reached = [tier for tier in tiers if points >= tier.threshold]
    return max(reached, key=lambda tier: tier.rank) if reached else None


def qualified_until(
    earnings: Sequence[tuple[dt.datetime, int]],
    threshold: int,
    window_months: int,
    now: dt.datetime,
    tz: dt.tzinfo = UTC,
) -> dt.datetime:
    """When a member whose window holds `earnings` [(effective_at, qualifying points)] stops
    reaching `threshold` if they earn nothing more: the moment enough of those points have
    left the rolling window (months of the program's zone `tz`). `now` when they do not
    reach it now."""
    remaining = sum(points for _, points in earnings)
    if remaining < threshold:
        return now
    for when, points in sorted(earnings):
        remaining -= points
        if remaining < threshold:
            return max(add_months(when, window_months, tz), now)
    return now


def review(
    tiers: Sequence[TierView],
    current: TierView | None,
    retained_until: dt.datetime | None,
    points: int,
    now: dt.datetime,
    window: tuple[Sequence[tuple[dt.datetime, int]], int] | None = None,
    tz: dt.tzinfo = UTC,
) -> Decision:
    """Where a member with `points` qualifying points stands at `now`; months are those of
    the program's zone `tz`.

    With `window` (the earnings in the rolling window, and its length in months) a tier's
    retention runs from when the member's qualification for it would lapse, not from now:
    a member keeps a tier for its retention after they last qualified for it.
    """
    reached = qualified_tier(tiers, points)
    if reached is not None and (current is None or reached.rank >= current.rank):
        lapse = qualified_until(window[0], reached.threshold, window[1], now, tz) if window else now
        until = add_months(lapse, reached.retention_months, tz)
        changed = current is None or reached.code != current.code
        return Decision(reached, until, "qualified" if changed else None)
    if current is None:
        return Decision(None, None, None)
    # No longer qualifying: the retention runs from now at the latest (a refund can end a
    # qualification that the window alone would have kept going).
    latest = add_months(now, current.retention_months, tz)
    retained_until = min(retained_until, latest) if retained_until else latest
    if now < retained_until:
        return Decision(current, retained_until, None)
    if reached is None:
        return Decision(None, None, "retention_expired")
    lapse = qualified_until(window[0], reached.threshold, window[1], now, tz) if window else now
    return Decision(reached, add_months(lapse, reached.retention_months, tz), "retention_expired")


def next_tier(tiers: Sequence[TierView], current: TierView | None) -> TierView | None:
    """The tier just above `current` (the lowest tier when there is none)."""
    above = [tier for tier in tiers if current is None or tier.rank > current.rank]
    return min(above, key=lambda tier: tier.rank) if above else None
