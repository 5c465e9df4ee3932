"""The set-based candidate queries: for one automation version, one SELECT of every member
for whom it is due now, with the window start that is its dedup key and the trigger's
specifics. Nothing here loops over members; `firing` inserts what these find."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import sqlalchemy as sa

from loyalty import days
from loyalty.automations.definitions import (
    DEFAULT_FACTOR,
    DEFAULT_MIN_PURCHASE_DAYS,
    parse_factor,
)
from loyalty.automations.models import AutomationFiring, TriggerKind
from loyalty.db import UTCDateTime, day_number
from loyalty.insight.models import MemberInsight
from loyalty.insight.segment_filter import metadata_condition
from loyalty.ledger.models import LedgerTransaction, LotState, MemberBalance, PointLot
from loyalty.members import birthdays
from loyalty.members.models import Member, MemberStatus
from loyalty.members.segments import SavedSegment, SegmentChange, SegmentMember
from loyalty.orders.models import Order, QuotedCart
from loyalty.rewards.models import Reward, RewardRedemption
from loyalty.tiers.models import Tier


@dataclass(frozen=True, slots=True)
class Evaluated:
    """An automation version as the queries need it: its row id, trigger, conditions,
    dedup window, and when the automation was created (a welcome series greets only those
    enrolled since)."""

    automation_id: int
    trigger: Mapping[str, Any]
    conditions: Mapping[str, Any]
    dedup_days: int | None
    created_at: dt.datetime
    # The program's rolling window of qualifying points (tier_at_risk counts over it).
    tier_window_months: int = 12
    # The program's time zone: its days count the delays and windows stated in days.
    zone: dt.tzinfo = dt.UTC
    # Its only action is the webhook, the shop's marketing message: members who consented
    # to marketing on no channel are not candidates (they are once they consent).
    marketing_only: bool = False

    @property
    def kind(self) -> TriggerKind:
        return TriggerKind(self.trigger["kind"])


def _purchases() -> sa.ColumnElement[bool]:
    # An order counts as a purchase while it is not wholly refunded (as in member insight).
    return Order.refunded_amount < Order.total


def due_select(automation: Evaluated, now: dt.datetime) -> sa.Subquery:
    """The members for whom the trigger is due at `now`, whatever their status and the
    conditions: columns member_id, window_start, and the kind's own (see ``details``)."""
    trigger = automation.trigger
    kind = automation.kind
    if kind == TriggerKind.ENROLLED:
        return (
            sa.select(Member.id.label("member_id"), Member.enrolled_at.label("window_start"))
            .where(
                Member.enrolled_at <= days.add_days(now, -trigger["delay_days"], automation.zone),
                Member.enrolled_at >= automation.created_at,
            )
            .subquery("due")
        )
    if kind == TriggerKind.INACTIVE:
        last = sa.func.max(Order.placed_at)
        return (
            sa.select(Order.member_id.label("member_id"), last.label("window_start"))
            .where(_purchases(), Order.placed_at <= now)
            .group_by(Order.member_id)
            .having(last <= days.add_days(now, -trigger["days"], automation.zone))
            .subquery("due")
        )
    if kind == TriggerKind.POINTS_EXPIRING:
        return (
            sa.select(
                PointLot.member_id.label("member_id"),
                sa.func.min(PointLot.expires_at).label("window_start"),
                sa.func.sum(PointLot.remaining).label("points"),
            )
            .where(
                PointLot.state == LotState.AVAILABLE.value,
                PointLot.remaining > 0,
                PointLot.expires_at > now,
                PointLot.expires_at <= days.add_days(now, trigger["within_days"], automation.zone),
            )
            .group_by(PointLot.member_id)
            .subquery("due")
        )
    if kind == TriggerKind.BIRTHDAY:
        today, midnight = birthdays.program_day(now, automation.zone)
        return (
            sa.select(
                Member.id.label("member_id"),
                sa.literal(midnight, UTCDateTime()).label("window_start"),
                Member.birthday.label("birthday"),
            )
            .where(birthdays.born_on(today))
            .subquery("due")
        )
    if kind == TriggerKind.SEGMENT_ENTERED:
        return _segment_entered(automation, now)
    if kind == TriggerKind.SEGMENT_LEFT:
        return _segment_left(automation, now)
    if kind == TriggerKind.REWARD_AFFORDABLE:
        return _reward_affordable(automation, now)
    if kind == TriggerKind.TIER_AT_RISK:
        return _tier_at_risk(automation, now)
    if kind == TriggerKind.CART_ABANDONED:
        return _cart_abandoned(automation, now)
    return _repurchase_due(trigger, now, automation.zone)


