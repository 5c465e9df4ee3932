"""An automation's budget under concurrent batches: workers firing different members of one
budgeted automation at the same instant, released together by a barrier, each on its own
connection. The usage row's lock (taken by each batch before any member's) and its
conditional UPDATE keep the budget: usage never passes the limit, the grants add up to it,
and its exhaustion is announced once."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa

from loyalty.automations import firing, services, triggers
from loyalty.automations.models import AutomationBudgetUsage
from loyalty.db import transaction
from loyalty.extensions import db
from loyalty.ledger import verify as ledger_verify
from loyalty.rewards.definitions import RewardDefinition, create_reward
from loyalty.rewards.models import RewardKind, RewardRedemption
from loyalty.schemas.automations import AutomationInSchema
from loyalty.webhooks.models import OutboxEvent
from tests.concurrency import race, raised
from tests.factories import MemberFactory, RuleFactory

pytestmark = [pytest.mark.committed, pytest.mark.postgresql_only]

T0 = dt.datetime(2031, 3, 12, 12, tzinfo=dt.UTC)
RACERS = 10


def budgeted(actions: list[dict[str, Any]], points: int) -> None:
    """A welcome automation with a lifetime budget, and RACERS members due for it."""
    body = {
        "name": "Welcome",
        "trigger": {"kind": "enrolled", "delay_days": 0},
        "actions": actions,
        "budget": {"period": "lifetime", "points": points},
    }
    services.create_automation(
        db.session, AutomationInSchema().load(body), "test", now=T0 - dt.timedelta(days=1)
    )
    for n in range(RACERS):
        MemberFactory(external_id=f"m{n}", now=T0)


def fire_each_member_at_once(app: Any) -> list[Any]:
    """Each racer fires one member's batch of the automation, all at the same instant."""
    with app.app_context():
        [(automation, version)] = services.active_versions(db.session)
        spec = services.evaluated(db.session, automation, version)
        candidates = db.session.execute(triggers.candidates(spec, T0)).all()
        db.session.close()
    assert len(candidates) == RACERS

    def fire(n: int) -> firing.FiringSummary:
        summary = firing.FiringSummary()
        [(automation, version)] = services.active_versions(db.session)
        with transaction(db.session):
            firing.fire_batch(db.session, automation, version, spec, [candidates[n]], T0, summary)
        return summary

    return race(app, RACERS, fire)


def settled(app: Any) -> tuple[int, int]:
    """(the budget's usage, automation.budget_exhausted events)."""
    with app.app_context():
        used = db.session.scalar(sa.select(AutomationBudgetUsage.used))
        sent = db.session.scalar(
            sa.select(sa.func.count())
            .select_from(OutboxEvent)
            .where(OutboxEvent.type == "automation.budget_exhausted")
        )
        report = ledger_verify.verify(db.session)
        assert report.ok, report.problems
    return int(used), sent


def test_concurrent_grants_never_spend_past_an_automation_budget(app):
    # Ten grants of 30 points against a budget of 100: three in full, one clipped to 10.
    with app.app_context():
        rule = RuleFactory(bonus=True, points=30, conditions={})
        budgeted([{"type": "grant_points", "rule_id": str(rule.public_id)}], 100)

    results = fire_each_member_at_once(app)

    assert raised(results) == []
    assert sorted(summary.points_granted for summary in results) == [0] * 6 + [10] + [30] * 3
    assert settled(app) == (100, 1)


def test_concurrent_coupons_never_spend_past_an_automation_budget(app):
    # Ten coupons costing 40 points against a budget of 100: two granted.
    with app.app_context():
        mug = create_reward(
            db.session, RewardDefinition(name="Mug", kind=RewardKind.PRODUCT, cost_points=40)
        )
        action = {"type": "grant_coupon", "reward_id": str(mug.public_id), "expires_in_days": 7}
        budgeted([action], 100)

    results = fire_each_member_at_once(app)

    assert raised(results) == []
    assert sum(summary.coupons_granted for summary in results) == 2
    assert settled(app) == (80, 1)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(RewardRedemption)) == 2
