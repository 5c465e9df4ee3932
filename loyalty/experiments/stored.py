"""An experiment as the services read it: the frozen view they answer with, the definition
rebuilt from its rows, its audit snapshot and its webhook events' common fields, and the
lookup by public id. Shared by ``services`` (the admin use cases) and ``verdicts`` (what is
concluded about an experiment)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.audit import services as audit
from loyalty.experiments.definitions import ArmDefinition, Eligibility, ExperimentDefinition
from loyalty.experiments.exceptions import ExperimentNotFound
from loyalty.experiments.models import Experiment, ExperimentStatus


@dataclass(frozen=True, slots=True)
class ExperimentView:
    """An experiment as stored: its definition, status, when it started and stopped, when
    it was flagged for a sample-ratio mismatch, and the arm promoted after it (and when)."""

    public_id: uuid.UUID
    status: ExperimentStatus
    definition: ExperimentDefinition
    started_at: dt.datetime | None
    stopped_at: dt.datetime | None
    created_at: dt.datetime
    flagged_at: dt.datetime | None
    promoted_arm: str | None
    promoted_at: dt.datetime | None


def definition_of(experiment: Experiment) -> ExperimentDefinition:
    return ExperimentDefinition(
        key=experiment.key,
        name=experiment.name,
        hypothesis=experiment.hypothesis,
        target=dict(experiment.target),
        arms=tuple(
            ArmDefinition(
                key=arm.key,
                weight=arm.weight,
                control=arm.control,
                rule_ids=tuple(arm.rule_ids) if arm.rule_ids is not None else None,
                applies=arm.applies,
            )
            for arm in experiment.arms
        ),
        eligibility=Eligibility(
            segments=tuple(experiment.eligibility["segments"]),
            tiers=tuple(experiment.eligibility["tiers"]),
            new_members_only=experiment.eligibility["new_members_only"],
        ),
        starts_at=experiment.starts_at,
        ends_at=experiment.ends_at,
        margin=experiment.margin,
    )


def view_of(experiment: Experiment) -> ExperimentView:
    return ExperimentView(
        public_id=experiment.public_id,
        status=experiment.status,
        definition=definition_of(experiment),
        started_at=experiment.started_at,
        stopped_at=experiment.stopped_at,
        created_at=experiment.created_at,
        flagged_at=experiment.flagged_at,
        promoted_arm=experiment.promoted_arm,
        promoted_at=experiment.promoted_at,
    )


def snapshot(experiment: Experiment) -> dict[str, Any]:
    """The experiment's columns and its arms, in order, for the audit log."""
    return {
        **audit.snapshot(experiment),
        "arms": [arm.as_fields() for arm in definition_of(experiment).arms],
    }


def find(session: Session, experiment_id: uuid.UUID, *, lock: bool = False) -> Experiment:
    stmt = sa.select(Experiment).where(Experiment.public_id == experiment_id)
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    experiment = session.execute(stmt).scalar_one_or_none()
    if experiment is None:
        raise ExperimentNotFound(f"No experiment with id {experiment_id}.")
    return experiment


def event_fields(experiment: Experiment) -> dict[str, Any]:
    """What every experiment.* webhook event says of the experiment."""
    return {
        "experiment_id": str(experiment.public_id),
        "key": experiment.key,
        "status": experiment.status.value,
    }