def _live_segment(key: str) -> sa.ScalarSelect[int]:
    return (
        sa.select(SavedSegment.id)
        .where(SavedSegment.key == key, SavedSegment.deleted_at.is_(None))
        .scalar_subquery()
    )


def _segment_entered(automation: Evaluated, now: dt.datetime) -> sa.Subquery:
    """Members in the saved segment who entered it (at an insight refresh) since the
    automation was created: the window start is the time they entered, so a member who
    leaves and enters again is due again."""
    return (
        sa.select(
            SegmentMember.member_id.label("member_id"),
            SegmentMember.entered_at.label("window_start"),
        )
        .where(
            SegmentMember.segment_id == _live_segment(automation.trigger["segment"]),
            SegmentMember.entered_at >= automation.created_at,
            SegmentMember.entered_at <= now,
        )
        .subquery("due")
    )


def _segment_left(automation: Evaluated, now: dt.datetime) -> sa.Subquery:
    """Members who left the saved segment (at an insight refresh, logged in
    segment_changes) since the automation was created and are still out of it: the window
    start is the latest time they left."""
    segment_id = _live_segment(automation.trigger["segment"])
    back_in = sa.exists().where(
        SegmentMember.segment_id == SegmentChange.segment_id,
        SegmentMember.member_id == SegmentChange.member_id,
    )
    return (
        sa.select(
            SegmentChange.member_id.label("member_id"),
            sa.func.max(SegmentChange.changed_at).label("window_start"),
        )
        .where(
            SegmentChange.segment_id == segment_id,
            SegmentChange.change == "left",
            SegmentChange.changed_at >= automation.created_at,
            SegmentChange.changed_at <= now,
            ~back_in,
        )
        .group_by(SegmentChange.member_id)
        .subquery("due")
    )


def _reward_affordable(automation: Evaluated, now: dt.datetime) -> sa.Subquery:
    """Per member, the first (lowest id) reward the automation has not fired for yet that is
    active, on offer at `now`, in stock, within the member's tier, not redeemed by them, and
    whose cost their available balance covers. The window start is the reward's creation
    time: once per reward per member."""
    tier_rank = (
        sa.select(Tier.rank).where(Tier.id == Member.tier_id).correlate(Member).scalar_subquery()
    )
    fired = sa.exists().where(
        AutomationFiring.automation_id == automation.automation_id,
        AutomationFiring.member_id == MemberBalance.member_id,
        AutomationFiring.window_start == Reward.created_at,
    )
    redeemed = sa.exists().where(
        RewardRedemption.reward_id == Reward.id,
        RewardRedemption.member_id == MemberBalance.member_id,
    )
    offered = [
        Reward.active.is_(True),
        sa.or_(Reward.stock.is_(None), Reward.stock > 0),
        sa.or_(Reward.starts_at.is_(None), Reward.starts_at <= now),
        sa.or_(Reward.ends_at.is_(None), Reward.ends_at > now),
        Reward.created_at <= now,
    ]
    if automation.trigger.get("reward_id"):
        offered.append(Reward.public_id == uuid.UUID(automation.trigger["reward_id"]))
    first = (
        sa.select(
            MemberBalance.member_id.label("member_id"), sa.func.min(Reward.id).label("reward_id")
        )
        .join(Reward, MemberBalance.available >= Reward.cost_points)
        .join(Member, Member.id == MemberBalance.member_id)
        .where(
            *offered,
            sa.or_(Reward.min_tier_rank.is_(None), tier_rank >= Reward.min_tier_rank),
            ~redeemed,
            ~fired,
        )
        .group_by(MemberBalance.member_id)
        .subquery("affordable")
    )
    return (
        sa.select(
            first.c.member_id,
            Reward.created_at.label("window_start"),
            Reward.public_id.label("reward_public_id"),
            Reward.name.label("reward_name"),
            Reward.cost_points.label("reward_cost"),
        )
        .join(Reward, Reward.id == first.c.reward_id)
        .subquery("due")
    )


