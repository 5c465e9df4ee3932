"""Rule budgets: a rule's total across all members per period, enforced where points are
awarded (orders and events), given back by refunds, reported once when used up. Time is the
test's: every service is called with its `now`."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from loyalty.events import services as events
from loyalty.orders import earning, refunds
from loyalty.orders.earning import CartLine, QuoteCart
from loyalty.program import services as program
from loyalty.rules import services as rules
from loyalty.rules.definitions import RuleChanges
from loyalty.rules.models import RuleAward, RuleBudgetUsage
from loyalty.webhooks.models import OutboxEvent
from tests.commands import event_command, program_changes, refund_command
from tests.factories import MemberFactory, OrderFactory, RuleFactory

# A Wednesday, noon UTC.
T0 = dt.datetime(2031, 3, 12, 12, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


@pytest.fixture
def members(session):
    for external_id in ("c1", "c2", "c3"):
        MemberFactory(external_id=external_id, now=T0 - DAY)


def budgeted_rule(budget):
    """1 point per 1.00 spent, within `budget`."""
    return RuleFactory(budget=budget)


def order(order_id, member_id="c1", worth=62, now=T0):
    return OrderFactory(order_id=order_id, member_id=member_id, worth=worth, now=now)


def budget_events(session) -> list[dict]:
    return [
        event.payload
        for event in session.scalars(
            sa.select(OutboxEvent)
            .where(OutboxEvent.type == "rule.budget_exhausted")
            .order_by(OutboxEvent.id)
        )
    ]


def usage_rows(session) -> list[tuple[dt.datetime, int]]:
    session.expire_all()
    rows = session.execute(
        sa.select(RuleBudgetUsage.period_start, RuleBudgetUsage.used).order_by(
            RuleBudgetUsage.period_start
        )
    )
    return [(start.astimezone(dt.UTC), used) for start, used in rows]


def test_an_award_within_the_budget_is_counted_in_full(session, members):
    rule = budgeted_rule({"period": "lifetime", "points": 100})

    placed = order("o1")

    assert placed.points_earned == 62
    assert placed.breakdown[0]["points"] == 62
    assert "budget_withheld" not in placed.breakdown[0]
    usage = rules.get_rule(session, rule.public_id, now=T0).budget_usage
    assert usage is not None
    assert (usage.limit, usage.used, usage.remaining, usage.exhausted_at) == (100, 62, 38, None)


def test_the_award_that_reaches_the_budget_is_clipped_and_says_so(session, members):
    budgeted_rule({"period": "lifetime", "points": 100})
    order("o1")

    clipped = order("o2", member_id="c2")

    assert clipped.points_earned == 38
    assert clipped.breakdown[0]["points"] == 38
    assert clipped.breakdown[0]["budget_withheld"] == 24
    awarded = session.scalar(sa.select(sa.func.sum(RuleAward.points)))
    assert int(awarded) == 100


def test_a_rule_whose_budget_is_used_up_awards_nothing(session, members):
    budgeted_rule({"period": "lifetime", "points": 62})
    order("o1")

    after = order("o2", member_id="c2")

    assert (after.points_earned, after.breakdown) == (0, ())
    assert usage_rows(session)[0][1] == 62


def test_the_other_rules_still_award_when_one_budget_is_used_up(session, members):
    budgeted_rule({"period": "lifetime", "points": 62})
    RuleFactory(name="Welcome", kind="bonus", points=10, per_amount=None)
    order("o1")

    after = order("o2", member_id="c2")

    assert after.points_earned == 10
    assert [line["name"] for line in after.breakdown] == ["Welcome"]


def test_a_quote_shows_what_the_budget_still_allows_without_reserving_it(session, members):
    budgeted_rule({"period": "lifetime", "points": 100})
    order("o1")
    cart = QuoteCart("c2", "USD", (CartLine("tee", "apparel", 1, 6200),))

    first = earning.quote(session, cart, now=T0)
    again = earning.quote(session, cart, now=T0)

    assert first.points_to_earn == again.points_to_earn == 38
    assert first.breakdown[0].budget_withheld == 24
    assert usage_rows(session)[0][1] == 62


def test_a_money_budget_is_worth_its_points_at_the_program_point_value(session, members):
    # 100 points are worth 2.00: a budget of 1.00 is 50 points.
    program.update_settings(
        session, program_changes({"point_value_points": 100, "point_value_amount": 200}), None
    )
    rule = budgeted_rule({"period": "lifetime", "amount": 100})

    placed = order("o1")

    assert placed.points_earned == 50
    usage = rules.get_rule(session, rule.public_id, now=T0).budget_usage
    assert usage is not None
    assert (usage.limit, usage.used) == (50, 50)


@pytest.mark.parametrize(
    ("period", "start", "end"),
    [
        ("day", dt.datetime(2031, 3, 12, tzinfo=dt.UTC), dt.datetime(2031, 3, 13, tzinfo=dt.UTC)),
        ("week", dt.datetime(2031, 3, 10, tzinfo=dt.UTC), dt.datetime(2031, 3, 17, tzinfo=dt.UTC)),
        ("month", dt.datetime(2031, 3, 1, tzinfo=dt.UTC), dt.datetime(2031, 4, 1, tzinfo=dt.UTC)),
    ],
)
def test_a_periodic_budget_starts_afresh_each_period(session, members, period, start, end):
    rule = budgeted_rule({"period": period, "points": 62})
    order("o1", now=T0)

    in_period = order("o2", member_id="c2", now=end - dt.timedelta(microseconds=1))
    next_period = order("o3", member_id="c3", now=end)

    assert (in_period.points_earned, next_period.points_earned) == (0, 62)
    assert usage_rows(session) == [(start, 62), (end, 62)]
    usage = rules.get_rule(session, rule.public_id, now=end).budget_usage
    assert usage is not None
    assert (usage.starts_at, usage.used) == (end, 62)


def test_a_lifetime_budget_never_starts_afresh(session, members):
    rule = budgeted_rule({"period": "lifetime", "points": 62})
    order("o1")

    later = order("o2", member_id="c2", now=T0 + 400 * DAY)

    assert later.points_earned == 0
    usage = rules.get_rule(session, rule.public_id, now=T0 + 400 * DAY).budget_usage
    assert usage is not None
    assert (usage.starts_at, usage.ends_at, usage.used) == (None, None, 62)


def test_a_refund_gives_the_points_back_to_the_period_they_were_counted_in(session, members):
    budgeted_rule({"period": "day", "points": 100})
    order("o1", worth=60, now=T0)
    order("o2", member_id="c2", worth=30, now=T0 + DAY)

    refunds.refund_order(
        session, "o1", refund_command({"refund_id": "r1", "amount": 3000}), T0 + DAY
    )

    assert usage_rows(session) == [
        (dt.datetime(2031, 3, 12, tzinfo=dt.UTC), 30),
        (dt.datetime(2031, 3, 13, tzinfo=dt.UTC), 30),
    ]


def test_a_full_refund_gives_back_exactly_what_was_counted(session, members):
    budgeted_rule({"period": "lifetime", "points": 100})
    order("o1", worth=61)

    for number, amount in enumerate((1000, 1000, 4100), start=1):
        refund = refund_command({"refund_id": f"r{number}", "amount": amount})
        refunds.refund_order(session, "o1", refund, T0)

    assert usage_rows(session)[0][1] == 0
    assert order("o2", member_id="c2", worth=100).points_earned == 100


def test_the_budget_exhausted_webhook_is_sent_once_per_rule_and_period(session, members):
    rule = budgeted_rule({"period": "day", "points": 100})
    order("o1", worth=60)
    assert budget_events(session) == []

    order("o2", member_id="c2", worth=60)
    # Given back, then used up again: still the one event for the period.
    refunds.refund_order(session, "o2", refund_command({"refund_id": "r2", "amount": 6000}), T0)
    order("o3", member_id="c3", worth=60)
    order("o4", member_id="c3", worth=60, now=T0 + DAY)
    order("o5", member_id="c2", worth=60, now=T0 + DAY)

    sent = budget_events(session)
    assert sent == [
        {
            "rule_id": str(rule.public_id),
            "name": rule.name,
            "version": 1,
            "budget": {"period": "day", "points": 100},
            "period": "day",
            "period_start": "2031-03-12T00:00:00+00:00",
            "period_end": "2031-03-13T00:00:00+00:00",
            "limit": 100,
            "used": 100,
        },
        {
            "rule_id": str(rule.public_id),
            "name": rule.name,
            "version": 1,
            "budget": {"period": "day", "points": 100},
            "period": "day",
            "period_start": "2031-03-13T00:00:00+00:00",
            "period_end": "2031-03-14T00:00:00+00:00",
            "limit": 100,
            "used": 100,
        },
    ]


def test_a_new_version_keeps_the_period_usage_and_applies_its_own_limit(session, members):
    rule = budgeted_rule({"period": "lifetime", "points": 100})
    order("o1")
    rules.update_rule(
        session,
        rule.public_id,
        RuleChanges(budget={"period": "lifetime", "points": 70}),
        None,
    )

    after = order("o2", member_id="c2")

    assert after.points_earned == 8
    assert after.breakdown[0]["version"] == 2


def test_an_event_rule_budget_caps_what_events_award(session, members):
    RuleFactory(review=True, budget={"period": "lifetime", "points": 40})

    earned = [
        events.record_event(
            session,
            event_command({"event_id": f"e{n}", "member_id": member_id, "type": "review"}),
            now=T0,
        )[0]
        for n, member_id in enumerate(("c1", "c2", "c3"))
    ]

    assert [event.points_earned for event in earned] == [25, 15, 0]
    assert earned[1].breakdown[0]["budget_withheld"] == 10
    assert len(budget_events(session)) == 1
