"""Ledger operations.

The building blocks (``post``, ``credit``, ``debit``, ``settle``) expect the caller to be
inside ``transaction()`` holding the member's lock (``lock_balance``); the use cases
(``adjust``, ``settled_balance``, ``history``) own their transaction. ``verify`` checks every
invariant of the whole ledger.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from loyalty import metrics
from loyalty.audit import services as audit
from loyalty.db import insert_copy, transaction, transaction_cache, utcnow
from loyalty.errors import ValidationFailed
from loyalty.ledger import policy
from loyalty.ledger.exceptions import InsufficientPoints, MemberInactive
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
from loyalty.members.exceptions import MemberNotFound
from loyalty.members.models import Member, MemberStatus
from loyalty.program import config
from loyalty.program.models import ExpiryPolicy, ProgramSettings
from loyalty.redemptions.models import Redemption, RedemptionAllocation, RedemptionStatus
from loyalty.tiers import services as tiers
from loyalty.webhooks import outbox

# Prebuilt: every write runs these, and building a statement costs as much as running it.
_LOCK_BALANCE = (
    sa.select(MemberBalance)
    .where(MemberBalance.member_id == sa.bindparam("member_id"))
    .with_for_update()
    .execution_options(populate_existing=True)
)
_MEMBER_BY_EXTERNAL_ID = sa.select(Member).where(Member.external_id == sa.bindparam("external_id"))


def lock_balance(session: Session, member_id: int) -> MemberBalance:
    """Lock the member's balance row (``FOR UPDATE``) and return it freshly read.

    Every write to a member's points goes through this lock, so concurrent debits see each
    other's results instead of the same stale balance.
    """
    return session.execute(_LOCK_BALANCE, {"member_id": member_id}).scalar_one()


_INSERT_ENTRIES = LedgerEntry.__table__.insert()


def post(
    session: Session,
    balance: MemberBalance,
    kind: TransactionKind,
    legs: Sequence[tuple[Account, int]],
    *,
    effective_at: dt.datetime,
    reference: str | None = None,
    reason: str | None = None,
    actor: str | None = None,
    details: dict[str, Any] | None = None,
    qualifying: int = 0,
    qualifying_at: dt.datetime | None = None,
) -> LedgerTransaction:
    """Append one balanced transaction and move the member's balance columns with it.

    Written with Core, not the unit of work (every write posts; the ORM flush of a
    transaction and its entries cost three times the CPU). It returns a read-only copy
    with its entries, which is not in the session: read it, never add it to one.
    """
    legs = [(account, amount) for account, amount in legs if amount]
    if sum(amount for _, amount in legs) != 0 or len(legs) < 2:
        raise ValueError(f"unbalanced ledger transaction: {legs}")
    if session.new:
        session.flush()  # the member may be new in this transaction: insert it first
    values = {
        "public_id": uuid.uuid4(),
        "member_id": balance.member_id,
        "kind": kind.value,
        "effective_at": effective_at,
        "created_at": utcnow(),
        "reference": reference,
        "reason": reason,
        "actor": actor,
        "corrects_id": None,
        "details": details or {},
        "qualifying": qualifying,
        "qualifying_at": (qualifying_at or effective_at) if qualifying else None,
    }
    txn = insert_copy(session, LedgerTransaction, values)
    entries = [
        {
            "transaction_id": txn.id,
            "member_id": balance.member_id,
            "account": account.value,
            "amount": amount,
        }
        for account, amount in legs
    ]
    session.connection().execute(_INSERT_ENTRIES, entries)
    for account, amount in legs:
        if account in MEMBER_ACCOUNTS:
            column = account.value
            setattr(balance, column, getattr(balance, column) + amount)
    metrics.POINTS.labels(kind.value).inc(sum(amount for _, amount in legs if amount > 0))
    txn.entries = [LedgerEntry(**entry) for entry in entries]
    return txn


def note_due(balance: MemberBalance, when: dt.datetime | None) -> None:
    """Make sure the member is settled again by `when` (a lot maturing or expiring, a hold
    timing out)."""
    if when is not None and (balance.next_due_at is None or when < balance.next_due_at):
        balance.next_due_at = when


def _record_activity(
    session: Session, balance: MemberBalance, settings: ProgramSettings, now: dt.datetime
) -> None:
    """Under the inactivity policy any earning or spending pushes every lot's expiry out."""
    balance.last_activity_at = now
    if settings.expiry_policy != ExpiryPolicy.INACTIVITY:
        return
    new_expiry = policy.lot_expiry(settings.expiry_policy, settings.expiry_months, now)
    session.execute(
        sa.update(PointLot)
        .where(
            PointLot.member_id == balance.member_id,
            PointLot.state.in_([LotState.PENDING.value, LotState.AVAILABLE.value]),
            PointLot.remaining > 0,
        )
        .values(expires_at=new_expiry)
        .execution_options(synchronize_session="fetch")
    )
    note_due(balance, new_expiry)


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
    """Credit `points` from the program account `source` into a new lot (returned as a
    read-only copy, like the transaction).

    With `pending`, the points wait in the member's pending account for the program's return
    window; otherwise they are available at once, first repaying any debt.
    """
    if points <= 0:
        raise ValueError("credit needs a positive number of points")
    available_at = now + dt.timedelta(days=settings.pending_days) if pending else now
    if available_at <= now:
        pending = False
    expires_at = policy.lot_expiry(settings.expiry_policy, settings.expiry_months, now)
    if pending:
        target, remaining, state = Account.PENDING, points, LotState.PENDING
    else:
        target, state = Account.AVAILABLE, LotState.AVAILABLE
        remaining = policy.lot_remaining_after_credit(balance.available, points)
    _record_activity(session, balance, settings, now)
    txn = post(
        session,
        balance,
        kind,
        [(source, -points), (target, points)],
        effective_at=now,
        **txn_fields,
    )
    values = {
        "member_id": balance.member_id,
        "transaction_id": txn.id,
        "points": points,
        "remaining": remaining,
        "state": state.value,
        "available_at": available_at,
        "expires_at": expires_at,
        "created_at": txn.created_at,
        "expiry_notified_at": None,
    }
    # Like the transaction, a read-only copy (a settle or a debit loads the row itself).
    lot = insert_copy(session, PointLot, values)
    if pending:
        note_due(balance, available_at)
    # A pending lot can expire before it matures (a return window longer than the expiry).
    note_due(balance, expires_at)
    return txn, lot


