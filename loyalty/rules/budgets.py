"""Rule budgets: a rule's total across all members per period, counted in one usage row per
(rule, period, period start) that every earn through the rule updates in its own transaction.
The counter itself (claim, lock, charge, read) works on any such usage table (a ``Counter``):
automations keep their budgets with it too.

Concurrency: an earn that is about to award points through budgeted rules first locks their
usage rows (``SELECT ... FOR UPDATE`` on PostgreSQL, in rule order so two earns never wait
for each other in a cycle; on SQLite ``BEGIN IMMEDIATE`` already serializes writers), reads
what is left under the lock, and charges with a conditional UPDATE (``used + n <= limit``)
that refuses an over-spend even if a caller skipped the lock. Only earns through the same
budgeted rule queue behind each other, and only from the award to their commit; rules
without a budget pay nothing. A quote reads the usage without a lock and reserves nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.db import insert_ignoring_conflicts
from loyalty.program.models import ProgramSettings
from loyalty.rules import policy
from loyalty.rules.models import RuleAward, RuleBudgetUsage


@dataclass(frozen=True, slots=True)
class Counter:
    """A usage table: one row per (owner, period, period start) with `used` and
    `exhausted_at`, unique on those three, the owner in column `owner`."""

    model: type[Any]
    owner: str


RULES = Counter(RuleBudgetUsage, "rule_id")


@dataclass(frozen=True, slots=True)
class BudgetedRule:
    """A rule version with a budget: its row id, public id, version and name, and the budget."""

    id: int
    rule_id: str  # the rule's public id, as the policy and breakdowns name it
    version: int
    name: str
    budget: policy.Budget


@dataclass(frozen=True, slots=True)
class BudgetUsageView:
    """A rule's budget in the period `as of` falls in: limit (points), used and left."""

    period: policy.BudgetPeriod
    starts_at: dt.datetime | None  # None: the rule's whole life
    ends_at: dt.datetime | None
    limit: int
    used: int
    exhausted_at: dt.datetime | None

    @property
    def remaining(self) -> int:
        return max(self.limit - self.used, 0)


@dataclass(frozen=True, slots=True)
class LockedBudget:
    """A budgeted rule's usage row, locked by this transaction, as read under the lock."""

    usage_id: int
    rule: BudgetedRule
    view: BudgetUsageView


@dataclass(frozen=True, slots=True)
class Reservation:
    """The usage rows an earn locked (rule public id -> row), so its award can charge them."""

    locked: Mapping[str, LockedBudget] = field(default_factory=dict)

    def remaining(self) -> dict[str, int]:
        return {rule_id: row.view.remaining for rule_id, row in self.locked.items()}


NOTHING_RESERVED = Reservation()


@dataclass(frozen=True, slots=True)
class Exhausted:
    """A budget period an award used up: what the rule.budget_exhausted webhook reports."""

    rule: BudgetedRule
    usage: BudgetUsageView


def limit_of(budget: policy.Budget, settings: ProgramSettings) -> int:
    """The budget in points, a money budget at the program's current point value."""
    return budget.limit(settings.point_value_points, settings.point_value_amount)


def _period(
    budget: policy.Budget, now: dt.datetime, tz: dt.tzinfo
) -> tuple[dt.datetime, dt.datetime | None]:
    return policy.budget_period(budget.period, now, tz)


def _view(
    budget: policy.Budget,
    settings: ProgramSettings,
    now: dt.datetime,
    used: int,
    exhausted_at: dt.datetime | None,
) -> BudgetUsageView:
    start, end = _period(budget, now, settings.zone)
    lifetime = budget.period == policy.BudgetPeriod.LIFETIME
    return BudgetUsageView(
        period=budget.period,
        starts_at=None if lifetime else start,
        ends_at=end,
        limit=limit_of(budget, settings),
        used=used,
        exhausted_at=exhausted_at,
    )


