"""How well the purchase model predicts: fit BG/NBD on the history up to a split and compare
its predicted repeat purchase days after the split with the ones the members made, in total
and by their frequency before the split (``loyalty.insight.clv.evaluate``).

The figures on both sides of the split come from the refresh's own statement
(``figures.figures_select``), read as of the split and as of the end, and nothing is
written. Two passes over every member's orders and one fit: seconds per 100,000 buyers,
within one request.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from loyalty import days
from loyalty.days import EPOCH
from loyalty.db import utcnow
from loyalty.errors import BusinessRuleViolation, ValidationFailed
from loyalty.insight import clv
from loyalty.insight.bgnbd_limit import BgNbdLimit
from loyalty.insight.figures import figures_select
from loyalty.insight.fitting import FitFailed
from loyalty.insight.services import latest_refresh
from loyalty.program.services import get_settings


class EvaluationImpossible(BusinessRuleViolation):
    """The history up to the split does not identify the model (too few buyers, or too
    uniform)."""

    code = "evaluation_not_possible"
    title = "The model cannot be evaluated at this split"


@dataclass(frozen=True)
class Bucket:
    frequency: str
    customers: int
    predicted: float
    actual: int


@dataclass(frozen=True)
class ModelEvaluation:
    split: dt.datetime
    end: dt.datetime
    holdout_days: int
    customers: int
    predicted_total: float
    actual_total: int
    by_frequency: list[Bucket]
    log_likelihood: float
    params: dict[str, Any]


def _day(moment: dt.datetime, tz: dt.tzinfo) -> int:
    return (days.today(moment, tz) - EPOCH).days


def evaluate_at(
    session: Session, split: dt.datetime, end: dt.datetime | None = None
) -> ModelEvaluation:
    """Fit BG/NBD on every buyer's purchase days up to `split` and compare its prediction for
    the whole days (of the program's zone) from `split` to `end` (default: the latest
    refresh's as_of, or now) with the repeat purchase days the buyers made: their purchase
    days as of `end` less those as of `split` (a refund made after the split that cancels an
    earlier purchase counts against it; never below zero). Returns the totals and the
    buckets by calibration frequency ("0" to "6", "7+"). Raises ValidationFailed for a split
    not at least a day before `end`, EvaluationImpossible when the history up to it
    identifies no model."""
    if end is None:
        latest = latest_refresh(session)
        end = latest.as_of if latest is not None else utcnow()
    settings = get_settings(session)
    holdout_days = _day(end, settings.zone) - _day(split, settings.zone)
    if holdout_days < 1:
        raise ValidationFailed(
            {
                "split": [
                    f"Must be at least a day before the end of the holdout ({end.isoformat()})."
                ]
            }
        )
    currency = settings.currency
    before = figures_select(split, currency, settings.zone).subquery("before")
    calibration = session.execute(
        before.select()
        .with_only_columns(
            before.c.member_id,
            before.c.frequency,
            before.c.recency_days,
            before.c.t_days,
            before.c.purchase_days,
        )
        .where(before.c.orders > 0)
        .order_by(before.c.member_id)
    ).all()
    after = figures_select(end, currency, settings.zone).subquery("after")
    days_at_end = {
        int(member): int(days)
        for member, days in session.execute(
            after.select()
            .with_only_columns(after.c.member_id, after.c.purchase_days)
            .where(after.c.orders > 0)
        )
    }
    table = np.array([(f, r, t) for _, f, r, t, _ in calibration], dtype=np.float64).reshape(
        len(calibration), 3
    )
    actual = np.array(
        [max(0, int(days_at_end.get(m, 0)) - int(d)) for m, _, _, _, d in calibration],
        dtype=np.int64,
    )
    try:
        if not calibration:
            raise FitFailed("no purchase before the split")
        with np.errstate(all="ignore"):
            found = clv.evaluate((table[:, 0], table[:, 1], table[:, 2]), holdout_days, actual)
    except FitFailed as failure:
        raise EvaluationImpossible(
            f"The model could not be fitted on the history up to the split: {failure}."
        ) from None
    if not np.isfinite(found.predicted_total):
        raise EvaluationImpossible(
            f"The model fitted up to the split is degenerate ({found.fit.params}): its "
            "predictions overflow."
        )
    return ModelEvaluation(
        split=split,
        end=end,
        holdout_days=holdout_days,
        customers=found.fit.customers,
        predicted_total=found.predicted_total,
        actual_total=found.actual_total,
        by_frequency=[Bucket(*bucket) for bucket in found.by_frequency],
        log_likelihood=found.fit.log_likelihood,
        params={
            "bg_nbd": dataclasses.asdict(found.fit.params),
            "bg_nbd_limit": isinstance(found.fit.params, BgNbdLimit),
        },
    )
