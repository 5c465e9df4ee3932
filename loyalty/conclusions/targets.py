"""What an experiment may target, checked against the program: creating, changing and
starting an experiment as admins do, with its target's rules, automation or benefit looked up.

The experiment's own services (``loyalty.experiments.services``) check the definition's shape
only: they sit below the rules and automations, which ask them for a member's arm. These use
cases sit above them, so they can read both, and run the check and the write in one
transaction:

- a draft may name what exists (a rule or an automation of the program, a benefit some tier
  grants); a typo'd id is refused at once rather than found out as an experiment that changes
  nothing;
- a start also needs the target live: the experiment decides who gets an active rule or an
  active automation among the members it exposes, and cannot give anyone one that is off.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.automations.models import Automation
from loyalty.db import transaction
from loyalty.errors import ValidationFailed
from loyalty.experiments import services as experiments
from loyalty.experiments.definitions import (
    ExperimentChanges,
    ExperimentDefinition,
    TargetKind,
)
from loyalty.experiments.stored import ExperimentView
from loyalty.rules.models import EarningRule
from loyalty.tiers.services import program_tiers


def check_target(session: Session, target: Mapping[str, Any], *, live: bool) -> None:
    """Raise ValidationFailed (under "target") when the target names a rule or an automation
    the program does not have (or, with `live`, has switched off), or a benefit no tier
    grants. A target of the wrong shape is left to the definition's own check."""
    kind = target.get("kind")
    if kind == TargetKind.RULES:
        _check_rules(session, target.get("rule_ids") or [], live)
    elif kind == TargetKind.AUTOMATION:
        _check_automation(session, target.get("automation_id"), live)
    elif kind == TargetKind.BENEFIT:
        granted = {
            benefit["code"] for tier in program_tiers(session).all for benefit in tier.benefits
        }
        if target.get("code") not in granted:
            raise ValidationFailed(
                {"target.code": ["No tier grants this benefit."]},
                "The experiment's target is not one of the program's benefits.",
            )


def _uuids(values: Any) -> list[uuid.UUID]:
    try:
        return [uuid.UUID(str(value)) for value in values]
    except ValueError:
        return []  # not UUIDs: the definition's check names the field


def _check_rules(session: Session, rule_ids: Any, live: bool) -> None:
    wanted = _uuids(rule_ids)
    found = dict(
        session.execute(
            sa.select(EarningRule.public_id, EarningRule.active).where(
                EarningRule.public_id.in_(wanted)
            )
        ).all()
    )
    unknown = sorted(str(rule_id) for rule_id in wanted if rule_id not in found)
    if unknown:
        raise ValidationFailed(
            {"target.rule_ids": [f"No such rules: {', '.join(unknown)}."]},
            "The experiment's target names rules the program does not have.",
        )
    inactive = sorted(str(rule_id) for rule_id, active in found.items() if not active)
    if live and inactive:
        raise ValidationFailed(
            {"target.rule_ids": [f"Inactive rules: {', '.join(inactive)}; activate them."]},
            "An experiment decides who gets its rules: they must be active when it starts.",
        )


def _check_automation(session: Session, automation_id: Any, live: bool) -> None:
    ids = _uuids([automation_id])
    active = (
        session.scalar(sa.select(Automation.active).where(Automation.public_id == ids[0]))
        if ids
        else None
    )
    if active is None and ids:
        raise ValidationFailed(
            {"target.automation_id": ["No such automation."]},
            "The experiment's target is not one of the program's automations.",
        )
    if live and active is False:
        raise ValidationFailed(
            {"target.automation_id": ["The automation is inactive; activate it."]},
            "An experiment decides who the automation fires for: it must be active when "
            "the experiment starts.",
        )


def create_experiment(
    session: Session,
    definition: ExperimentDefinition,
    actor: str | None,
    now: dt.datetime | None = None,
) -> ExperimentView:
    """``experiments.services.create_experiment`` of a definition whose target exists."""
    with transaction(session):
        check_target(session, definition.target, live=False)
        return experiments.create_experiment(session, definition, actor, now)


def change_experiment(
    session: Session,
    experiment_id: uuid.UUID,
    changes: ExperimentChanges,
    actor: str | None,
    now: dt.datetime | None = None,
) -> ExperimentView:
    """``experiments.services.change_experiment``, a new target checked to exist."""
    with transaction(session):
        if changes.target is not None:
            check_target(session, changes.target, live=False)
        return experiments.change_experiment(session, experiment_id, changes, actor, now)


def start_experiment(
    session: Session, experiment_id: uuid.UUID, actor: str | None, now: dt.datetime | None = None
) -> ExperimentView:
    """``experiments.services.start_experiment`` of an experiment whose target exists and is
    live (its rules or automation active)."""
    with transaction(session):
        target = experiments.get_experiment(session, experiment_id).definition.target
        check_target(session, target, live=True)
        return experiments.start_experiment(session, experiment_id, actor, now)