_SPENDABLE = sa.select(
    PointLot.id, PointLot.remaining, PointLot.available_at, PointLot.expires_at
).where(
    PointLot.member_id == sa.bindparam("member_id"),
    PointLot.state == LotState.AVAILABLE.value,
    PointLot.remaining > 0,
)
_TAKE_FROM_LOT = (
    sa.update(PointLot.__table__)
    .where(PointLot.__table__.c.id == sa.bindparam("lot_id"))
    .values(remaining=PointLot.__table__.c.remaining - sa.bindparam("take"))
)


def _take_from_lots(
    session: Session, member_id: int, points: int, *, sparing: int | None = None
) -> list[tuple[int, int]]:
    """Take up to `points` from the member's available lots (all but lot `sparing`),
    soonest-expiring first; returns [(lot id, points taken)].

    Core (a third of the ORM's CPU), so a settle's changes to lots are flushed first and
    loaded copies of the lots taken from are expired, never left stale.
    """
    session.flush()
    connection = session.connection()
    views = [
        policy.LotView(row.id, row.remaining, row.available_at, row.expires_at)
        for row in connection.execute(_SPENDABLE, {"member_id": member_id})
        if row.id != sparing
    ]
    taken = policy.plan_consumption(views, min(points, sum(view.remaining for view in views)))
    if taken:
        connection.execute(_TAKE_FROM_LOT, [{"lot_id": i, "take": n} for i, n in taken])
        for lot_id, _ in taken:
            loaded = session.identity_map.get(identity_key(PointLot, lot_id))
            if loaded is not None:
                session.expire(loaded)
    return taken


def debit(
    session: Session,
    balance: MemberBalance,
    settings: ProgramSettings,
    points: int,
    *,
    kind: TransactionKind,
    destination: Account,
    now: dt.datetime,
    allow_negative: bool = False,
    **txn_fields: Any,
) -> tuple[LedgerTransaction, list[tuple[int, int]]]:
    """Debit `points` from available into the program account `destination`.

    Consumes lots soonest-expiring first and returns the transaction with the lots it took
    from, as (lot id, points). Raises InsufficientPoints when fewer points are available,
    unless `allow_negative` (refund reversals only), which takes the balance below zero.
    """
    if points <= 0:
        raise ValueError("debit needs a positive number of points")
    if balance.available < points and not allow_negative:
        raise InsufficientPoints(
            f"{points} points needed, {max(balance.available, 0)} available.",
            available=max(balance.available, 0),
            requested=points,
        )
    taken = _take_from_lots(session, balance.member_id, points)
    _record_activity(session, balance, settings, now)
    txn = post(
        session,
        balance,
        kind,
        [(Account.AVAILABLE, -points), (destination, points)],
        effective_at=now,
        **txn_fields,
    )
    return txn, taken