def _tier_at_risk(automation: Evaluated, now: dt.datetime) -> sa.Subquery:
    """Members with a tier whose retention review (tier_retained_until) falls after `now`
    and within `within_days`, whose qualifying points over the rolling window as of `now`
    are below the tier's threshold: the tier is lost at the review unless they earn the
    difference. The window start is the review date: once per review."""
    since = days.add_months(now, -automation.tier_window_months, automation.zone)
    points = (
        sa.select(sa.func.coalesce(sa.func.sum(LedgerTransaction.qualifying), 0))
        .where(
            LedgerTransaction.member_id == Member.id,
            LedgerTransaction.qualifying_at > since,
            LedgerTransaction.qualifying_at <= now,
            LedgerTransaction.qualifying != 0,
        )
        .correlate(Member)
        .scalar_subquery()
    )
    review = Member.tier_retained_until
    return (
        sa.select(
            Member.id.label("member_id"),
            review.label("window_start"),
            Tier.code.label("tier"),
            points.label("qualifying_points"),
            (Tier.threshold - points).label("points_needed"),
        )
        .join(Tier, Tier.id == Member.tier_id)
        .where(
            review > now,
            review <= days.add_days(now, automation.trigger["within_days"], automation.zone),
            points < Tier.threshold,
        )
        .subquery("due")
    )


def _cart_abandoned(automation: Evaluated, now: dt.datetime) -> sa.Subquery:
    """Per member, the first (lowest id) quoted cart the automation has not fired for yet
    that is abandoned at `now`: last quoted at least `after_hours` ago and since the
    automation was created, with no order of the member's naming the cart (any order,
    refunded or not) placed at or after the cart's first quote. The window start is the
    cart's first quote: once per cart, however often it is quoted again."""
    bought = sa.exists().where(
        Order.member_id == QuotedCart.member_id,
        Order.cart_id == QuotedCart.cart_id,
        Order.placed_at >= QuotedCart.first_quoted_at,
    )
    fired = sa.exists().where(
        AutomationFiring.automation_id == automation.automation_id,
        AutomationFiring.member_id == QuotedCart.member_id,
        AutomationFiring.window_start == QuotedCart.first_quoted_at,
    )
    # One cart per member and pass, as the firing keeps one set of specifics per member:
    # a member with two abandoned carts hears of the second at the next pass.
    first = (
        sa.select(QuotedCart.member_id.label("member_id"), sa.func.min(QuotedCart.id).label("cart"))
        .where(
            QuotedCart.quoted_at <= now - dt.timedelta(hours=automation.trigger["after_hours"]),
            QuotedCart.quoted_at >= automation.created_at,
            ~bought,
            ~fired,
        )
        .group_by(QuotedCart.member_id)
        .subquery("abandoned")
    )
    return (
        sa.select(
            first.c.member_id,
            QuotedCart.first_quoted_at.label("window_start"),
            QuotedCart.cart_id,
            QuotedCart.quoted_at,
            QuotedCart.amount,
            QuotedCart.currency,
            QuotedCart.points_to_earn,
            # Not "items": a column collection and a row have methods of that name.
            QuotedCart.items.label("cart_items"),
        )
        .join(QuotedCart, QuotedCart.id == first.c.cart)
        .subquery("due")
    )


