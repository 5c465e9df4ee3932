"""What settling a member posts, worked out without I/O: the hold time-outs, maturings and
expiries that fell due by `now`, as ``ledger.settlement.settle`` posts them member by member.

The batch settlement (``jobs run``) writes these plans for hundreds of members at once, and
the reports add them up to answer as of `now` without writing anything. Accounts, kinds and
lot states are their stored values, so this module needs no SQLAlchemy.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from loyalty.ledger import policy

PENDING, AVAILABLE, EXPIRED = "pending", "available", "expired"


@dataclass(slots=True)
class Lot:
    """A lot as loaded; planning changes `state` and `remaining` in place."""

    id: int
    state: str
    remaining: int
    available_at: dt.datetime
    expires_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class Hold:
    """An open hold that timed out, with the lots it took its points from, in the order
    they were taken: [(lot id, points)]."""

    id: int
    reference: str
    points: int
    expires_at: dt.datetime
    allocations: Sequence[tuple[int, int]]


@dataclass(frozen=True, slots=True)
class PlannedPosting:
    kind: str
    legs: tuple[tuple[str, int], ...]
    effective_at: dt.datetime
    reference: str


@dataclass(slots=True)
class Plan:
    """What settling one member posts, in order, and what it leaves behind."""

    member_id: int
    postings: list[PlannedPosting] = field(default_factory=list)
    matured: int = 0
    expired: int = 0
    released: list[Hold] = field(default_factory=list)
    # The lots whose state or remaining points the plan changed.
    changed_lots: list[Lot] = field(default_factory=list)


def plan_settlement(
    member_id: int,
    available: int,
    lots: Sequence[Lot],
    holds: Sequence[Hold],
    now: dt.datetime,
) -> Plan:
    """Plan the settling of a member whose available balance is `available`, given every
    lot that may fall due (pending lots that matured, live lots that expired, and the lots
    the timed-out `holds` took from) and those holds in the order they ran out.

    Holds are released first, their points going back to their lots (a debt repaid first);
    then the lots mature and expire in the order they did so (``policy.due_events``), each
    posting dated when it took effect. Returns the plan; `lots` are changed in place.
    """
    plan = Plan(member_id)
    by_id = {lot.id: lot for lot in lots}
    before = {lot.id: (lot.state, lot.remaining) for lot in lots}
    for hold in holds:
        restorable = policy.lot_remaining_after_credit(available, hold.points)
        plan.postings.append(
            PlannedPosting(
                "release", (("held", -hold.points), (AVAILABLE, hold.points)),
                hold.expires_at, hold.reference,
            )
        )  # fmt: skip
        available += hold.points
        for lot_id, allocated in hold.allocations:
            lot = by_id[lot_id]
            give = min(allocated, restorable)
            restorable -= give
            lot.remaining += give
            if give and lot.state == EXPIRED:
                lot.state = AVAILABLE
        plan.released.append(hold)
    views = [
        policy.DueLot(lot.id, lot.state, lot.remaining, lot.available_at, lot.expires_at)
        for lot in lots
    ]
    for when, event, lot_id in policy.due_events(views, now):
        lot = by_id[lot_id]
        reference = f"lot:{lot.id}"
        if event == "mature" and lot.state == PENDING:
            amount = lot.remaining
            lot.state = AVAILABLE
            lot.remaining = policy.lot_remaining_after_credit(available, amount)
            if amount:
                plan.matured += amount
                available += amount
                legs = ((PENDING, -amount), (AVAILABLE, amount))
                plan.postings.append(PlannedPosting("mature", legs, when, reference))
        elif event == "expire" and lot.state != EXPIRED and lot.remaining > 0:
            account = PENDING if lot.state == PENDING else AVAILABLE
            amount, lot.remaining, lot.state = lot.remaining, 0, EXPIRED
            plan.expired += amount
            if account == AVAILABLE:
                available -= amount
            legs = ((account, -amount), (EXPIRED, amount))
            plan.postings.append(PlannedPosting("expire", legs, when, reference))
    plan.changed_lots = [lot for lot in lots if before[lot.id] != (lot.state, lot.remaining)]
    return plan
