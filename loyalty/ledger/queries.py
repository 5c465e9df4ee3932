"""Reading the ledger: a member's transactions, what expires soon, what a transaction did."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.errors import ValidationFailed
from loyalty.ledger.models import Account, LedgerTransaction, LotState, PointLot, TransactionKind
from loyalty.members.lookup import with_merged
from loyalty.pagination import Page


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
    order_id: str | None  # the shop's order it was earned on, or refunded from
    event_id: str | None  # the shop's event it was earned for
    # Each rule (id, version, name, kind, points; experiment and arm when an experiment
    # gave it) behind earned points, as kept when they were earned; empty for the rest.
    breakdown: tuple[dict[str, Any], ...]


def _origin(reference: str | None, prefix: str) -> str | None:
    """The id after `prefix` in a transaction's reference ("order:o-1" is order o-1's)."""
    return reference[len(prefix) :] if reference and reference.startswith(prefix) else None


def movement(txn: LedgerTransaction) -> Movement:
    """The transaction (with its entries loaded) as a plain, immutable value."""
    details = dict(txn.details or {})
    return Movement(
        public_id=txn.public_id,
        kind=TransactionKind(txn.kind),
        points=member_points_delta(txn),
        effective_at=txn.effective_at,
        created_at=txn.created_at,
        reference=txn.reference,
        reason=txn.reason,
        actor=txn.actor,
        details=details,
        entries=tuple(Entry(Account(e.account), e.amount) for e in txn.entries),
        # A refund's reversal and restore name their order in details (since issue 16).
        order_id=_origin(txn.reference, "order:") or details.get("order_id"),
        event_id=_origin(txn.reference, "event:"),
        breakdown=tuple(details.get("breakdown", ())),
    )


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)


def _history_cursor(txn: LedgerTransaction) -> str:
    micros = (txn.effective_at - _EPOCH) // _MICROSECOND
    return base64.urlsafe_b64encode(f"e{micros}.{txn.id}".encode()).decode().rstrip("=")


def _history_position(cursor: str) -> tuple[dt.datetime, int]:
    """The (effective_at, id) a history cursor points at. Raises ValidationFailed for a
    cursor we never made."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith("e"):
            raise ValueError(raw)
        micros, position = (int(part) for part in raw[1:].split("."))
        if not 0 < position < 2**63:  # ids are positive BIGINTs
            raise ValueError(raw)
        return _EPOCH + micros * _MICROSECOND, position
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise ValidationFailed({"cursor": ["Not a valid cursor."]}) from None


def transactions_page(
    session: Session, member_id: int, limit: int, cursor: str | None
) -> Page[Movement]:
    """The member's transactions and those of the duplicates merged into them, latest to
    take effect first (an order imported with last year's date sits a year down, not on top),
    one page at a time. Raises ValidationFailed for a bad cursor."""
    stmt = (
        sa.select(LedgerTransaction)
        .where(LedgerTransaction.member_id.in_(with_merged(member_id)))
        .order_by(LedgerTransaction.effective_at.desc(), LedgerTransaction.id.desc())
        .limit(limit + 1)
    )
    if cursor:
        effective_at, position = _history_position(cursor)
        stmt = stmt.where(
            sa.or_(
                LedgerTransaction.effective_at < effective_at,
                sa.and_(
                    LedgerTransaction.effective_at == effective_at,
                    LedgerTransaction.id < position,
                ),
            )
        )
    items = list(session.execute(stmt).scalars())
    next_cursor = _history_cursor(items[limit - 1]) if len(items) > limit else None
    return Page(items=[movement(txn) for txn in items[:limit]], next_cursor=next_cursor)


@dataclass(frozen=True, slots=True)
class LotView:
    """A lot of the member's points that is still live: what is left of it, when it is
    spendable and when it expires, and what credited it."""

    points: int
    remaining: int
    state: LotState
    credited_by: TransactionKind
    earned_at: dt.datetime  # when the crediting transaction took effect
    available_at: dt.datetime
    expires_at: dt.datetime | None
    order_id: str | None
    event_id: str | None


def _lot_cursor(expires_at: dt.datetime | None, lot_id: int) -> str:
    micros = "" if expires_at is None else str((expires_at - _EPOCH) // _MICROSECOND)
    return base64.urlsafe_b64encode(f"l{micros}.{lot_id}".encode()).decode().rstrip("=")


def _lot_position(cursor: str) -> tuple[dt.datetime | None, int]:
    """The (expires_at, id) a lots cursor points at (expires_at None: a lot that never
    expires). Raises ValidationFailed for a cursor we never made."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith("l"):
            raise ValueError(raw)
        micros, position = raw[1:].split(".")
        lot_id = int(position)
        if not 0 < lot_id < 2**63:
            raise ValueError(raw)
        return (_EPOCH + int(micros) * _MICROSECOND if micros else None), lot_id
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise ValidationFailed({"cursor": ["Not a valid cursor."]}) from None


def live_lots_page(
    session: Session, member_id: int, limit: int, cursor: str | None
) -> Page[LotView]:
    """The member's lots with points left (pending or available), soonest-expiring first and
    those that never expire last, one page at a time. Raises ValidationFailed for a bad
    cursor."""
    stmt = (
        sa.select(PointLot, LedgerTransaction.kind, LedgerTransaction.effective_at)
        .join(LedgerTransaction, LedgerTransaction.id == PointLot.transaction_id)
        .where(
            PointLot.member_id == member_id,
            PointLot.state.in_([LotState.PENDING.value, LotState.AVAILABLE.value]),
            PointLot.remaining > 0,
        )
        .add_columns(LedgerTransaction.reference)
        .order_by(sa.nulls_last(PointLot.expires_at.asc()), PointLot.id)
        .limit(limit + 1)
    )
    if cursor:
        expires_at, lot_id = _lot_position(cursor)
        never = sa.and_(PointLot.expires_at.is_(None), PointLot.id > lot_id)
        stmt = stmt.where(
            never
            if expires_at is None
            else sa.or_(
                PointLot.expires_at > expires_at,
                sa.and_(PointLot.expires_at == expires_at, PointLot.id > lot_id),
                PointLot.expires_at.is_(None),
            )
        )
    rows = session.execute(stmt).all()
    next_cursor = (
        _lot_cursor(rows[limit - 1][0].expires_at, rows[limit - 1][0].id)
        if len(rows) > limit
        else None
    )
    return Page(
        items=[
            LotView(
                points=lot.points,
                remaining=lot.remaining,
                state=LotState(lot.state),
                credited_by=TransactionKind(kind),
                earned_at=effective_at,
                available_at=lot.available_at,
                expires_at=lot.expires_at,
                order_id=_origin(reference, "order:"),
                event_id=_origin(reference, "event:"),
            )
            for lot, kind, effective_at, reference in rows[:limit]
        ],
        next_cursor=next_cursor,
    )
