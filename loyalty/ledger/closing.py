"""Closing a member's accounts: every open hold released, then every point they have or are
owed forfeited to the program in one balanced transaction.

The caller is inside ``transaction()`` holding the member's lock, settled as of `now` (so
points that expired before the closing are posted as expiries, not as a forfeit).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

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

_LIVE = (LotState.PENDING.value, LotState.AVAILABLE.value)


@dataclass(frozen=True, slots=True)
class Forfeiture:
    """What closing the accounts did: the holds released and the points forfeited (available
    and pending; a debt written off counts negative in `available`)."""

    released_holds: tuple[Redemption, ...]
    available: int
    pending: int
    transaction: LedgerTransaction | None

    @property
    def points(self) -> int:
        return self.available + self.pending


def forfeit_all(session: Session, balance: MemberBalance, now: dt.datetime) -> Forfeiture:
    """Release the member's open holds, then move available and pending to the program's
    expired account (kind ``forfeit``) and empty their live lots, so the member's balance is
    zero and the liability report no longer counts them.

    A debt (available below zero) is written off by the same transaction. Returns what was
    done; a member with nothing to forfeit gets no transaction.
    """
    holds = session.execute(
        sa.select(Redemption)
        .where(
            Redemption.member_id == balance.member_id,
            Redemption.status == RedemptionStatus.HELD.value,
        )
        .order_by(Redemption.id)
    ).scalars()
    released = tuple(holds)
    for hold in released:
        return_held(session, balance, hold, now, TransactionKind.RELEASE, RedemptionStatus.RELEASED)
    available, pending = balance.available, balance.pending
    txn = None
    if available or pending:
        txn = post(
            session,
            balance,
            TransactionKind.FORFEIT,
            [
                (Account.AVAILABLE, -available),
                (Account.PENDING, -pending),
                (Account.EXPIRED, available + pending),
            ],
            effective_at=now,
            reference="closed",
        )
    session.execute(
        sa.update(PointLot)
        .where(PointLot.member_id == balance.member_id, PointLot.state.in_(_LIVE))
        .values(remaining=0, state=LotState.EXPIRED.value)
        .execution_options(synchronize_session="fetch")
    )
    # Nothing is left to mature, expire or time out.
    balance.next_due_at = None
    return Forfeiture(released, available, pending, txn)