def settle(session: Session, balance: MemberBalance, now: dt.datetime) -> list[LedgerTransaction]:
    """Post every maturing and expiry that fell due by `now`, in the order they happened.

    Returns the transactions it wrote (none when nothing was due). Each one is dated at the
    moment it took effect, not when it was noticed.
    """
    if balance.next_due_at is None or balance.next_due_at > now:
        return []
    written = _expire_holds(session, balance, now)
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
    for when, event, lot_id in policy.due_events(views, now):
        lot = lots[lot_id]
        if event == "mature" and lot.state == LotState.PENDING:
            amount = lot.remaining
            lot.state = LotState.AVAILABLE.value
            lot.remaining = policy.lot_remaining_after_credit(balance.available, amount)
            if amount:
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
            amount, lot.remaining, lot.state = lot.remaining, 0, LotState.EXPIRED.value
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
    expired = sum(
        entry.amount
        for txn in written
        for entry in txn.entries
        if entry.account == Account.EXPIRED.value
    )
    if expired and member is not None:
        outbox.emit(
            session, "points.expired", {"member_id": member.external_id, "points": expired}, now
        )
    if (
        member is not None
        and member.tier_retained_until is not None
        and member.tier_retained_until <= now
    ):
        tiers.review_member(session, member, now)
    session.flush()
    balance.next_due_at = _next_due(session, balance.member_id, now)
    return written


def return_held(
    session: Session,
    balance: MemberBalance,
    redemption: Redemption,
    now: dt.datetime,
    kind: TransactionKind,
    status: str,
) -> LedgerTransaction:
    """Move a hold's points back to available and into the lots they were taken from (a
    debt, if the member has one meanwhile, is repaid first)."""
    restorable = policy.lot_remaining_after_credit(balance.available, redemption.points)
    txn = post(
        session,
        balance,
        kind,
        [(Account.HELD, -redemption.points), (Account.AVAILABLE, redemption.points)],
        effective_at=now,
        reference=f"redemption:{redemption.public_id}",
    )
    lot_ids = [allocation.lot_id for allocation in redemption.allocations]
    lots = {
        lot.id: lot
        for lot in session.execute(sa.select(PointLot).where(PointLot.id.in_(lot_ids))).scalars()
    }
    for allocation in redemption.allocations:
        lot = lots[allocation.lot_id]
        give = min(allocation.points, restorable)
        restorable -= give
        lot.remaining += give
        if give and lot.state == LotState.EXPIRED:
            # Back to available so the next settle expires it, through the ledger.
            lot.state = LotState.AVAILABLE.value
        if give:
            note_due(balance, lot.expires_at)
    redemption.status = status
    redemption.released_at = now
    return txn


def _expire_holds(
    session: Session, balance: MemberBalance, now: dt.datetime
) -> list[LedgerTransaction]:
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
        return_held(
            session,
            balance,
            hold,
            hold.expires_at,
            TransactionKind.RELEASE,
            RedemptionStatus.EXPIRED.value,
        )
        for hold in holds
    ]


def reverse_earned(
    session: Session,
    balance: MemberBalance,
    settings: ProgramSettings,
    lot: PointLot | None,
    points: int,
    now: dt.datetime,
    **txn_fields: Any,
) -> LedgerTransaction:
    """Take back `points` an order earned (a refund): from the order's own lot while it is
    pending or has points left, then from the member's other lots soonest-expiring first,
    and beyond those into debt: the one case where available may go below zero."""
    from_pending = 0
    if lot is not None and lot.state == LotState.PENDING:
        from_pending = min(points, lot.remaining)
        lot.remaining -= from_pending
    from_available = points - from_pending
    still = from_available
    if still and lot is not None and lot.state == LotState.AVAILABLE:
        own = min(still, lot.remaining)
        lot.remaining -= own
        still -= own
    if still:
        _take_from_lots(session, balance.member_id, still, sparing=lot.id if lot else None)
    return post(
        session,
        balance,
        TransactionKind.REVERSE,
        [
            (Account.PENDING, -from_pending),
            (Account.AVAILABLE, -from_available),
            (Account.ISSUED, points),
        ],
        effective_at=now,
        **txn_fields,
    )


