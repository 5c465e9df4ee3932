"""Pure earning arithmetic: how a cart or an event turns into points under a set of rules.

Order of application (deterministic, documented in the README):

1. The money each line earns on is its price times quantity, minus its proportional share of
   the order discount and of the value paid in points (largest-remainder allocation, so the
   shares add up exactly).
2. ``spend`` rules, by ascending priority then rule id: each earns
   floor(matching amount * points / per_amount) on the lines it matches.
3. ``multiplier`` rules, same order: each adds floor(base * (factor - 1)) where base is what
   the spend rules earned on the lines it matches (a 1.5x rule adds half again).
4. ``bonus`` rules, same order: fixed points when the order matches.
5. Each rule's contribution is floored once, then capped by its per-order cap and by what is
   left of its per-member period cap, then clipped to what is left of the rule's budget (its
   total across all members in the current budget period; the contribution says how many
   points the budget withheld). Contributions of 0 are left out of the breakdown.

No floats: factors are kept as integer fractions.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

from loyalty import days
from loyalty.errors import ValidationFailed


@dataclass(frozen=True, slots=True)
class Line:
    sku: str
    category: str | None
    quantity: int
    unit_price: int

    @property
    def gross(self) -> int:
        return self.quantity * self.unit_price


@dataclass(frozen=True, slots=True)
class Conditions:
    skus: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()
    tiers: frozenset[str] = frozenset()
    # Saved segment keys the member must be in one of (as of the last insight refresh).
    segments: frozenset[str] = frozenset()
    min_amount: int | None = None
    first_order: bool = False

    def matches_line(self, line: Line) -> bool:
        if not self.skus and not self.categories:
            return True
        return line.sku in self.skus or (
            line.category is not None and line.category in self.categories
        )


@dataclass(frozen=True, slots=True)
class Rule:
    rule_id: str
    version: int
    name: str
    kind: str  # spend | multiplier | bonus | event
    priority: int
    conditions: Conditions
    points: int = 0  # spend: points per `per_amount`; bonus/event: fixed points
    per_amount: int = 1
    factor: Fraction = Fraction(1)
    event_type: str | None = None
    cap_per_order: int | None = None
    starts_at: dt.datetime | None = None
    ends_at: dt.datetime | None = None
    # The experiment and arm that gave the member this rule (keys), when one did.
    experiment: str | None = None
    arm: str | None = None

    def active_at(self, when: dt.datetime) -> bool:
        return (self.starts_at is None or self.starts_at <= when) and (
            self.ends_at is None or when < self.ends_at
        )


@dataclass(frozen=True, slots=True)
class Contribution:
    rule_id: str
    version: int
    name: str
    kind: str
    points: int
    # Points the rule's budget withheld: it would have awarded points + budget_withheld.
    budget_withheld: int = 0
    experiment: str | None = None
    arm: str | None = None

    def as_dict(self) -> dict[str, str | int]:
        """As kept with an order or event (JSON), so its breakdown outlives rule changes."""
        kept: dict[str, str | int] = {
            "rule_id": self.rule_id,
            "version": self.version,
            "name": self.name,
            "kind": self.kind,
            "points": self.points,
        }
        if self.budget_withheld:
            kept["budget_withheld"] = self.budget_withheld
        if self.experiment is not None and self.arm is not None:
            kept["experiment"] = self.experiment
            kept["arm"] = self.arm
        return kept


@dataclass(frozen=True, slots=True)
class MemberContext:
    tier: str | None = None
    # The saved segments the member is in (only looked up when a rule names segments).
    segments: frozenset[str] = frozenset()
    first_order: bool = True
    # What each capped rule may still award this member in its period (rule id -> points).
    remaining_caps: dict[str, int] = field(default_factory=dict)
    # What each budgeted rule may still award anyone in its budget period (rule id -> points).
    remaining_budgets: dict[str, int] = field(default_factory=dict)


def allocate(total: int, weights: Sequence[int]) -> list[int]:
    """Split `total` over `weights` proportionally, in integers that sum exactly to `total`
    (largest remainder; ties go to the earlier weight)."""
    weight_sum = sum(weights)
    if weight_sum == 0:
        return [0] * len(weights)
    shares = [total * w // weight_sum for w in weights]
    remainders = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % weight_sum), i))
    for i in remainders[: total - sum(shares)]:
        shares[i] += 1
    return shares


def net_amounts(lines: Sequence[Line], reduction: int) -> list[int]:
    """What each line earns on after the order-level `reduction` (discount plus the value paid
    in points), shared proportionally to the lines' gross amounts."""
    gross = [line.gross for line in lines]
    reduction = min(max(reduction, 0), sum(gross))
    return [g - r for g, r in zip(gross, allocate(reduction, gross), strict=True)]


