"""Experiments as the conclusions' tests set them up: created and started through their
services, and members exposed by writing their assignment as exposure recording does."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from loyalty.experiments import services
from loyalty.experiments.definitions import ArmDefinition, ExperimentDefinition
from loyalty.experiments.models import (
    Experiment,
    ExperimentArm,
    ExperimentAssignment,
    ExposureSource,
)
from loyalty.experiments.stored import ExperimentView
from loyalty.members.lookup import find_member
from tests.factories import MemberFactory, OrderFactory

T0 = dt.datetime(2031, 3, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
AUTOMATION = "9a1d2c3b-4e5f-4a6b-8c7d-0e1f2a3b4c5d"
HOLDOUT = (
    ArmDefinition("holdout", 1, control=True, applies=False),
    ArmDefinition("fires", 1, applies=True),
)


def definition(**fields: Any) -> ExperimentDefinition:
    """An automation experiment over [T0, T0 + 28 days], a holdout against the automation,
    unless `fields` say otherwise."""
    values: dict[str, Any] = {
        "key": "winback",
        "name": "Win-back bonus",
        "hypothesis": "A win-back bonus brings lapsed members back for more than it costs.",
        "target": {"kind": "automation", "automation_id": AUTOMATION},
        "arms": HOLDOUT,
        "starts_at": T0,
        "ends_at": T0 + 28 * DAY,
        "margin": "0.35",
    }
    return ExperimentDefinition(**(values | fields))


def running(session: Any, **fields: Any) -> ExperimentView:
    """An experiment created the day before T0 and started at T0."""
    created = services.create_experiment(session, definition(**fields), "admin", T0 - DAY)
    return services.start_experiment(session, created.public_id, "admin", T0)


def expose(
    session: Any,
    experiment: ExperimentView,
    external_ids: Sequence[str],
    arm: str,
    at: dt.datetime,
    source: ExposureSource = ExposureSource.QUOTE,
) -> None:
    """Record the members' first exposure to the experiment, in `arm`, at `at` (by a quote
    unless `source` says otherwise)."""
    experiment_pk, arm_pk = session.execute(
        sa.select(Experiment.id, ExperimentArm.id)
        .join(ExperimentArm, ExperimentArm.experiment_id == Experiment.id)
        .where(Experiment.public_id == experiment.public_id, ExperimentArm.key == arm)
    ).one()
    for external_id in external_ids:
        session.add(
            ExperimentAssignment(
                experiment_id=experiment_pk,
                member_id=find_member(session, external_id).id,
                arm_id=arm_pk,
                first_exposed_at=at,
                exposure_source=source,
            )
        )
    session.flush()


def concluded(
    session: Any,
    arms: dict[str, Sequence[str]],
    dollars: dict[str, int],
    start: dt.datetime,
    **fields: Any,
) -> ExperimentView:
    """The experiment of `definition` run from `start` (its window [start, start + 28
    days]) and stopped ten days in: the members of `arms` (enrolled a month before) exposed
    a day in, each member of `dollars` ordering one tee of that many dollars two days in.
    For the API and the console, whose results are as of the real now: pass a `start` more
    than ten days ago."""
    for members in arms.values():
        for member in members:
            MemberFactory(external_id=member, now=start - 30 * DAY)
    created = services.create_experiment(
        session,
        definition(starts_at=start, ends_at=start + 28 * DAY, **fields),
        "admin",
        start - DAY,
    )
    services.start_experiment(session, created.public_id, "admin", start)
    for arm, members in arms.items():
        expose(session, created, members, arm, start + DAY)
    for member, worth in dollars.items():
        OrderFactory(order_id=f"{member}-o", member_id=member, worth=worth, now=start + 2 * DAY)
    return services.stop_experiment(session, created.public_id, "admin", start + 10 * DAY)
