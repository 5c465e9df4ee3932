"""Two workers evaluating the same automations at the same moment fire each member once:
the second finds the first's firings on the unique key and acts on nothing it did not
insert. A worker killed (SIGKILL) mid-pass leaves the batches it committed, whole, and
nothing of the batch it was in; the next pass fires the rest, once."""

from __future__ import annotations

import datetime as dt
import signal

import pytest
import sqlalchemy as sa

from loyalty.automations import firing, services
from loyalty.automations.models import AutomationFiring
from loyalty.db import utcnow
from loyalty.extensions import db
from loyalty.ledger.models import MemberBalance
from loyalty.members.models import Member
from loyalty.schemas.automations import AutomationInSchema
from loyalty.webhooks.models import OutboxEvent
from tests.concurrency import kill_worker_waiting_on, race, raised
from tests.factories import MemberFactory, RuleFactory

pytestmark = [pytest.mark.committed, pytest.mark.postgresql_only]

T0 = dt.datetime(2031, 3, 12, 12, tzinfo=dt.UTC)
MEMBERS = 60
# The automations step of `jobs run`, in a process of its own, in batches of argv[1].
WORKER = """
import sys
from loyalty import create_app
from loyalty.automations import firing
from loyalty.extensions import db
with create_app().app_context():
    print(firing.fire_due(db.session(), batch_size=int(sys.argv[1])).total)
"""


def welcome(grant: bool, now: dt.datetime) -> None:
    """An enrolment automation created at `now` (a webhook, and 10 points if `grant`)."""
    rule = RuleFactory(bonus=True, points=10, conditions={})
    actions = [{"type": "webhook"}]
    if grant:
        actions.append({"type": "grant_points", "rule_id": str(rule.public_id)})
    body = {"name": "Welcome", "trigger": {"kind": "enrolled", "delay_days": 0}, "actions": actions}
    services.create_automation(db.session, AutomationInSchema().load(body), "test", now=now)


@pytest.mark.parametrize("grant", [True, False], ids=["grants in batches", "webhook in SQL"])
def test_two_workers_at_once_fire_every_member_once(app, grant):
    with app.app_context():
        welcome(grant, T0 - dt.timedelta(days=1))
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


def test_a_worker_killed_mid_pass_loses_and_duplicates_nothing(app, migrated_app):
    """Batches of 5 members in member order: the test holds m11's balance row, so the
    worker commits m00-m09 and waits inside the batch of m10-m14 (m10 granted, not
    committed) until it is killed."""
    now = utcnow()
    with app.app_context():
        welcome(True, now - dt.timedelta(days=1))
        for n in range(20):
            MemberFactory(external_id=f"m{n:03d}", now=now - dt.timedelta(hours=1))
    code, waited, stderr = kill_worker_waiting_on(
        app, migrated_app.config["SQLALCHEMY_DATABASE_URI"], WORKER, ["5"], "m011"
    )

    assert waited == 1, stderr
    assert code == -signal.SIGKILL
    assert fired_and_granted(app) == [f"m{n:03d}" for n in range(10)]

    with app.app_context():
        again = firing.fire_due(db.session, batch_size=5)

    assert (again.total, again.points_granted) == (10, 100)
    assert fired_and_granted(app) == [f"m{n:03d}" for n in range(20)]


def fired_and_granted(app) -> list[str]:
    """The members fired for, having checked that each has exactly its one firing, its one
    event and its 10 points, and that no one else has any."""
    with app.app_context():
        firings = db.session.execute(
            sa.select(Member.external_id, AutomationFiring.points_granted).join(
                Member, Member.id == AutomationFiring.member_id
            )
        ).all()
        events = db.session.scalars(
            sa.select(OutboxEvent.payload).where(OutboxEvent.type == "automation.fired")
        ).all()
        balances = dict(
            db.session.execute(
                sa.select(Member.external_id, MemberBalance.available).join(
                    MemberBalance, MemberBalance.member_id == Member.id
                )
            ).all()
        )
    fired = sorted(external_id for external_id, _ in firings)
    assert len(set(fired)) == len(fired)
    assert {points for _, points in firings} <= {10}
    assert sorted(e["member"]["member_id"] for e in events) == fired
    assert {m for m, available in balances.items() if available} == set(fired)
    assert set(balances[m] for m in fired) <= {10}
    return fired
