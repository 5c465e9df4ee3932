"""What happens to experiments on their own: webhook events when one starts and ends, the
jobs ending the experiments whose window passed (as of their end, audited, announced), and
flagging, once, an experiment whose members exposed per arm do not fit its weights."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa

from loyalty.audit.models import AuditEntry
from loyalty.conclusions import lifecycle
from loyalty.db import utcnow
from loyalty.experiments import services
from loyalty.experiments.definitions import ArmDefinition
from loyalty.experiments.exceptions import ExperimentStatusConflict
from loyalty.experiments.models import ExperimentStatus
from loyalty.extensions import db
from loyalty.schemas.webhooks import EVENT_PAYLOAD_SCHEMAS
from loyalty.webhooks.models import OutboxEvent
from tests.concurrency import race
from tests.experiments import DAY, T0, definition, expose, running
from tests.factories import MemberFactory

SECOND = dt.timedelta(seconds=1)


def events(session: Any, event_type: str) -> list[dict[str, Any]]:
    return list(
        session.scalars(
            sa.select(OutboxEvent.payload)
            .where(OutboxEvent.type == event_type)
            .order_by(OutboxEvent.id)
        )
    )


def documented(event_type: str, payload: dict[str, Any]) -> bool:
    """Whether the payload is exactly what the OpenAPI document describes for the event."""
    return EVENT_PAYLOAD_SCHEMAS[event_type]().validate(payload) == {}


def members(count: int, prefix: str) -> list[str]:
    ids = [f"{prefix}{n}" for n in range(count)]
    for external_id in ids:
        MemberFactory(external_id=external_id, now=T0 - DAY)
    return ids


# --- started and ended -------------------------------------------------------------------------


def test_starting_an_experiment_sends_experiment_started(session):
    view = running(session)

    (payload,) = events(session, "experiment.started")
    assert payload == {"experiment_id": str(view.public_id), "key": "winback", "status": "running"}
    assert documented("experiment.started", payload)


def test_stopping_an_experiment_sends_experiment_ended_stopped(session):
    view = running(session)

    services.stop_experiment(session, view.public_id, "admin", T0 + DAY)

    (payload,) = events(session, "experiment.ended")
    assert payload == {
        "experiment_id": str(view.public_id),
        "key": "winback",
        "status": "stopped",
        "reason": "stopped",
    }
    assert documented("experiment.ended", payload)


def test_a_refused_start_sends_nothing(session):
    view = running(session)

    with pytest.raises(ExperimentStatusConflict):
        services.start_experiment(session, view.public_id, "admin", T0)
    assert len(events(session, "experiment.started")) == 1


# --- end_due -----------------------------------------------------------------------------------


def test_the_jobs_end_an_experiment_whose_window_passed_as_of_its_end(session):
    view = running(session)

    assert lifecycle.end_due(session, T0 + 30 * DAY) == 1

    ended = services.get_experiment(session, view.public_id)
    assert ended.status == ExperimentStatus.STOPPED
    assert ended.stopped_at == T0 + 28 * DAY
    (payload,) = events(session, "experiment.ended")
    assert payload["reason"] == "window_ended"
    assert documented("experiment.ended", payload)
    entry = session.scalars(
        sa.select(AuditEntry).where(AuditEntry.action == "experiment.stop")
    ).one()
    assert (entry.actor, entry.target_id) == ("system", str(view.public_id))
    assert entry.created_at == T0 + 30 * DAY


def test_an_experiment_ends_at_its_end_exactly(session):
    running(session)

    assert lifecycle.end_due(session, T0 + 28 * DAY - SECOND) == 0
    assert lifecycle.end_due(session, T0 + 28 * DAY) == 1


def test_ending_twice_ends_once(session):
    running(session)

    assert lifecycle.end_due(session, T0 + 30 * DAY) == 1
    assert lifecycle.end_due(session, T0 + 31 * DAY) == 0
    assert len(events(session, "experiment.ended")) == 1


def test_only_running_experiments_end(session):
    services.create_experiment(session, definition(key="draft-one"), "admin", T0 - DAY)
    stopped = running(session, key="stopped-one")
    services.stop_experiment(session, stopped.public_id, "admin", T0 + DAY)

    assert lifecycle.end_due(session, T0 + 30 * DAY) == 0
    assert services.get_experiment(session, stopped.public_id).stopped_at == T0 + DAY


def test_an_experiment_whose_window_has_not_ended_is_not_ended_by_hand_either(session):
    view = running(session)

    with pytest.raises(ExperimentStatusConflict):
        services.end_experiment(session, view.public_id, T0 + DAY)


# --- flag_mismatches ---------------------------------------------------------------------------


def test_a_sample_ratio_mismatch_is_flagged_once_with_its_figures(session):
    view = running(session)
    expose(session, view, members(40, "h"), "holdout", T0)
    expose(session, view, members(10, "f"), "fires", T0)

    assert lifecycle.flag_mismatches(session, T0 + DAY) == 1
    assert lifecycle.flag_mismatches(session, T0 + 2 * DAY) == 0

    assert services.get_experiment(session, view.public_id).flagged_at == T0 + DAY
    (payload,) = events(session, "experiment.flagged")
    assert documented("experiment.flagged", payload)
    assert payload["observed"] == {"holdout": 40, "fires": 10}
    assert payload["expected"] == {"holdout": 25.0, "fires": 25.0}
    # chi-square 18 on one degree of freedom
    assert payload["p_value"] == pytest.approx(2.2e-5, rel=0.01)
    assert payload["status"] == "running"


def test_exposures_that_fit_the_weights_are_not_flagged(session):
    view = running(
        session,
        arms=(
            ArmDefinition("holdout", 1, control=True, applies=False),
            ArmDefinition("fires", 3, applies=True),
        ),
    )
    expose(session, view, members(11, "h"), "holdout", T0)
    expose(session, view, members(29, "f"), "fires", T0)

    assert lifecycle.flag_mismatches(session, T0 + DAY) == 0
    assert services.get_experiment(session, view.public_id).flagged_at is None


def test_too_few_members_expected_in_an_arm_are_not_tested(session):
    """Weights 1 to 9 and 40 members: the first arm expects 4, too few for the chi-square,
    however far 16 is from it."""
    view = running(
        session,
        arms=(
            ArmDefinition("holdout", 1, control=True, applies=False),
            ArmDefinition("fires", 9, applies=True),
        ),
    )
    expose(session, view, members(16, "h"), "holdout", T0)
    expose(session, view, members(24, "f"), "fires", T0)

    assert lifecycle.flag_mismatches(session, T0 + DAY) == 0


def test_a_stopped_experiment_is_not_flagged(session):
    view = running(session)
    expose(session, view, members(40, "h"), "holdout", T0)
    expose(session, view, members(10, "f"), "fires", T0)
    services.stop_experiment(session, view.public_id, "admin", T0 + DAY)

    assert lifecycle.flag_mismatches(session, T0 + 2 * DAY) == 0
    assert events(session, "experiment.flagged") == []


# --- in jobs run -------------------------------------------------------------------------------


def test_jobs_run_ends_the_experiments_whose_window_passed_and_says_so(app, session):
    """`jobs run` works at the real time: the experiment ran from ten days ago to yesterday."""
    now = utcnow()
    created = services.create_experiment(
        session,
        definition(starts_at=now - 10 * DAY, ends_at=now - DAY),
        "admin",
        now - 11 * DAY,
    )
    services.start_experiment(session, created.public_id, "admin", now - 10 * DAY)

    result = app.test_cli_runner().invoke(args=["jobs", "run"])

    assert result.exit_code == 0, result.output
    assert "1 experiments ended, 0 experiments flagged" in result.stdout
    ended = services.get_experiment(session, created.public_id)
    assert (ended.status, ended.stopped_at) == (ExperimentStatus.STOPPED, now - DAY)


# --- two workers at once -----------------------------------------------------------------------


@pytest.mark.committed
@pytest.mark.postgresql_only
def test_two_workers_end_an_experiment_once(app):
    with app.app_context():
        running(db.session)

    results = race(app, 2, lambda _: lifecycle.end_due(db.session, T0 + 30 * DAY))

    assert sorted(results) == [0, 1]
    with app.app_context():
        assert len(events(db.session, "experiment.ended")) == 1


@pytest.mark.committed
@pytest.mark.postgresql_only
def test_two_workers_flag_an_experiment_once(app):
    with app.app_context():
        view = running(db.session)
        expose(db.session, view, members(40, "h"), "holdout", T0)
        expose(db.session, view, members(10, "f"), "fires", T0)
        db.session.commit()

    results = race(app, 2, lambda _: lifecycle.flag_mismatches(db.session, T0 + DAY))

    assert sorted(results) == [0, 1]
    with app.app_context():
        assert len(events(db.session, "experiment.flagged")) == 1
