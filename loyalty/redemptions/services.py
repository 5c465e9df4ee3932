"""Holds, captures and releases of points (two-phase spending, as in TigerBeetle's pending
transfers): a hold moves points from available to held under the member's lock, so held
points can never be spent twice; capture moves them to the program's redeemed account;
release, or the TTL running out, moves them back into the lots they came from."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.db import insert_copy, transaction, utcnow
from loyalty.ledger.exceptions import MemberInactive
from loyalty.ledger.models import (
    Account,
    MemberBalance,
    Redemption,
    RedemptionAllocation,
    RedemptionStatus,
    TransactionKind,
)
from loyalty.ledger.postings import lock_balance, note_due, post
from loyalty.ledger.spending import debit, return_held
from loyalty.members.lookup import external_id_of, find_member
from loyalty.program import config
from loyalty.redemptions.exceptions import (
    AlreadyCaptured,
    AlreadyReleased,
    BelowMinimumRedemption,
    HoldExpired,
    RedemptionNotFound,
)
from loyalty.settlement.services import settle_member
from loyalty.webhooks import outbox

_INSERT_ALLOCATIONS = RedemptionAllocation.__table__.insert()


@dataclass(frozen=True, slots=True)
class Hold:
    """A redemption hold as its answer shows it."""

    public_id: uuid.UUID
    external_id: str  # the member's
    status: RedemptionStatus
    points: int
    value: int
    currency: str
    order_ref: str | None
    expires_at: dt.datetime
    created_at: dt.datetime
    captured_at: dt.datetime | None
    released_at: dt.datetime | None


def _hold(session: Session, redemption: Redemption) -> Hold:
    return Hold(
        public_id=redemption.public_id,
        external_id=external_id_of(session, redemption.member_id),
        status=RedemptionStatus(redemption.status),
        points=redemption.points,
        value=redemption.value,
        currency=redemption.currency,
        order_ref=redemption.order_ref,
        expires_at=redemption.expires_at,
        created_at=redemption.created_at,
        captured_at=redemption.captured_at,
        released_at=redemption.released_at,
    )


def hold(
    session: Session,
    external_id: str,
    points: int,
    order_ref: str | None = None,
    now: dt.datetime | None = None,
) -> Hold:
    """Reserve `points` of the member's available points; return the hold.

    Raises MemberNotFound, MemberInactive, BelowMinimumRedemption, or InsufficientPoints
    when fewer points are available than asked (held points count as spent).
    """
    now = now or utcnow()
    settings = config.current(session).settings
    with transaction(session):
        member = find_member(session, external_id)
        if not member.is_active:
            raise MemberInactive(f"Member {external_id!r} is {member.status}.")
        if points < settings.min_redemption_points:
            raise BelowMinimumRedemption(
                f"At least {settings.min_redemption_points} points per redemption.",
                min_redemption_points=settings.min_redemption_points,
            )
        balance = lock_balance(session, member.id)
        settle_member(session, balance, now)
        values = {
            "public_id": uuid.uuid4(),
            "member_id": member.id,
            "points": points,
            "value": settings.points_value(points),
            "currency": settings.currency,
            "status": RedemptionStatus.HELD.value,
            "order_ref": order_ref,
            "expires_at": now + dt.timedelta(seconds=settings.hold_ttl_seconds),
            "created_at": now,
            "captured_at": None,
            "released_at": None,
            "restored_points": 0,
        }
        _, taken = debit(
            session,
            balance,
            settings,
            points,
            kind=TransactionKind.HOLD,
            destination=Account.HELD,
            now=now,
            reference=f"redemption:{values['public_id']}",
        )
        # Like the ledger, a read-only copy is returned.
        redemption = insert_copy(session, Redemption, values)
        allocations = [
            {"redemption_id": redemption.id, "lot_id": lot_id, "points": take}
            for lot_id, take in taken
        ]
        if allocations:
            session.connection().execute(_INSERT_ALLOCATIONS, allocations)
        redemption.allocations = [RedemptionAllocation(**row) for row in allocations]
        note_due(balance, redemption.expires_at)
        session.flush()
    return _hold(session, redemption)


_MEMBER_OF = sa.select(Redemption.member_id).where(
    Redemption.public_id == sa.bindparam("public_id")
)


def find(session: Session, public_id: uuid.UUID) -> Hold:
    """The redemption with this id. Raises RedemptionNotFound."""
    redemption = session.execute(
        sa.select(Redemption).where(Redemption.public_id == public_id)
    ).scalar_one_or_none()
    if redemption is None:
        raise RedemptionNotFound(f"No redemption with id {public_id}.")
    return _hold(session, redemption)


def _locked(
    session: Session, public_id: uuid.UUID, now: dt.datetime
) -> tuple[Redemption, MemberBalance]:
    """The redemption re-read under its member's lock, after settling (which expires it if
    its TTL ran out)."""
    member_id = session.connection().execute(_MEMBER_OF, {"public_id": public_id}).scalar()
    if member_id is None:
        raise RedemptionNotFound(f"No redemption with id {public_id}.")
    balance = lock_balance(session, member_id)
    settle_member(session, balance, now)
    redemption = session.execute(
        sa.select(Redemption)
        .where(Redemption.public_id == public_id)
        .execution_options(populate_existing=True)
    ).scalar_one()
    return redemption, balance


def capture_locked(
    session: Session, redemption: Redemption, balance: MemberBalance, now: dt.datetime
) -> None:
    """Capture a held redemption; the caller holds the member's lock."""
    post(
        session,
        balance,
        TransactionKind.CAPTURE,
        [(Account.HELD, -redemption.points), (Account.REDEEMED, redemption.points)],
        effective_at=now,
        reference=f"redemption:{redemption.public_id}",
    )
    redemption.status = RedemptionStatus.CAPTURED
    redemption.captured_at = now
    outbox.emit(
        session,
        "redemption.captured",
        {
            "member_id": external_id_of(session, redemption.member_id) or None,
            "redemption_id": str(redemption.public_id),
            "points": redemption.points,
            "value": {"amount": redemption.value, "currency": redemption.currency},
        },
        now,
    )


