"""The experiments' share of `loyalty jobs run`: end the running experiments whose window
has passed, and flag the running experiments whose exposures do not fit their weights.

A sample-ratio mismatch means assignment or exposure recording is broken and no uplift can be
trusted (see ``loyalty.experiments.statistics``); it is flagged once per experiment, with an
experiment.flagged webhook event, and the experiment keeps running: whether to stop it is the
admins' call.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.db import transaction, utcnow
from loyalty.experiments import services as experiments
from loyalty.experiments import statistics, verdicts
from loyalty.experiments.exceptions import ExperimentStatusConflict
from loyalty.experiments.models import (
    Experiment,
    ExperimentArm,
    ExperimentAssignment,
    ExperimentStatus,
)

# Pearson's chi-square is trusted only when every arm expects at least this many members
# (the textbook condition); before that the test is not run, rather than flag on noise.
MIN_EXPECTED = 5


def end_due(session: Session, now: dt.datetime | None = None) -> int:
    """Stop every running experiment whose ends_at is at or before `now`, as of its end
    (see experiments.services.end_experiment), each in its own transaction. Returns how
    many this call ended (one another worker ended first is not counted)."""
    now = now or utcnow()
    with transaction(session):
        due = list(
            session.scalars(
                sa.select(Experiment.public_id).where(
                    Experiment.status == ExperimentStatus.RUNNING, Experiment.ends_at <= now
                )
            )
        )
    ended = 0
    for experiment_id in due:
        try:
            experiments.end_experiment(session, experiment_id, now)
        except ExperimentStatusConflict:
            continue  # another worker ended it since the list was read
        ended += 1
    return ended


def flag_mismatches(session: Session, now: dt.datetime | None = None) -> int:
    """Flag every running, not yet flagged experiment whose members exposed per arm fail the
    sample-ratio check against its weights (chi-square, p < statistics.SRM_THRESHOLD), once
    every arm expects at least MIN_EXPECTED members. Returns how many this call flagged."""
    now = now or utcnow()
    watched = (Experiment.status == ExperimentStatus.RUNNING, Experiment.flagged_at.is_(None))
    with transaction(session):
        arms = session.execute(
            sa.select(Experiment.public_id, ExperimentArm.id, ExperimentArm.weight)
            .join(ExperimentArm, ExperimentArm.experiment_id == Experiment.id)
            .where(*watched)
            .order_by(Experiment.id, ExperimentArm.position)
        ).all()
        counts = {
            arm_id: int(count)
            for arm_id, count in session.execute(
                sa.select(ExperimentAssignment.arm_id, sa.func.count())
                .join(Experiment, Experiment.id == ExperimentAssignment.experiment_id)
                .where(*watched)
                .group_by(ExperimentAssignment.arm_id)
            )
        }
    designs: dict[uuid.UUID, list[tuple[int, int]]] = defaultdict(list)
    for experiment_id, arm_id, weight in arms:
        designs[experiment_id].append((counts.get(arm_id, 0), weight))
    flagged = 0
    for experiment_id, design in designs.items():
        exposed = [count for count, _ in design]
        weights = [weight for _, weight in design]
        if min(sum(exposed) * weight / sum(weights) for weight in weights) < MIN_EXPECTED:
            continue
        ratio = statistics.sample_ratio(exposed, weights)
        if ratio.mismatch and verdicts.flag_experiment(session, experiment_id, ratio, now):
            flagged += 1
    return flagged
