"""What the checkout asks of the earning rules: the active ones (with their policy form), how
much of a per-member cap and of a rule's budget is left, and which rule versions awarded
what."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from loyalty import days
from loyalty.experiments import exposure
from loyalty.experiments.models import ExposureSource
from loyalty.ledger.models import Account, MemberBalance, PointLot, TransactionKind
from loyalty.ledger.postings import credit
from loyalty.members.models import Member
from loyalty.members.segments import member_segment_keys
from loyalty.program import config
from loyalty.program.models import ProgramSettings
from loyalty.rules import budgets, policy
from loyalty.rules.models import EarningRule, RuleAward, RuleVersion
from loyalty.tiers import services as tiers
from loyalty.webhooks import outbox

_RULES = (
    sa.select(
        EarningRule.id,
        EarningRule.public_id,
        EarningRule.kind,
        RuleVersion.version,
        RuleVersion.name,
        RuleVersion.priority,
        RuleVersion.starts_at,
        RuleVersion.ends_at,
        RuleVersion.config,
        RuleVersion.conditions,
        RuleVersion.caps,
        RuleVersion.budget,
    )
    .join(
        RuleVersion,
        sa.and_(
            RuleVersion.rule_id == EarningRule.id,
            RuleVersion.version == EarningRule.current_version,
        ),
    )
    .where(EarningRule.active.is_(True))
    .order_by(EarningRule.id)
)


@dataclass(frozen=True, slots=True)
class ActiveRule:
    """An active rule's current version: its row id (for awards), its per-member cap, and
    the definition as the pure policy sees it."""

    id: int
    per_member_cap: dict[str, Any]
    policy: policy.Rule
    budgeted: budgets.BudgetedRule | None = None  # when the version has a budget


def _load_active(connection: Connection) -> tuple[ActiveRule, ...]:
    return tuple(_active(row) for row in connection.execute(_RULES))


def _active(row: sa.Row[Any]) -> ActiveRule:
    rule = policy.to_policy(row.public_id, row.kind, row.version, row._asdict())
    budgeted = (
        budgets.BudgetedRule(
            row.id, rule.rule_id, row.version, row.name, policy.Budget.from_fields(row.budget)
        )
        if row.budget
        else None
    )
    return ActiveRule(
        id=row.id,
        per_member_cap=dict(row.caps.get("per_member") or {}),
        policy=rule,
        budgeted=budgeted,
    )


def active_rules(session: Session, kinds: tuple[str, ...] | None = None) -> list[ActiveRule]:
    """Every active rule's current version (of `kinds`), with its policy form: kept per
    process and config version."""
    active = config.current(session).part(session, _load_active)
    return [rule for rule in active if kinds is None or rule.policy.kind in kinds]


def remaining_caps(
    session: Session, member_id: int | None, rules: Sequence[ActiveRule], now: dt.datetime
) -> dict[str, int]:
    """What each rule with a per-member period cap may still award this member now."""
    remaining: dict[str, int] = {}
    zone = config.current(session).settings.zone
    for rule in rules:
        cap = rule.per_member_cap
        if not cap or member_id is None:
            continue
        since = days.add_days(now, -cap["period_days"], zone)
        count, points = session.execute(
            sa.select(
                sa.func.count(RuleAward.id), sa.func.coalesce(sa.func.sum(RuleAward.points), 0)
            ).where(
                RuleAward.member_id == member_id,
                RuleAward.rule_id == rule.id,
                RuleAward.awarded_at > since,
            )
        ).one()
        left = 2**62
        if cap.get("count") is not None:
            left = left if count < cap["count"] else 0
        if cap.get("points") is not None:
            # int(): PostgreSQL sums BIGINTs as NUMERIC, which the driver gives as Decimal.
            left = min(left, cap["points"] - int(points))
        remaining[rule.policy.rule_id] = max(left, 0)
    return remaining


Computation = Callable[[policy.MemberContext], tuple[int, list[policy.Contribution]]]


def within_budgets(
    session: Session,
    active: Sequence[ActiveRule],
    context: policy.MemberContext,
    compute: Computation,
    now: dt.datetime,
    *,
    reserve: bool,
) -> tuple[int, list[policy.Contribution], budgets.Reservation]:
    """`compute` (the pure policy over a member context) with what the active rules' budgets
    have left. Returns (points, breakdown, the budgets reserved for the award).

    Without `reserve` (a quote, the simulator) the budgets are read without a lock and
    nothing is reserved. With it (an earn), the usage rows of the budgeted rules that
    contributed are locked and the points computed again with what they have left under the
    lock; a budgeted rule that did not contribute at first gets nothing (its row is not
    locked), so no award can ever pass a budget. The award must charge the reservation.
    """
    budgeted = [rule.budgeted for rule in active if rule.budgeted is not None]
    if not budgeted:
        points, breakdown = compute(context)
        return points, breakdown, budgets.NOTHING_RESERVED
    settings = config.current(session).settings
    left = budgets.remaining(session, budgeted, settings, now)
    points, breakdown = compute(dataclasses.replace(context, remaining_budgets=left))
    if not reserve:
        return points, breakdown, budgets.NOTHING_RESERVED
    reservation = budgets.lock(session, budgets.contributing(budgeted, breakdown), settings, now)
    exact = {rule.rule_id: 0 for rule in budgeted} | reservation.remaining()
    points, breakdown = compute(dataclasses.replace(context, remaining_budgets=exact))
    return points, breakdown, reservation


_INSERT_AWARD = RuleAward.__table__.insert()


def record_awards(
    session: Session,
    member_id: int,
    rules: Sequence[ActiveRule],
    contributions: Sequence[policy.Contribution],
    source: str,
    when: dt.datetime,
    budget_usage_ids: dict[str, int] | None = None,
) -> None:
    """Remember which rule versions gave this member how many points, and for what (and in
    which budget period they were counted)."""
    by_public_id = {rule.policy.rule_id: rule.id for rule in rules}
    usage_ids = budget_usage_ids or {}
    awards = [
        {
            "member_id": member_id,
            "rule_id": by_public_id[contribution.rule_id],
            "rule_version": contribution.version,
            "points": contribution.points,
            "source": source,
            "awarded_at": when,
            "budget_usage_id": usage_ids.get(contribution.rule_id),
        }
        for contribution in contributions
        # A tier's multiplier benefit is not a rule.
        if contribution.rule_id in by_public_id
    ]
    if awards:
        session.connection().execute(_INSERT_AWARD, awards)


def member_segments(
    session: Session, member: Member | None, rules: Sequence[policy.Rule]
) -> frozenset[str]:
    """The saved segments the member is in, looked up only when one of `rules` is limited
    to segments (most carts meet no such rule, and pay no query)."""
    if member is None or not any(rule.conditions.segments for rule in rules):
        return frozenset()
    return member_segment_keys(session, member.id)


def member_facts(member: Member, tier_code: str | None) -> exposure.MemberFacts:
    """What an experiment's eligibility reads of the member."""
    return exposure.MemberFacts(member.id, member.external_id, member.enrolled_at, tier_code)