def _repurchase_due(trigger: Mapping[str, Any], now: dt.datetime, tz: dt.tzinfo) -> sa.Subquery:
    """Members whose typical gap between purchase days, times the factor, has passed since
    their last purchase day. The mean gap between consecutive distinct purchase days is
    (last - first) / (n - 1), so no window function is needed; compared multiplied out, in
    integers: (today - last) * (n - 1) * den >= num * (last - first)."""
    factor = parse_factor(trigger.get("factor", DEFAULT_FACTOR))
    least = trigger.get("min_purchase_days") or DEFAULT_MIN_PURCHASE_DAYS
    today = days.day_number(days.today(now, tz))
    day = day_number(Order.placed_at, tz)
    per_member = (
        sa.select(
            Order.member_id.label("member_id"),
            sa.func.count(sa.distinct(day)).label("purchase_days"),
            sa.func.min(day).label("first_day"),
            sa.func.max(day).label("last_day"),
            sa.func.max(Order.placed_at).label("last_order_at"),
        )
        .where(_purchases(), Order.placed_at <= now)
        .group_by(Order.member_id)
        .subquery("purchases")
    )
    n, first, last = per_member.c.purchase_days, per_member.c.first_day, per_member.c.last_day
    since = today - last
    own_gap_passed = sa.and_(
        n >= least,
        since * (n - 1) * factor.denominator >= factor.numerator * (last - first),
    )
    default_gap_passed = sa.and_(n < least, since >= trigger["default_gap_days"])
    return (
        sa.select(
            per_member.c.member_id,
            per_member.c.last_order_at.label("window_start"),
            n.label("purchase_days"),
            first.label("first_day"),
            last.label("last_day"),
        )
        .where(sa.or_(own_gap_passed, default_gap_passed))
        .subquery("due")
    )


def condition_clauses(
    conditions: Mapping[str, Any], member_id: sa.ColumnElement[int] | Any
) -> list[tuple[str, sa.ColumnElement[bool]]]:
    """Each condition that narrows the automation, named, as a clause on the member whose
    id is `member_id` (its `members` row joined as ``Member``); all must hold."""
    clauses: list[tuple[str, sa.ColumnElement[bool]]] = []
    if conditions.get("tiers"):
        clauses.append(
            (
                "tiers",
                Member.tier_id.in_(sa.select(Tier.id).where(Tier.code.in_(conditions["tiers"]))),
            )
        )
    if conditions.get("segments"):
        clauses.append(
            (
                "segments",
                sa.exists().where(
                    SegmentMember.member_id == member_id,
                    SegmentMember.segment_id == SavedSegment.id,
                    SavedSegment.key.in_(conditions["segments"]),
                    SavedSegment.deleted_at.is_(None),
                ),
            )
        )
    predicted = conditions.get("predicted_value") or {}
    if predicted.get("min") is not None or predicted.get("max") is not None:
        bounds = [MemberInsight.member_id == member_id]
        if predicted.get("min") is not None:
            bounds.append(MemberInsight.predicted_value >= predicted["min"])
        if predicted.get("max") is not None:
            bounds.append(MemberInsight.predicted_value <= predicted["max"])
        clauses.append(("predicted_value", sa.exists().where(*bounds)))
    for key, value in sorted((conditions.get("metadata") or {}).items()):
        clauses.append((f"metadata.{key}", metadata_condition(key, value)))
    return clauses


def fired_with_key(automation_id: int, due: sa.Subquery) -> sa.Exists:
    """Whether the automation already fired for the due member with this window start."""
    return sa.exists().where(
        AutomationFiring.automation_id == automation_id,
        AutomationFiring.member_id == due.c.member_id,
        AutomationFiring.window_start == due.c.window_start,
    )


def fired_within(
    automation_id: int,
    due: sa.Subquery,
    within: int,
    now: dt.datetime,
    tz: dt.tzinfo = days.UTC,
) -> sa.Exists:
    """Whether the automation fired for the due member in the `within` days (of the zone
    `tz`) before `now`."""
    return sa.exists().where(
        AutomationFiring.automation_id == automation_id,
        AutomationFiring.member_id == due.c.member_id,
        AutomationFiring.fired_at > days.add_days(now, -within, tz),
    )


