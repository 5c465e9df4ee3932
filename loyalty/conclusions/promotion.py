"""Promoting an experiment's arm: what its members got becomes what every member gets.

Each change goes through the feature's own service, so it is versioned and audited as any
admin's change would be, and all of them and the experiment's record of the promotion
commit together or not at all (``loyalty.experiments.verdicts.promote``):

- a rules target: the target's rules the arm names are activated, its other rules
  deactivated;
- an automation target: the automation is activated if the arm had it, deactivated if not;
- a benefit target: an arm that had the benefit changes nothing (the tiers grant it
  already); one that did not removes it from every tier that grants it.

A change that is already so (a rule active already) makes no new version.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy.orm import Session

from loyalty.automations import services as automations
from loyalty.experiments import verdicts
from loyalty.experiments.definitions import ArmDefinition, ExperimentDefinition, TargetKind
from loyalty.experiments.stored import ExperimentView
from loyalty.rules import services as rules
from loyalty.tiers import definitions as tiers


def promote_arm(
    session: Session,
    experiment_id: uuid.UUID,
    arm_key: str,
    actor: str | None,
    now: dt.datetime | None = None,
) -> ExperimentView:
    """Make the arm's treatment the program's (see the module's docstring) and record the
    promotion on the stopped experiment, audited as experiment.promote; one transaction.
    Returns the experiment. Raises ExperimentNotFound, ExperimentStatusConflict (the
    experiment is not stopped), ExperimentPromoted (it promoted an arm already), UnknownArm,
    RuleNotFound or AutomationNotFound (a target deleted since), and what activating an
    automation raises (UnknownSegment, RuleNotGrantable: it may no longer be valid)."""

    def apply(definition: ExperimentDefinition, arm: ArmDefinition) -> None:
        target = definition.target
        kind = TargetKind(target["kind"])
        if kind is TargetKind.RULES:
            chosen = set(arm.rule_ids or ())
            for rule_id in target["rule_ids"]:
                if rule_id in chosen:
                    rules.activate_rule(session, uuid.UUID(rule_id), actor, now)
                else:
                    rules.deactivate_rule(session, uuid.UUID(rule_id), actor, now)
        elif kind is TargetKind.AUTOMATION:
            automation_id = uuid.UUID(target["automation_id"])
            if arm.applies:
                automations.activate_automation(session, automation_id, actor)
            else:
                automations.deactivate_automation(session, automation_id, actor)
        elif kind is TargetKind.BENEFIT and not arm.applies:
            _withdraw_benefit(session, target["code"], actor)

    return verdicts.promote(session, experiment_id, arm_key, actor, apply, now)


def _withdraw_benefit(session: Session, code: str, actor: str | None) -> None:
    """Remove the benefit `code` from every tier that grants it, each tier's change audited."""
    for tier in tiers.list_tiers(session):
        kept = tuple(benefit for benefit in tier.benefits if benefit.get("code") != code)
        if len(kept) != len(tier.benefits):
            tiers.update_tier(session, tier.code, tiers.TierChanges(benefits=kept), actor)
