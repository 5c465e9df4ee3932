"""Reading the ledger: a member's transactions, what expires soon, what a transaction did."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.ledger.models import Account, LedgerTransaction, LotState, PointLot, TransactionKind
from loyalty.members.lookup import with_merged
from loyalty.pagination import Page, decode_cursor, encode_cursor


@dataclass(frozen=True, slots=True)
class ExpiringPoints:
    remaining: int
    expires_at: dt.datetime


# Core and only two columns: a member may list 50 lots, and loading them as ORM objects made
# the card of a member with a long history a third slower than a new member's.
_EXPIRING = (
    sa.select(PointLot.remaining, PointLot.expires_at)
    .where(
        PointLot.member_id == sa.bindparam("member_id"),
        PointLot.state == LotState.AVAILABLE.value,
        PointLot.remaining > 0,
        PointLot.expires_at <= sa.bindparam("until"),
    )
    .order_by(PointLot.expires_at, PointLot.id)
    .limit(50)
)


def expiring_lots(
    session: Session, member_id: int, now: dt.datetime, within: dt.timedelta
) -> list[ExpiringPoints]:
    """Points left in available lots that expire within `within` of `now`, soonest first
    (at most 50 lots)."""
    rows = session.connection().execute(_EXPIRING, {"member_id": member_id, "until": now + within})
    return [
        ExpiringPoints(remaining, expires_at)
        for remaining, expires_at in rows
        if expires_at is not None  # excluded by the query; for the type checker
    ]


def member_points_delta(txn: LedgerTransaction) -> int:
    """How the transaction changed what the member has or will have (available + pending)."""
    return sum(
        entry.amount
        for entry in txn.entries
        if entry.account in (Account.AVAILABLE.value, Account.PENDING.value)
    )


@dataclass(frozen=True, slots=True)
class Entry:
    account: Account
    amount: int


@dataclass(frozen=True, slots=True)
class Movement:
    """A ledger transaction as a member's history shows it."""

    public_id: uuid.UUID
    kind: TransactionKind
    points: int  # what it changed of available + pending
    effective_at: dt.datetime
    created_at: dt.datetime
    reference: str | None
    reason: str | None
    actor: str | None
    details: dict[str, Any]
    entries: tuple[Entry, ...]


def movement(txn: LedgerTransaction) -> Movement:
    """The transaction (with its entries loaded) as a plain, immutable value."""
    return Movement(
        public_id=txn.public_id,
        kind=TransactionKind(txn.kind),
        points=member_points_delta(txn),
        effective_at=txn.effective_at,
        created_at=txn.created_at,
        reference=txn.reference,
        reason=txn.reason,
        actor=txn.actor,
        details=dict(txn.details or {}),
        entries=tuple(Entry(Account(e.account), e.amount) for e in txn.entries),
    )


def transactions_page(
    session: Session, member_id: int, limit: int, cursor: str | None
) -> Page[Movement]:
    """The member's transactions and those of the duplicates merged into them, newest first,
    one page at a time. Raises ValidationFailed for a bad cursor."""
    stmt = (
        sa.select(LedgerTransaction)
        .where(LedgerTransaction.member_id.in_(with_merged(member_id)))
        .order_by(LedgerTransaction.id.desc())
        .limit(limit + 1)
    )
    if cursor:
        stmt = stmt.where(LedgerTransaction.id < decode_cursor(cursor))
    items = list(session.execute(stmt).scalars())
    next_cursor = encode_cursor(items[limit - 1].id) if len(items) > limit else None
    return Page(items=[movement(txn) for txn in items[:limit]], next_cursor=next_cursor)
