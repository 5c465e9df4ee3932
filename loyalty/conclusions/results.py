"""An experiment's results from the data: per member exposed, what they did from their first
exposure to the end of the window, and per arm the uplift against control
(``loyalty.experiments.statistics``).

Per member: whether they ordered (any order, in any currency), their revenue (the totals of
their orders in the program's currency less what was refunded of them to date, as the
campaign reports count it; an order in another currency is not summed with it) and the cost
of the points issued to them (points earned from any source less points reversed by refunds,
as member insight counts them, valued at the program's point value and rounded down as
every report values points). An admin's adjustment or an imported opening balance is no cost
of the experiment, so they are left out. A span starts at the member's first exposure,
inclusive: the order that exposed them is part of what their arm got them. Exposure is
recorded at the time of the request, and an order may say it was placed earlier (its
``placed_at``, which its points also take effect at): when an order exposed the member (an
order recorded at that very time), their span starts when it was placed, so it is counted
with its points. A member first exposed after the window's end (a report as of an earlier
`now`) is not counted.

Everything is aggregated per member by the database in one statement; Python only turns the
rows into arrays.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import sqlalchemy as sa
from numpy.typing import NDArray
from sqlalchemy.orm import Session

from loyalty.db import transaction, utcnow
from loyalty.experiments import statistics
from loyalty.experiments.models import (
    Experiment,
    ExperimentArm,
    ExperimentAssignment,
    ExposureSource,
)
from loyalty.experiments.services import get_experiment
from loyalty.experiments.stored import ExperimentView
from loyalty.ledger.models import Account, LedgerEntry, LedgerTransaction, TransactionKind
from loyalty.orders.models import Order
from loyalty.program.services import get_settings

# The fewest members an arm needs before its mean and variance mean anything (the
# statistics refuse fewer).
MIN_EXPOSED = 2


@dataclass(frozen=True, slots=True)
class ExperimentReport:
    """An experiment's results as of a moment, with what they cover."""

    experiment: ExperimentView
    window_start: dt.datetime  # the experiment's starts_at
    window_end: dt.datetime  # the earliest of ends_at, stopped_at, now
    currency: str  # the program's currency (program settings)
    exposed: dict[str, int]  # members exposed per arm key, every arm (0 if none)
    results: statistics.ExperimentResults | None  # None until every arm has >= 2 exposed


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
        window_end = min([definition.ends_at, now] + ([view.stopped_at] if view.stopped_at else []))
        settings = get_settings(session)
        currency = settings.currency
        value_points, value_amount = settings.point_value_points, settings.point_value_amount
        outcomes = member_outcomes(session, experiment_id, window_end, currency)
    exposed = {arm.key: len(outcomes.get(arm.key, ())) for arm in definition.arms}
    report = ExperimentReport(
        experiment=view,
        window_start=definition.starts_at,
        window_end=window_end,
        currency=currency,
        exposed=exposed,
        results=None,
    )
    if min(exposed.values()) < MIN_EXPOSED:
        return report
    arms = [
        statistics.ArmOutcomes(
            key=arm.key,
            weight=arm.weight,
            ordered=outcomes[arm.key][:, 0] > 0,
            revenue=outcomes[arm.key][:, 1],
            # Integer floor division: each member's points at the point value, rounded down
            # as ProgramSettings.points_value rounds them.
            points_cost=outcomes[arm.key][:, 2] * value_amount // value_points,
        )
        for arm in definition.arms
    ]
    control = next(arm.key for arm in definition.arms if arm.control)
    return dataclasses.replace(
        report, results=statistics.analyse(arms, control, Decimal(definition.margin))
    )


def member_outcomes(
    session: Session, experiment_id: uuid.UUID, window_end: dt.datetime, currency: str
) -> dict[str, NDArray[np.int64]]:
    """Each exposed member's outcome from their first exposure to `window_end` (both
    inclusive), by arm key: a row per member of (orders placed, revenue, points issued).
    One statement: the orders and the points are each summed per member in a grouped
    subquery, then joined to the assignments."""
    exposed_at = ExperimentAssignment.first_exposed_at
    # The order whose request exposed the member was recorded (created_at) at the exposure's
    # time, and may have been placed before it (see the module's docstring).
    exposing_order = (
        sa.select(sa.func.min(Order.placed_at))
        .where(
            Order.member_id == ExperimentAssignment.member_id,
            Order.created_at == exposed_at,
        )
        .scalar_subquery()
    )
    by_order = sa.and_(
        ExperimentAssignment.exposure_source == ExposureSource.ORDER, exposing_order < exposed_at
    )
    assigned = (
        sa.select(
            ExperimentAssignment.member_id,
            sa.case((by_order, exposing_order), else_=exposed_at).label("span_start"),
            ExperimentArm.key.label("arm"),
        )
        .join(Experiment, Experiment.id == ExperimentAssignment.experiment_id)
        .join(ExperimentArm, ExperimentArm.id == ExperimentAssignment.arm_id)
        .where(
            Experiment.public_id == experiment_id,
            ExperimentAssignment.first_exposed_at <= window_end,
        )
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
                Order.placed_at >= assigned.c.span_start,
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
            LedgerTransaction.effective_at >= assigned.c.span_start,
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
    by_arm: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for arm, placed, revenue, issued in rows:
        by_arm[arm].append((int(placed), int(revenue), int(issued)))
    return {arm: np.array(found, dtype=np.int64) for arm, found in by_arm.items()}
