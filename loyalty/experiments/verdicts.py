"""What is concluded about an experiment, recorded on it: the sample-ratio flag and the arm
promoted after it. The use cases that decide them live in ``loyalty.conclusions``, which
reads orders and the ledger and changes rules, automations and tiers; these are the writes
to the experiment itself, so each has one writer."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable

from sqlalchemy.orm import Session

from loyalty.audit import services as audit
from loyalty.db import transaction, utcnow
from loyalty.experiments.definitions import ArmDefinition, ExperimentDefinition
from loyalty.experiments.exceptions import (
    ExperimentPromoted,
    ExperimentStatusConflict,
    UnknownArm,
)
from loyalty.experiments.models import ExperimentStatus
from loyalty.experiments.statistics import SampleRatio
from loyalty.experiments.stored import (
    ExperimentView,
    definition_of,
    event_fields,
    find,
    snapshot,
    view_of,
)
from loyalty.program import config
from loyalty.webhooks import outbox


def flag_experiment(
    session: Session, experiment_id: uuid.UUID, ratio: SampleRatio, now: dt.datetime
) -> bool:
    """Flag a running experiment whose exposures do not fit its weights (`ratio`, observed
    and expected in the order of its arms) and send experiment.flagged. Returns whether it
    was flagged now: False for one already flagged or no longer running, so a flag is sent
    once however many workers look. Raises ExperimentNotFound."""
    with transaction(session):
        experiment = find(session, experiment_id, lock=True)
        if experiment.status != ExperimentStatus.RUNNING or experiment.flagged_at is not None:
            return False
        experiment.flagged_at = now
        keys = [arm.key for arm in experiment.arms]
        outbox.emit(
            session,
            "experiment.flagged",
            {
                **event_fields(experiment),
                "observed": dict(zip(keys, ratio.observed, strict=True)),
                "expected": dict(zip(keys, ratio.expected, strict=True)),
                "p_value": ratio.p_value,
                "flagged_at": now.isoformat(),
            },
            now,
        )
        return True


def promote(
    session: Session,
    experiment_id: uuid.UUID,
    arm_key: str,
    actor: str | None,
    apply: Callable[[ExperimentDefinition, ArmDefinition], None],
    now: dt.datetime | None = None,
) -> ExperimentView:
    """Promote the arm of a stopped experiment: `apply` makes its treatment the program's
    (the caller's changes to rules, automations or tiers), then the experiment records the
    arm and when, audited as experiment.promote; all in one transaction, the experiment
    locked throughout, so two promotions cannot both pass the checks. Returns the
    experiment. Raises ExperimentNotFound, ExperimentStatusConflict (not stopped),
    ExperimentPromoted (promoted before), UnknownArm, and whatever `apply` raises."""
    now = now or utcnow()
    with transaction(session):
        experiment = find(session, experiment_id, lock=True)
        if experiment.status != ExperimentStatus.STOPPED:
            raise ExperimentStatusConflict(
                f"Only a stopped experiment can promote an arm; this one is "
                f"{experiment.status.value}.",
                status_now=experiment.status.value,
            )
        if experiment.promoted_arm is not None:
            raise ExperimentPromoted(
                f"The experiment promoted its arm {experiment.promoted_arm!r} already.",
                promoted_arm=experiment.promoted_arm,
            )
        definition = definition_of(experiment)
        arm = next((arm for arm in definition.arms if arm.key == arm_key), None)
        if arm is None:
            raise UnknownArm(
                f"The experiment has no arm {arm_key!r}.",
                errors={"arm": [f"One of {', '.join(arm.key for arm in definition.arms)}."]},
            )
        before = snapshot(experiment)
        apply(definition, arm)
        experiment.promoted_arm = arm.key
        experiment.promoted_at = now
        experiment.updated_at = now
        # The experiment releases its target (no longer live: see ``exposure``).
        config.changed(session)
        session.flush()
        audit.record(
            session,
            actor,
            "experiment.promote",
            "experiment",
            experiment.public_id,
            before,
            snapshot(experiment),
            now,
        )
        return view_of(experiment)
