"""Writing the ledger: every movement of a member's points is one balanced transaction.

The callers are inside ``transaction()`` holding the member's lock (``lock_balance``). Hot
writes are prebuilt Core statements: building a statement costs as much as running it, and
the ORM flush of a transaction and its entries cost three times the CPU.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from loyalty import days, metrics
from loyalty.db import insert_copies, utcnow
from loyalty.ids import time_ordered_uuid
from loyalty.ledger import policy
from loyalty.ledger import unnested as unnested_rows
from loyalty.ledger.models import (
    MEMBER_ACCOUNTS,
    Account,
    LedgerEntry,
    LedgerTransaction,
    LotState,
    MemberBalance,
    PointLot,
    TransactionKind,
)
from loyalty.program.models import ExpiryPolicy, ProgramSettings

# Prebuilt: every write runs these, and building a statement costs as much as running it.
_LOCK_BALANCE = (
    sa.select(MemberBalance)
    .where(MemberBalance.member_id == sa.bindparam("member_id"))
    .with_for_update()
    .execution_options(populate_existing=True)
)


def lock_balance(session: Session, member_id: int) -> MemberBalance:
    """Lock the member's balance row (``FOR UPDATE``) and return it freshly read.

    Every write to a member's points goes through this lock, so concurrent debits see each
    other's results instead of the same stale balance.
    """
    return session.execute(_LOCK_BALANCE, {"member_id": member_id}).scalar_one()


_INSERT_ENTRIES = LedgerEntry.__table__.insert()


class Balance(Protocol):
    """What a posting moves: a member's locked balance row, as the ORM loaded it
    (``MemberBalance``) or as a batch read it (``batch_settlement.DueBalance``)."""

    member_id: int
    available: int
    pending: int
    held: int


@dataclass(frozen=True, slots=True)
class Posting:
    """One balanced transaction to append, moving the balance (locked) it names."""

    balance: Balance
    kind: TransactionKind
    legs: Sequence[tuple[Account, int]]
    effective_at: dt.datetime
    reference: str | None = None
    reason: str | None = None
    actor: str | None = None
    details: dict[str, Any] | None = None
    qualifying: int = 0
    qualifying_at: dt.datetime | None = None


def post_many(session: Session, postings: Sequence[Posting]) -> list[LedgerTransaction]:
    """Append balanced transactions and move their members' balance columns with them: the
    one place ledger transactions and entries are written (a use case's single posting and
    an import's thousands alike).

    Written with Core, not the unit of work (every write posts; the ORM flush of a
    transaction and its entries cost three times the CPU). Returns read-only copies with
    their entries, which are not in the session: read them, never add them to one. Raises
    ValueError for a transaction whose legs do not balance.
    """
    return _append(session, postings, copies=True)


def append_many(session: Session, postings: Sequence[Posting]) -> int:
    """``post_many`` for a writer that reads nothing back (a batch settlement: building the
    read-only copies of thousands of transactions and entries cost more than writing them).
    Returns how many transactions were written; raises as ``post_many``."""
    _append(session, postings, copies=False)
    return len(postings)


def _append(
    session: Session, postings: Sequence[Posting], *, copies: bool
) -> list[LedgerTransaction]:
    if session.new:
        session.flush()  # a member may be new in this transaction: insert it first
    created_at = utcnow()
    legs_of = []
    rows = []
    for posting in postings:
        legs = [(account, amount) for account, amount in posting.legs if amount]
        if sum(amount for _, amount in legs) != 0 or len(legs) < 2:
            raise ValueError(f"unbalanced ledger transaction: {legs}")
        legs_of.append(legs)
        rows.append(
            {
                "public_id": time_ordered_uuid(),
                "member_id": posting.balance.member_id,
                "kind": posting.kind.value,
                "effective_at": posting.effective_at,
                "created_at": created_at,
                "reference": posting.reference,
                "reason": posting.reason,
                "actor": posting.actor,
                "corrects_id": None,
                "details": posting.details or {},
                "qualifying": posting.qualifying,
                "qualifying_at": (
                    (posting.qualifying_at or posting.effective_at) if posting.qualifying else None
                ),
            }
        )
    unnested = len(rows) > 1 and session.get_bind().dialect.name == "postgresql"
    if unnested:
        unnested_rows.insert_transactions(session, rows)
        transactions = [LedgerTransaction(**row) for row in rows] if copies else []
    else:
        transactions = insert_copies(session, LedgerTransaction, rows)
        for row, txn in zip(rows, transactions, strict=True):
            row["id"] = txn.id
    entries_of = [
        [
            {
                "transaction_id": row["id"],
                "member_id": row["member_id"],
                "account": account.value,
                "amount": amount,
            }
            for account, amount in legs
        ]
        for row, legs in zip(rows, legs_of, strict=True)
    ]
    all_entries = [e for entries in entries_of for e in entries]
    if unnested:
        unnested_rows.insert_entries(session, all_entries)
    else:
        session.connection().execute(_INSERT_ENTRIES, all_entries)
    for posting, legs in zip(postings, legs_of, strict=True):
        balance = posting.balance
        for account, amount in legs:
            if account in MEMBER_ACCOUNTS:
                column = account.value
                setattr(balance, column, getattr(balance, column) + amount)
        metrics.count_points(
            session, posting.kind.value, sum(amount for _, amount in legs if amount > 0)
        )
    for txn, entries in zip(transactions, entries_of, strict=False):
        # Set as loaded, not as a change: the copies are read, never flushed, and the
        # collection's events cost more than the INSERTs.
        set_committed_value(txn, "entries", [LedgerEntry(**entry) for entry in entries])
    return transactions


def post(
    session: Session,
    balance: MemberBalance,
    kind: TransactionKind,
    legs: Sequence[tuple[Account, int]],
    *,
    effective_at: dt.datetime,
    **fields: Any,
) -> LedgerTransaction:
    """Append one balanced transaction (see ``post_many``) and return its read-only copy."""
    return post_many(session, [Posting(balance, kind, legs, effective_at, **fields)])[0]


def note_due(balance: MemberBalance, when: dt.datetime | None) -> None:
    """Make sure the member is settled again by `when` (a lot maturing or expiring, a hold
    timing out)."""
    if when is not None and (balance.next_due_at is None or when < balance.next_due_at):
        balance.next_due_at = when


def record_activity(
    session: Session,
    balances: Sequence[MemberBalance],
    settings: ProgramSettings,
    now: dt.datetime,
) -> None:
    """Under the inactivity policy any earning or spending pushes every lot's expiry out.

    Activity dated before the member's last (an order placed in the past) moves nothing:
    the last activity stays the latest, and no lot's expiry is pulled in."""
    balances = [
        balance
        for balance in balances
        if balance.last_activity_at is None or balance.last_activity_at <= now
    ]
    for balance in balances:
        balance.last_activity_at = now
    if settings.expiry_policy != ExpiryPolicy.INACTIVITY or not balances:
        return
    new_expiry = policy.lot_expiry(
        settings.expiry_policy, settings.expiry_months, now, settings.zone
    )
    session.execute(
        sa.update(PointLot)
        .where(
            PointLot.member_id.in_([balance.member_id for balance in balances]),
            PointLot.state.in_([LotState.PENDING.value, LotState.AVAILABLE.value]),
            PointLot.remaining > 0,
        )
        .values(expires_at=new_expiry)
        .execution_options(synchronize_session="fetch")
    )
    for balance in balances:
        note_due(balance, new_expiry)


@dataclass(frozen=True, slots=True)
class Credit:
    """Points from the program account `source` into a new lot of the member whose balance
    (locked) it names: pending for the program's return window, or available at once."""

    balance: MemberBalance
    points: int
    kind: TransactionKind
    source: Account
    pending: bool
    # The lot's expiry when it has its own (an imported balance); else the program's policy.
    expires_at: dt.datetime | None = None
    reference: str | None = None
    reason: str | None = None
    actor: str | None = None
    details: dict[str, Any] | None = None
    qualifying: int = 0
    qualifying_at: dt.datetime | None = None


def credit_many(
    session: Session, settings: ProgramSettings, credits: Sequence[Credit], now: dt.datetime
) -> list[tuple[LedgerTransaction, PointLot]]:
    """Credit each `credits` into a new lot, all as of `now`: the one place lots are opened.

    Pending points wait in the member's pending account for the program's return window;
    available points first repay any debt. Counts as the members' activity. Returns each
    transaction with its lot, as read-only copies. Raises ValueError for a credit of no
    points.
    """
    if any(item.points <= 0 for item in credits):
        raise ValueError("credit needs a positive number of points")
    pending_until = days.add_days(now, settings.pending_days, settings.zone)
    policy_expiry = policy.lot_expiry(
        settings.expiry_policy, settings.expiry_months, now, settings.zone
    )
    # A member may be credited twice in one batch: debt is repaid by the first.
    available = {item.balance.member_id: item.balance.available for item in credits}
    # Under the inactivity policy a lot expires N months after the member's last activity,
    # which may be later than `now` for points earned in the past (a historical order).
    latest = {
        item.balance.member_id: max(now, item.balance.last_activity_at or now) for item in credits
    }
    postings, lots = [], []
    for item in credits:
        pending = item.pending and pending_until > now
        member_id = item.balance.member_id
        if pending:
            target, remaining, state = Account.PENDING, item.points, LotState.PENDING
        else:
            target, state = Account.AVAILABLE, LotState.AVAILABLE
            remaining = policy.lot_remaining_after_credit(available[member_id], item.points)
            available[member_id] += item.points
        postings.append(
            Posting(
                item.balance,
                item.kind,
                [(item.source, -item.points), (target, item.points)],
                now,
                item.reference,
                item.reason,
                item.actor,
                item.details,
                item.qualifying,
                item.qualifying_at,
            )
        )
        lots.append(
            {
                "member_id": member_id,
                "points": item.points,
                "remaining": remaining,
                "state": state.value,
                "available_at": pending_until if pending else now,
                "expires_at": item.expires_at
                or (
                    policy.lot_expiry(
                        settings.expiry_policy,
                        settings.expiry_months,
                        latest[member_id],
                        settings.zone,
                    )
                    if settings.expiry_policy == ExpiryPolicy.INACTIVITY
                    else policy_expiry
                ),
                "expiry_notified_at": None,
            }
        )
    balances = list({item.balance.member_id: item.balance for item in credits}.values())
    record_activity(session, balances, settings, now)
    transactions = post_many(session, postings)
    for row, txn in zip(lots, transactions, strict=True):
        row["transaction_id"], row["created_at"] = txn.id, txn.created_at
    # Like the transactions, read-only copies (a settle or a debit loads the rows itself).
    opened = insert_copies(session, PointLot, lots)
    for item, lot in zip(credits, opened, strict=True):
        if lot.state == LotState.PENDING:
            note_due(item.balance, lot.available_at)
        # A pending lot can expire before it matures (a return window longer than the expiry).
        note_due(item.balance, lot.expires_at)
    return list(zip(transactions, opened, strict=True))


def credit(
    session: Session,
    balance: MemberBalance,
    settings: ProgramSettings,
    points: int,
    *,
    kind: TransactionKind,
    source: Account,
    now: dt.datetime,
    pending: bool,
    **txn_fields: Any,
) -> tuple[LedgerTransaction, PointLot]:
    """Credit `points` into a new lot (see ``credit_many``); the transaction and the lot."""
    return credit_many(
        session, settings, [Credit(balance, points, kind, source, pending, **txn_fields)], now
    )[0]
