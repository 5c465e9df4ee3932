"""Experiments as admins manage them: created as drafts, changed while drafts, started and
stopped; the arms of a started experiment refused; every change in the audit log; and the
assignments' unique key, which makes a member's first exposure the one that counts."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from loyalty.audit.models import AuditEntry
from loyalty.errors import ValidationFailed
from loyalty.experiments import services
from loyalty.experiments.definitions import (
    ArmDefinition,
    Eligibility,
    ExperimentChanges,
)
from loyalty.experiments.exceptions import (
    ExperimentArmsLocked,
    ExperimentExists,
    ExperimentLocked,
    ExperimentNotFound,
    ExperimentStatusConflict,
)
from loyalty.experiments.models import (
    Experiment,
    ExperimentArm,
    ExperimentAssignment,
    ExperimentStatus,
    ExposureSource,
)
from loyalty.experiments.stored import ExperimentView
from loyalty.extensions import db
from loyalty.members.segments import UnknownSegment
from tests.concurrency import race, raised
from tests.experiments import DAY, HOLDOUT, T0, definition
from tests.factories import MemberFactory


def draft(session: Any, **fields: Any) -> ExperimentView:
    return services.create_experiment(session, definition(**fields), "admin", now=T0 - DAY)


def running(session: Any, **fields: Any) -> ExperimentView:
    return services.start_experiment(session, draft(session, **fields).public_id, "admin", T0)


def audit_trail(session: Any, view: ExperimentView) -> list[AuditEntry]:
    return list(
        session.scalars(
            sa.select(AuditEntry)
            .where(
                AuditEntry.target_type == "experiment",
                AuditEntry.target_id == str(view.public_id),
            )
            .order_by(AuditEntry.id)
        )
    )


def test_an_experiment_is_created_as_a_draft(session):
    created = draft(session)

    assert created.status == ExperimentStatus.DRAFT
    assert created.definition == definition()
    assert created.started_at is None
    assert services.get_experiment(session, created.public_id) == created
    arms = session.scalars(sa.select(ExperimentArm).order_by(ExperimentArm.position)).all()
    assert [(arm.position, arm.key, arm.control) for arm in arms] == [
        (0, "holdout", True),
        (1, "fires", False),
    ]


def test_its_creation_is_audited_with_its_arms(session):
    created = draft(session)

    (entry,) = audit_trail(session, created)
    assert (entry.action, entry.actor, entry.before) == ("experiment.create", "admin", None)
    assert entry.after is not None
    assert entry.after["key"] == "winback"
    assert entry.after["status"] == "draft"
    assert [arm["key"] for arm in entry.after["arms"]] == ["holdout", "fires"]


def test_an_invalid_definition_is_refused_and_nothing_stored(session):
    with pytest.raises(ValidationFailed) as refused:
        draft(session, ends_at=T0)

    assert refused.value.extra["errors"] == {"ends_at": ["After starts_at."]}
    assert session.scalar(sa.select(sa.func.count()).select_from(Experiment)) == 0


def test_an_eligibility_segment_must_be_a_saved_segment(session):
    with pytest.raises(UnknownSegment) as refused:
        draft(session, eligibility=Eligibility(segments=("nobody-saved-this",)))

    assert list(refused.value.extra["errors"]) == ["eligibility.segments"]


def test_a_key_is_one_experiments(session):
    draft(session)

    with pytest.raises(ExperimentExists) as refused:
        draft(session, name="Another")
    assert refused.value.code == "experiment_exists"


def test_a_draft_changes_anything_but_its_key_and_the_change_is_audited(session):
    created = draft(session)
    arms = (
        ArmDefinition("holdout", 1, control=True, applies=False),
        ArmDefinition("fires", 3, applies=True),
    )

    changed = services.change_experiment(
        session, created.public_id, ExperimentChanges(arms=arms, margin="0.4"), "admin", T0
    )

    assert changed.definition == dataclasses.replace(definition(), arms=arms, margin="0.4")
    assert services.get_experiment(session, created.public_id) == changed
    entry = audit_trail(session, created)[-1]
    assert entry.action == "experiment.update"
    assert entry.before is not None
    assert entry.after is not None
    assert [arm["weight"] for arm in entry.before["arms"]] == [1, 1]
    assert [arm["weight"] for arm in entry.after["arms"]] == [1, 3]
    assert (entry.before["margin"], entry.after["margin"]) == ("0.35", "0.4")


def test_a_change_that_changes_nothing_is_not_audited(session):
    created = draft(session)

    services.change_experiment(
        session, created.public_id, ExperimentChanges(arms=HOLDOUT), "admin", T0
    )

    assert [entry.action for entry in audit_trail(session, created)] == ["experiment.create"]


def test_a_change_is_validated_whole(session):
    created = draft(session)

    with pytest.raises(ValidationFailed) as refused:
        services.change_experiment(
            session, created.public_id, ExperimentChanges(ends_at=T0 - DAY), "admin", T0
        )
    assert refused.value.extra["errors"] == {"ends_at": ["After starts_at."]}


def test_starting_a_draft_runs_it_and_is_audited(session):
    started = running(session)

    assert started.status == ExperimentStatus.RUNNING
    assert started.started_at == T0
    entry = audit_trail(session, started)[-1]
    assert entry.action == "experiment.start"
    assert entry.before is not None
    assert entry.after is not None
    assert (entry.before["status"], entry.after["status"]) == ("draft", "running")


def test_only_a_draft_starts(session):
    started = running(session)

    with pytest.raises(ExperimentStatusConflict) as refused:
        services.start_experiment(session, started.public_id, "admin", T0)
    assert refused.value.code == "experiment_status_conflict"
    assert refused.value.status == 409


def test_a_draft_whose_window_ended_does_not_start(session):
    created = draft(session)

    with pytest.raises(ExperimentStatusConflict):
        services.start_experiment(session, created.public_id, "admin", T0 + 28 * DAY)
    assert services.get_experiment(session, created.public_id).status == ExperimentStatus.DRAFT


@pytest.mark.parametrize(
    "arms",
    [
        (
            ArmDefinition("holdout", 1, control=True, applies=False),
            ArmDefinition("fires", 2, applies=True),
        ),
        tuple(reversed(HOLDOUT)),
        (*HOLDOUT, ArmDefinition("also-fires", 1, applies=True)),
    ],
    ids=["a weight", "the order", "an arm added"],
)
def test_the_arms_of_a_running_experiment_cannot_change(session, arms):
    started = running(session)

    with pytest.raises(ExperimentArmsLocked) as refused:
        services.change_experiment(
            session, started.public_id, ExperimentChanges(arms=arms), "admin", T0 + DAY
        )

    assert (refused.value.code, refused.value.status) == ("experiment_arms_locked", 409)
    assert services.get_experiment(session, started.public_id).definition.arms == HOLDOUT
    assert audit_trail(session, started)[-1].action == "experiment.start"


def test_the_target_of_a_running_experiment_cannot_change(session):
    started = running(session)
    other = {"kind": "automation", "automation_id": str(uuid.uuid4())}

    with pytest.raises(ExperimentLocked) as refused:
        services.change_experiment(
            session, started.public_id, ExperimentChanges(target=other), "admin", T0 + DAY
        )
    assert refused.value.code == "experiment_locked"
    assert refused.value.extra["fields"] == ["target"]


def test_a_running_experiment_can_be_renamed(session):
    started = running(session)

    changed = services.change_experiment(
        session, started.public_id, ExperimentChanges(name="Win-back, 500 points"), "admin", T0
    )

    assert changed.definition.name == "Win-back, 500 points"
    assert changed.status == ExperimentStatus.RUNNING
    assert audit_trail(session, started)[-1].action == "experiment.update"


def test_stopping_a_running_experiment_is_audited_and_keeps_its_arms_fixed(session):
    started = running(session)

    stopped = services.stop_experiment(session, started.public_id, "admin", T0 + 7 * DAY)

    assert (stopped.status, stopped.stopped_at) == (ExperimentStatus.STOPPED, T0 + 7 * DAY)
    assert audit_trail(session, started)[-1].action == "experiment.stop"
    arms = (HOLDOUT[0], dataclasses.replace(HOLDOUT[1], weight=5))
    with pytest.raises(ExperimentArmsLocked):
        services.change_experiment(
            session, started.public_id, ExperimentChanges(arms=arms), "admin", T0 + 8 * DAY
        )


@pytest.mark.parametrize("status", ["draft", "stopped"])
def test_only_a_running_experiment_stops(session, status):
    experiment = draft(session) if status == "draft" else running(session)
    if status == "stopped":
        services.stop_experiment(session, experiment.public_id, "admin", T0 + DAY)

    with pytest.raises(ExperimentStatusConflict):
        services.stop_experiment(session, experiment.public_id, "admin", T0 + 2 * DAY)


def test_an_unknown_experiment_is_not_found(session):
    with pytest.raises(ExperimentNotFound):
        services.get_experiment(session, uuid.uuid4())
    with pytest.raises(ExperimentNotFound):
        services.start_experiment(session, uuid.uuid4(), "admin", T0)


def test_experiments_are_listed_newest_first_by_status(session):
    first = draft(session, key="first")
    second = running(session, key="second")
    third = draft(session, key="third")

    page, after = services.list_experiments(session, status=None, limit=2, after=None)
    assert [view.public_id for view in page] == [third.public_id, second.public_id]
    rest, end = services.list_experiments(session, status=None, limit=2, after=after)
    assert ([view.public_id for view in rest], end) == ([first.public_id], None)
    drafts, _ = services.list_experiments(
        session, status=ExperimentStatus.DRAFT, limit=10, after=None
    )
    assert [view.public_id for view in drafts] == [third.public_id, first.public_id]


def assignment(experiment_id: int, member_id: int, arm_id: int) -> ExperimentAssignment:
    return ExperimentAssignment(
        experiment_id=experiment_id,
        member_id=member_id,
        arm_id=arm_id,
        first_exposed_at=T0,
        exposure_source=ExposureSource.QUOTE,
    )


def stored(session: Any, key: str) -> tuple[int, list[int]]:
    experiment = session.scalars(sa.select(Experiment).where(Experiment.key == key)).one()
    return experiment.id, [arm.id for arm in experiment.arms]


def insert_in_savepoint(session: Any, row: ExperimentAssignment) -> None:
    """Insert the row in a savepoint, so a refusal leaves the test's transaction usable."""
    with session.begin_nested():
        session.add(row)
        session.flush()


