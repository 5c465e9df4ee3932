"""Quotes, orders and refunds: what the checkout calls on every cart and every order."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from loyalty.db import insert_copy, transaction, utcnow
from loyalty.errors import ValidationFailed
from loyalty.events import services as events
from loyalty.idempotency.services import body_fingerprint
from loyalty.ledger import services as ledger
from loyalty.ledger.exceptions import MemberInactive
from loyalty.ledger.models import Account, MemberBalance, PointLot, TransactionKind
from loyalty.members.models import Member
from loyalty.orders.exceptions import (
    CurrencyMismatch,
    OrderConflict,
    OrderNotFound,
    RedemptionExceedsLimit,
    RefundConflict,
    RefundExceedsOrder,
)
from loyalty.orders.models import Order, Refund
from loyalty.program import config
from loyalty.program.config import ActiveRule
from loyalty.program.models import ProgramSettings
from loyalty.redemptions import services as redemptions
from loyalty.redemptions.exceptions import (
    AlreadyReleased,
    HoldExpired,
    RedemptionInUse,
    RedemptionMemberMismatch,
)
from loyalty.redemptions.models import Redemption, RedemptionStatus
from loyalty.rules import policy
from loyalty.rules import services as rules
from loyalty.tiers import services as tiers
from loyalty.webhooks import outbox

ORDER_RULE_KINDS = ("spend", "multiplier", "bonus")
# Shops' clocks drift; an order "placed" slightly in the future is accepted.
CLOCK_SKEW = dt.timedelta(minutes=5)


def _lines(raw: Sequence[dict[str, Any]]) -> list[policy.Line]:
    return [
        policy.Line(line["sku"], line.get("category"), line["quantity"], line["unit_price"])
        for line in raw
    ]


def _check_currency(settings: ProgramSettings, currency: str) -> None:
    if currency != settings.currency:
        raise CurrencyMismatch(
            f"The program runs in {settings.currency}; this cart is in {currency}."
        )


def _check_discount(lines: Sequence[policy.Line], discount: int) -> int:
    subtotal = sum(line.gross for line in lines)
    if discount > subtotal:
        raise ValidationFailed({"discount": ["Must not exceed the sum of the lines."]})
    return subtotal


def _earn(
    session: Session,
    member: Member,
    lines: Sequence[policy.Line],
    reduction: int,
    when: dt.datetime,
    now: dt.datetime,
    first_order: bool,
) -> tuple[int, list[policy.Contribution], list[ActiveRule]]:
    active = rules.active_rules(session, ORDER_RULE_KINDS)
    candidates = [rule.policy for rule in active] + rules.tier_boost(session, member)
    context = policy.MemberContext(
        tier=tiers.member_tier_code(session, member),
        first_order=first_order,
        remaining_caps=rules.remaining_caps(session, member.id, active, now),
    )
    points, breakdown = policy.order_points(candidates, lines, reduction, context, when)
    return points, breakdown, active


def _first_order(session: Session, member: Member) -> bool:
    """Whether this is the member's first order. Asked only when the answer matters (a
    referral to grant, a rule with a first-order condition): it is a query per order."""
    matters = member.referred_by_id is not None or any(
        rule.policy.conditions.first_order for rule in rules.active_rules(session, ORDER_RULE_KINDS)
    )
    return matters and rules.first_order(session, member.id)


def max_redeemable(settings: ProgramSettings, available: int, total: int) -> int:
    """The most points a member may pay with on an order of `total` (minor units): limited by
    their balance and the program's share of an order payable in points; 0 below the
    program's minimum redemption."""
    max_value = total * settings.max_redemption_percent // 100
    by_value = max_value * settings.point_value_points // settings.point_value_amount
    points = min(max(available, 0), by_value)
    return points if points >= max(settings.min_redemption_points, 1) else 0


@dataclass
class Quote:
    member: Member
    currency: str
    total: int
    points_to_earn: int
    breakdown: list[policy.Contribution]
    available_points: int
    max_redeemable_points: int
    max_redeemable_value: int