def _eligible(rule: Rule, context: MemberContext, when: dt.datetime) -> bool:
    if not rule.active_at(when):
        return False
    if rule.conditions.tiers and context.tier not in rule.conditions.tiers:
        return False
    return not (rule.conditions.segments and not rule.conditions.segments & context.segments)


def _capped(rule: Rule, points: int, context: MemberContext) -> tuple[int, int]:
    """(the points after the rule's caps and budget, the points its budget withheld)."""
    if rule.cap_per_order is not None:
        points = min(points, rule.cap_per_order)
    if rule.rule_id in context.remaining_caps:
        points = min(points, max(context.remaining_caps[rule.rule_id], 0))
    points = max(points, 0)
    if rule.rule_id not in context.remaining_budgets:
        return points, 0
    allowed = min(points, max(context.remaining_budgets[rule.rule_id], 0))
    return allowed, points - allowed


def order_points(
    rules: Sequence[Rule],
    lines: Sequence[Line],
    reduction: int,
    context: MemberContext,
    when: dt.datetime,
) -> tuple[int, list[Contribution]]:
    """Points an order earns and the contribution of each rule, in application order."""
    ordered = sorted(rules, key=lambda r: (r.priority, r.rule_id))
    nets = net_amounts(lines, reduction)
    total_net = sum(nets)
    breakdown: list[Contribution] = []
    # The spend rules that applied, with the (capped) points each earned, for multipliers.
    spend_rules: list[tuple[Rule, int]] = []

    def spend_on(rule: Rule, matched: Sequence[bool]) -> int:
        amount = sum(n for n, m in zip(nets, matched, strict=True) if m)
        return amount * rule.points // rule.per_amount

    def applying(kind: str) -> Iterator[Rule]:
        """The rules of `kind` that apply to this order, in application order: active, for
        the member's tier, and with the order at their minimum amount or over it."""
        for rule in ordered:
            if rule.kind != kind or not _eligible(rule, context, when):
                continue
            if rule.conditions.min_amount is not None and total_net < rule.conditions.min_amount:
                continue
            yield rule

    for rule in applying("spend"):
        matched = [rule.conditions.matches_line(line) for line in lines]
        earned, withheld = _capped(rule, spend_on(rule, matched), context)
        spend_rules.append((rule, earned))
        _add(breakdown, rule, earned, withheld)

    for rule in applying("multiplier"):
        both = [rule.conditions.matches_line(line) for line in lines]
        # Never more than a (capped) spend rule actually earned.
        base = sum(
            min(
                earned,
                spend_on(
                    spend,
                    [
                        b and spend.conditions.matches_line(line)
                        for b, line in zip(both, lines, strict=True)
                    ],
                ),
            )
            for spend, earned in spend_rules
        )
        extra = base * (rule.factor.numerator - rule.factor.denominator) // rule.factor.denominator
        _add(breakdown, rule, *_capped(rule, extra, context))

    for rule in applying("bonus"):
        conditions = rule.conditions
        if conditions.first_order and not context.first_order:
            continue
        if (conditions.skus or conditions.categories) and not any(
            conditions.matches_line(line) for line in lines
        ):
            continue
        _add(breakdown, rule, *_capped(rule, rule.points, context))

    return sum(c.points for c in breakdown), breakdown


def event_points(
    rules: Sequence[Rule], event_type: str, context: MemberContext, when: dt.datetime
) -> tuple[int, list[Contribution]]:
    """Points an event of `event_type` earns, by every active event rule for that type."""
    breakdown: list[Contribution] = []
    for rule in sorted(rules, key=lambda r: (r.priority, r.rule_id)):
        if rule.kind != "event" or rule.event_type != event_type:
            continue
        if not _eligible(rule, context, when):
            continue
        _add(breakdown, rule, *_capped(rule, rule.points, context))
    return sum(c.points for c in breakdown), breakdown


def granted_points(
    rule: Rule, points: int, context: MemberContext, when: dt.datetime
) -> tuple[int, list[Contribution]]:
    """Points a grant of `points` through the bonus `rule` gives (an automation's grant): the
    rule's active window and member conditions, then its caps and what its budget has left,
    exactly as for an order's bonus."""
    breakdown: list[Contribution] = []
    if _eligible(rule, context, when):
        _add(breakdown, rule, *_capped(rule, points, context))
    return sum(c.points for c in breakdown), breakdown


