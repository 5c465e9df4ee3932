"""Return on campaigns: the figures of an earning rule's and an automation's report, per
version and in total, checked against numbers worked out by hand.

A touch is an award of the rule (an order's, an event's) or a firing of the automation. An
order counts for a touch when the touched member placed it after the touch and at most N days
after it (N x 24 hours, the end included); each order counts once per campaign, for the
latest touch before it; an order never counts for the award it earned; revenue is the order's
total less its refunds, and a fully refunded order counts for nothing.

The program runs at its defaults (USD, 100 points are worth 1.00). Members enrol a month
before T0; every moment is the test's, passed as `now`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.automations import firing
from loyalty.automations import services as automations
from loyalty.automations.definitions import AutomationChanges
from loyalty.automations.models import Automation, AutomationFiring
from loyalty.automations.report import automation_report
from loyalty.automations.services import AutomationView
from loyalty.errors import NotFound, ValidationFailed
from loyalty.events import services as events
from loyalty.members.lookup import find_member
from loyalty.orders import refunds
from loyalty.orders.services import CLOCK_SKEW
from loyalty.program.services import update_settings
from loyalty.reports.campaigns import CampaignReport, Figures, Revenue, rule_report
from loyalty.rules import services as rules
from loyalty.rules.definitions import RuleChanges
from loyalty.rules.services import RuleView
from loyalty.schemas.automations import AutomationInSchema
from tests.commands import event_command, program_changes, refund_command
from tests.factories import MemberFactory, OrderFactory, RuleFactory

T0 = dt.datetime(2031, 3, 12, 12, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
SECOND = dt.timedelta(seconds=1)

pytestmark = pytest.mark.usefixtures("ledger_verifies_after_each_test")


def members(*external_ids: str) -> None:
    for external_id in external_ids:
        MemberFactory(external_id=external_id, now=T0 - 30 * DAY)


def review(session: Session, external_id: str, at: dt.datetime) -> None:
    """A review event of the member at `at`: the review rule's touch."""
    events.record_event(
        session,
        event_command(
            {"event_id": f"ev-{uuid.uuid4()}", "member_id": external_id, "type": "review"}
        ),
        now=at,
    )


def order(order_id: str, external_id: str, dollars: int, at: dt.datetime, **fields: Any) -> None:
    OrderFactory(order_id=order_id, member_id=external_id, worth=dollars, now=at, **fields)


def usd(orders: int, gross: int, refunded: int = 0) -> tuple[Revenue, ...]:
    return (Revenue("USD", orders, gross, refunded),)


def only_version(report: CampaignReport) -> Figures:
    [version] = report.versions
    assert version.figures == report.total
    return report.total


@pytest.fixture
def reviews(session: Session) -> RuleView:
    """25 points per review; no rule earns on orders, so orders touch no one."""
    return RuleFactory(review=True)


# --- the window -------------------------------------------------------------------------------


def test_an_order_exactly_window_days_after_the_touch_counts(session, reviews):
    members("c1")
    review(session, "c1", T0)
    order("o1", "c1", 50, T0 + 7 * DAY)

    figures = only_version(rule_report(session, reviews.public_id, 7))

    assert (figures.orders_attributed, figures.revenue) == (1, usd(1, 5000))


def test_an_order_a_second_past_the_window_does_not_count(session, reviews):
    members("c1")
    review(session, "c1", T0)
    order("o1", "c1", 50, T0 + 7 * DAY + SECOND)

    assert only_version(rule_report(session, reviews.public_id, 7)).orders_attributed == 0
    # The same order is inside an eight-day window.
    assert only_version(rule_report(session, reviews.public_id, 8)).orders_attributed == 1


def test_an_order_at_the_touchs_own_moment_or_before_it_does_not_count(session, reviews):
    members("c1", "c2")
    order("before", "c1", 40, T0 - SECOND)
    review(session, "c1", T0)
    review(session, "c2", T0)
    order("same-moment", "c2", 30, T0)

    figures = only_version(rule_report(session, reviews.public_id, 7))

    assert (figures.members_reached, figures.touches, figures.orders_attributed) == (2, 2, 0)
    assert figures.revenue == ()