def experiment_rules(
    session: Session,
    active: Sequence[ActiveRule],
    member: exposure.MemberFacts,
    now: dt.datetime,
    source: ExposureSource,
) -> list[ActiveRule]:
    """The active rules the member gets under the live experiments (see
    ``loyalty.experiments.exposure``): a rule an experiment targets applies only when the
    member's arm (or, outside the experiment, the control) names it, and carries the
    experiment and arm into the breakdown when the member is exposed. Records the exposures."""
    placements = exposure.rules_placements(
        session, frozenset(rule.policy.rule_id for rule in active), member, now, source
    )
    if not placements:
        return list(active)
    given = []
    for rule in active:
        placement = placements.get(rule.policy.rule_id)
        if placement is None:
            given.append(rule)
        elif rule.policy.rule_id in (placement.arm.rule_ids or ()):
            given.append(_labelled(rule, placement) if placement.exposed else rule)
    return given


def _labelled(rule: ActiveRule, placement: exposure.Placement) -> ActiveRule:
    labelled = dataclasses.replace(
        rule.policy, experiment=placement.experiment.key, arm=placement.arm.key
    )
    return dataclasses.replace(rule, policy=labelled)


def tier_benefits(
    session: Session,
    member: Member,
    facts: exposure.MemberFacts,
    now: dt.datetime,
    source: ExposureSource | None,
) -> dict[str, exposure.Placement]:
    """The placements deciding the member's tier benefits that live experiments target, by
    benefit code (exposures recorded when `source` is given)."""
    tier = tiers.program_tiers(session).of(member.tier_id)
    if tier is None or not tier.benefits:
        return {}
    codes = frozenset(benefit["code"] for benefit in tier.benefits)
    return exposure.benefit_placements(session, codes, facts, now, source)


def tier_boost(
    session: Session,
    member: Member | None,
    benefits: Mapping[str, exposure.Placement] | None = None,
) -> list[policy.Rule]:
    """A tier's points_multiplier benefit as the multiplier rule it acts as (on every line),
    unless the member's arm of an experiment on that benefit withholds it (`benefits`, from
    ``tier_benefits``)."""
    boost = tiers.tier_multiplier(session, member) if member is not None else None
    if boost is None:
        return []
    tier, factor = boost
    return _benefit_rule(
        (benefits or {}).get(tiers.MULTIPLIER_BENEFIT),
        rule_id=f"tier:{tier.code}",
        name=f"{tier.name} tier x{factor}",
        kind="multiplier",
        factor=policy.parse_factor(factor),
    )