def _soonest_due_statement() -> sa.Select[Any]:
    member_id: sa.BindParameter[int] = sa.bindparam("member_id")
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
        Member.id == member_id, Member.tier_retained_until > sa.bindparam("settled_at")
    )
    subqueries: list[Any] = [
        query.scalar_subquery() for query in (maturing, expiring, hold_ends, tier_review)
    ]
    return sa.select(*subqueries)


# One round trip for the four candidates (settling a member runs it).
_SOONEST_DUE = _soonest_due_statement()


def _next_due(session: Session, member_id: int, settled_at: dt.datetime) -> dt.datetime | None:
    row = session.execute(_SOONEST_DUE, {"member_id": member_id, "settled_at": settled_at}).one()
    candidates: list[dt.datetime] = [when for when in row if when is not None]
    if not candidates:
        return None
    # Aggregates bypass the column type on some drivers, so normalize to aware UTC here.
    return min(when if when.tzinfo else when.replace(tzinfo=dt.UTC) for when in candidates)


def find_member(session: Session, external_id: str) -> Member:
    """Return the member with this external id. Raises MemberNotFound."""
    member = session.execute(
        _MEMBER_BY_EXTERNAL_ID, {"external_id": external_id}
    ).scalar_one_or_none()
    if member is None:
        raise MemberNotFound(f"No member with external_id {external_id!r}.")
    _known_ids(session)[member.id] = member.external_id
    return member


_EXTERNAL_ID = sa.select(Member.external_id).where(Member.id == sa.bindparam("member_id"))


def _known_ids(session: Session) -> dict[int, str]:
    """External ids of members this transaction has read."""
    known: dict[int, str] = transaction_cache(session).setdefault("external_ids", {})
    return known


def external_id_of(session: Session, member_id: int) -> str:
    """The external id of the member with this row id ("" if there is none), for answers
    and webhook payloads that name the member: remembered for the transaction, else a
    prebuilt Core query."""
    known = _known_ids(session)
    if member_id not in known:
        found = session.connection().execute(_EXTERNAL_ID, {"member_id": member_id}).scalar()
        if found is None:
            return ""
        known[member_id] = found
    return known[member_id]


def _labelled(model: Any, prefix: str) -> list[tuple[str, sa.Label[Any]]]:
    return [
        (attr.key, attr.columns[0].label(prefix + attr.key))
        for attr in sa.inspect(model).column_attrs
    ]


# Card and quote, the most frequent reads, need the member, their balance and the program:
# one prebuilt Core query instead of three ORM loads.
_MEMBER_FIELDS = _labelled(Member, "m_")
_BALANCE_FIELDS = _labelled(MemberBalance, "b_")
_SNAPSHOT = (
    sa.select(*(label for _, label in _MEMBER_FIELDS + _BALANCE_FIELDS), config.version_column())
    .join_from(Member, MemberBalance, MemberBalance.member_id == Member.id)
    .where(Member.external_id == sa.bindparam("external_id"))
)


def settled_snapshot(
    session: Session, external_id: str, now: dt.datetime
) -> tuple[Member, MemberBalance, config.ProgramConfig]:
    """Read-only copies (not in the session) of the member and their balance as of `now`,
    with the program's configuration, for reads. Settles first (under the lock) when
    something fell due. Raises MemberNotFound."""
    row = session.connection().execute(_SNAPSHOT, {"external_id": external_id}).one_or_none()
    if row is None:
        raise MemberNotFound(f"No member with external_id {external_id!r}.")
    member = Member(**{key: getattr(row, label.name) for key, label in _MEMBER_FIELDS})
    balance = MemberBalance(**{key: getattr(row, label.name) for key, label in _BALANCE_FIELDS})
    program = config.current(session, row.config_version)
    if balance.next_due_at is not None and balance.next_due_at <= now:
        member = find_member(session, external_id)
        balance = settled_balance(session, member, now)
    return member, balance, program


