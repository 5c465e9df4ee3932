"""Refunds: the points an order earned and was paid with, given back in proportion."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.db import insert_copy, transaction, utcnow
from loyalty.errors import ValidationFailed
from loyalty.idempotency.services import body_fingerprint
from loyalty.ledger.models import (
    Account,
    PointLot,
    Redemption,
    TransactionKind,
)
from loyalty.ledger.postings import credit, lock_balance
from loyalty.ledger.spending import reverse_earned
from loyalty.members.models import Member
from loyalty.orders.exceptions import (
    OrderNotFound,
    RefundConflict,
    RefundExceedsOrder,
)
from loyalty.orders.models import Order, Refund
from loyalty.orders.services import order_by_id
from loyalty.program import config
from loyalty.referrals import services as referrals
from loyalty.rules import budgets, policy
from loyalty.settlement.services import settle_member
from loyalty.tiers import services as tiers
from loyalty.webhooks import outbox


@dataclass(frozen=True, slots=True)
class RefundLine:
    sku: str
    quantity: int


@dataclass(frozen=True, slots=True)
class RefundOrder:
    """Give back part of an order's money: some units of its lines, or an amount."""

    refund_id: str  # the shop's
    lines: tuple[RefundLine, ...] | None = None
    amount: int | None = None  # minor units, instead of lines

    def fingerprint(self, order_id: str) -> str:
        """The refund as the API received it, hashed (see PlaceOrder.fingerprint)."""
        given: dict[str, Any] = {"order_id": order_id, "refund_id": self.refund_id}
        if self.lines is not None:
            given["lines"] = [dataclasses.asdict(line) for line in self.lines]
        if self.amount is not None:
            given["amount"] = self.amount
        return body_fingerprint(given)


def _refund_amount(order: Order, command: RefundOrder) -> tuple[int, list[dict[str, Any]]]:
    """The money a refund gives back (on the order's total after discount), and the order's
    lines with their refunded quantities moved on."""
    lines = [dict(line) for line in order.lines]
    if command.amount is not None:
        return command.amount, lines
    amount = 0
    for requested in command.lines or ():
        line = next((li for li in lines if li["sku"] == requested.sku), None)
        if line is None:
            raise ValidationFailed({"lines": [f"Sku {requested.sku!r} is not in the order."]})
        before = line["refunded_quantity"]
        after = before + requested.quantity
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


@dataclass(frozen=True, slots=True)
class RecordedRefund:
    """A refund as recorded, with what it gave back."""

    refund_id: str
    order_id: str
    currency: str
    amount: int
    points_reversed: int
    points_restored: int
    created_at: dt.datetime


def _recorded(refund: Refund, order: Order) -> RecordedRefund:
    return RecordedRefund(
        refund_id=refund.refund_id,
        order_id=order.order_id,
        currency=order.currency,
        amount=refund.amount,
        points_reversed=refund.points_reversed,
        points_restored=refund.points_restored,
        created_at=refund.created_at,
    )


_REFUND_EXISTS = sa.select(Refund.id).where(Refund.refund_id == sa.bindparam("refund_id"))
_MEMBER_OF_ORDER = sa.select(Order.member_id).where(Order.order_id == sa.bindparam("order_id"))


def refund_order(
    session: Session, order_id: str, command: RefundOrder, now: dt.datetime | None = None
) -> tuple[RecordedRefund, bool]:
    """Refund part or all of an order: reverse its earned points and give back the points it
    was paid with, both in proportion to the money refunded. Returns (refund, created).
    Exactly once per refund_id.

    Cumulative rounding makes the refunds of a whole order give back exactly what it earned
    and redeemed. Reversing points already spent may take the balance below zero (the one
    case allowed); later earnings repay it. Raises OrderNotFound, RefundConflict,
    RefundExceedsOrder, ValidationFailed.
    """
    now = now or utcnow()
    request_hash = command.fingerprint(order_id)
    member_id = session.connection().execute(_MEMBER_OF_ORDER, {"order_id": order_id}).scalar()
    if member_id is None:
        raise OrderNotFound(f"No order with order_id {order_id!r}.")
    settings = config.current(session).settings
    with transaction(session):
        balance = lock_balance(session, member_id)
        order = order_by_id(session, order_id, fresh=True)
        assert order is not None  # orders are never deleted
        known = {"refund_id": command.refund_id}
        existing = (
            session.execute(sa.select(Refund).where(Refund.refund_id == command.refund_id))
            .scalars()
            .one()
            if session.connection().execute(_REFUND_EXISTS, known).first() is not None
            else None
        )
        if existing is not None:
            if existing.request_hash != request_hash:
                raise RefundConflict(
                    f"Refund {command.refund_id!r} was already recorded differently."
                )
            return _recorded(existing, order), False
        amount, lines = _refund_amount(order, command)
        if amount <= 0 and command.amount is not None:
            raise ValidationFailed({"amount": ["Must be positive."]})
        before, after = order.refunded_amount, order.refunded_amount + amount
        if after > order.total:
            raise RefundExceedsOrder(
                f"Only {order.total - before} of the order's {order.total} are left to refund.",
                refundable=order.total - before,
            )
        reversed_points = policy.refund_share(order.points_earned, before, after, order.total)
        restored_points = policy.refund_share(order.redeemed_points, before, after, order.total)
        settle_member(session, balance, now)
        reference = f"refund:{command.refund_id}"
        if reversed_points:
            lot = session.get(PointLot, order.lot_id) if order.lot_id else None
            reverse_earned(
                session,
                balance,
                settings,
                lot,
                reversed_points,
                now,
                reference=reference,
                details={"order_id": order.order_id},
                qualifying=-reversed_points,
                qualifying_at=order.placed_at,
            )
        # Each budgeted rule's share goes back to the budget period it was counted in (asked
        # even when no point is reversed now: the per-rule shares floor on their own).
        budgets.give_back(session, member_id, f"order:{order.order_id}", before, after, order.total)
        if restored_points:
            credit(
                session,
                balance,
                settings,
                restored_points,
                kind=TransactionKind.RESTORE,
                source=Account.REDEEMED,
                now=now,
                pending=False,
                reference=reference,
                details={"order_id": order.order_id},
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
                    "refund_id": command.refund_id,
                    "points_reversed": reversed_points,
                    "points_restored": restored_points,
                },
                now,
            )
        if member is not None:
            # Keeps the tier until its retention runs out, however much was reversed.
            tiers.review_member(session, member, now)
        # A refund inside the return window of a referred member's first order cancels the
        # referral's reward before it is paid.
        referrals.order_refunded(session, order.member_id, order.order_id, now)
        order.refunded_amount = after
        order.points_reversed += reversed_points
        order.points_restored += restored_points
        order.lines = lines
        values = {
            "refund_id": command.refund_id,
            "order_pk": order.id,
            "amount": amount,
            "lines": (
                [dataclasses.asdict(line) for line in command.lines] if command.lines else None
            ),
            "points_reversed": reversed_points,
            "points_restored": restored_points,
            "request_hash": request_hash,
            "created_at": now,
        }
        refund = insert_copy(session, Refund, values)
    return _recorded(refund, order), True
