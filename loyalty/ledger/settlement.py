"""Settling a member: posting every maturing, expiry and hold time-out that fell due.

Settling reports what it did (``Settlement``); the use case that settles reacts to it
(webhooks, a tier review): the ledger calls nothing above it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.ledger import policy
from loyalty.ledger.models import (
    Account,
    LedgerTransaction,
    LotState,
    MemberBalance,
    PointLot,
    Redemption,
    RedemptionStatus,
    TransactionKind,
)
from loyalty.ledger.postings import post
from loyalty.ledger.spending import return_held
from loyalty.members.models import Member


@dataclass(frozen=True, slots=True)
class Settlement:
    """What settling a member did, as of `now`."""

    member_id: int
    # Every transaction written, dated when it took effect, in that order.
    transactions: tuple[LedgerTransaction, ...] = ()
    matured: int = 0
    expired: int = 0
    released_holds: tuple[Redemption, ...] = ()
    # The member's tier retention ran out: their tier is due for review.
    tier_review_due: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.transactions) or self.tier_review_due


def settle(session: Session, balance: MemberBalance, now: dt.datetime) -> Settlement:
    """Post every hold time-out, maturing and expiry that fell due by `now`, in the order they
    happened, each dated at the moment it took effect, not when it was noticed.

    The caller holds the member's lock. Returns what was done; when the member's tier
    retention ran out (``tier_review_due``), the caller reviews the tier and then calls
    ``reschedule``.
    """
    if balance.next_due_at is None or balance.next_due_at > now:
        return Settlement(balance.member_id)
    released = _expire_holds(session, balance, now)
    written = [txn for txn, _ in released]
    stmt = sa.select(PointLot).where(
        PointLot.member_id == balance.member_id,
        sa.or_(
            sa.and_(PointLot.state == LotState.PENDING.value, PointLot.available_at <= now),
            sa.and_(
                PointLot.state.in_([LotState.PENDING.value, LotState.AVAILABLE.value]),
                PointLot.remaining > 0,
                PointLot.expires_at <= now,
            ),
        ),
    )
    lots = {lot.id: lot for lot in session.execute(stmt).scalars()}
    views = [
        policy.DueLot(lot.id, lot.state, lot.remaining, lot.available_at, lot.expires_at)
        for lot in lots.values()
    ]
    matured = expired = 0
    for when, event, lot_id in policy.due_events(views, now):
        lot = lots[lot_id]
        if event == "mature" and lot.state == LotState.PENDING:
            amount = lot.remaining
            lot.state = LotState.AVAILABLE
            lot.remaining = policy.lot_remaining_after_credit(balance.available, amount)
            if amount:
                matured += amount
                written.append(
                    post(
                        session,
                        balance,
                        TransactionKind.MATURE,
                        [(Account.PENDING, -amount), (Account.AVAILABLE, amount)],
                        effective_at=when,
                        reference=f"lot:{lot.id}",
                    )
                )
        elif event == "expire" and lot.state != LotState.EXPIRED and lot.remaining > 0:
            account = Account.PENDING if lot.state == LotState.PENDING else Account.AVAILABLE
            amount, lot.remaining, lot.state = lot.remaining, 0, LotState.EXPIRED
            expired += amount
            written.append(
                post(
                    session,
                    balance,
                    TransactionKind.EXPIRE,
                    [(account, -amount), (Account.EXPIRED, amount)],
                    effective_at=when,
                    reference=f"lot:{lot.id}",
                )
            )
    member = session.get(Member, balance.member_id)
    review_due = (
        member is not None
        and member.tier_retained_until is not None
        and member.tier_retained_until <= now
    )
    reschedule(session, balance, now)
    return Settlement(
        member_id=balance.member_id,
        transactions=tuple(written),
        matured=matured,
        expired=expired,
        released_holds=tuple(hold for _, hold in released),
        tier_review_due=review_due,
    )


def reschedule(session: Session, balance: MemberBalance, now: dt.datetime) -> None:
    """Set when the member is next due for settling, from what is left after `now`."""
    session.flush()
    balance.next_due_at = _next_due(session, balance.member_id, now)


def _expire_holds(
    session: Session, balance: MemberBalance, now: dt.datetime
) -> list[tuple[LedgerTransaction, Redemption]]:
    if not balance.held:
        return []  # no hold is open, so none can have run out
    holds = session.execute(
        sa.select(Redemption)
        .where(
            Redemption.member_id == balance.member_id,
            Redemption.status == RedemptionStatus.HELD.value,
            Redemption.expires_at <= now,
        )
        .order_by(Redemption.expires_at, Redemption.id)
    ).scalars()
    return [
        (
            return_held(
                session,
                balance,
                hold,
                hold.expires_at,
                TransactionKind.RELEASE,
                RedemptionStatus.EXPIRED,
            ),
            hold,
        )
        for hold in holds
    ]


def soonest_due(member_id: Any, settled_at: Any) -> list[Any]:
    """The four times the member `member_id` (a column or a parameter) may next fall due
    after being settled at `settled_at`, as scalar subqueries: its first lot to mature, its
    first live lot to expire, its first hold to time out, its tier retention's end."""
    live = PointLot.state.in_([LotState.PENDING.value, LotState.AVAILABLE.value])
    maturing = sa.select(sa.func.min(PointLot.available_at)).where(
        PointLot.member_id == member_id, PointLot.state == LotState.PENDING.value
    )
    expiring = sa.select(sa.func.min(PointLot.expires_at)).where(
        PointLot.member_id == member_id, live, PointLot.remaining > 0
    )
    hold_ends = sa.select(sa.func.min(Redemption.expires_at)).where(
        Redemption.member_id == member_id, Redemption.status == RedemptionStatus.HELD.value
    )
    # A retention ending by `settled_at` was just reviewed (a tier kept 0 months): due again
    # then, the member would be claimed by `jobs run` over and over.
    tier_review = sa.select(Member.tier_retained_until).where(
        Member.id == member_id, Member.tier_retained_until > settled_at
    )
    return [query.scalar_subquery() for query in (maturing, expiring, hold_ends, tier_review)]


def earliest(candidates: Sequence[dt.datetime | None]) -> dt.datetime | None:
    """The soonest of `soonest_due`'s times, or None when nothing is ever due."""
    # Aggregates bypass the column type on some drivers, so normalize to aware UTC here.
    times = [when if when.tzinfo else when.replace(tzinfo=dt.UTC) for when in candidates if when]
    return min(times, default=None)


# One round trip for the four candidates (settling a member runs it).
_SOONEST_DUE = sa.select(*soonest_due(sa.bindparam("member_id"), sa.bindparam("settled_at")))


def _next_due(session: Session, member_id: int, settled_at: dt.datetime) -> dt.datetime | None:
    row = session.execute(_SOONEST_DUE, {"member_id": member_id, "settled_at": settled_at}).one()
    return earliest(list(row))