def quote(session: Session, fields: dict[str, Any], now: dt.datetime | None = None) -> Quote:
    """Points the cart would earn (and why) and the most points the member may pay with.

    Writes nothing of its own. Raises MemberNotFound, MemberInactive, CurrencyMismatch,
    ValidationFailed.
    """
    now = now or utcnow()
    # Settled first: a tier whose retention ran out no longer boosts what the cart earns.
    member, balance, program = ledger.settled_snapshot(session, fields["member_id"], now)
    settings = program.settings
    _check_currency(settings, fields["currency"])
    if not member.is_active:
        raise MemberInactive(f"Member {member.external_id!r} is {member.status}.")
    lines = _lines(fields["lines"])
    discount = fields.get("discount") or 0
    total = _check_discount(lines, discount) - discount
    redeem_points = fields.get("redeem_points") or 0
    reduction = discount + settings.points_value(redeem_points)
    points, breakdown, _ = _earn(
        session, member, lines, reduction, now, now, _first_order(session, member)
    )
    best = max_redeemable(settings, balance.available, total)
    return Quote(
        member=member,
        currency=settings.currency,
        total=total,
        points_to_earn=points,
        breakdown=breakdown,
        available_points=max(balance.available, 0),
        max_redeemable_points=best,
        max_redeemable_value=settings.points_value(best),
    )


_ORDER_EXISTS = sa.select(Order.id).where(Order.order_id == sa.bindparam("order_id"))


def _find_order(session: Session, order_id: str, *, fresh: bool = False) -> Order | None:
    stmt = sa.select(Order).where(Order.order_id == order_id)
    if fresh:
        stmt = stmt.execution_options(populate_existing=True)
    return session.execute(stmt).scalar_one_or_none()


def _replay(order: Order, request_hash: str) -> Order:
    if order.request_hash != request_hash:
        raise OrderConflict(f"Order {order.order_id!r} was already recorded with a different body.")
    return order


