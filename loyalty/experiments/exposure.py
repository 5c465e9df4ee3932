"""Which arm of a live experiment a member is in, and the record of their first exposure.

Called by the features an experiment can target, at the moment a member meets them: the
earning rules at a quote, an order or an event; an automation when it evaluates a member it
would fire for; a benefit at a quote or an order. Each asks `placements` for the member and
applies what the arm says, then records the exposures that mattered (`record`).

Who gets what, per experiment that is live (running, or stopped and no arm promoted yet):

- A member the experiment exposes (it is running, now is in its window, the member is
  eligible) gets their arm: the arm is the pure hash of ``assignment``, so every node and
  every retry agrees, and the first exposure is recorded (an insert that skips an existing
  (experiment, member) row: the first one's arm, time and source stand).
- Anyone else (not eligible, before or after the window, or the experiment stopped) gets the
  control arm's behaviour, the program "as today". A new rule under test therefore reaches
  no one outside its arm; a stopped experiment keeps its target at the control's behaviour
  until an arm is promoted, which makes that arm's choice the program's own and releases the
  target.

What is live is read once per process and config version (``config.part``): starting,
stopping, changing or promoting an experiment bumps the version. With nothing live, every
call here costs a tuple check.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from loyalty.db import insert_ignoring_conflicts
from loyalty.experiments.assignment import ArmSplit
from loyalty.experiments.definitions import Eligibility, TargetKind
from loyalty.experiments.models import (
    Experiment,
    ExperimentArm,
    ExperimentAssignment,
    ExperimentStatus,
    ExposureSource,
)
from loyalty.members.segments import SavedSegment, SegmentMember, member_segment_keys
from loyalty.program import config

# Running, or stopped with no arm promoted: its target stays at the control's behaviour.
LIVE = sa.or_(
    Experiment.status == ExperimentStatus.RUNNING,
    sa.and_(Experiment.status == ExperimentStatus.STOPPED, Experiment.promoted_arm.is_(None)),
)


@dataclass(frozen=True, slots=True)
class LiveArm:
    id: int
    key: str
    weight: int
    control: bool
    # A rules target: the target's rules its members get (public ids); otherwise None.
    rule_ids: frozenset[str] | None
    # An automation or benefit target: whether its members get it; otherwise None.
    applies: bool | None


@dataclass(frozen=True, slots=True)
class LiveExperiment:
    id: int
    key: str
    running: bool
    target_kind: TargetKind
    # The target: its rules' public ids, its automation's public id or its benefit code.
    rule_ids: frozenset[str]
    automation_id: str | None
    benefit_code: str | None
    arms: tuple[LiveArm, ...]
    split: ArmSplit
    eligibility: Eligibility
    starts_at: dt.datetime
    ends_at: dt.datetime

    @property
    def control(self) -> LiveArm:
        return next(arm for arm in self.arms if arm.control)

    def exposes_at(self, now: dt.datetime) -> bool:
        return self.running and self.starts_at <= now < self.ends_at

    def arm(self, key: str) -> LiveArm:
        return next(arm for arm in self.arms if arm.key == key)


@dataclass(frozen=True, slots=True)
class Placement:
    """What the member gets of one experiment: their arm when `exposed`, else the control's
    behaviour (see the module's docstring)."""

    experiment: LiveExperiment
    arm: LiveArm
    exposed: bool


@dataclass(frozen=True, slots=True)
class MemberFacts:
    """What eligibility reads of a member; the segments only when asked (a query)."""

    id: int
    external_id: str
    enrolled_at: dt.datetime
    tier_code: str | None


def _load(connection: Connection) -> tuple[LiveExperiment, ...]:
    experiments = connection.execute(
        sa.select(Experiment.__table__).where(LIVE).order_by(Experiment.id)
    ).all()
    if not experiments:
        return ()
    arms: dict[int, list[LiveArm]] = {}
    for row in connection.execute(
        sa.select(ExperimentArm.__table__)
        .where(ExperimentArm.experiment_id.in_([row.id for row in experiments]))
        .order_by(ExperimentArm.experiment_id, ExperimentArm.position)
    ):
        arms.setdefault(row.experiment_id, []).append(
            LiveArm(
                id=row.id,
                key=row.key,
                weight=row.weight,
                control=row.control,
                rule_ids=frozenset(row.rule_ids) if row.rule_ids is not None else None,
                applies=row.applies,
            )
        )
    return tuple(_live(row, tuple(arms[row.id])) for row in experiments)


def _live(row: Any, arms: tuple[LiveArm, ...]) -> LiveExperiment:
    target, eligibility = row.target, row.eligibility
    return LiveExperiment(
        id=row.id,
        key=row.key,
        running=ExperimentStatus(row.status) == ExperimentStatus.RUNNING,
        target_kind=TargetKind(target["kind"]),
        rule_ids=frozenset(target.get("rule_ids") or ()),
        automation_id=target.get("automation_id"),
        benefit_code=target.get("code"),
        arms=arms,
        split=ArmSplit.of([(arm.key, arm.weight) for arm in arms]),
        eligibility=Eligibility(
            segments=tuple(eligibility["segments"]),
            tiers=tuple(eligibility["tiers"]),
            new_members_only=eligibility["new_members_only"],
        ),
        starts_at=row.starts_at,
        ends_at=row.ends_at,
    )


def live(session: Session) -> tuple[LiveExperiment, ...]:
    """The live experiments: kept per process and config version."""
    return config.current(session).part(session, _load)


def _eligible(
    experiment: LiveExperiment, member: MemberFacts, segments: frozenset[str] | None
) -> bool:
    wanted = experiment.eligibility
    if wanted.new_members_only and member.enrolled_at < experiment.starts_at:
        return False
    if wanted.tiers and member.tier_code not in wanted.tiers:
        return False
    return not wanted.segments or bool(set(wanted.segments) & (segments or frozenset()))


def _placement(
    experiment: LiveExperiment,
    member: MemberFacts,
    segments: frozenset[str] | None,
    now: dt.datetime,
) -> Placement:
    if experiment.exposes_at(now) and _eligible(experiment, member, segments):
        key = experiment.split.arm_for(experiment.key, member.external_id)
        return Placement(experiment, experiment.arm(key), exposed=True)
    return Placement(experiment, experiment.control, exposed=False)


def _needs_segments(experiments: Sequence[LiveExperiment], now: dt.datetime) -> bool:
    return any(e.eligibility.segments and e.exposes_at(now) for e in experiments)


def place(
    session: Session,
    experiments: Sequence[LiveExperiment],
    member: MemberFacts,
    now: dt.datetime,
) -> list[Placement]:
    """The member's placement in each of `experiments` at `now`. Looks the member's
    segments up only when an exposing experiment is limited to segments."""
    segments = (
        member_segment_keys(session, member.id) if _needs_segments(experiments, now) else None
    )
    return [_placement(experiment, member, segments, now) for experiment in experiments]


def place_many(
    session: Session,
    experiment: LiveExperiment,
    members: Sequence[MemberFacts],
    now: dt.datetime,
) -> dict[int, Placement]:
    """Each member's placement in `experiment` (by member row id), with one segment query
    for all of them when the experiment is limited to segments."""
    segments: dict[int, set[str]] = {}
    if _needs_segments([experiment], now):
        for member_id, key in session.execute(
            sa.select(SegmentMember.member_id, SavedSegment.key)
            .join(SavedSegment, SavedSegment.id == SegmentMember.segment_id)
            .where(
                SegmentMember.member_id.in_([member.id for member in members]),
                SavedSegment.deleted_at.is_(None),
            )
        ):
            segments.setdefault(member_id, set()).add(key)
    return {
        member.id: _placement(experiment, member, frozenset(segments.get(member.id, ())), now)
        for member in members
    }


def record(
    session: Session,
    exposures: Sequence[tuple[int, Placement]],
    source: ExposureSource,
    now: dt.datetime,
) -> None:
    """Record the first exposure of each (member row id, placement) that exposed the member,
    in the caller's transaction; a member exposed before keeps their first record."""
    rows = [
        {
            "experiment_id": placement.experiment.id,
            "member_id": member_id,
            "arm_id": placement.arm.id,
            "first_exposed_at": now,
            "exposure_source": source,
        }
        for member_id, placement in exposures
        if placement.exposed
    ]
    if rows:
        session.execute(
            insert_ignoring_conflicts(
                session, ExperimentAssignment, ("experiment_id", "member_id")
            ),
            rows,
        )


def rules_placements(
    session: Session,
    rule_ids: frozenset[str],
    member: MemberFacts,
    now: dt.datetime,
    source: ExposureSource,
) -> dict[str, Placement]:
    """The placement deciding each of `rule_ids` (the active rules about to be evaluated for
    the member) that a live experiment targets, by rule id; the exposures recorded."""
    experiments = [
        experiment
        for experiment in live(session)
        if experiment.target_kind == TargetKind.RULES and experiment.rule_ids & rule_ids
    ]
    if not experiments:
        return {}
    placements = place(session, experiments, member, now)
    record(session, [(member.id, placement) for placement in placements], source, now)
    return {
        rule_id: placement for placement in placements for rule_id in placement.experiment.rule_ids
    }


def benefit_placements(
    session: Session,
    codes: frozenset[str],
    member: MemberFacts,
    now: dt.datetime,
    source: ExposureSource | None,
) -> dict[str, Placement]:
    """The placement deciding each of the benefit `codes` (the member's tier's) that a live
    experiment targets, by code; the exposures recorded when `source` is given (a read of
    the member's benefits records none: exposure is where the benefit acts, at checkout)."""
    experiments = [
        experiment
        for experiment in live(session)
        if experiment.target_kind == TargetKind.BENEFIT and experiment.benefit_code in codes
    ]
    if not experiments:
        return {}
    placements = place(session, experiments, member, now)
    if source is not None:
        record(session, [(member.id, placement) for placement in placements], source, now)
    return {str(placement.experiment.benefit_code): placement for placement in placements}


def automation_experiment(session: Session, automation_id: str) -> LiveExperiment | None:
    """The live experiment targeting the automation (its public id), if any."""
    return next(
        (
            experiment
            for experiment in live(session)
            if experiment.target_kind == TargetKind.AUTOMATION
            and experiment.automation_id == automation_id
        ),
        None,
    )