def settled_balance(
    session: Session, member: Member, now: dt.datetime | None = None
) -> MemberBalance:
    """The member's balance as of `now`: if a lot matured or expired since the last write,
    settle it first (under the member's lock), so no read depends on a batch job."""
    now = now or utcnow()
    balance = session.get(MemberBalance, member.id)
    if balance is None:
        raise RuntimeError(f"member {member.id} has no balance row")
    if balance.next_due_at is not None and balance.next_due_at <= now:
        with transaction(session):
            balance = lock_balance(session, member.id)
            settle(session, balance, now)
    return balance


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


def adjust(
    session: Session,
    external_id: str,
    points: int,
    reason: str,
    actor: str | None,
    now: dt.datetime | None = None,
) -> LedgerTransaction:
    """Add (points > 0) or remove (points < 0) points by hand, with a reason.

    Added points are available at once and expire under the program's policy. Returns the
    transaction. Raises MemberNotFound, MemberInactive for a closed member, and
    InsufficientPoints when removing more than is available.
    """
    now = now or utcnow()
    if points == 0:
        raise ValidationFailed({"points": ["Must not be zero."]})
    with transaction(session):
        member = find_member(session, external_id)
        settings = config.current(session).settings
        balance = lock_balance(session, member.id)
        # Read under the lock: a status change that just committed is seen.
        session.refresh(member)
        if member.status == MemberStatus.CLOSED:
            raise MemberInactive(f"Member {external_id!r} is closed.")
        settle(session, balance, now)
        fields: dict[str, Any] = {"reason": reason, "actor": actor, "reference": "adjustment"}
        if points > 0:
            txn, _ = credit(
                session,
                balance,
                settings,
                points,
                kind=TransactionKind.ADJUST,
                source=Account.ADJUSTED,
                now=now,
                pending=False,
                **fields,
            )
        else:
            txn, _ = debit(
                session,
                balance,
                settings,
                -points,
                kind=TransactionKind.ADJUST,
                destination=Account.ADJUSTED,
                now=now,
                **fields,
            )
        session.flush()
        audit.record(
            session,
            actor,
            "points.adjust",
            "member",
            external_id,
            None,
            {"points": points, "reason": reason, "transaction": str(txn.public_id)},
        )
        outbox.emit(
            session,
            "points.adjusted",
            {"member_id": external_id, "points": points, "reason": reason},
            now,
        )
    return txn


def member_points_delta(txn: LedgerTransaction) -> int:
    """How the transaction changed what the member has or will have (available + pending)."""
    return sum(
        entry.amount
        for entry in txn.entries
        if entry.account in (Account.AVAILABLE.value, Account.PENDING.value)
    )


@dataclass
class Page:
    items: list[LedgerTransaction]
    next_cursor: str | None


def encode_cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f"t{position}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The position a cursor points at. Raises ValidationFailed for a cursor we never made."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        position = int(raw[1:]) if raw.startswith("t") else 0
        if not 0 < position < 2**63:  # ids are positive BIGINTs
            raise ValueError(raw)
        return position
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationFailed({"cursor": ["Not a valid cursor."]}) from None


def history(session: Session, external_id: str, limit: int, cursor: str | None) -> Page:
    """The member's transactions, newest first, one page at a time.

    Raises MemberNotFound, or ValidationFailed for a bad cursor.
    """
    member = find_member(session, external_id)
    settled_balance(session, member)
    stmt = (
        sa.select(LedgerTransaction)
        .where(LedgerTransaction.member_id == member.id)
        .order_by(LedgerTransaction.id.desc())
        .limit(limit + 1)
    )
    if cursor:
        stmt = stmt.where(LedgerTransaction.id < decode_cursor(cursor))
    items = list(session.execute(stmt).scalars())
    next_cursor = encode_cursor(items[limit - 1].id) if len(items) > limit else None
    return Page(items=items[:limit], next_cursor=next_cursor)


