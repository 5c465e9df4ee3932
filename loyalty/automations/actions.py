"""What firing does for the firings a batch just inserted (``firing.fire_batch``), in its
transaction: the grants (points through an earning rule, a coupon, a benefit), then one
automation.fired event each.

An automation's budget (what its grant_points and grant_coupon actions may give across all
members per period) is counted in its usage row, locked by each batch before any member's
balance (``rules.budgets``): two workers firing different members of one automation queue
for it, so a period never gives more than the budget."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.automations.definitions import BUDGETED_ACTIONS
from loyalty.automations.models import (
    ActionType,
    Automation,
    AutomationFiring,
    AutomationVersion,
    Withheld,
)
from loyalty.automations.services import BUDGETS, grant_actions
from loyalty.ledger.models import MemberBalance
from loyalty.ledger.postings import lock_balance
from loyalty.members.models import Member
from loyalty.program import config
from loyalty.rewards import services as rewards
from loyalty.rewards.exceptions import OutOfStock
from loyalty.rewards.models import Reward
from loyalty.rules import budgets, policy
from loyalty.rules import earning as rules
from loyalty.settlement.services import settle_member
from loyalty.tiers import benefits
from loyalty.tiers import services as tiers
from loyalty.tiers.models import Tier
from loyalty.webhooks import outbox


@dataclass(frozen=True, order=True, slots=True)
class Firing:
    member_id: int
    public_id: uuid.UUID
    row_id: int


@dataclass
class _Granted:
    """What one firing's grants gave the member, and which gave nothing and why."""

    points: int = 0
    coupon: rewards.Coupon | None = None
    benefit: benefits.Benefit | None = None
    withheld: list[dict[str, str]] = field(default_factory=list)

    def withhold(self, action: ActionType, reason: Withheld) -> None:
        self.withheld.append({"action": action.value, "reason": reason.value})


class _Budget:
    """The automation's budget row of the period, locked by the batch's transaction before
    any member's balance (the order every batch takes them in), charged grant by grant."""

    def __init__(
        self,
        session: Session,
        automation: Automation,
        version: AutomationVersion,
        now: dt.datetime,
    ) -> None:
        self.session, self.automation, self.version, self.now = session, automation, version, now
        self.budget = policy.Budget.from_fields(version.budget or {})
        settings = config.current(session).settings
        self.usage_id, self.view = budgets.lock_row(
            session, BUDGETS, automation.id, self.budget, settings, now
        )

    @property
    def left(self) -> int:
        return self.view.remaining

    def charge(self, points: int, *, short: bool = False) -> None:
        """Count `points` given (`short`: less than meant, for want of budget); the grant
        that uses the period up announces it, once."""
        self.view, used_up = budgets.charge_row(
            self.session, BUDGETS, self.usage_id, self.view, points, self.now, short=short
        )
        if used_up:
            outbox.emit(self.session, "automation.budget_exhausted", self._exhausted(), self.now)

    def _exhausted(self) -> dict[str, Any]:
        return {
            "automation": {
                "id": str(self.automation.public_id),
                "name": self.version.name,
                "version": self.version.version,
            },
            "budget": rules.budget_fields(self.budget),
            **budgets.period_fields(self.view),
        }


@dataclass
class Tally:
    """What a batch's actions gave: points, coupons and benefits."""

    points: int = 0
    coupons: int = 0
    benefits: int = 0