def _add(breakdown: list[Contribution], rule: Rule, points: int, withheld: int = 0) -> None:
    if points > 0:
        breakdown.append(
            Contribution(
                rule.rule_id,
                rule.version,
                rule.name,
                rule.kind,
                points,
                withheld,
                experiment=rule.experiment,
                arm=rule.arm,
            )
        )


def refund_share(total: int, refunded_before: int, refunded_after: int, base: int) -> int:
    """The part of `total` (points earned or redeemed) that a refund moving the refunded
    money from `refunded_before` to `refunded_after` (out of `base`) gives back.

    Cumulative flooring: after any sequence of partial refunds the shares sum to
    floor(total * refunded / base), and a full refund gives back exactly `total`.
    """
    if base <= 0:
        return total if refunded_after > refunded_before else 0
    return total * refunded_after // base - total * refunded_before // base


def parse_factor(raw: str) -> Fraction:
    """A decimal multiplier such as "1.5" as an exact fraction (never a float)."""
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ValidationFailed({"factor": ["Not a decimal number."]}) from None
    if not value.is_finite() or value <= 1 or value > 100 or value.as_tuple().exponent < -4:  # type: ignore[operator]
        raise ValidationFailed(
            {"factor": ["Must be above 1 and at most 100, with up to 4 decimals."]}
        )
    return Fraction(value)


def to_policy(public_id: object, kind: str, version: int, fields: Mapping[str, Any]) -> Rule:
    """A rule definition as the pure policy sees it."""
    config, conditions, caps = fields["config"], fields["conditions"], fields["caps"]
    return Rule(
        rule_id=str(public_id),
        version=version,
        name=fields["name"],
        kind=kind,
        priority=fields["priority"],
        conditions=Conditions(
            skus=frozenset(conditions.get("skus") or ()),
            categories=frozenset(conditions.get("categories") or ()),
            tiers=frozenset(conditions.get("tiers") or ()),
            segments=frozenset(conditions.get("segments") or ()),
            min_amount=conditions.get("min_amount"),
            first_order=bool(conditions.get("first_order")),
        ),
        points=config.get("points") or 0,
        per_amount=config.get("per_amount") or 1,
        factor=parse_factor(config["factor"]) if config.get("factor") else Fraction(1),
        event_type=config.get("event_type"),
        cap_per_order=caps.get("per_order"),
        starts_at=fields.get("starts_at"),
        ends_at=fields.get("ends_at"),
    )


class BudgetPeriod(enum.StrEnum):
    """How often a rule's budget starts afresh (in the program's time zone): never, or each
    day, ISO week (from Monday 00:00) or calendar month."""

    LIFETIME = "lifetime"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


# The one period of a lifetime budget starts here (a period start is part of a usage row's key).
LIFETIME_START = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class Budget:
    """A rule's total across all members per period: in points, or in money (minor units of
    the program's currency) worth that many points at the program's point value."""

    period: BudgetPeriod
    points: int | None = None
    amount: int | None = None

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> Budget:
        """A budget from its stored shape ({"period", "points"} or {"period", "amount"})."""
        return cls(BudgetPeriod(fields["period"]), fields.get("points"), fields.get("amount"))

    def limit(self, point_value_points: int, point_value_amount: int) -> int:
        """The budget in points: a money budget converted at the point value (`points` are
        worth `amount`), rounded down so it never buys more than its money."""
        if self.points is not None:
            return self.points
        assert self.amount is not None
        return self.amount * point_value_points // point_value_amount


def budget_period(
    period: BudgetPeriod, when: dt.datetime, tz: dt.tzinfo = days.UTC
) -> tuple[dt.datetime, dt.datetime | None]:
    """The budget period `when` falls in: the day, ISO week or month of the program's zone
    `tz`, as (start, end) in UTC; a lifetime has no end."""
    if period == BudgetPeriod.LIFETIME:
        return LIFETIME_START, None
    today = days.today(when, tz)
    if period == BudgetPeriod.DAY:
        return days.day_bounds(today, tz)
    if period == BudgetPeriod.WEEK:
        monday = days.week_start(today)
        return days.start_of(monday, tz), days.start_of(monday + dt.timedelta(days=7), tz)
    return days.start_of(days.month_start(today), tz), days.start_of(days.next_month(today), tz)
