"""Managing experiments: create a draft, change it, start it, stop it, read them; every change
audited (target_type "experiment"). One transaction per use case, no Flask.

Starting and stopping send experiment.started and experiment.ended webhook events in the
same transaction; who gets which arm is ``exposure``'s. Writes take typed commands
(``ExperimentDefinition``, ``ExperimentChanges``) and every service answers with frozen views
built in its transaction.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from loyalty.audit import services as audit
from loyalty.db import transaction, utcnow
from loyalty.experiments import exposure
from loyalty.experiments.definitions import (
    DESCRIPTIVE_FIELDS,
    ExperimentChanges,
    ExperimentDefinition,
    TargetKind,
    check_definition,
)
from loyalty.experiments.exceptions import (
    ExperimentArmsLocked,
    ExperimentExists,
    ExperimentLocked,
    ExperimentStatusConflict,
    ExperimentTargetTaken,
)
from loyalty.experiments.models import EndReason, Experiment, ExperimentArm, ExperimentStatus
from loyalty.experiments.stored import (
    ExperimentView,
    definition_of,
    event_fields,
    find,
    snapshot,
    view_of,
)
from loyalty.members.segments import check_segment_keys
from loyalty.program import config
from loyalty.webhooks import outbox


def _store(session: Session, experiment: Experiment, definition: ExperimentDefinition) -> None:
    """Write the definition's fields (all but the key) and arms onto the experiment."""
    if experiment.arms:
        # The old arms go first: the unit of work inserts before it deletes, and a kept arm
        # key would collide with the old row's under the (experiment, key) unique key.
        experiment.arms.clear()
        session.flush()
    experiment.name = definition.name
    experiment.hypothesis = definition.hypothesis
    experiment.target = dict(definition.target)
    experiment.eligibility = definition.eligibility.as_fields()
    experiment.starts_at = definition.starts_at
    experiment.ends_at = definition.ends_at
    experiment.margin = definition.margin
    experiment.arms = [
        ExperimentArm(position=position, **arm.as_fields())
        for position, arm in enumerate(definition.arms)
    ]


def create_experiment(
    session: Session,
    definition: ExperimentDefinition,
    actor: str | None,
    now: dt.datetime | None = None,
) -> ExperimentView:
    """Create the experiment as a draft and return it. Raises ValidationFailed for an invalid
    definition, UnknownSegment for an eligibility segment that is no live saved segment's,
    ExperimentExists when its key is another experiment's."""
    check_definition(definition)
    now = now or utcnow()
    with transaction(session):
        check_segment_keys(session, definition.eligibility.segments, "eligibility.segments")
        if session.scalar(sa.select(sa.exists().where(Experiment.key == definition.key))):
            raise ExperimentExists(f"An experiment with key {definition.key!r} exists.")
        experiment = Experiment(
            key=definition.key, status=ExperimentStatus.DRAFT, created_at=now, updated_at=now
        )
        _store(session, experiment, definition)
        session.add(experiment)
        try:
            session.flush()
        except IntegrityError as error:
            # Two creates of one key at once: the check above saw neither, the unique key
            # refuses the second (the transaction is rolled back as the error leaves it).
            raise ExperimentExists(f"An experiment with key {definition.key!r} exists.") from error
        audit.record(
            session,
            actor,
            "experiment.create",
            "experiment",
            experiment.public_id,
            None,
            snapshot(experiment),
            now,
        )
        return view_of(experiment)


def change_experiment(
    session: Session,
    experiment_id: uuid.UUID,
    changes: ExperimentChanges,
    actor: str | None,
    now: dt.datetime | None = None,
) -> ExperimentView:
    """Apply `changes` and return the experiment. A draft may change anything but its key;
    once started, only its name and hypothesis. Raises ExperimentNotFound, ValidationFailed,
    UnknownSegment, ExperimentArmsLocked (arms or weights of a running or stopped
    experiment), ExperimentLocked (any other field of one)."""
    now = now or utcnow()
    with transaction(session):
        experiment = find(session, experiment_id, lock=True)
        before = definition_of(experiment)
        after = changes.applied_to(before)
        if experiment.status != ExperimentStatus.DRAFT:
            if after.arms != before.arms:
                raise ExperimentArmsLocked(
                    f"The experiment is {experiment.status.value}: its arms and weights "
                    "cannot change, as that would move members between arms."
                )
            locked = sorted(
                name
                for name in changes.given() - DESCRIPTIVE_FIELDS
                if getattr(after, name) != getattr(before, name)
            )
            if locked:
                raise ExperimentLocked(
                    f"The experiment is {experiment.status.value}: only its name and "
                    f"hypothesis can change, not {', '.join(locked)}.",
                    fields=locked,
                )
        check_definition(after)
        if after == before:
            return view_of(experiment)
        check_segment_keys(session, after.eligibility.segments, "eligibility.segments")
        before_snapshot = snapshot(experiment)
        _store(session, experiment, after)
        experiment.updated_at = now
        session.flush()
        audit.record(
            session,
            actor,
            "experiment.update",
            "experiment",
            experiment.public_id,
            before_snapshot,
            snapshot(experiment),
            now,
        )
        return view_of(experiment)