@dataclass
class VerifyReport:
    transactions: int = 0
    members: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(session: Session, max_problems: int = 100) -> VerifyReport:
    """Check every ledger invariant; return a report listing each breach found.

    - every transaction has two or more entries that sum to zero;
    - each member's balance row equals the sum of their entries, account by account;
    - pending lots hold exactly the pending balance, available lots exactly the available
      balance (none while the member is in debt); a lot never holds less than 0 or more
      than it was given (that one is a CHECK constraint in the schema);
    - the points open holds took from lots add up to the held balance.
    """
    report = VerifyReport()
    report.transactions = session.scalar(sa.select(sa.func.count(LedgerTransaction.id))) or 0
    report.members = session.scalar(sa.select(sa.func.count(MemberBalance.member_id))) or 0

    entry_sums = (
        sa.select(
            LedgerTransaction.id,
            sa.func.coalesce(sa.func.sum(LedgerEntry.amount), 0),
            sa.func.count(LedgerEntry.id),
        )
        .outerjoin(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
        .group_by(LedgerTransaction.id)
        .having(
            sa.or_(
                sa.func.coalesce(sa.func.sum(LedgerEntry.amount), 0) != 0,
                sa.func.count(LedgerEntry.id) < 2,
            )
        )
        .limit(max_problems)
    )
    for txn_id, total, count in session.execute(entry_sums):
        report.problems.append(f"transaction {txn_id}: {count} entries summing to {total}")

    by_account = {
        account.value: sa.func.coalesce(
            sa.func.sum(sa.case((LedgerEntry.account == account.value, LedgerEntry.amount))), 0
        )
        for account in MEMBER_ACCOUNTS
    }
    sums = (
        sa.select(LedgerEntry.member_id, *by_account.values())
        .group_by(LedgerEntry.member_id)
        .subquery()
    )
    lot_sums = (
        sa.select(
            PointLot.member_id,
            sa.func.sum(
                sa.case((PointLot.state == LotState.PENDING.value, PointLot.remaining), else_=0)
            ).label("pending"),
            sa.func.sum(
                sa.case((PointLot.state == LotState.AVAILABLE.value, PointLot.remaining), else_=0)
            ).label("available"),
        )
        .group_by(PointLot.member_id)
        .subquery()
    )
    hold_sums = (
        sa.select(Redemption.member_id, sa.func.sum(RedemptionAllocation.points).label("held"))
        .join(RedemptionAllocation, RedemptionAllocation.redemption_id == Redemption.id)
        .where(Redemption.status == RedemptionStatus.HELD.value)
        .group_by(Redemption.member_id)
        .subquery()
    )
    cols = list(sums.c)[1:]
    rows = session.execute(
        sa.select(
            MemberBalance.member_id,
            MemberBalance.available,
            MemberBalance.pending,
            MemberBalance.held,
            *(sa.func.coalesce(c, 0) for c in cols),
            sa.func.coalesce(lot_sums.c.pending, 0),
            sa.func.coalesce(lot_sums.c.available, 0),
            sa.func.coalesce(hold_sums.c.held, 0),
        )
        .outerjoin(sums, sums.c.member_id == MemberBalance.member_id)
        .outerjoin(lot_sums, lot_sums.c.member_id == MemberBalance.member_id)
        .outerjoin(hold_sums, hold_sums.c.member_id == MemberBalance.member_id)
    )
    for member_id, available, pending, held, e_av, e_pe, e_he, l_pe, l_av, h_al in rows:
        if (available, pending, held) != (e_av, e_pe, e_he):
            report.problems.append(
                f"member {member_id}: balance (available {available}, pending {pending}, "
                f"held {held}) != entries ({e_av}, {e_pe}, {e_he})"
            )
        if l_pe != pending or l_av != max(available, 0):
            report.problems.append(
                f"member {member_id}: lots (pending {l_pe}, available {l_av}) != balance "
                f"(pending {pending}, available {max(available, 0)})"
            )
        if h_al != held:
            report.problems.append(
                f"member {member_id}: open holds took {h_al} points from lots, held is {held}"
            )
        if len(report.problems) >= max_problems:
            break

    orphans = session.scalar(
        sa.select(sa.func.count(sa.distinct(LedgerEntry.member_id))).where(
            # NOT EXISTS, not NOT IN: PostgreSQL runs NOT IN over a subquery too big for
            # work_mem as a scan per entry (minutes at ten million entries).
            ~sa.exists().where(MemberBalance.member_id == LedgerEntry.member_id)
        )
    )
    if orphans:
        report.problems.append(f"{orphans} members have entries but no balance row")
    grand_total = session.scalar(sa.select(sa.func.coalesce(sa.func.sum(LedgerEntry.amount), 0)))
    if grand_total:
        report.problems.append(f"all entries sum to {grand_total}, not 0")
    return report
