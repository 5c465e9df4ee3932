"""Two workers evaluating the same automations at the same moment fire each member once:
the second finds the first's firings on the unique key and acts on nothing it did not
insert."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from loyalty.automations import firing, services
from loyalty.automations.models import AutomationFiring
from loyalty.extensions import db
from loyalty.schemas.automations import AutomationInSchema
from loyalty.webhooks.models import OutboxEvent
from tests.concurrency import race, raised
from tests.factories import MemberFactory, RuleFactory

pytestmark = [pytest.mark.committed, pytest.mark.postgresql_only]

T0 = dt.datetime(2031, 3, 12, 12, tzinfo=dt.UTC)
MEMBERS = 60


@pytest.mark.parametrize("grant", [True, False], ids=["grants in batches", "webhook in SQL"])
def test_two_workers_at_once_fire_every_member_once(app, grant):
    with app.app_context():
        rule = RuleFactory(bonus=True, points=10, conditions={})
        actions = [{"type": "webhook"}]
        if grant:
            actions.append({"type": "grant_points", "rule_id": str(rule.public_id)})
        body = {
            "name": "Welcome",
            "trigger": {"kind": "enrolled", "delay_days": 0},
            "actions": actions,
        }
        services.create_automation(
            db.session, AutomationInSchema().load(body), "test", now=T0 - dt.timedelta(days=1)
        )
        for n in range(MEMBERS):
            MemberFactory(external_id=f"m{n:03d}", now=T0)

    results = race(app, 2, lambda _: firing.fire_due(db.session, now=T0, batch_size=7))

    assert raised(results) == []
    assert sum(summary.total for summary in results) == MEMBERS
    assert sum(summary.points_granted for summary in results) == (MEMBERS * 10 if grant else 0)
    with app.app_context():
        firings = db.session.scalar(sa.select(sa.func.count()).select_from(AutomationFiring))
        events = db.session.scalars(
            sa.select(OutboxEvent.payload).where(OutboxEvent.type == "automation.fired")
        ).all()
    assert firings == MEMBERS
    assert sorted(e["member"]["member_id"] for e in events) == [f"m{n:03d}" for n in range(MEMBERS)]