def _usage_rows(
    session: Session,
    counter: Counter,
    keyed: Iterable[tuple[int, policy.Budget]],
    now: dt.datetime,
    tz: dt.tzinfo,
) -> dict[tuple[int, str], tuple[int, dt.datetime | None]]:
    """(owner row id, period) -> (used, exhausted_at) of the current period's rows that exist."""
    model, owner = counter.model, getattr(counter.model, counter.owner)
    conditions = []
    for owner_id, budget in keyed:
        start, _ = _period(budget, now, tz)
        conditions.append(
            sa.and_(
                owner == owner_id,
                model.period == budget.period.value,
                model.period_start == start,
            )
        )
    if not conditions:
        return {}
    rows = session.execute(
        sa.select(owner.label("owner"), model.period, model.used, model.exhausted_at).where(
            sa.or_(*conditions)
        )
    )
    return {(row.owner, row.period): (row.used, row.exhausted_at) for row in rows}


def usage(
    session: Session,
    budgets: Mapping[int, policy.Budget],
    settings: ProgramSettings,
    now: dt.datetime,
    counter: Counter = RULES,
) -> dict[int, BudgetUsageView]:
    """Each budget (by its owner's row id: a rule's, unless `counter` says otherwise) in the
    period `now` falls in, read without a lock."""
    rows = _usage_rows(session, counter, budgets.items(), now, settings.zone)
    return {
        owner_id: _view(
            budget, settings, now, *rows.get((owner_id, budget.period.value), (0, None))
        )
        for owner_id, budget in budgets.items()
    }


def remaining(
    session: Session,
    rules: Sequence[BudgetedRule],
    settings: ProgramSettings,
    now: dt.datetime,
) -> dict[str, int]:
    """What each budgeted rule may still award anyone now (rule public id -> points), read
    without a lock: what a quote shows, and an earn's first estimate."""
    views = usage(session, {rule.id: rule.budget for rule in rules}, settings, now)
    return {rule.rule_id: views[rule.id].remaining for rule in rules}


def lock_row(
    session: Session,
    counter: Counter,
    owner_id: int,
    budget: policy.Budget,
    settings: ProgramSettings,
    now: dt.datetime,
) -> tuple[int, BudgetUsageView]:
    """Lock the owner's usage row of the period `now` falls in (made at 0 if this is the
    period's first use) and return (its id, the budget as read under the lock)."""
    model, owner = counter.model, getattr(counter.model, counter.owner)
    start, _ = _period(budget, now, settings.zone)
    key = {counter.owner: owner_id, "period": budget.period.value, "period_start": start}
    # ON CONFLICT DO NOTHING: a concurrent first use of the period waits for the other
    # transaction's row instead of failing on the unique key.
    claim = insert_ignoring_conflicts(session, model, [counter.owner, "period", "period_start"])
    session.connection().execute(claim, {**key, "used": 0, "exhausted_at": None})
    row = session.execute(
        sa.select(model.id, model.used, model.exhausted_at)
        .where(owner == owner_id, model.period == key["period"], model.period_start == start)
        .with_for_update()
    ).one()
    return row.id, _view(budget, settings, now, row.used, row.exhausted_at)


def lock(
    session: Session,
    rules: Sequence[BudgetedRule],
    settings: ProgramSettings,
    now: dt.datetime,
) -> Reservation:
    """Lock the current period's usage row of each of `rules` (made at 0 if it is the
    period's first award), in rule order, and return them as read under the locks."""
    locked: dict[str, LockedBudget] = {}
    for rule in sorted(rules, key=lambda r: r.id):
        usage_id, view = lock_row(session, RULES, rule.id, rule.budget, settings, now)
        locked[rule.rule_id] = LockedBudget(usage_id, rule, view)
    return Reservation(locked)


class BudgetOverspent(RuntimeError):
    """An award would have taken a budget past its limit: a caller charged without the lock
    (a bug, never a client's doing); the transaction rolls back."""


@functools.cache
def _statements(table: sa.Table) -> tuple[sa.Update, sa.Update]:
    """(charge, mark exhausted) for a usage table. Charging is conditional: it refuses to
    take `used` past the limit even if a caller skipped the lock."""
    charge = (
        sa.update(table)
        .where(
            table.c.id == sa.bindparam("usage_id"),
            table.c.used + sa.bindparam("points") <= sa.bindparam("limit"),
        )
        .values(used=table.c.used + sa.bindparam("points"))
    )
    exhausted = (
        sa.update(table)
        .where(table.c.id == sa.bindparam("usage_id"))
        .values(exhausted_at=sa.bindparam("now"))
    )
    return charge, exhausted


