"""Pure tier arithmetic: which tier qualifying points reach, and when a member moves.

- A member is in the highest tier whose threshold their qualifying points reach, and moves
  up the moment they reach it.
- Each time they still qualify for their tier (or a higher one) its retention restarts.
- They move down only once the retention since they last qualified has run out, and then to
  the highest tier they qualify for now (possibly none).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from loyalty.ledger.policy import add_months


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


def review(
    tiers: Sequence[TierView],
    current: TierView | None,
    retained_until: dt.datetime | None,
    points: int,
    now: dt.datetime,
) -> Decision:
    """Where a member with `points` qualifying points stands at `now`."""
    reached = qualified_tier(tiers, points)
    if reached is not None and (current is None or reached.rank >= current.rank):
        until = add_months(now, reached.retention_months)
        changed = current is None or reached.code != current.code
        return Decision(reached, until, "qualified" if changed else None)
    if current is None:
        return Decision(None, None, None)
    if retained_until is not None and now < retained_until:
        return Decision(current, retained_until, None)
    return Decision(
        reached,
        add_months(now, reached.retention_months) if reached else None,
        "retention_expired",
    )


def next_tier(tiers: Sequence[TierView], current: TierView | None) -> TierView | None:
    """The tier just above `current` (the lowest tier when there is none)."""
    above = [tier for tier in tiers if current is None or tier.rank > current.rank]
    return min(above, key=lambda tier: tier.rank) if above else None