def _use_redemption(
    session: Session,
    settings: ProgramSettings,
    redemption_id: Any,
    member: Member,
    balance: MemberBalance,
    total: int,
    now: dt.datetime,
) -> Redemption:
    redemption = session.execute(
        sa.select(Redemption)
        .where(Redemption.public_id == redemption_id)
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
    elif redemption.status == RedemptionStatus.EXPIRED:
        raise HoldExpired("The redemption's hold expired; its points were returned.")
    elif redemption.status == RedemptionStatus.RELEASED:
        raise AlreadyReleased("The redemption was released; its points were returned.")
    return redemption


def place_order(
    session: Session, fields: dict[str, Any], now: dt.datetime | None = None
) -> tuple[Order, bool]:
    """Record an order and earn its points (pending for the return window). Returns (order,
    created). Exactly once per order_id: the same order again returns the first one.

    Raises OrderConflict for an order_id reused with a different body, MemberNotFound,
    MemberInactive, CurrencyMismatch, ValidationFailed, and the redemption errors when
    `redemption_id` cannot pay for this order.
    """
    now = now or utcnow()
    request_hash = body_fingerprint(fields)
    placed_at = fields.get("placed_at") or now
    if placed_at > now + CLOCK_SKEW:
        raise ValidationFailed({"placed_at": ["Must not be in the future."]})
    lines = _lines(fields["lines"])
    discount = fields.get("discount") or 0
    subtotal = _check_discount(lines, discount)
    member = ledger.find_member(session, fields["member_id"])
    try:
        with transaction(session):
            balance, referrer_balance = _lock_member_and_referrer(session, member)
            # A retry replays the order as recorded, whatever changed since (the member's
            # status, the program's currency), so the checks that depend on them come after.
            if (
                session.connection()
                .execute(_ORDER_EXISTS, {"order_id": fields["order_id"]})
                .first()
                is not None
            ):
                existing = _find_order(session, fields["order_id"], fresh=True)
                assert existing is not None  # orders are never deleted
                return _replay(existing, request_hash), False
            settings = config.current(session).settings
            _check_currency(settings, fields["currency"])
            if not member.is_active:
                raise MemberInactive(
                    f"Member {member.external_id!r} is {member.status}; it earns nothing."
                )
            ledger.settle(session, balance, now)
            first_order = _first_order(session, member)
            redemption = None
            if fields.get("redemption_id"):
                redemption = _use_redemption(
                    session,
                    settings,
                    fields["redemption_id"],
                    member,
                    balance,
                    subtotal - discount,
                    now,
                )
            redeemed_value = redemption.value if redemption else 0
            points, breakdown, active = _earn(
                session, member, lines, discount + redeemed_value, placed_at, now, first_order
            )
            nets = policy.net_amounts(lines, discount)
            order = {
                "order_id": fields["order_id"],
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
                    {**raw, "net_amount": net, "refunded_quantity": 0}
                    for raw, net in zip(fields["lines"], nets, strict=True)
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
                _, lot = ledger.credit(
                    session,
                    balance,
                    settings,
                    points,
                    kind=TransactionKind.EARN,
                    source=Account.ISSUED,
                    now=placed_at,
                    pending=True,
                    reference=f"order:{fields['order_id']}",
                    qualifying=points,
                    details={"breakdown": order["breakdown"]},
                )
                order["lot_id"], order["available_at"] = lot.id, lot.available_at
                outbox.emit(
                    session,
                    "points.earned",
                    {
                        "member_id": member.external_id,
                        "points": points,
                        "order_id": fields["order_id"],
                        "available_at": lot.available_at.isoformat(),
                        "breakdown": order["breakdown"],
                    },
                    now,
                )
                rules.record_awards(
                    session, member.id, active, breakdown, f"order:{fields['order_id']}", now
                )
                ledger.settle(session, balance, now)
            if session.new:
                session.flush()
            # The one write an order always makes; a read-only copy is returned.
            recorded = insert_copy(session, Order, order)
            # Crossing a threshold upgrades in the same transaction as the earning.
            tiers.review_member(session, member, now)
            if first_order and referrer_balance is not None:
                events.grant_referral(session, member, referrer_balance, now)
    except IntegrityError:
        # The same order_id was recorded concurrently (for another member): compare with it.
        existing = _find_order(session, fields["order_id"], fresh=True)
        if existing is None:
            raise
        return _replay(existing, request_hash), False
    return recorded, True


def _lock_member_and_referrer(
    session: Session, member: Member
) -> tuple[MemberBalance, MemberBalance | None]:
    """Lock the member and, if they were referred, the referrer, always in id order, so two
    members who referred each other never deadlock."""
    if member.referred_by_id is None:
        return ledger.lock_balance(session, member.id), None
    locked = {
        member_id: ledger.lock_balance(session, member_id)
        for member_id in sorted({member.id, member.referred_by_id})
    }
    return locked[member.id], locked[member.referred_by_id]


def find_order(session: Session, order_id: str) -> Order:
    """The order with this order_id. Raises OrderNotFound."""
    order = _find_order(session, order_id)
    if order is None:
        raise OrderNotFound(f"No order with order_id {order_id!r}.")
    return order


def order_refunds(session: Session, order: Order) -> list[Refund]:
    return list(
        session.execute(
            sa.select(Refund).where(Refund.order_pk == order.id).order_by(Refund.id)
        ).scalars()
    )


def _refund_amount(order: Order, fields: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    """The money a refund gives back (on the order's total after discount), and the order's
    lines with their refunded quantities moved on."""
    lines = [dict(line) for line in order.lines]
    if fields.get("amount") is not None:
        return fields["amount"], lines
    amount = 0
    for requested in fields["lines"]:
        line = next((li for li in lines if li["sku"] == requested["sku"]), None)
        if line is None:
            raise ValidationFailed({"lines": [f"Sku {requested['sku']!r} is not in the order."]})
        before = line["refunded_quantity"]
        after = before + requested["quantity"]
        if after > line["quantity"]:
            raise RefundExceedsOrder(
                f"Only {line['quantity'] - before} of sku {line['sku']!r} are left to refund."
            )
        # Cumulative flooring: refunding every unit gives back exactly the line's amount.
        amount += (
            line["net_amount"] * after // line["quantity"]
            - line["net_amount"] * before // line["quantity"]
        )
        line["refunded_quantity"] = after
    return amount, lines


_REFUND_EXISTS = sa.select(Refund.id).where(Refund.refund_id == sa.bindparam("refund_id"))
_MEMBER_OF_ORDER = sa.select(Order.member_id).where(Order.order_id == sa.bindparam("order_id"))


def refund_order(
    session: Session, order_id: str, fields: dict[str, Any], now: dt.datetime | None = None
) -> tuple[Refund, bool]:
    """Refund part or all of an order: reverse its earned points and give back the points it
    was paid with, both in proportion to the money refunded. Returns (refund, created).
    Exactly once per refund_id.

    Cumulative rounding makes the refunds of a whole order give back exactly what it earned
    and redeemed. Reversing points already spent may take the balance below zero (the one
    case allowed); later earnings repay it. Raises OrderNotFound, RefundConflict,
    RefundExceedsOrder, ValidationFailed.
    """
    now = now or utcnow()
    request_hash = body_fingerprint({"order_id": order_id, **fields})
    member_id = session.connection().execute(_MEMBER_OF_ORDER, {"order_id": order_id}).scalar()
    if member_id is None:
        raise OrderNotFound(f"No order with order_id {order_id!r}.")
    settings = config.current(session).settings
    with transaction(session):
        balance = ledger.lock_balance(session, member_id)
        order = _find_order(session, order_id, fresh=True)
        assert order is not None  # orders are never deleted
        known = {"refund_id": fields["refund_id"]}
        existing = (
            session.execute(sa.select(Refund).where(Refund.refund_id == fields["refund_id"]))
            .scalars()
            .one()
            if session.connection().execute(_REFUND_EXISTS, known).first() is not None
            else None
        )
        if existing is not None:
            if existing.request_hash != request_hash:
                raise RefundConflict(
                    f"Refund {fields['refund_id']!r} was already recorded differently."
                )
            return existing, False
        amount, lines = _refund_amount(order, fields)
        if amount <= 0 and fields.get("amount") is not None:
            raise ValidationFailed({"amount": ["Must be positive."]})
        before, after = order.refunded_amount, order.refunded_amount + amount
        if after > order.total:
            raise RefundExceedsOrder(
                f"Only {order.total - before} of the order's {order.total} are left to refund.",
                refundable=order.total - before,
            )
        reversed_points = policy.refund_share(order.points_earned, before, after, order.total)
        restored_points = policy.refund_share(order.redeemed_points, before, after, order.total)
        ledger.settle(session, balance, now)
        reference = f"refund:{fields['refund_id']}"
        if reversed_points:
            lot = session.get(PointLot, order.lot_id) if order.lot_id else None
            ledger.reverse_earned(
                session,
                balance,
                settings,
                lot,
                reversed_points,
                now,
                reference=reference,
                qualifying=-reversed_points,
                qualifying_at=order.placed_at,
            )
        if restored_points:
            ledger.credit(
                session,
                balance,
                settings,
                restored_points,
                kind=TransactionKind.RESTORE,
                source=Account.REDEEMED,
                now=now,
                pending=False,
                reference=reference,
            )
            if order.redemption_id:
                redemption = session.get(Redemption, order.redemption_id)
                if redemption is not None:
                    redemption.restored_points += restored_points
        member = session.get(Member, order.member_id)
        if member is not None and (reversed_points or restored_points):
            outbox.emit(
                session,
                "points.reversed",
                {
                    "member_id": member.external_id,
                    "order_id": order.order_id,
                    "refund_id": fields["refund_id"],
                    "points_reversed": reversed_points,
                    "points_restored": restored_points,
                },
                now,
            )
        if member is not None:
            # Keeps the tier until its retention runs out, however much was reversed.
            tiers.review_member(session, member, now)
        order.refunded_amount = after
        order.points_reversed += reversed_points
        order.points_restored += restored_points
        order.lines = lines
        values = {
            "refund_id": fields["refund_id"],
            "order_pk": order.id,
            "amount": amount,
            "lines": fields.get("lines"),
            "points_reversed": reversed_points,
            "points_restored": restored_points,
            "request_hash": request_hash,
            "created_at": now,
        }
        refund = insert_copy(session, Refund, values)  # a read-only copy, with its order
        refund.order = order
    return refund, True
