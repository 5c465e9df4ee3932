"""What a cart earns: the quote the checkout asks for on every cart, the earning an order
records, and the rules simulator."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from loyalty.db import transaction, utcnow
from loyalty.errors import ValidationFailed
from loyalty.experiments.models import ExposureSource
from loyalty.ledger.exceptions import MemberInactive
from loyalty.ledger.policy import MAX_POINTS
from loyalty.members.lookup import find_member
from loyalty.members.models import Member
from loyalty.orders.exceptions import CurrencyMismatch
from loyalty.orders.models import Order, QuotedCart
from loyalty.program import config
from loyalty.program.models import ProgramSettings
from loyalty.rules import budgets, policy
from loyalty.rules.budgets import Reservation
from loyalty.rules.definitions import check_definition
from loyalty.rules.earning import (
    ActiveRule,
    active_rules,
    experiment_rules,
    member_facts,
    member_segments,
    remaining_caps,
    tier_benefits,
    tier_boost,
    within_budgets,
)
from loyalty.rules.models import RuleKind
from loyalty.settlement.services import settled_snapshot
from loyalty.tiers import services as tiers

ORDER_RULE_KINDS = ("spend", "multiplier", "bonus")


@dataclass(frozen=True, slots=True)
class CartLine:
    sku: str
    category: str | None
    quantity: int
    unit_price: int  # minor units

    def as_dict(self) -> dict[str, Any]:
        return {
            "sku": self.sku,
            "category": self.category,
            "quantity": self.quantity,
            "unit_price": self.unit_price,
        }


@dataclass(frozen=True, slots=True)
class QuoteCart:
    external_id: str  # the member's
    currency: str
    lines: tuple[CartLine, ...]
    discount: int = 0
    redeem_points: int = 0
    # The shop's id of the cart: the quote records it for the member (see ``record_cart``).
    cart_id: str | None = None


def cart_lines(lines: Sequence[CartLine]) -> list[policy.Line]:
    return [policy.Line(line.sku, line.category, line.quantity, line.unit_price) for line in lines]


def check_currency(settings: ProgramSettings, currency: str) -> None:
    if currency != settings.currency:
        raise CurrencyMismatch(
            f"The program runs in {settings.currency}; this cart is in {currency}."
        )


def check_discount(lines: Sequence[policy.Line], discount: int) -> int:
    subtotal = sum(line.gross for line in lines)
    if discount > subtotal:
        raise ValidationFailed({"discount": ["Must not exceed the sum of the lines."]})
    return subtotal


def earn(
    session: Session,
    member: Member,
    lines: Sequence[policy.Line],
    reduction: int,
    when: dt.datetime,
    now: dt.datetime,
    first_order: bool,
    *,
    reserve: bool = False,
) -> tuple[int, list[policy.Contribution], list[ActiveRule], Reservation]:
    """What the cart earns under the active order rules (and the member's tier boost), as the
    live experiments give them to the member (their exposures recorded, as an order's when
    `reserve`, else a quote's): (points, breakdown, the rules, the budgets reserved).
    `reserve`: for an award, locking the budgets the award will charge (see
    ``within_budgets``); a quote reserves nothing.
    Raises ValidationFailed past MAX_POINTS."""
    tier = tiers.member_tier_code(session, member)
    facts = member_facts(member, tier)
    # An award is the order; without one, the quote.
    source = ExposureSource.ORDER if reserve else ExposureSource.QUOTE
    active = experiment_rules(session, active_rules(session, ORDER_RULE_KINDS), facts, now, source)
    boost = tier_boost(session, member, tier_benefits(session, member, facts, now, source))
    candidates = [rule.policy for rule in active] + boost
    context = policy.MemberContext(
        tier=tier,
        segments=member_segments(session, member, candidates),
        first_order=first_order,
        remaining_caps=remaining_caps(session, member.id, active, now),
    )
    points, breakdown, reserved = within_budgets(
        session,
        active,
        context,
        lambda ctx: policy.order_points(candidates, lines, reduction, ctx, when),
        now,
        reserve=reserve,
    )
    if points > MAX_POINTS:
        # One movement carries at most MAX_POINTS, so no sum of them can overflow.
        raise ValidationFailed(
            {"lines": [f"The cart would earn {points} points; at most {MAX_POINTS} at once."]}
        )
    return points, breakdown, active, reserved


def first_order(session: Session, member: Member) -> bool:
    """Whether this is the member's first order. Asked only when the answer matters (a
    referral to grant, a rule with a first-order condition): it is a query per order."""
    matters = member.referred_by_id is not None or any(
        rule.policy.conditions.first_order for rule in active_rules(session, ORDER_RULE_KINDS)
    )
    return matters and _has_no_order(session, member.id)


_ANY_ORDER = sa.select(Order.id).where(Order.member_id == sa.bindparam("member_id")).limit(1)


def _has_no_order(session: Session, member_id: int) -> bool:
    return session.connection().execute(_ANY_ORDER, {"member_id": member_id}).first() is None


def max_redeemable(settings: ProgramSettings, available: int, total: int) -> int:
    """The most points a member may pay with on an order of `total` (minor units): limited by
    their balance and the program's share of an order payable in points; 0 below the
    program's minimum redemption."""
    max_value = total * settings.max_redemption_percent // 100
    by_value = max_value * settings.point_value_points // settings.point_value_amount
    points = min(max(available, 0), by_value)
    return points if points >= max(settings.min_redemption_points, 1) else 0


@dataclass(frozen=True, slots=True)
class Quote:
    external_id: str  # the member's
    currency: str
    total: int
    points_to_earn: int
    breakdown: tuple[policy.Contribution, ...]
    available_points: int
    max_redeemable_points: int
    max_redeemable_value: int


def quote(session: Session, cart: QuoteCart, now: dt.datetime | None = None) -> Quote:
    """Points the cart would earn (and why) and the most points the member may pay with.

    Writes nothing but, for a cart with a `cart_id`, the cart itself (``record_cart``, in
    the same transaction). Raises MemberNotFound, MemberInactive, CurrencyMismatch,
    ValidationFailed (and records nothing then).
    """
    with transaction(session):
        return _quote(session, cart, now or utcnow())


def _quote(session: Session, cart: QuoteCart, now: dt.datetime) -> Quote:
    # Settled first: a tier whose retention ran out no longer boosts what the cart earns.
    member, balance, program = settled_snapshot(session, cart.external_id, now)
    settings = program.settings
    check_currency(settings, cart.currency)
    if not member.is_active:
        raise MemberInactive(f"Member {member.external_id!r} is {member.status}.")
    lines = cart_lines(cart.lines)
    discount = cart.discount
    total = check_discount(lines, discount) - discount
    redeem_points = cart.redeem_points
    reduction = discount + settings.points_value(redeem_points)
    points, breakdown, _, _ = earn(
        session, member, lines, reduction, now, now, first_order(session, member)
    )
    best = max_redeemable(settings, balance.available, total)
    if cart.cart_id is not None:
        record_cart(session, member.id, cart, settings.currency, total, points, now)
    return Quote(
        external_id=member.external_id,
        currency=settings.currency,
        total=total,
        points_to_earn=points,
        breakdown=tuple(breakdown),
        available_points=max(balance.available, 0),
        max_redeemable_points=best,
        max_redeemable_value=settings.points_value(best),
    )


_UPDATED_ON_REQUOTE = ("quoted_at", "amount", "currency", "points_to_earn", "items")


def record_cart(
    session: Session,
    member_id: int,
    cart: QuoteCart,
    currency: str,
    amount: int,
    points_to_earn: int,
    now: dt.datetime,
) -> None:
    """Record the quoted cart for the member: one upsert on (member, cart id). The first
    quote's time is kept (the cart's identity for the cart_abandoned trigger); the last
    quote's time, total, points and lines replace the previous. The caller commits."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    insert = dialect.insert(QuotedCart).values(
        member_id=member_id,
        cart_id=cart.cart_id,
        first_quoted_at=now,
        quoted_at=now,
        amount=amount,
        currency=currency,
        points_to_earn=points_to_earn,
        items=[line.as_dict() for line in cart.lines],
    )
    # ON CONFLICT DO UPDATE: two quotes of one cart at once never fail on the unique key;
    # on PostgreSQL the second waits for the first and then updates its row.
    session.execute(
        insert.on_conflict_do_update(
            index_elements=["member_id", "cart_id"],
            set_={name: insert.excluded[name] for name in _UPDATED_ON_REQUOTE},
        )
    )


def simulate(
    session: Session,
    *,
    external_id: str | None,
    lines: Sequence[dict[str, Any]],
    discount: int,
    event_type: str | None,
    drafts: Sequence[dict[str, Any]],
    include_active: bool,
    now: dt.datetime | None = None,
) -> tuple[int, list[policy.Contribution]]:
    """What a cart (or an event of `event_type`) would earn under the active rules and/or
    `drafts` (rule definitions not saved), for the member `external_id` if given. Writes
    nothing.

    Raises MemberNotFound, ValidationFailed for an invalid draft.
    """
    now = now or utcnow()
    member = find_member(session, external_id) if external_id else None
    active = active_rules(session) if include_active else []
    candidates = [rule.policy for rule in active]
    if not event_type:
        candidates += tier_boost(session, member)
    # A draft's budget has nothing used yet: all of it is left.
    draft_budgets: dict[str, int] = {}
    settings = config.current(session).settings
    for number, draft in enumerate(drafts, start=1):
        check_definition(RuleKind(draft["kind"]), draft)
        candidates.append(policy.to_policy(f"draft-{number}", draft["kind"], 0, draft))
        if draft.get("budget"):
            budget = policy.Budget.from_fields(draft["budget"])
            draft_budgets[f"draft-{number}"] = budgets.limit_of(budget, settings)
    context = policy.MemberContext(
        tier=tiers.member_tier_code(session, member) if member else None,
        segments=member_segments(session, member, candidates),
        first_order=member is None or _has_no_order(session, member.id),
        remaining_caps=remaining_caps(session, member.id if member else None, active, now),
    )
    cart = [
        policy.Line(li["sku"], li.get("category"), li["quantity"], li["unit_price"]) for li in lines
    ]

    def compute(ctx: policy.MemberContext) -> tuple[int, list[policy.Contribution]]:
        ctx = dataclasses.replace(ctx, remaining_budgets=ctx.remaining_budgets | draft_budgets)
        if event_type:
            return policy.event_points(candidates, event_type, ctx, now)
        return policy.order_points(candidates, cart, discount, ctx, now)

    points, breakdown, _ = within_budgets(session, active, context, compute, now, reserve=False)
    return points, breakdown