def _benefit_rule(placement: exposure.Placement | None, **rule: Any) -> list[policy.Rule]:
    """A tier benefit as the rule it acts as, unless the member's arm of an experiment on the
    benefit withholds it (`placement`); the experiment and arm are named in the breakdown only
    for a member the experiment exposed."""
    if placement is not None and not placement.arm.applies:
        return []
    shown = placement if placement is not None and placement.exposed else None
    return [
        policy.Rule(
            version=0,
            priority=0,
            conditions=policy.Conditions(),
            experiment=shown.experiment.key if shown else None,
            arm=shown.arm.key if shown else None,
            **rule,
        )
    ]


def tier_gift(
    session: Session,
    member: Member,
    facts: exposure.MemberFacts,
    event_type: str,
    now: dt.datetime,
) -> list[policy.Rule]:
    """A tier's birthday_gift benefit ({"points": N}) as the event rule it acts as on the
    member's birthday event, unless their arm of an experiment on it withholds it (the
    birthday is where that benefit matters: the exposure is recorded then)."""
    if event_type != tiers.BIRTHDAY_EVENT:
        return []
    tier = tiers.program_tiers(session).of(member.tier_id)
    gift = tiers.birthday_gift(tier) if tier is not None else None
    if tier is None or gift is None:
        return []
    placement = tier_benefits(session, member, facts, now, ExposureSource.EVENT).get(
        tiers.BIRTHDAY_GIFT
    )
    return _benefit_rule(
        placement,
        rule_id=f"tier:{tier.code}:{tiers.BIRTHDAY_GIFT}",
        name=f"{tier.name} tier birthday gift",
        kind="event",
        points=gift,
        event_type=tiers.BIRTHDAY_EVENT,
    )


def award(
    session: Session,
    member: Member,
    balance: MemberBalance,
    settings: ProgramSettings,
    earned: tuple[int, Sequence[policy.Contribution]],
    active: Sequence[ActiveRule],
    *,
    source: str,
    earned_at: dt.datetime,
    now: dt.datetime,
    pending: bool,
    details: dict[str, Any],
    payload: dict[str, Any],
    reserved: budgets.Reservation,
) -> PointLot:
    """Credit what the rules gave the member for `source` (an order or an event): from the
    issued account, qualifying for tiers; count it in the budgets `reserved` (from
    ``within_budgets``); remember which rule versions gave it; announce it (``points.earned``
    with `payload`, ``rule.budget_exhausted`` for each budget period it used up). The caller
    holds the member's lock. Returns the lot. Raises BudgetOverspent if a budgeted rule's
    contribution was not reserved."""
    points, breakdown = earned
    usage_ids, exhausted = budgets.charge(session, reserved, breakdown, now)
    budgeted = {rule.policy.rule_id for rule in active if rule.budgeted is not None}
    unreserved = [c.rule_id for c in breakdown if c.rule_id in budgeted - usage_ids.keys()]
    if unreserved:
        raise budgets.BudgetOverspent(f"rules {unreserved}: awarded without their budget")
    shown = [contribution.as_dict() for contribution in breakdown]
    _, lot = credit(
        session,
        balance,
        settings,
        points,
        kind=TransactionKind.EARN,
        source=Account.ISSUED,
        now=earned_at,
        pending=pending,
        reference=source,
        qualifying=points,
        details={"breakdown": shown, **details},
    )
    record_awards(session, member.id, active, breakdown, source, now, usage_ids)
    for spent in exhausted:
        outbox.emit(session, "rule.budget_exhausted", budget_exhausted_payload(spent), now)
    if pending:
        payload = {**payload, "available_at": lot.available_at.isoformat()}
    outbox.emit(
        session,
        "points.earned",
        {"member_id": member.external_id, "points": points, **payload, "breakdown": shown},
        now,
    )
    return lot


def budget_exhausted_payload(spent: budgets.Exhausted) -> dict[str, Any]:
    """The rule.budget_exhausted webhook's data: the rule version, its budget, the period and
    the limit and usage in points."""
    rule, usage = spent.rule, spent.usage
    return {
        "rule_id": rule.rule_id,
        "name": rule.name,
        "version": rule.version,
        "budget": budget_fields(rule.budget),
        **budgets.period_fields(usage),
    }


def budget_fields(budget: policy.Budget) -> dict[str, Any]:
    """A budget in its stored (and API) shape."""
    fields: dict[str, Any] = {"period": budget.period.value}
    if budget.points is not None:
        fields["points"] = budget.points
    else:
        fields["amount"] = budget.amount
    return fields
