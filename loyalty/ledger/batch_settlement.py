"""Settling many members at once (``jobs run``): for a batch of claimed members, the same
transactions, lot changes, hold time-outs and next due times as ``settlement.settle`` writes
member by member, in a fixed number of statements per batch instead of about nine per member.

Each member's postings are planned by ``settlement_plan`` from what one query per table
loaded for the whole batch; they are written by ``post_many`` (one INSERT of transactions,
one of entries), and the lots, holds and balances by one ``executemany`` UPDATE each. The
next due times come from one query for the batch. Like ``settle``, this reports what it did
and calls nothing above the ledger.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.db import among, utcnow
from loyalty.ledger import settlement_plan as plans
from loyalty.ledger.models import (
    Account,
    LotState,
    MemberBalance,
    PointLot,
    Redemption,
    RedemptionAllocation,
    RedemptionStatus,
    TransactionKind,
)
from loyalty.ledger.postings import Posting, append_many
from loyalty.ledger.settlement import earliest, soonest_due
from loyalty.members.models import Member

_BALANCES = MemberBalance.__table__
_LOTS = PointLot.__table__
_HOLDS = Redemption.__table__

_BALANCE_COLUMNS = (
    _BALANCES.c.member_id,
    _BALANCES.c.available,
    _BALANCES.c.pending,
    _BALANCES.c.held,
    _BALANCES.c.next_due_at,
)


@dataclass(frozen=True, slots=True)
class Settled:
    """What settling one member of a batch did, as of `now` (``settlement.Settlement``
    without the transactions' copies, which nothing reads back here)."""

    member_id: int
    posted: int = 0
    matured: int = 0
    expired: int = 0
    released_holds: int = 0
    # The member's tier retention ran out: their tier is due for review.
    tier_review_due: bool = False


@dataclass(slots=True)
class DueBalance:
    """A balance row as a batch reads it: a plain copy, not in the session (an ORM object
    per member cost a tenth of a batch's time), whose columns ``settle_many`` moves and
    then writes in one UPDATE."""

    member_id: int
    available: int
    pending: int
    held: int
    next_due_at: dt.datetime | None


def claim_due(session: Session, now: dt.datetime, size: int) -> list[DueBalance]:
    """Lock up to `size` balance rows of members due by `now`, soonest due first, skipping
    rows another worker holds (``FOR UPDATE SKIP LOCKED``). Returns copies for
    ``settle_many``."""
    rows = session.connection().execute(
        sa.select(*_BALANCE_COLUMNS)
        .where(_BALANCES.c.next_due_at <= now)
        .order_by(_BALANCES.c.next_due_at)
        .limit(size)
        .with_for_update(skip_locked=True)
    )
    return [DueBalance(*row) for row in rows]


def due_balances(session: Session, now: dt.datetime, size: int) -> Iterator[list[DueBalance]]:
    """Every member due by `now`, `size` at a time, without locking (for reads that add up
    what settling would do): read-only copies. One read by the ``next_due_at`` index, so
    a report with nobody due costs one index probe."""
    rows = session.connection().execute(
        sa.select(*_BALANCE_COLUMNS).where(_BALANCES.c.next_due_at <= now)
    )
    balances = [DueBalance(*row) for row in rows]
    for start in range(0, len(balances), size):
        yield balances[start : start + size]


def _lot(row: Any) -> plans.Lot:
    return plans.Lot(row.id, row.state, row.remaining, row.available_at, row.expires_at)


_LOT_COLUMNS = (
    _LOTS.c.id,
    _LOTS.c.member_id,
    _LOTS.c.state,
    _LOTS.c.remaining,
    _LOTS.c.available_at,
    _LOTS.c.expires_at,
)


def plan_many(
    session: Session, balances: Sequence[DueBalance], now: dt.datetime
) -> list[plans.Plan]:
    """What settling each of `balances` as of `now` would post (``settlement_plan``), read
    in three queries for the batch; writes nothing. Returns one plan per balance, in order."""
    ids = [balance.member_id for balance in balances]
    lots: dict[int, dict[int, plans.Lot]] = defaultdict(dict)
    due = session.connection().execute(
        sa.select(*_LOT_COLUMNS).where(
            among(session, _LOTS.c.member_id, ids),
            sa.or_(
                sa.and_(_LOTS.c.state == LotState.PENDING.value, _LOTS.c.available_at <= now),
                sa.and_(
                    _LOTS.c.state.in_([LotState.PENDING.value, LotState.AVAILABLE.value]),
                    _LOTS.c.remaining > 0,
                    _LOTS.c.expires_at <= now,
                ),
            ),
        )
    )
    for row in due:
        lots[row.member_id][row.id] = _lot(row)
    holds = _timed_out_holds(session, [b.member_id for b in balances if b.held], now, lots)
    return [
        plans.plan_settlement(
            balance.member_id,
            balance.available,
            list(lots[balance.member_id].values()),
            holds.get(balance.member_id, []),
            now,
        )
        for balance in balances
    ]


def _timed_out_holds(
    session: Session,
    member_ids: list[int],
    now: dt.datetime,
    lots: dict[int, dict[int, plans.Lot]],
) -> dict[int, list[plans.Hold]]:
    """The open holds of `member_ids` that ran out by `now`, soonest first, per member; the
    lots they took from join `lots` (a release may revive a lot that has since expired)."""
    if not member_ids:
        return {}
    allocation = RedemptionAllocation.__table__
    rows = session.connection().execute(
        sa.select(
            _HOLDS.c.id.label("hold_id"),
            _HOLDS.c.public_id,
            _HOLDS.c.points.label("hold_points"),
            _HOLDS.c.expires_at.label("hold_expires_at"),
            allocation.c.points.label("allocated"),
            *_LOT_COLUMNS,
        )
        .join(allocation, allocation.c.redemption_id == _HOLDS.c.id)
        .join(_LOTS, _LOTS.c.id == allocation.c.lot_id)
        .where(
            among(session, _HOLDS.c.member_id, member_ids),
            _HOLDS.c.status == RedemptionStatus.HELD.value,
            _HOLDS.c.expires_at <= now,
        )
        .order_by(_HOLDS.c.expires_at, _HOLDS.c.id, allocation.c.id)
    )
    taken: dict[int, list[tuple[int, int]]] = defaultdict(list)
    heads: dict[int, Any] = {}
    for row in rows:
        heads.setdefault(row.hold_id, row)
        taken[row.hold_id].append((row.id, row.allocated))
        lots[row.member_id].setdefault(row.id, _lot(row))
    by_member: dict[int, list[plans.Hold]] = defaultdict(list)
    for hold_id, head in heads.items():
        by_member[head.member_id].append(
            plans.Hold(
                hold_id,
                f"redemption:{head.public_id}",
                head.hold_points,
                head.hold_expires_at,
                taken[hold_id],
            )
        )
    return by_member


# One UPDATE per table for the batch. On PostgreSQL the new values go as column arrays,
# unnested by the server; elsewhere (SQLite) one executemany.
_UPDATE_LOT = (
    sa.update(_LOTS)
    .where(_LOTS.c.id == sa.bindparam("lot_id"))
    .values(
        state=sa.bindparam("new_state", type_=_LOTS.c.state.type),
        remaining=sa.bindparam("new_remaining", type_=_LOTS.c.remaining.type),
    )
)
_UNNEST_LOTS = """
UPDATE point_lots SET state = u.state, remaining = u.remaining
FROM unnest(%b::bigint[], %b::text[], %b::bigint[]) AS u(id, state, remaining)
WHERE point_lots.id = u.id
"""
_EXPIRE_HOLD = (
    sa.update(_HOLDS)
    .where(_HOLDS.c.id == sa.bindparam("hold_id"))
    .values(
        status=RedemptionStatus.EXPIRED.value,
        released_at=sa.bindparam("ended_at", type_=_HOLDS.c.released_at.type),
    )
)
_UPDATE_BALANCE = (
    sa.update(_BALANCES)
    .where(_BALANCES.c.member_id == sa.bindparam("balance_id"))
    .values(
        available=sa.bindparam("new_available"),
        pending=sa.bindparam("new_pending"),
        held=sa.bindparam("new_held"),
        next_due_at=sa.bindparam("new_next_due_at", type_=_BALANCES.c.next_due_at.type),
    )
)
_UNNEST_BALANCES = """
UPDATE member_balances SET available = u.available, pending = u.pending, held = u.held,
    next_due_at = u.next_due_at, updated_at = %b
FROM unnest(%b::bigint[], %b::bigint[], %b::bigint[], %b::bigint[], %b::timestamptz[])
    AS u(member_id, available, pending, held, next_due_at)
WHERE member_balances.member_id = u.member_id
"""


def settle_many(
    session: Session, balances: Sequence[DueBalance], now: dt.datetime
) -> list[Settled]:
    """Settle every member of `balances` (claimed by ``claim_due``, their rows locked by
    the caller) as of `now`, exactly as ``settlement.settle`` settles each. Returns what was
    done per member; for those whose ``tier_review_due``, the caller reviews the tier and
    then calls ``settlement.reschedule``."""
    if not balances:
        return []
    by_id = {balance.member_id: balance for balance in balances}
    planned = plan_many(session, balances, now)
    postings = [
        Posting(
            by_id[plan.member_id],
            TransactionKind(posting.kind),
            [(Account(account), amount) for account, amount in posting.legs],
            posting.effective_at,
            posting.reference,
        )
        for plan in planned
        for posting in plan.postings
    ]
    if postings:
        append_many(session, postings)
    unnest = session.get_bind().dialect.name == "postgresql"
    connection = session.connection()
    changed = [lot for plan in planned for lot in plan.changed_lots]
    if changed and unnest:
        ids, states = [x.id for x in changed], [x.state for x in changed]
        connection.exec_driver_sql(_UNNEST_LOTS, (ids, states, [x.remaining for x in changed]))
    elif changed:
        connection.execute(
            _UPDATE_LOT,
            [{"lot_id": x.id, "new_state": x.state, "new_remaining": x.remaining} for x in changed],
        )
    released = [
        {"hold_id": hold.id, "ended_at": hold.expires_at}
        for plan in planned
        for hold in plan.released
    ]
    if released:
        connection.execute(_EXPIRE_HOLD, released)
    review_due = _reviews_due(session, list(by_id), now)
    next_due = _next_due_many(session, list(by_id), now)
    if unnest:
        columns = ("member_id", "available", "pending", "held")
        arrays = tuple([getattr(b, column) for b in balances] for column in columns)
        dues = [next_due.get(b.member_id) for b in balances]
        connection.exec_driver_sql(_UNNEST_BALANCES, (utcnow(), *arrays, dues))
    else:
        connection.execute(
            _UPDATE_BALANCE,
            [
                {
                    "balance_id": b.member_id,
                    "new_available": b.available,
                    "new_pending": b.pending,
                    "new_held": b.held,
                    "new_next_due_at": next_due.get(b.member_id),
                }
                for b in balances
            ],
        )
    posted = Counter(posting.balance.member_id for posting in postings)
    return [
        Settled(
            member_id=plan.member_id,
            posted=posted[plan.member_id],
            matured=plan.matured,
            expired=plan.expired,
            released_holds=len(plan.released),
            tier_review_due=plan.member_id in review_due,
        )
        for plan in planned
    ]


def _reviews_due(session: Session, member_ids: list[int], now: dt.datetime) -> set[int]:
    """The members whose tier retention ran out by `now`: their tier is due for review."""
    return set(
        session.connection()
        .execute(
            sa.select(Member.id).where(
                among(session, Member.id, member_ids), Member.tier_retained_until <= now
            )
        )
        .scalars()
    )


def _next_due_many(
    session: Session, member_ids: list[int], settled_at: dt.datetime
) -> dict[int, dt.datetime | None]:
    """When each member is next due, from what is left after `settled_at`, in one query
    (``settlement.soonest_due`` correlated to each balance row)."""
    at = sa.literal(settled_at, Member.tier_retained_until.type)
    rows = session.connection().execute(
        sa.select(_BALANCES.c.member_id, *soonest_due(_BALANCES.c.member_id, at)).where(
            among(session, _BALANCES.c.member_id, member_ids)
        )
    )
    return {row[0]: earliest(list(row[1:])) for row in rows}
