"""A rule's budget under concurrent earns: many members' orders (and events) through one
budgeted rule at the same instant, released together by a barrier, each racer on its own
connection. On PostgreSQL the usage row's lock and conditional UPDATE keep the budget; on
SQLite the writers queue on the database lock. Either way usage never passes the limit and
the points awarded add up to the usage."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from loyalty.events import services as events
from loyalty.extensions import db
from loyalty.ledger import verify as ledger_verify
from loyalty.orders import services as orders
from loyalty.rules.models import RuleAward, RuleBudgetUsage
from loyalty.webhooks.models import OutboxEvent
from tests.commands import event_command, order_command
from tests.concurrency import race, raised
from tests.factories import MemberFactory, OrderFactory, RuleFactory

pytestmark = pytest.mark.committed

RACERS = 20


def settled(session) -> tuple[int, int, int]:
    """(the budget's usage, the points its rule awarded, rule.budget_exhausted events)."""
    session.expire_all()
    used = session.scalar(sa.select(sa.func.sum(RuleBudgetUsage.used)))
    awarded = session.scalar(sa.select(sa.func.coalesce(sa.func.sum(RuleAward.points), 0)))
    sent = session.scalar(
        sa.select(sa.func.count())
        .select_from(OutboxEvent)
        .where(OutboxEvent.type == "rule.budget_exhausted")
    )
    return int(used), int(awarded), sent


def test_concurrent_orders_never_spend_past_a_rule_budget(session, app):
    # 20 orders of 62 points each against a budget of 500: 8 in full, one clipped to 4.
    RuleFactory(budget={"period": "lifetime", "points": 500})
    for n in range(RACERS):
        MemberFactory(external_id=f"m{n}")
    session.close()

    def place(n: int) -> int:
        body = OrderFactory.build(order_id=f"o{n}", member_id=f"m{n}")
        return orders.place_order(db.session, order_command(body))[0].points_earned

    results = race(app, RACERS, place)

    assert raised(results) == []
    assert sum(results) == 500
    assert sorted(results)[-9:] == [4] + [62] * 8
    assert settled(session) == (500, 500, 1)
    report = ledger_verify.verify(session)
    assert report.ok, report.problems


def test_concurrent_events_never_spend_past_a_rule_budget(session, app):
    # 20 reviews of 25 points against a budget of 110: four in full, one clipped to 10.
    RuleFactory(review=True, budget={"period": "day", "points": 110})
    for n in range(RACERS):
        MemberFactory(external_id=f"m{n}")
    session.close()

    def review(n: int) -> int:
        command = event_command({"event_id": f"e{n}", "member_id": f"m{n}", "type": "review"})
        return events.record_event(db.session, command)[0].points_earned

    results = race(app, RACERS, review)

    assert raised(results) == []
    assert sorted(results, reverse=True)[:6] == [25, 25, 25, 25, 10, 0]
    assert settled(session) == (110, 110, 1)