def test_a_member_has_one_assignment_per_experiment(session):
    running(session)
    member = MemberFactory(external_id="c1", now=T0)
    experiment_id, arm_ids = stored(session, "winback")
    session.add(assignment(experiment_id, member.id, arm_ids[0]))
    session.flush()

    with pytest.raises(IntegrityError):
        insert_in_savepoint(session, assignment(experiment_id, member.id, arm_ids[1]))


@pytest.mark.committed
@pytest.mark.postgresql_only
def test_two_first_exposures_at_once_record_one_assignment(app):
    with app.app_context():
        running(db.session)
        member_id = MemberFactory(external_id="c1", now=T0).id
        experiment_id, arm_ids = stored(db.session, "winback")

    def expose(racer: int) -> None:
        db.session.add(assignment(experiment_id, member_id, arm_ids[racer]))
        db.session.commit()

    results = race(app, 2, expose)

    assert [type(error) for error in raised(results)] == [IntegrityError]
    with app.app_context():
        rows = db.session.scalars(sa.select(ExperimentAssignment)).all()
    assert len(rows) == 1


@pytest.mark.committed
@pytest.mark.postgresql_only
def test_two_creates_of_one_key_at_once_make_one_experiment(app):
    def create(racer: int) -> ExperimentView:
        return services.create_experiment(
            db.session, definition(name=f"Racer {racer}"), "admin", now=T0
        )

    results = race(app, 2, create)

    assert [type(error) for error in raised(results)] == [ExperimentExists]
    with app.app_context():
        count = db.session.scalar(sa.select(sa.func.count()).select_from(Experiment))
    assert count == 1
