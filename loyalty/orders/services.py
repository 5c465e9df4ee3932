"""Recording orders: exactly once per order_id, earning its points in the same transaction."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.db import insert_ignoring_conflicts, transaction, utcnow
from loyalty.errors import ValidationFailed
from loyalty.idempotency.services import body_fingerprint
from loyalty.ledger.exceptions import MemberInactive
from loyalty.ledger.models import (
    MemberBalance,
    Redemption,
    RedemptionStatus,
)
from loyalty.ledger.postings import lock_balance
from loyalty.members.lookup import external_id_of, find_member
from loyalty.members.models import Member
from loyalty.orders.earning import (
    CartLine,
    cart_lines,
    check_currency,
    check_discount,
    earn,
    first_order,
)
from loyalty.orders.exceptions import (
    OrderConflict,
    OrderNotFound,
    RedemptionExceedsLimit,
)
from loyalty.orders.models import Order
from loyalty.program import config
from loyalty.program.models import ProgramSettings
from loyalty.redemptions import services as redemptions
from loyalty.redemptions.exceptions import (
    RedemptionInUse,
    RedemptionMemberMismatch,
)
from loyalty.referrals import services as referrals
from loyalty.rules import policy
from loyalty.rules.budgets import NOTHING_RESERVED
from loyalty.rules.earning import award
from loyalty.settlement.services import settle_member
from loyalty.tiers import services as tiers

# Shops' clocks drift; an order "placed" slightly in the future is accepted.
CLOCK_SKEW = dt.timedelta(minutes=5)
# A customer who joins at checkout is enrolled after their order was placed: an order placed
# up to this long before the enrolment still earns by default; an older one is history.
ENROLMENT_GRACE = dt.timedelta(hours=24)


_REDEMPTION_PUBLIC_ID = sa.select(Redemption.public_id).where(
    Redemption.id == sa.bindparam("redemption_id")
)


@dataclass(frozen=True, slots=True)
class RecordedOrder:
    """An order as recorded: what its answer shows, and its refunds so far."""

    order_id: str
    external_id: str  # the member's
    currency: str
    total: int
    redeemed_points: int
    redeemed_value: int
    redemption_public_id: uuid.UUID | None  # the hold that paid part of it
    points_earned: int
    breakdown: tuple[dict[str, Any], ...]
    # Each line with its net amount (after the order's discount) and refunded quantity.
    lines: tuple[dict[str, Any], ...]
    available_at: dt.datetime | None
    placed_at: dt.datetime
    created_at: dt.datetime
    refunded_amount: int
    points_reversed: int
    points_restored: int
    cart_id: str | None = None  # the shop's id of the cart it came from

    def points_status(self, as_of: dt.datetime) -> str:
        """none (nothing earned), pending (inside the return window at `as_of`), available."""
        if not self.points_earned:
            return "none"
        return "pending" if self.available_at and self.available_at > as_of else "available"


def recorded(
    session: Session, order: Order, redemption_public_id: uuid.UUID | None = None
) -> RecordedOrder:
    """The order's answer (the hold's public id read here unless the caller has it)."""
    if order.redemption_id is not None and redemption_public_id is None:
        redemption_public_id = (
            session.connection()
            .execute(_REDEMPTION_PUBLIC_ID, {"redemption_id": order.redemption_id})
            .scalar_one()
        )
    return RecordedOrder(
        order_id=order.order_id,
        external_id=external_id_of(session, order.member_id),
        currency=order.currency,
        total=order.total,
        redeemed_points=order.redeemed_points,
        redeemed_value=order.redeemed_value,
        redemption_public_id=redemption_public_id,
        points_earned=order.points_earned,
        breakdown=tuple(order.breakdown),
        lines=tuple(order.lines),
        available_at=order.available_at,
        placed_at=order.placed_at,
        created_at=order.created_at,
        refunded_amount=order.refunded_amount,
        points_reversed=order.points_reversed,
        points_restored=order.points_restored,
        cart_id=order.cart_id,
    )


def order_by_id(session: Session, order_id: str, *, fresh: bool = False) -> Order | None:
    """The order with this order_id, if any (`fresh`: re-read, under a lock just taken)."""
    stmt = sa.select(Order).where(Order.order_id == order_id)
    if fresh:
        stmt = stmt.execution_options(populate_existing=True)
    return session.execute(stmt).scalar_one_or_none()


def _replay(session: Session, order: Order, request_hash: str) -> RecordedOrder:
    if order.request_hash != request_hash:
        raise OrderConflict(f"Order {order.order_id!r} was already recorded with a different body.")
    return recorded(session, order)


def _use_redemption(
    session: Session,
    settings: ProgramSettings,
    redemption_public_id: uuid.UUID,
    member: Member,
    balance: MemberBalance,
    order_id: str,
    total: int,
    now: dt.datetime,
) -> Redemption:
    redemption = session.execute(
        sa.select(Redemption)
        .where(Redemption.public_id == redemption_public_id)
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if redemption is None:
        raise ValidationFailed({"redemption_id": ["No such redemption."]})
    if redemption.member_id != member.id:
        raise RedemptionMemberMismatch("The redemption belongs to another member.")
    if session.scalar(sa.select(Order.id).where(Order.redemption_id == redemption.id)):
        raise RedemptionInUse("The redemption already paid for another order.")
    if redemption.value > total * settings.max_redemption_percent // 100:
        raise RedemptionExceedsLimit(
            f"At most {settings.max_redemption_percent}% of an order may be paid in points."
        )
    if redemption.status == RedemptionStatus.HELD:
        # Placing the order is the payment succeeding: capture the hold with it.
        redemptions.capture_locked(session, redemption, balance, now)
    redemptions.refuse_unless_usable(redemption)
    # The redemption names the order it paid for from now on (the hold's own reference, if
    # any, was the shop's guess at it).
    redemption.order_ref = order_id
    return redemption


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    order_id: str  # the shop's
    external_id: str  # the member's
    currency: str
    lines: tuple[CartLine, ...]
    discount: int = 0
    redemption_public_id: uuid.UUID | None = None  # a hold that pays part of the order
    placed_at: dt.datetime | None = None  # default: now
    # None: an order placed since the member's enrolment (or up to ENROLMENT_GRACE before
    # it) earns, an older one does not (history); True or False says so for this order
    # whenever it was placed.
    earn_points: bool | None = None
    cart_id: str | None = None  # the shop's id of the cart it came from (a quoted cart's)

    def fingerprint(self) -> str:
        """The order as the API received it, hashed: tells a retry from a different order
        reusing the order_id (stored with the order, so the shape never changes: a field
        added later counts only when it was sent, so orders recorded before it still
        replay)."""
        given: dict[str, Any] = {
            "member_id": self.external_id,
            "currency": self.currency,
            "lines": [line.as_dict() for line in self.lines],
            "discount": self.discount,
            "order_id": self.order_id,
            "redemption_id": self.redemption_public_id,
            "placed_at": self.placed_at,
        }
        if self.earn_points is not None:
            given["earn_points"] = self.earn_points
        if self.cart_id is not None:
            given["cart_id"] = self.cart_id
        return body_fingerprint(given)

    def earns(self, placed_at: dt.datetime, enrolled_at: dt.datetime) -> bool:
        """Whether the order earns points: as asked, else unless placed before the
        enrolment (by more than ENROLMENT_GRACE)."""
        if self.earn_points is not None:
            return self.earn_points
        return placed_at >= enrolled_at - ENROLMENT_GRACE


def place_order(
    session: Session, command: PlaceOrder, now: dt.datetime | None = None
) -> tuple[RecordedOrder, bool]:
    """Record an order and earn its points (pending for the return window). Returns (order,
    created). Exactly once per order_id: the same order again returns the first one.

    An order placed in the past earns as of `placed_at` (its lot matures and expires from
    then, settled at once up to now); one placed before the member's enrolment (more than
    ENROLMENT_GRACE before) is history and earns nothing, unless the command asks
    (`earn_points`). A referred member's first order starts their referral's return
    window (an order that earns nothing does not).

    Raises OrderConflict for an order_id reused with a different body, MemberNotFound,
    MemberInactive, CurrencyMismatch, ValidationFailed, and the redemption errors when
    `redemption_id` cannot pay for this order.
    """
    now = now or utcnow()
    request_hash = command.fingerprint()
    placed_at = command.placed_at or now
    if placed_at > now + CLOCK_SKEW:
        raise ValidationFailed({"placed_at": ["Must not be in the future."]})
    lines = cart_lines(command.lines)
    discount = command.discount
    subtotal = check_discount(lines, discount)
    member = find_member(session, command.external_id)
    nets = policy.net_amounts(lines, discount)
    with transaction(session):
        balance, referrer_balance = _lock_member_and_referrer(session, member)
        settings = config.current(session).settings
        # Asked before the order is claimed: the claim is an order of the member's already.
        first = first_order(session, member)
        order = {
            "order_id": command.order_id,
            "member_id": member.id,
            "currency": settings.currency,
            "subtotal": subtotal,
            "discount": discount,
            "total": subtotal - discount,
            "redeemed_points": 0,
            "redeemed_value": 0,
            "points_earned": 0,
            "breakdown": [],
            "lines": [
                {**line.as_dict(), "net_amount": net, "refunded_quantity": 0}
                for line, net in zip(command.lines, nets, strict=True)
            ],
            "request_hash": request_hash,
            "redemption_id": None,
            "lot_id": None,
            "placed_at": placed_at,
            "available_at": None,
            "created_at": now,
            "refunded_amount": 0,
            "points_reversed": 0,
            "points_restored": 0,
            "cart_id": command.cart_id,
        }
        # Claimed first, with ON CONFLICT DO NOTHING: the same order_id placed concurrently
        # (for another member) waits for that transaction and then finds its order, without
        # an IntegrityError to recover from (so no savepoint). A retry replays the order as
        # recorded, whatever changed since (the member's status, the program's currency),
        # so the checks that depend on them come after the claim; a refusal rolls it back.
        claimed = session.connection().execute(_claim(session), order).scalar()
        if claimed is None:
            existing = order_by_id(session, command.order_id, fresh=True)
            assert existing is not None  # orders are never deleted
            return _replay(session, existing, request_hash), False
        check_currency(settings, command.currency)
        if not member.is_active:
            raise MemberInactive(
                f"Member {member.external_id!r} is {member.status}; it earns nothing."
            )
        settle_member(session, balance, now)
        redemption = None
        if command.redemption_public_id:
            redemption = _use_redemption(
                session,
                settings,
                command.redemption_public_id,
                member,
                balance,
                command.order_id,
                subtotal - discount,
                now,
            )
        redeemed_value = redemption.value if redemption else 0
        earns = command.earns(placed_at, member.enrolled_at)
        points, breakdown, active, reserved = (
            earn(
                session,
                member,
                lines,
                discount + redeemed_value,
                placed_at,
                now,
                first,
                reserve=True,
            )
            if earns
            else (0, [], [], NOTHING_RESERVED)
        )
        earned: dict[str, Any] = {
            "redeemed_points": redemption.points if redemption else 0,
            "redeemed_value": redeemed_value,
            "redemption_id": redemption.id if redemption else None,
            "points_earned": points,
            "breakdown": [c.as_dict() for c in breakdown],
            "lot_id": None,
            "available_at": None,
        }
        if points:
            lot = award(
                session,
                member,
                balance,
                settings,
                (points, breakdown),
                active,
                source=f"order:{command.order_id}",
                earned_at=placed_at,
                now=now,
                pending=True,
                details={},
                payload={"order_id": command.order_id},
                reserved=reserved,
            )
            earned["lot_id"], earned["available_at"] = lot.id, lot.available_at
            settle_member(session, balance, now)
        if points or redemption:
            session.connection().execute(_COMPLETE_ORDER, {"claimed": claimed, **earned})
        # Crossing a threshold upgrades in the same transaction as the earning.
        tiers.review_member(session, member, now)
        if first and earns and referrer_balance is not None:
            referrals.first_order_placed(
                session, member, balance, referrer_balance, command.order_id, placed_at, now
            )
        placed = Order(id=claimed, **{**order, **earned})
        return recorded(session, placed, redemption.public_id if redemption else None), True


_CLAIMS: dict[str, sa.Insert] = {}


def _claim(session: Session) -> sa.Insert:
    """INSERT the order unless its order_id exists, RETURNING its id (built once per
    dialect)."""
    name = session.get_bind().dialect.name
    if name not in _CLAIMS:
        _CLAIMS[name] = insert_ignoring_conflicts(session, Order, ["order_id"]).returning(Order.id)
    return _CLAIMS[name]


_COMPLETE_ORDER = (
    sa.update(Order.__table__)
    .where(Order.__table__.c.id == sa.bindparam("claimed"))
    .values(
        {
            name: sa.bindparam(name)
            for name in (
                "redeemed_points",
                "redeemed_value",
                "redemption_id",
                "points_earned",
                "breakdown",
                "lot_id",
                "available_at",
            )
        }
    )
)


def _lock_member_and_referrer(
    session: Session, member: Member
) -> tuple[MemberBalance, MemberBalance | None]:
    """Lock the member and, if they were referred, the referrer, always in id order, so two
    members who referred each other never deadlock."""
    if member.referred_by_id is None:
        return lock_balance(session, member.id), None
    locked = {
        member_id: lock_balance(session, member_id)
        for member_id in sorted({member.id, member.referred_by_id})
    }
    return locked[member.id], locked[member.referred_by_id]


def find_order(session: Session, order_id: str) -> RecordedOrder:
    """The order with this order_id. Raises OrderNotFound."""
    order = order_by_id(session, order_id)
    if order is None:
        raise OrderNotFound(f"No order with order_id {order_id!r}.")
    return recorded(session, order)