def act(
    session: Session,
    automation: Automation,
    version: AutomationVersion,
    firings: Sequence[Firing],
    details: Mapping[int, dict[str, Any]],
    now: dt.datetime,
) -> Tally:
    """The version's actions for the firings just inserted, in member order: the grants
    first (points, coupon, benefit, so the webhook shows the balance after them), then one
    automation.fired event each for the members who consented to marketing on a channel
    (the grants are the program's, given either way; the webhook is the shop's message)."""
    actions = {ActionType(action["type"]): action for action in version.actions}
    budget = (
        _Budget(session, automation, version, now)
        if version.budget and BUDGETED_ACTIONS & actions.keys()
        else None
    )
    grant = grant_actions(version.actions)
    coupon = actions.get(ActionType.GRANT_COUPON)
    benefit = actions.get(ActionType.GRANT_BENEFIT)
    # Read once per batch: a reward closed mid-batch still grants to the batch's end.
    reward = (
        rewards.grantable_reward(session, uuid.UUID(coupon["reward_id"]), now) if coupon else None
    )
    granted: dict[int, _Granted] = {}
    tally = Tally()
    for each in firings:
        outcome = granted[each.member_id] = _Granted()
        if grant is not None:
            outcome.points = _grant_points(
                session, automation, version, grant, each, now, budget, outcome
            )
            tally.points += outcome.points
        if coupon is not None:
            outcome.coupon = _grant_coupon(session, coupon, reward, each, now, budget, outcome)
            tally.coupons += outcome.coupon is not None
        if benefit is not None:
            outcome.benefit = _grant_benefit(session, automation, version, benefit, each, now)
            tally.benefits += 1
    if ActionType.WEBHOOK not in actions:
        return tally
    members = {
        row.id: row
        for row in session.execute(
            sa.select(
                Member.id,
                Member.external_id,
                Member.email,
                Member.name,
                Member.marketing_email,
                Member.marketing_sms,
                Tier.code.label("tier"),
                MemberBalance.available,
            )
            .join(MemberBalance, MemberBalance.member_id == Member.id)
            .outerjoin(Tier, Tier.id == Member.tier_id)
            .where(Member.id.in_([each.member_id for each in firings]))
        )
    }
    outbox.emit_many(
        session,
        "automation.fired",
        (
            {
                "firing_id": str(each.public_id),
                "automation": {
                    "id": str(automation.public_id),
                    "name": version.name,
                    "version": version.version,
                },
                "member": {
                    "member_id": member.external_id,
                    "email": member.email,
                    "name": member.name,
                    "tier": member.tier,
                    "available": int(member.available),
                    "consent": {
                        "marketing_email": bool(member.marketing_email),
                        "marketing_sms": bool(member.marketing_sms),
                    },
                },
                "trigger": {"kind": version.trigger["kind"], **details[each.member_id]},
                "points_granted": (
                    granted[each.member_id].points if ActionType.GRANT_POINTS in actions else None
                ),
                "coupon": _coupon_fields(granted[each.member_id].coupon),
                "benefit": _benefit_fields(granted[each.member_id].benefit),
                "withheld": granted[each.member_id].withheld,
                "fired_at": now.isoformat(),
            }
            for each in firings
            # The webhook is the marketing: only for members who consented on a channel.
            if (member := members[each.member_id]).marketing_email or member.marketing_sms
        ),
        now,
    )
    return tally


def _coupon_fields(coupon: rewards.Coupon | None) -> dict[str, Any] | None:
    if coupon is None:
        return None
    return {
        "id": str(coupon.public_id),
        "reward_id": str(coupon.reward_public_id),
        "reward": coupon.reward_name,
        "code": coupon.code,
        "expires_at": coupon.expires_at.isoformat(),
    }


def _benefit_fields(benefit: benefits.Benefit | None) -> dict[str, Any] | None:
    if benefit is None:
        return None
    return {
        "code": benefit.code,
        "params": benefit.params,
        "ends_at": benefit.ends_at.isoformat() if benefit.ends_at else None,
    }