def test_other_members_orders_do_not_count(session, reviews):
    members("touched", "stranger")
    review(session, "touched", T0)
    order("theirs", "stranger", 80, T0 + DAY)
    order("mine", "touched", 20, T0 + DAY)

    figures = only_version(rule_report(session, reviews.public_id, 7))

    assert (figures.members_reached, figures.orders_attributed) == (1, 1)
    assert figures.revenue == usd(1, 2000)


# --- reach and cost ---------------------------------------------------------------------------


def test_reach_counts_distinct_members_and_cost_is_the_points_at_the_point_value(session, reviews):
    members("c1", "c2")
    for at in (T0, T0 + DAY, T0 + 2 * DAY):
        review(session, "c1", at)
    review(session, "c2", T0)
    update_settings(session, program_changes({"point_value_points": 3, "point_value_amount": 2}))

    figures = only_version(rule_report(session, reviews.public_id, 7))

    # 4 reviews of 25 points: 100 points, at 3 points = 0.02, are worth 66.67 cents: 66.
    assert (figures.members_reached, figures.touches, figures.points_issued) == (2, 4, 100)
    assert figures.cost == 66


# --- last touch and versions ------------------------------------------------------------------


def test_each_order_counts_once_for_the_latest_touch_before_it_and_versions_split(session, reviews):
    members("c1")
    review(session, "c1", T0)  # version 1
    rules.update_rule(session, reviews.public_id, RuleChanges(name="Review v2"), "test")
    review(session, "c1", T0 + 3 * DAY)  # version 2
    order("between", "c1", 10, T0 + 2 * DAY)  # only v1's touch is before it
    order("after-both", "c1", 20, T0 + 4 * DAY)  # within both windows: the latest, v2's
    order("late", "c1", 40, T0 + 11 * DAY)  # 8 days after v2's touch: out, v1's is older

    report = rule_report(session, reviews.public_id, 7)

    v2, v1 = report.versions
    assert (v2.version, v2.name, v1.version, v1.name) == (2, "Review v2", 1, "Review")
    assert (v1.figures.touches, v1.figures.orders_attributed) == (1, 1)
    assert v1.figures.revenue == usd(1, 1000)
    assert (v2.figures.touches, v2.figures.orders_attributed) == (1, 1)
    assert v2.figures.revenue == usd(1, 2000)
    assert report.total.members_reached == 1  # one member, touched by both versions
    assert (report.total.touches, report.total.points_issued) == (2, 50)
    assert (report.total.orders_attributed, report.total.revenue) == (2, usd(2, 3000))


def test_a_version_that_touched_no_one_is_listed_with_zeros(session, reviews):
    rules.update_rule(session, reviews.public_id, RuleChanges(active=False), "test")

    report = rule_report(session, reviews.public_id, 7)

    assert [v.version for v in report.versions] == [2, 1]
    assert all(v.figures == Figures(0, 0, 0, 0, 0, ()) for v in report.versions)
    assert report.total == Figures(0, 0, 0, 0, 0, ())


# --- an order never returns its own award -----------------------------------------------------


def test_the_order_that_earned_an_award_is_not_its_return(session):
    spend = RuleFactory()  # 1 point per 1.00
    members("c1")
    # Placed a little after the checkout's clock (within the skew allowed): its award is
    # recorded at T0, before the order's moment, yet the order caused it.
    order("o1", "c1", 30, T0, placed_at=T0 + CLOCK_SKEW)
    order("o2", "c1", 50, T0 + DAY)

    figures = only_version(rule_report(session, spend.public_id, 7))

    # o1's award (30 points) is followed by o2; o2's award (50 points) by nothing.
    assert (figures.touches, figures.points_issued, figures.cost) == (2, 80, 80)
    assert (figures.orders_attributed, figures.revenue) == (1, usd(1, 5000))


# --- refunds and currencies -------------------------------------------------------------------


def test_revenue_is_net_of_refunds_and_a_fully_refunded_order_counts_for_nothing(session, reviews):
    members("c1", "c2")
    review(session, "c1", T0)
    review(session, "c2", T0)
    order("partly", "c1", 50, T0 + DAY)
    order("wholly", "c2", 40, T0 + DAY)
    refunds.refund_order(
        session, "partly", refund_command({"refund_id": "r1", "amount": 2000}), now=T0 + 2 * DAY
    )
    refunds.refund_order(
        session, "wholly", refund_command({"refund_id": "r2", "amount": 4000}), now=T0 + 2 * DAY
    )

    figures = only_version(rule_report(session, reviews.public_id, 7))

    assert figures.orders_attributed == 1
    assert figures.revenue == usd(1, 5000, 2000)
    assert figures.revenue[0].net == 3000


