"""Promoting the winning arm of a stopped experiment: what its members got becomes every
member's, through the rules', automations' and tiers' own services (each change versioned
and audited), and the experiment records the arm, all in one transaction. Refused for an
experiment not stopped, one promoted before, and an arm it does not have."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from loyalty.audit.models import AuditEntry
from loyalty.automations import services as automations
from loyalty.conclusions.promotion import promote_arm
from loyalty.experiments import services
from loyalty.experiments.definitions import ArmDefinition
from loyalty.experiments.exceptions import (
    ExperimentPromoted,
    ExperimentStatusConflict,
    UnknownArm,
)
from loyalty.experiments.stored import ExperimentView
from loyalty.extensions import db
from loyalty.rules import services as rules
from loyalty.rules.exceptions import RuleNotFound
from loyalty.schemas.automations import AutomationInSchema
from loyalty.tiers import definitions as tiers
from tests.concurrency import race, raised
from tests.experiments import DAY, T0, running
from tests.factories import RuleFactory, TierFactory

STOPPED_AT = T0 + 28 * DAY
PROMOTED_AT = T0 + 30 * DAY


def stopped(session: Any, **fields: Any) -> ExperimentView:
    view = running(session, **fields)
    return services.stop_experiment(session, view.public_id, "admin", STOPPED_AT)


def promote_audit(session: Any) -> AuditEntry:
    return session.scalars(
        sa.select(AuditEntry).where(AuditEntry.action == "experiment.promote")
    ).one()


# --- rules ---------------------------------------------------------------------------------


@pytest.fixture
def three_rules(session):
    """Rules a and b earn, c does not; the experiment tried a alone against b and c."""
    a = RuleFactory(name="a")
    b = RuleFactory(name="b")
    c = RuleFactory(name="c")
    rules.deactivate_rule(session, c.public_id, "admin")
    ids = [str(rule.public_id) for rule in (a, b, c)]
    experiment = stopped(
        session,
        target={"kind": "rules", "rule_ids": ids},
        arms=(
            ArmDefinition("today", 1, control=True, rule_ids=(ids[0],)),
            ArmDefinition("b-and-c", 1, rule_ids=(ids[1], ids[2])),
        ),
    )
    return experiment, a.public_id, b.public_id, c.public_id


def test_promoting_a_rules_arm_activates_its_rules_and_deactivates_the_others(session, three_rules):
    experiment, a, b, c = three_rules

    promoted = promote_arm(session, experiment.public_id, "b-and-c", "admin", PROMOTED_AT)

    assert [rules.get_rule(session, rule).active for rule in (a, b, c)] == [False, True, True]
    # b was active already: no new version of it.
    assert rules.get_rule(session, b).current_version == 1
    assert (promoted.promoted_arm, promoted.promoted_at) == ("b-and-c", PROMOTED_AT)
    assert services.get_experiment(session, experiment.public_id) == promoted


def test_a_promotion_is_audited_on_the_experiment_and_on_each_rule(session, three_rules):
    experiment, a, _, c = three_rules

    promote_arm(session, experiment.public_id, "b-and-c", "admin", PROMOTED_AT)

    entry = promote_audit(session)
    assert (entry.actor, entry.target_id) == ("admin", str(experiment.public_id))
    assert entry.before is not None
    assert entry.after is not None
    assert (entry.before["promoted_arm"], entry.after["promoted_arm"]) == (None, "b-and-c")
    rule_actions = {
        (entry.action, entry.target_id)
        for entry in session.scalars(
            sa.select(AuditEntry)
            .where(AuditEntry.target_type == "rule", AuditEntry.actor == "admin")
            .order_by(AuditEntry.id.desc())
            .limit(2)
        )
    }
    assert rule_actions == {("rule.deactivate", str(a)), ("rule.update", str(c))}


def test_a_promotion_that_fails_midway_changes_nothing(session):
    """The target's second rule was deleted since: the first rule's change is rolled back
    with the rest."""
    a = RuleFactory(name="a")
    gone = str(uuid.uuid4())
    experiment = stopped(
        session,
        target={"kind": "rules", "rule_ids": [str(a.public_id), gone]},
        arms=(
            ArmDefinition("today", 1, control=True, rule_ids=(str(a.public_id),)),
            ArmDefinition("none", 1, rule_ids=()),
        ),
    )

    with pytest.raises(RuleNotFound):
        promote_arm(session, experiment.public_id, "none", "admin", PROMOTED_AT)

    assert rules.get_rule(session, a.public_id).active is True
    assert services.get_experiment(session, experiment.public_id).promoted_arm is None


# --- automations ---------------------------------------------------------------------------


def automation_experiment(session: Any, *, active: bool) -> tuple[ExperimentView, uuid.UUID]:
    body = {
        "name": "Win-back",
        "trigger": {"kind": "enrolled", "delay_days": 3},
        "actions": [{"type": "webhook"}],
        "active": active,
    }
    found = automations.create_automation(session, AutomationInSchema().load(body), "admin")
    experiment = stopped(
        session, target={"kind": "automation", "automation_id": str(found.public_id)}
    )
    return experiment, found.public_id


def test_promoting_the_arm_that_had_the_automation_activates_it(session):
    experiment, automation = automation_experiment(session, active=False)

    promote_arm(session, experiment.public_id, "fires", "admin", PROMOTED_AT)

    assert automations.get_automation(session, automation).active is True


def test_promoting_a_holdout_deactivates_the_automation(session):
    experiment, automation = automation_experiment(session, active=True)

    promote_arm(session, experiment.public_id, "holdout", "admin", PROMOTED_AT)

    assert automations.get_automation(session, automation).active is False
    assert promote_audit(session).after["promoted_arm"] == "holdout"


# --- benefits ------------------------------------------------------------------------------


@pytest.fixture
def shipping_experiment(session):
    """Silver grants nothing, gold free shipping, platinum free shipping and a multiplier;
    the experiment withheld free shipping from its holdout."""
    TierFactory(silver=True)
    TierFactory(gold=True)
    TierFactory(platinum=True)
    return stopped(session, target={"kind": "benefit", "code": "free_shipping"})


def benefit_codes(session: Any) -> dict[str, list[str]]:
    return {
        tier.code: [benefit["code"] for benefit in tier.benefits]
        for tier in tiers.list_tiers(session)
    }


def test_promoting_a_holdout_of_a_benefit_removes_it_from_every_tier(session, shipping_experiment):
    promote_arm(session, shipping_experiment.public_id, "holdout", "admin", PROMOTED_AT)

    assert benefit_codes(session) == {
        "silver": [],
        "gold": [],
        "platinum": ["points_multiplier"],
    }
    changed = session.scalars(
        sa.select(AuditEntry.target_id)
        .where(AuditEntry.action == "tier.update", AuditEntry.actor == "admin")
        .order_by(AuditEntry.target_id)
    ).all()
    assert changed == ["gold", "platinum"]


def test_promoting_the_arm_that_had_the_benefit_changes_no_tier(session, shipping_experiment):
    before = benefit_codes(session)

    promoted = promote_arm(session, shipping_experiment.public_id, "fires", "admin", PROMOTED_AT)

    assert benefit_codes(session) == before
    assert promoted.promoted_arm == "fires"
    assert (
        session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "tier.update")).all() == []
    )


# --- refusals ------------------------------------------------------------------------------


def test_a_running_experiment_promotes_nothing(session):
    view = running(session)

    with pytest.raises(ExperimentStatusConflict) as refused:
        promote_arm(session, view.public_id, "fires", "admin", PROMOTED_AT)

    assert (refused.value.status, refused.value.code) == (409, "experiment_status_conflict")
    assert services.get_experiment(session, view.public_id).promoted_arm is None


def test_an_experiment_promotes_once(session):
    experiment, automation = automation_experiment(session, active=True)
    promote_arm(session, experiment.public_id, "holdout", "admin", PROMOTED_AT)

    with pytest.raises(ExperimentPromoted) as refused:
        promote_arm(session, experiment.public_id, "fires", "admin", PROMOTED_AT + DAY)

    assert (refused.value.status, refused.value.code) == (409, "experiment_promoted")
    assert refused.value.extra["promoted_arm"] == "holdout"
    assert automations.get_automation(session, automation).active is False


def test_an_arm_the_experiment_does_not_have_is_refused(session):
    experiment, automation = automation_experiment(session, active=True)

    with pytest.raises(UnknownArm) as refused:
        promote_arm(session, experiment.public_id, "nope", "admin", PROMOTED_AT)

    assert (refused.value.status, refused.value.code) == (422, "unknown_arm")
    assert refused.value.extra["errors"] == {"arm": ["One of holdout, fires."]}
    assert automations.get_automation(session, automation).active is True
    assert services.get_experiment(session, experiment.public_id).promoted_arm is None


@pytest.mark.committed
@pytest.mark.postgresql_only
def test_two_promotions_at_once_promote_one_arm(app):
    """The experiment's row lock makes the second wait for the first, then see its arm."""
    with app.app_context():
        experiment, automation = automation_experiment(db.session, active=True)

    def promote(racer: int) -> ExperimentView:
        arm = ("holdout", "fires")[racer]
        return promote_arm(db.session, experiment.public_id, arm, "admin", PROMOTED_AT)

    results = race(app, 2, promote)

    assert [type(error) for error in raised(results)] == [ExperimentPromoted]
    (winner,) = [result for result in results if isinstance(result, ExperimentView)]
    with app.app_context():
        assert automations.get_automation(db.session, automation).active is (
            winner.promoted_arm == "fires"
        )
        promotions = db.session.scalars(
            sa.select(AuditEntry).where(AuditEntry.action == "experiment.promote")
        ).all()
    assert len(promotions) == 1