def _grant_coupon(
    session: Session,
    action: Mapping[str, Any],
    reward: Reward | None,
    firing: Firing,
    now: dt.datetime,
    budget: _Budget | None,
    outcome: _Granted,
) -> rewards.Coupon | None:
    """The coupon the action gives the member, counted in the budget at the reward's cost
    in points; None (and why, in `outcome`) when the reward is closed, the budget has less
    left than its cost, or its stock or codes are gone."""
    if reward is None:
        outcome.withhold(ActionType.GRANT_COUPON, Withheld.REWARD_UNAVAILABLE)
        return None
    if budget is not None and budget.left < reward.cost_points:
        budget.charge(0, short=True)
        outcome.withhold(ActionType.GRANT_COUPON, Withheld.AUTOMATION_BUDGET)
        return None
    expires_at = now + dt.timedelta(days=action["expires_in_days"])
    try:
        coupon = rewards.grant_coupon(
            session, reward, firing.member_id, firing.row_id, expires_at, now
        )
    except OutOfStock:
        outcome.withhold(ActionType.GRANT_COUPON, Withheld.OUT_OF_STOCK)
        return None
    if budget is not None:
        budget.charge(reward.cost_points)
    return coupon


def _grant_benefit(
    session: Session,
    automation: Automation,
    version: AutomationVersion,
    action: Mapping[str, Any],
    firing: Firing,
    now: dt.datetime,
) -> benefits.Benefit:
    """The benefit the action gives the member from now, for its `days` (None: for good)."""
    days = action.get("days")
    command = benefits.GrantBenefit(
        code=action["code"],
        params=dict(action.get("params") or {}),
        reason=f"Automation {version.name}"[:500],
        starts_at=now,
        ends_at=now + dt.timedelta(days=days) if days else None,
    )
    return benefits.grant_for_firing(
        session, firing.member_id, firing.row_id, command, f"automation:{automation.public_id}", now
    )


def _grant_points(
    session: Session,
    automation: Automation,
    version: AutomationVersion,
    grant: Mapping[str, Any],
    firing: Firing,
    now: dt.datetime,
    budget: _Budget | None,
    outcome: _Granted,
) -> int:
    """Award the grant through its bonus rule as an earn (explained in the history by the
    rule's breakdown, within the rule's caps and budget, and within what the automation's
    budget has left) and return the points given: 0 (and why, in `outcome`) when the rule
    is no longer active, or the budgets or caps leave nothing."""
    active = [
        rule
        for rule in rules.active_rules(session, ("bonus",))
        if rule.policy.rule_id == str(grant["rule_id"])
    ]
    if not active:
        outcome.withhold(ActionType.GRANT_POINTS, Withheld.RULE_UNAVAILABLE)
        return 0
    rule = active[0]
    points = grant.get("points") or rule.policy.points
    short = budget is not None and budget.left < points
    if budget is not None:
        points = min(points, budget.left)
    if not points:
        assert budget is not None
        budget.charge(0, short=True)
        outcome.withhold(ActionType.GRANT_POINTS, Withheld.AUTOMATION_BUDGET)
        return 0
    balance = lock_balance(session, firing.member_id)
    settle_member(session, balance, now)
    member = session.get(Member, firing.member_id)
    assert member is not None
    context = policy.MemberContext(
        tier=tiers.member_tier_code(session, member),
        segments=rules.member_segments(session, member, [rule.policy]),
        remaining_caps=rules.remaining_caps(session, member.id, active, now),
    )
    earned, breakdown, reserved = rules.within_budgets(
        session,
        active,
        context,
        lambda ctx: policy.granted_points(rule.policy, points, ctx, now),
        now,
        reserve=True,
    )
    if budget is not None:
        budget.charge(earned, short=short)
    if not earned:
        outcome.withhold(ActionType.GRANT_POINTS, Withheld.RULE_LIMIT)
        return 0
    about = {"automation_id": str(automation.public_id), "automation_version": version.version}
    rules.award(
        session,
        member,
        balance,
        config.current(session).settings,
        (earned, breakdown),
        active,
        source=f"automation:{firing.public_id}",
        earned_at=now,
        now=now,
        pending=False,
        details=about,
        payload={**about, "firing_id": str(firing.public_id)},
        reserved=reserved,
    )
    tiers.review_member(session, member, now)
    session.execute(
        sa.update(AutomationFiring)
        .where(AutomationFiring.id == firing.row_id)
        .values(points_granted=earned)
    )
    return earned
