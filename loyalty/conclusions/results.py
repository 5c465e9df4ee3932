"""An experiment's results from the data: per member exposed, what they did from their first
exposure to the end of the window, and per arm the uplift against control
(``loyalty.experiments.statistics``).

Per member: whether they ordered (any order, in any currency), their revenue (the totals of
their orders in the program's currency less what was refunded of them to date, as the
campaign reports count it; an order in another currency is not summed with it) and the cost
of the points issued to them (points earned from any source less points reversed by refunds,
as member insight counts them, valued at the program's point value and rounded down as
every report values points). An opening balance imported is no cost of the experiment, so it
is left out. A span starts at the member's first exposure, inclusive: the order that exposed
them is part of what their arm got them.

Everything is aggregated per member by the database in one statement; Python only turns the
rows into arrays.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.db import transaction, utcnow
from loyalty.experiments import statistics
from loyalty.experiments.models import Experiment, ExperimentArm, ExperimentAssignment
from loyalty.experiments.services import ExperimentView, get_experiment
from loyalty.ledger.models import Account, LedgerEntry, LedgerTransaction, TransactionKind
from loyalty.orders.models import Order
from loyalty.program.services import get_settings

# The fewest members an arm needs before its mean and variance mean anything (the
# statistics refuse fewer).
MIN_EXPOSED = 2


@dataclass(frozen=True, slots=True)
class ExperimentReport:
    experiment: ExperimentView
    window_start: dt.datetime  # the experiment's starts_at
    window_end: dt.datetime  # the earliest of ends_at, stopped_at, now
    currency: str  # the program's currency (program settings)
    exposed: dict[str, int]  # members exposed per arm key, every arm (0 if none)
    results: statistics.ExperimentResults | None  # None until every arm has >= 2 exposed


@dataclass(frozen=True, slots=True)
class MemberOutcome:
    ordered: bool
    revenue: int
    points: int


def experiment_results(
    session: Session, experiment_id: uuid.UUID, now: dt.datetime | None = None
) -> ExperimentReport:
    """The experiment's report as of `now`: its window, members exposed per arm and, once
    every arm has at least two, the results against control. Read-only, in one transaction.
    Raises ExperimentNotFound."""
    now = now or utcnow()
    with transaction(session):
        view = get_experiment(session, experiment_id)
        definition = view.definition
        ends = [definition.ends_at, now]
        if view.stopped_at is not None:
            ends.append(view.stopped_at)
        window_end = min(ends)
        settings = get_settings(session)
        outcomes = member_outcomes(session, experiment_id, window_end, settings.currency)
    exposed = {arm.key: len(outcomes.get(arm.key, ())) for arm in definition.arms}
    report = ExperimentReport(
        experiment=view,
        window_start=definition.starts_at,
        window_end=window_end,
        currency=settings.currency,
        exposed=exposed,
        results=None,
    )
    if min(exposed.values()) < MIN_EXPOSED:
        return report
    arms = []
    for arm in definition.arms:
        found = outcomes[arm.key]
        points = np.array([outcome.points for outcome in found], dtype=np.int64)
        arms.append(
            statistics.ArmOutcomes(
                key=arm.key,
                weight=arm.weight,
                ordered=np.array([outcome.ordered for outcome in found], dtype=np.bool_),
                revenue=np.array([outcome.revenue for outcome in found], dtype=np.int64),
                # Integer floor division: each member's points at the point value, rounded
                # down as settings.points_value rounds them.
                points_cost=points * settings.point_value_amount // settings.point_value_points,
            )
        )
    control = next(arm.key for arm in definition.arms if arm.control)
    results = statistics.analyse(arms, control, Decimal(definition.margin))
    return ExperimentReport(
        experiment=view,
        window_start=report.window_start,
        window_end=window_end,
        currency=settings.currency,
        exposed=exposed,
        results=results,
    )


def member_outcomes(
    session: Session, experiment_id: uuid.UUID, window_end: dt.datetime, currency: str
) -> dict[str, list[MemberOutcome]]:
    """Each exposed member's outcome from their first exposure to `window_end` (both
    inclusive), by arm key, in one statement: the orders and the points are each summed
    per member in a grouped subquery, then joined to the assignments."""
    assigned = (
        sa.select(
            ExperimentAssignment.member_id,
            ExperimentAssignment.first_exposed_at,
            ExperimentArm.key.label("arm"),
        )
        .join(Experiment, Experiment.id == ExperimentAssignment.experiment_id)
        .join(ExperimentArm, ExperimentArm.id == ExperimentAssignment.arm_id)
        .where(Experiment.public_id == experiment_id)
        .cte("assigned")
    )
    in_currency = Order.currency == currency
    orders = (
        sa.select(
            assigned.c.member_id,
            sa.func.count(Order.id).label("orders"),
            sa.func.sum(sa.case((in_currency, Order.total - Order.refunded_amount), else_=0)).label(
                "revenue"
            ),
        )
        .join(
            Order,
            sa.and_(
                Order.member_id == assigned.c.member_id,
                Order.placed_at >= assigned.c.first_exposed_at,
                Order.placed_at <= window_end,
            ),
        )
        .group_by(assigned.c.member_id)
        .subquery("orders")
    )
    points = (
        sa.select(
            assigned.c.member_id,
            sa.func.sum(-LedgerEntry.amount).label("points"),
        )
        .join(LedgerEntry, LedgerEntry.member_id == assigned.c.member_id)
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(
            LedgerEntry.account == Account.ISSUED.value,
            LedgerTransaction.kind.in_([TransactionKind.EARN.value, TransactionKind.REVERSE.value]),
            LedgerTransaction.effective_at >= assigned.c.first_exposed_at,
            LedgerTransaction.effective_at <= window_end,
        )
        .group_by(assigned.c.member_id)
        .subquery("points")
    )
    rows = session.execute(
        sa.select(
            assigned.c.arm,
            sa.func.coalesce(orders.c.orders, 0),
            sa.func.coalesce(orders.c.revenue, 0),
            sa.func.coalesce(points.c.points, 0),
        )
        .select_from(assigned)
        .outerjoin(orders, orders.c.member_id == assigned.c.member_id)
        .outerjoin(points, points.c.member_id == assigned.c.member_id)
    )
    found: dict[str, list[MemberOutcome]] = defaultdict(list)
    for arm, placed, revenue, issued in rows:
        found[arm].append(MemberOutcome(int(placed) > 0, int(revenue), int(issued)))
    return found