def candidates(automation: Evaluated, now: dt.datetime) -> sa.Select[Any]:
    """One SELECT of every member the automation should fire for now: due, active, meeting
    every condition, consenting to marketing if the automation is nothing else, not fired
    with this key nor within the dedup window; ordered by member
    (every worker claims in one order, so their inserts never deadlock)."""
    due = due_select(automation, now)
    stmt = (
        sa.select(due)
        .join(Member, Member.id == due.c.member_id)
        .where(Member.status == MemberStatus.ACTIVE.value)
        .where(*(clause for _, clause in condition_clauses(automation.conditions, Member.id)))
        .where(~fired_with_key(automation.automation_id, due))
    )
    if automation.marketing_only:
        stmt = stmt.where(sa.or_(Member.marketing_email, Member.marketing_sms))
    if automation.dedup_days:
        stmt = stmt.where(
            ~fired_within(
                automation.automation_id, due, automation.dedup_days, now, automation.zone
            )
        )
    return stmt.order_by(due.c.member_id)


def details(
    kind: TriggerKind,
    trigger: Mapping[str, Any],
    row: Any,
    now: dt.datetime,
    tz: dt.tzinfo = days.UTC,
) -> dict[str, Any]:
    """The trigger's specifics for one candidate row, days counted in the program's zone
    `tz`, as the firing stores and the webhook sends them (JSON)."""
    window_start: dt.datetime = row.window_start
    if window_start.tzinfo is None:
        window_start = window_start.replace(tzinfo=dt.UTC)
    if kind == TriggerKind.ENROLLED:
        return {"delay_days": trigger["delay_days"], "enrolled_at": window_start.isoformat()}
    if kind == TriggerKind.INACTIVE:
        return {
            "last_order_at": window_start.isoformat(),
            "days_inactive": (days.today(now, tz) - days.today(window_start, tz)).days,
        }
    if kind == TriggerKind.POINTS_EXPIRING:
        return {"points": int(row.points), "expires_at": window_start.isoformat()}
    if kind == TriggerKind.BIRTHDAY:
        return {"birthday": row.birthday.isoformat()}
    if kind == TriggerKind.SEGMENT_ENTERED:
        return {"segment": trigger["segment"], "entered_at": window_start.isoformat()}
    if kind == TriggerKind.SEGMENT_LEFT:
        return {"segment": trigger["segment"], "left_at": window_start.isoformat()}
    if kind == TriggerKind.TIER_AT_RISK:
        return {
            "tier": row.tier,
            "review_at": window_start.isoformat(),
            "qualifying_points": int(row.qualifying_points),
            "points_needed": int(row.points_needed),
        }
    if kind == TriggerKind.CART_ABANDONED:
        quoted_at: dt.datetime = row.quoted_at
        if quoted_at.tzinfo is None:
            quoted_at = quoted_at.replace(tzinfo=dt.UTC)
        return {
            "after_hours": trigger["after_hours"],
            "cart": {
                "cart_id": row.cart_id,
                "amount": int(row.amount),
                "currency": row.currency,
                "points_to_earn": int(row.points_to_earn),
                "items": list(row.cart_items),
                "first_quoted_at": window_start.isoformat(),
                "quoted_at": quoted_at.isoformat(),
            },
        }
    if kind == TriggerKind.REWARD_AFFORDABLE:
        return {
            "reward": {
                "id": str(row.reward_public_id),
                "name": row.reward_name,
                "cost_points": int(row.reward_cost),
            }
        }
    today = days.day_number(days.today(now, tz))
    purchase_days = int(row.purchase_days)
    least = trigger.get("min_purchase_days") or DEFAULT_MIN_PURCHASE_DAYS
    if purchase_days >= least:
        gap = Fraction(int(row.last_day) - int(row.first_day), purchase_days - 1)
        typical = round(gap)
        due_after = gap * parse_factor(trigger.get("factor", DEFAULT_FACTOR))
    else:
        typical = trigger["default_gap_days"]
        due_after = Fraction(typical)
    return {
        "last_order_at": window_start.isoformat(),
        "purchase_days": purchase_days,
        "typical_gap_days": int(typical),
        "due_after_days": -((-due_after.numerator) // due_after.denominator),
        "days_since_last_purchase": today - int(row.last_day),
    }