def refuse_unless_usable(redemption: Redemption, *, to_release: bool = False) -> None:
    """Raise the conflict for a hold that can no longer be captured (HoldExpired,
    AlreadyReleased) or, `to_release`, released (HoldExpired, AlreadyCaptured)."""
    status = RedemptionStatus(redemption.status)
    if status == RedemptionStatus.EXPIRED:
        raise HoldExpired("The hold expired; its points were returned.")
    if status == RedemptionStatus.RELEASED and not to_release:
        raise AlreadyReleased("The hold was released; its points were returned.")
    if status == RedemptionStatus.CAPTURED and to_release:
        raise AlreadyCaptured("The hold was captured; refund the order to give points back.")


def _finish_hold(
    session: Session,
    public_id: uuid.UUID,
    now: dt.datetime | None,
    finish: Callable[[Redemption, MemberBalance, dt.datetime], object],
    *,
    to_release: bool,
) -> Hold:
    """Lock a hold and `finish` it if it is still held; then refuse one that can no longer
    be finished that way (see refuse_unless_usable). Returns the hold as it is now."""
    now = now or utcnow()
    with transaction(session):
        redemption, balance = _locked(session, public_id, now)
        if redemption.status == RedemptionStatus.HELD:
            finish(redemption, balance, now)
    # Raised after the work: outside a request's scope an expiry noticed on the way is kept;
    # in one, it is rolled back with the refusal and the next read settles it again, dated
    # the same.
    refuse_unless_usable(redemption, to_release=to_release)
    return _hold(session, redemption)


def capture(session: Session, public_id: uuid.UUID, now: dt.datetime | None = None) -> Hold:
    """Spend the held points. Capturing again returns the same captured redemption.

    Raises RedemptionNotFound, HoldExpired after the TTL, AlreadyReleased after a release.
    """
    return _finish_hold(
        session,
        public_id,
        now,
        lambda redemption, balance, now: capture_locked(session, redemption, balance, now),
        to_release=False,
    )


def release(session: Session, public_id: uuid.UUID, now: dt.datetime | None = None) -> Hold:
    """Give the held points back. Releasing again returns the same released redemption.

    Raises RedemptionNotFound, AlreadyCaptured after a capture, HoldExpired after the TTL.
    """
    return _finish_hold(
        session,
        public_id,
        now,
        lambda redemption, balance, now: return_held(
            session, balance, redemption, now, TransactionKind.RELEASE, RedemptionStatus.RELEASED
        ),
        to_release=True,
    )