def _transition(
    session: Session,
    experiment_id: uuid.UUID,
    actor: str | None,
    now: dt.datetime,
    *,
    source: ExperimentStatus,
    target: ExperimentStatus,
    action: str,
    reason: EndReason | None = None,
) -> ExperimentView:
    with transaction(session):
        experiment = find(session, experiment_id, lock=True)
        if experiment.status != source:
            raise ExperimentStatusConflict(
                f"Only a {source.value} experiment can become {target.value}; "
                f"this one is {experiment.status.value}.",
                status_now=experiment.status.value,
            )
        before_snapshot = snapshot(experiment)
        if target == ExperimentStatus.RUNNING and experiment.ends_at <= now:
            raise ExperimentStatusConflict(
                "The experiment's window has ended: change its end before starting it.",
                status_now=experiment.status.value,
            )
        if target == ExperimentStatus.RUNNING:
            _check_target_free(session, experiment)
        if reason is EndReason.WINDOW_ENDED and experiment.ends_at > now:
            raise ExperimentStatusConflict(
                "The experiment's window has not ended yet.", status_now=experiment.status.value
            )
        experiment.status = target
        # Live experiments are read per config version (``exposure``): a new one from now.
        config.changed(session)
        if target == ExperimentStatus.RUNNING:
            experiment.started_at = now
            outbox.emit(session, "experiment.started", event_fields(experiment), now)
        else:
            # Ended by its window: it stopped exposing anyone at its end, not when the job
            # noticed, so its results cover exactly its window.
            ended = reason is EndReason.WINDOW_ENDED
            experiment.stopped_at = experiment.ends_at if ended else now
            outbox.emit(
                session,
                "experiment.ended",
                {**event_fields(experiment), "reason": (reason or EndReason.STOPPED).value},
                now,
            )
        experiment.updated_at = now
        session.flush()
        audit.record(
            session,
            actor,
            action,
            "experiment",
            experiment.public_id,
            before_snapshot,
            snapshot(experiment),
            now,
        )
        return view_of(experiment)


def _overlap(one: dict[str, Any], other: dict[str, Any]) -> bool:
    if one["kind"] != other["kind"]:
        return False
    if one["kind"] == TargetKind.RULES:
        return bool(set(one["rule_ids"]) & set(other["rule_ids"]))
    name = "automation_id" if one["kind"] == TargetKind.AUTOMATION else "code"
    return bool(one[name] == other[name])


def _check_target_free(session: Session, experiment: Experiment) -> None:
    """Refuse to start an experiment whose target (a rule, the automation, the benefit)
    another live experiment holds (running, or stopped with no arm promoted: see
    ``exposure``): a member would be in two arms that disagree."""
    others = session.execute(
        sa.select(Experiment.key, Experiment.target).where(
            exposure.LIVE, Experiment.id != experiment.id
        )
    ).all()
    taken = sorted(key for key, target in others if _overlap(experiment.target, target))
    if taken:
        raise ExperimentTargetTaken(
            f"The experiment(s) {', '.join(taken)} already test this target (running, or "
            "stopped with no arm promoted).",
            experiments=taken,
        )


def start_experiment(
    session: Session, experiment_id: uuid.UUID, actor: str | None, now: dt.datetime | None = None
) -> ExperimentView:
    """Start a draft (it becomes running; its arms are fixed from now on) and return it.
    Members are exposed only within its window (starts_at to ends_at), so a draft may be
    started ahead of its start. Raises ExperimentNotFound, ExperimentStatusConflict for an
    experiment that is not a draft or whose window has ended, ExperimentTargetTaken when a
    running experiment tests the same rule, automation or benefit."""
    return _transition(
        session,
        experiment_id,
        actor,
        now or utcnow(),
        source=ExperimentStatus.DRAFT,
        target=ExperimentStatus.RUNNING,
        action="experiment.start",
    )


def stop_experiment(
    session: Session, experiment_id: uuid.UUID, actor: str | None, now: dt.datetime | None = None
) -> ExperimentView:
    """Stop a running experiment (it exposes no one from now on; its results stay) and
    return it. Raises ExperimentNotFound, ExperimentStatusConflict for one that is not
    running."""
    return _transition(
        session,
        experiment_id,
        actor,
        now or utcnow(),
        source=ExperimentStatus.RUNNING,
        target=ExperimentStatus.STOPPED,
        action="experiment.stop",
    )


def end_experiment(
    session: Session, experiment_id: uuid.UUID, now: dt.datetime | None = None
) -> ExperimentView:
    """Stop a running experiment whose window has ended, as of its end (its stopped_at is
    its ends_at), audited as experiment.stop by "system", and return it. Raises
    ExperimentNotFound, ExperimentStatusConflict for one that is not running or whose
    window has not ended."""
    return _transition(
        session,
        experiment_id,
        None,
        now or utcnow(),
        source=ExperimentStatus.RUNNING,
        target=ExperimentStatus.STOPPED,
        action="experiment.stop",
        reason=EndReason.WINDOW_ENDED,
    )


def get_experiment(session: Session, experiment_id: uuid.UUID) -> ExperimentView:
    """The experiment. Raises ExperimentNotFound."""
    return view_of(find(session, experiment_id))


def list_experiments(
    session: Session, *, status: ExperimentStatus | None, limit: int, after: int | None
) -> tuple[list[ExperimentView], int | None]:
    """Experiments newest first, one page, of one status if given; returns (experiments,
    position of the next page or None)."""
    stmt = sa.select(Experiment).order_by(Experiment.id.desc()).limit(limit + 1)
    if status is not None:
        stmt = stmt.where(Experiment.status == status)
    if after is not None:
        stmt = stmt.where(Experiment.id < after)
    found = list(session.execute(stmt).scalars())
    next_position = found[limit - 1].id if len(found) > limit else None
    return [view_of(experiment) for experiment in found[:limit]], next_position