def charge_row(
    session: Session,
    counter: Counter,
    usage_id: int,
    view: BudgetUsageView,
    points: int,
    now: dt.datetime,
    *,
    short: bool = False,
) -> tuple[BudgetUsageView, bool]:
    """Count `points` in a usage row this transaction locked (`view`: the row as it stands).
    The period is used up when its usage reaches the limit, or when the caller was `short`
    of budget for what it meant to give. Returns (the row after, whether this call used the
    period up first: its exhausted webhook is then due). Raises BudgetOverspent if the
    points exceed what the row has left."""
    charge, exhausted = _statements(counter.model.__table__)
    if points:
        charged = session.connection().execute(
            charge, {"usage_id": usage_id, "points": points, "limit": view.limit}
        )
        if charged.rowcount != 1:
            raise BudgetOverspent(f"{counter.model.__tablename__} {usage_id}: over its budget")
        view = dataclasses.replace(view, used=view.used + points)
    if view.exhausted_at is not None or not (short or view.used >= view.limit):
        return view, False
    session.connection().execute(exhausted, {"usage_id": usage_id, "now": now})
    return dataclasses.replace(view, exhausted_at=now), True


def charge(
    session: Session,
    reservation: Reservation,
    breakdown: Sequence[policy.Contribution],
    now: dt.datetime,
) -> tuple[dict[str, int], list[Exhausted]]:
    """Count what `breakdown` awarded through budgeted rules in their locked usage rows.

    Returns (rule public id -> usage row id, for the awards), and the periods this award used
    up for the first time (each reported once per rule and period). Raises BudgetOverspent
    if a contribution exceeds what its locked row has left, or a budgeted rule's row was not
    locked.
    """
    usage_ids: dict[str, int] = {}
    exhausted: list[Exhausted] = []
    for contribution in breakdown:
        row = reservation.locked.get(contribution.rule_id)
        if row is None:
            continue
        after, used_up = charge_row(
            session, RULES, row.usage_id, row.view, contribution.points, now
        )
        usage_ids[contribution.rule_id] = row.usage_id
        if used_up:
            exhausted.append(Exhausted(row.rule, after))
    return usage_ids, exhausted


def period_fields(usage: BudgetUsageView) -> dict[str, Any]:
    """A budget period's part of an exhausted webhook: the period, its bounds, the limit and
    the usage in points."""
    return {
        "period": usage.period.value,
        "period_start": usage.starts_at.isoformat() if usage.starts_at else None,
        "period_end": usage.ends_at.isoformat() if usage.ends_at else None,
        "limit": usage.limit,
        "used": usage.used,
    }


def contributing(
    budgeted: Sequence[BudgetedRule], breakdown: Sequence[policy.Contribution]
) -> list[BudgetedRule]:
    """The budgeted rules that contributed to `breakdown` (the ones an earn must lock)."""
    contributing = {contribution.rule_id for contribution in breakdown}
    return [rule for rule in budgeted if rule.rule_id in contributing]


_GIVE_BACK = (
    sa.update(RuleBudgetUsage.__table__)
    .where(RuleBudgetUsage.__table__.c.id == sa.bindparam("usage_id"))
    .values(used=RuleBudgetUsage.__table__.c.used - sa.bindparam("points"))
)


def give_back(
    session: Session,
    member_id: int,
    source: str,
    refunded_before: int,
    refunded_after: int,
    base: int,
) -> int:
    """Give a refund's share of each budgeted award of `source` (an order) back to the budget
    period it was counted in, in proportion to the money refunded (cumulative flooring, so a
    full refund gives back exactly what was counted). Returns the points given back."""
    awards = session.execute(
        sa.select(RuleAward.points, RuleAward.budget_usage_id, RuleBudgetUsage.rule_id)
        .join(RuleBudgetUsage, RuleBudgetUsage.id == RuleAward.budget_usage_id)
        .where(RuleAward.member_id == member_id, RuleAward.source == source)
        # The order every earn locks usage rows in, so a refund never deadlocks with one.
        .order_by(RuleBudgetUsage.rule_id, RuleBudgetUsage.period, RuleBudgetUsage.period_start)
    ).all()
    given = 0
    for award in awards:
        share = policy.refund_share(award.points, refunded_before, refunded_after, base)
        if share:
            session.connection().execute(
                _GIVE_BACK, {"usage_id": award.budget_usage_id, "points": share}
            )
            given += share
    return given