def test_revenue_is_given_per_currency_and_cost_in_the_programs(session, reviews):
    members("c1", "c2")
    review(session, "c1", T0)
    review(session, "c2", T0)
    order("in-usd", "c1", 50, T0 + DAY)
    update_settings(session, program_changes({"currency": "EUR"}))
    order("in-eur", "c2", 20, T0 + DAY, currency="EUR")

    report = rule_report(session, reviews.public_id, 7)

    assert report.total.revenue == (Revenue("EUR", 1, 2000, 0), Revenue("USD", 1, 5000, 0))
    assert report.total.orders_attributed == 2
    assert (report.currency, report.total.cost) == ("EUR", 50)


# --- automations ------------------------------------------------------------------------------


def automation(session: Session, **fields: Any) -> AutomationView:
    body = {"name": "Welcome", "trigger": {"kind": "enrolled", "delay_days": 0}, **fields}
    body.setdefault("actions", [{"type": "webhook"}])
    return automations.create_automation(
        session, AutomationInSchema().load(body), "test", now=T0 - 40 * DAY
    )


def fire(
    session: Session, made: AutomationView, external_id: str, at: dt.datetime, version: int
) -> None:
    """A firing as the jobs pass records it, at a moment of the test's choosing (the pass
    itself is exercised above)."""
    session.add(
        AutomationFiring(
            automation_id=session.scalar(
                sa.select(Automation.id).where(Automation.public_id == made.public_id)
            ),
            version=version,
            member_id=find_member(session, external_id).id,
            window_start=at,
            fired_at=at,
            details={},
            points_granted=0,
        )
    )
    session.flush()


def test_an_automation_reaches_the_members_it_fired_for_and_their_later_orders(session):
    welcome = automation(session)
    MemberFactory(external_id="c1", now=T0)
    MemberFactory(external_id="c2", now=T0)
    assert firing.fire_due(session, now=T0 + SECOND).total == 2
    order("o1", "c1", 50, T0 + DAY)
    order("o2", "c1", 20, T0 + 9 * DAY)  # 9 days after its firing: out of 7, in 10

    week = only_version(automation_report(session, welcome.public_id, 7))
    ten_days = only_version(automation_report(session, welcome.public_id, 10))

    assert (week.members_reached, week.touches, week.points_issued) == (2, 2, 0)
    assert (week.orders_attributed, week.revenue) == (1, usd(1, 5000))
    assert (ten_days.orders_attributed, ten_days.revenue) == (2, usd(2, 7000))


def test_an_automations_order_counts_for_its_latest_firing_by_version(session):
    welcome = automation(session, trigger={"kind": "inactive", "days": 30})
    members("c1")
    fire(session, welcome, "c1", T0, version=1)
    automations.update_automation(
        session, welcome.public_id, AutomationChanges(name="Win-back"), "test"
    )
    fire(session, welcome, "c1", T0 + 2 * DAY, version=2)
    order("o1", "c1", 30, T0 + DAY)
    order("o2", "c1", 60, T0 + 2 * DAY + 7 * DAY)  # exactly 7 days after the latest

    report = automation_report(session, welcome.public_id, 7)

    v2, v1 = report.versions
    assert (v2.name, v2.figures.orders_attributed, v2.figures.revenue) == (
        "Win-back",
        1,
        usd(1, 6000),
    )
    assert (v1.name, v1.figures.orders_attributed, v1.figures.revenue) == (
        "Welcome",
        1,
        usd(1, 3000),
    )
    assert (report.total.members_reached, report.total.touches) == (1, 2)


# --- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize("days", [0, 366, -1])
def test_a_window_outside_one_to_365_days_is_refused(session, reviews, days):
    with pytest.raises(ValidationFailed) as refused:
        rule_report(session, reviews.public_id, days)
    assert "window_days" in refused.value.extra["errors"]


def test_an_unknown_rule_or_automation_is_not_found(session):
    with pytest.raises(NotFound):
        rule_report(session, uuid.uuid4(), 7)
    with pytest.raises(NotFound):
        automation_report(session, uuid.uuid4(), 7)
