"""Recording orders: exactly once per order_id, earning its points in the same transaction."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.db import insert_copy, utcnow
from loyalty.errors import ValidationFailed
from loyalty.events import services as events
from loyalty.idempotency.services import body_fingerprint, record_once
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
from loyalty.rules import policy
from loyalty.rules.earning import award
from loyalty.settlement.services import settle_member
from loyalty.tiers import services as tiers

# Shops' clocks drift; an order "placed" slightly in the future is accepted.
CLOCK_SKEW = dt.timedelta(minutes=5)


_ORDER_EXISTS = sa.select(Order.id).where(Order.order_id == sa.bindparam("order_id"))
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

    def fingerprint(self) -> str:
        """The order as the API received it, hashed: tells a retry from a different order
        reusing the order_id (stored with the order, so the shape never changes)."""
        return body_fingerprint(
            {
                "member_id": self.external_id,
                "currency": self.currency,
                "lines": [dataclasses.asdict(line) for line in self.lines],
                "discount": self.discount,
                "order_id": self.order_id,
                "redemption_id": self.redemption_public_id,
                "placed_at": self.placed_at,
            }
        )


def place_order(
    session: Session, command: PlaceOrder, now: dt.datetime | None = None
) -> tuple[RecordedOrder, bool]:
    """Record an order and earn its points (pending for the return window). Returns (order,
    created). Exactly once per order_id: the same order again returns the first one.

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

    def find() -> Order | None:
        if (
            session.connection().execute(_ORDER_EXISTS, {"order_id": command.order_id}).first()
            is None
        ):
            return None
        return order_by_id(session, command.order_id, fresh=True)

    def record(locked: tuple[MemberBalance, MemberBalance | None]) -> RecordedOrder:
        balance, referrer_balance = locked
        settings = config.current(session).settings
        check_currency(settings, command.currency)
        if not member.is_active:
            raise MemberInactive(
                f"Member {member.external_id!r} is {member.status}; it earns nothing."
            )
        settle_member(session, balance, now)
        first = first_order(session, member)
        redemption = None
        if command.redemption_public_id:
            redemption = _use_redemption(
                session,
                settings,
                command.redemption_public_id,
                member,
                balance,
                subtotal - discount,
                now,
            )
        redeemed_value = redemption.value if redemption else 0
        points, breakdown, active = earn(
            session, member, lines, discount + redeemed_value, placed_at, now, first
        )
        nets = policy.net_amounts(lines, discount)
        order = {
            "order_id": command.order_id,
            "member_id": member.id,
            "currency": settings.currency,
            "subtotal": subtotal,
            "discount": discount,
            "total": subtotal - discount,
            "redeemed_points": redemption.points if redemption else 0,
            "redeemed_value": redeemed_value,
            "points_earned": points,
            "breakdown": [c.as_dict() for c in breakdown],
            "lines": [
                {**dataclasses.asdict(line), "net_amount": net, "refunded_quantity": 0}
                for line, net in zip(command.lines, nets, strict=True)
            ],
            "request_hash": request_hash,
            "redemption_id": redemption.id if redemption else None,
            "lot_id": None,
            "placed_at": placed_at,
            "available_at": None,
            "created_at": now,
            "refunded_amount": 0,
            "points_reversed": 0,
            "points_restored": 0,
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
            )
            order["lot_id"], order["available_at"] = lot.id, lot.available_at
            settle_member(session, balance, now)
        if session.new:
            session.flush()
        # The one write an order always makes; a read-only copy is returned.
        order_row = insert_copy(session, Order, order)
        # Crossing a threshold upgrades in the same transaction as the earning.
        tiers.review_member(session, member, now)
        if first and referrer_balance is not None:
            events.grant_referral(session, member, referrer_balance, now)
        return recorded(session, order_row, redemption.public_id if redemption else None)

    # A retry replays the order as recorded, whatever changed since (the member's status, the
    # program's currency), so the checks that depend on them come after the lookup. An order_id
    # recorded concurrently (for another member) is compared with too.
    return record_once(
        session,
        lock=lambda: _lock_member_and_referrer(session, member),
        find=find,
        replay=lambda existing: _replay(session, existing, request_hash),
        record=record,
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
