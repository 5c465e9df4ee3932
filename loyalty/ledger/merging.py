"""Merging a duplicate member's points into another's: a balanced pair of transactions that
empties the duplicate's accounts into the survivor's, with the lots and holds that carry
them.

The caller is inside ``transaction()`` holding both members' locks, both settled as of
`now`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.ledger.models import (
    MEMBER_ACCOUNTS,
    Account,
    MemberBalance,
    PointLot,
    Redemption,
    TransactionKind,
)
from loyalty.ledger.postings import Posting, post_many
from loyalty.ledger.settlement import reschedule
from loyalty.ledger.spending import trim_lots


@dataclass(frozen=True, slots=True)
class Moved:
    """The points a merge moved, by member account (available negative: a debt moved)."""

    available: int
    pending: int
    held: int


def move_points(
    session: Session,
    duplicate: MemberBalance,
    survivor: MemberBalance,
    now: dt.datetime,
    reference: str,
) -> Moved:
    """Move every point, lot and open hold of `duplicate` to `survivor`.

    Each member's side is its own balanced transaction (kind ``merge``) through the program's
    adjusted account, which the pair leaves unchanged, so the ledger stays append-only and
    per-member sums stay true. A debt on one side is repaid from the other's lots. Returns
    what moved; nothing is posted when the duplicate has no points.
    """
    moved = {account: getattr(duplicate, account.value) for account in MEMBER_ACCOUNTS}
    total = sum(moved.values())
    if any(moved.values()):
        out = [(account, -amount) for account, amount in moved.items()]
        into = list(moved.items())
        post_many(
            session,
            [
                Posting(
                    duplicate,
                    TransactionKind.MERGE,
                    [*out, (Account.ADJUSTED, total)],
                    now,
                    reference,
                ),
                Posting(
                    survivor,
                    TransactionKind.MERGE,
                    [*into, (Account.ADJUSTED, -total)],
                    now,
                    reference,
                ),
            ],
        )
    for model in (PointLot, Redemption):
        session.execute(
            sa.update(model)
            .where(model.member_id == duplicate.member_id)
            .values(member_id=survivor.member_id)
            .execution_options(synchronize_session="fetch")
        )
    trim_lots(session, survivor)
    if duplicate.last_activity_at is not None and (
        survivor.last_activity_at is None or duplicate.last_activity_at > survivor.last_activity_at
    ):
        survivor.last_activity_at = duplicate.last_activity_at
    duplicate.next_due_at = None
    reschedule(session, survivor, now)
    return Moved(moved[Account.AVAILABLE], moved[Account.PENDING], moved[Account.HELD])
