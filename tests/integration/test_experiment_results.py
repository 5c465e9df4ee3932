"""An experiment's results from the data: per member exposed, their orders, revenue net of
refunds and points cost from their first exposure to the end of the window, summed by the
database; per arm the figures the statistics compare. Every figure below is worked out by
hand from the orders the test places.

The program earns 1 point per 1.00 spent and 25 points per review, and values points at
3 points = 0.02 (so a member's points cost is points * 2 // 3 minor units)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter

import pytest

from loyalty.conclusions.results import experiment_results
from loyalty.events.services import record_event
from loyalty.experiments import services
from loyalty.experiments.assignment import assign_arm
from loyalty.experiments.definitions import ArmDefinition
from loyalty.experiments.exceptions import ExperimentNotFound
from loyalty.experiments.models import ExposureSource
from loyalty.orders.refunds import refund_order
from loyalty.program.services import update_settings
from tests.commands import event_command, program_changes, refund_command
from tests.experiments import DAY, T0, expose, running
from tests.factories import MemberFactory, OrderFactory, RuleFactory

HOUR = dt.timedelta(hours=1)


@pytest.fixture(autouse=True)
def program(session):
    update_settings(session, program_changes({"point_value_points": 3, "point_value_amount": 2}))
    RuleFactory()
    RuleFactory(review=True)


def members(*external_ids: str) -> None:
    for external_id in external_ids:
        MemberFactory(external_id=external_id, now=T0 - 30 * DAY)


def order(order_id: str, member_id: str, dollars: int, at) -> None:
    OrderFactory(order_id=order_id, member_id=member_id, worth=dollars, now=at)


def test_every_figure_per_arm_is_what_the_orders_and_points_give(session):
    """Three members in the holdout, two with the automation, one never exposed; as of
    two days after the window ended.

    holdout h1: an order of 50.00 before exposure (not counted), one of 40.00 after:
                ordered, revenue 4000, 40 points, cost 26.
            h2: no order, a review (25 points): revenue 0, cost 16.
            h3: an order of 100.00 with 30.00 refunded (30 points reversed): revenue 7000,
                70 points, cost 46.
    fires   f1: an order of 10.00, and one of 80.00 after the window ended: revenue 1000,
                10 points, cost 6.
            f2: exposed a day later, orders of 60.00 and 20.00: revenue 8000, 80 points,
                cost 53.
    never   n1: an order of 500.00, never exposed: in no arm.
    """
    members("h1", "h2", "h3", "f1", "f2", "n1")
    view = running(session)
    order("h1-before", "h1", 50, T0)
    expose(session, view, ["h1", "h2", "h3"], "holdout", T0 + DAY)
    expose(session, view, ["f1"], "fires", T0 + DAY)
    expose(session, view, ["f2"], "fires", T0 + 2 * DAY)
    order("h1-after", "h1", 40, T0 + 2 * DAY)
    record_event(
        session,
        event_command({"event_id": "h2-review", "member_id": "h2", "type": "review"}),
        now=T0 + 3 * DAY,
    )
    order("h3-big", "h3", 100, T0 + 3 * DAY)
    refund_order(
        session, "h3-big", refund_command({"refund_id": "h3-r", "amount": 3000}), T0 + 4 * DAY
    )
    order("f1-small", "f1", 10, T0 + 2 * DAY)
    order("f1-late", "f1", 80, T0 + 29 * DAY)
    order("f2-first", "f2", 60, T0 + 5 * DAY)
    order("f2-second", "f2", 20, T0 + 6 * DAY)
    order("n1-big", "n1", 500, T0 + 2 * DAY)

    report = experiment_results(session, view.public_id, now=T0 + 30 * DAY)

    assert report.experiment == services.get_experiment(session, view.public_id)
    assert (report.window_start, report.window_end) == (T0, T0 + 28 * DAY)
    assert report.currency == "USD"
    assert report.exposed == {"holdout": 3, "fires": 2}
    assert report.results is not None
    holdout, fires = report.results.arms
    assert report.results.control == "holdout"
    assert (holdout.key, holdout.exposed, holdout.converted) == ("holdout", 3, 2)
    assert holdout.conversion_rate == pytest.approx(2 / 3)
    assert holdout.revenue_per_member == pytest.approx((4000 + 0 + 7000) / 3)
    assert holdout.points_cost_per_member == pytest.approx((26 + 16 + 46) / 3)
    assert holdout.net_value_per_member == pytest.approx(
        (4000 * 0.35 - 26 + 0 - 16 + 7000 * 0.35 - 46) / 3
    )
    assert (fires.key, fires.exposed, fires.converted) == ("fires", 2, 2)
    assert fires.conversion_rate == 1
    assert fires.revenue_per_member == pytest.approx((1000 + 8000) / 2)
    assert fires.points_cost_per_member == pytest.approx((6 + 53) / 2)
    assert fires.net_value_per_member == pytest.approx((1000 * 0.35 - 6 + 8000 * 0.35 - 53) / 2)
    (comparison,) = report.results.comparisons
    assert comparison.key == "fires"
    assert comparison.conversion_uplift.value == pytest.approx(1 - 2 / 3)
    assert comparison.revenue_per_member_uplift.value == pytest.approx(4500 - 11000 / 3)
    assert report.results.sample_ratio.observed == (3, 2)


def test_the_window_ends_when_the_experiment_stopped(session):
    members("h1", "h2", "f1", "f2")
    view = running(session)
    expose(session, view, ["h1", "h2"], "holdout", T0)
    expose(session, view, ["f1", "f2"], "fires", T0)
    order("f1-in", "f1", 10, T0 + 5 * DAY)
    services.stop_experiment(session, view.public_id, "admin", T0 + 10 * DAY)
    order("f2-after", "f2", 90, T0 + 12 * DAY)

    report = experiment_results(session, view.public_id, now=T0 + 20 * DAY)

    assert report.window_end == T0 + 10 * DAY
    assert report.results is not None
    assert [arm.revenue_per_member for arm in report.results.arms] == [0, 500]
    assert [arm.converted for arm in report.results.arms] == [0, 1]


def test_a_running_experiments_window_ends_now(session):
    members("h1", "h2", "h3", "f1", "f2")
    view = running(session)
    expose(session, view, ["h1", "h2"], "holdout", T0)
    expose(session, view, ["f1", "f2"], "fires", T0)
    expose(session, view, ["h3"], "holdout", T0 + 7 * DAY)
    order("f1-in", "f1", 10, T0 + 5 * DAY)
    order("f2-later", "f2", 90, T0 + 7 * DAY)

    report = experiment_results(session, view.public_id, now=T0 + 6 * DAY)

    assert report.window_end == T0 + 6 * DAY
    assert report.exposed == {"holdout": 2, "fires": 2}
    assert report.results is not None
    assert report.results.arms[1].revenue_per_member == 500


def test_an_order_that_exposed_the_member_counts_from_when_it_was_placed(session):
    """Exposure is recorded when the order is (T0 + 2 days), the order says it was placed an
    hour before; an order of the same member recorded earlier by another request does not
    count."""
    members("h1", "h2", "f1", "f2")
    view = running(session)
    expose(session, view, ["h1", "h2"], "holdout", T0)
    expose(session, view, ["f2"], "fires", T0)
    order("f1-earlier", "f1", 70, T0 + DAY)
    exposed_at = T0 + 2 * DAY
    OrderFactory(
        order_id="f1-exposing",
        member_id="f1",
        worth=30,
        placed_at=exposed_at - HOUR,
        now=exposed_at,
    )
    expose(session, view, ["f1"], "fires", exposed_at, ExposureSource.ORDER)

    report = experiment_results(session, view.public_id, now=T0 + 28 * DAY)

    assert report.results is not None
    fires = report.results.arms[1]
    assert fires.converted == 1
    assert fires.revenue_per_member == 3000 / 2
    # 30 points, at 3 points = 0.02: 20.
    assert fires.points_cost_per_member == 20 / 2


def test_no_results_until_every_arm_has_two_members_exposed(session):
    members("h1", "h2", "f1")
    view = running(session)

    assert experiment_results(session, view.public_id, now=T0).exposed == {
        "holdout": 0,
        "fires": 0,
    }
    expose(session, view, ["h1", "h2"], "holdout", T0)
    expose(session, view, ["f1"], "fires", T0)

    report = experiment_results(session, view.public_id, now=T0 + DAY)

    assert report.exposed == {"holdout": 2, "fires": 1}
    assert report.results is None


def test_an_unknown_experiment_has_no_results(session):
    with pytest.raises(ExperimentNotFound):
        experiment_results(session, uuid.uuid4())


def test_a_known_uplift_is_inside_its_interval(session):
    """Twenty members an arm, each ordering once: control members spend 20.00 to 24.00, the
    automation's members the same plus 10.00, so the true uplift in revenue per member is
    1000 exactly; the interval must cover it, and not cover zero (no uplift)."""
    holdout = [f"h{n}" for n in range(20)]
    fires = [f"f{n}" for n in range(20)]
    members(*holdout, *fires)
    view = running(session)
    expose(session, view, holdout, "holdout", T0)
    expose(session, view, fires, "fires", T0)
    for n, (h, f) in enumerate(zip(holdout, fires, strict=True)):
        order(f"{h}-o", h, 20 + n % 5, T0 + DAY)
        order(f"{f}-o", f, 30 + (n * 3) % 5, T0 + DAY)

    report = experiment_results(session, view.public_id, now=T0 + 28 * DAY)

    assert report.results is not None
    (comparison,) = report.results.comparisons
    uplift = comparison.revenue_per_member_uplift
    assert uplift.value == pytest.approx(1000)
    assert uplift.low < 1000 < uplift.high
    assert uplift.low > 0
    assert uplift.p_value < 0.05
    # Everyone ordered in both arms: no difference in conversion to see.
    assert comparison.conversion_uplift.value == 0


def test_results_of_members_exposed_by_their_orders(session):
    """End to end: a bonus rule under test for the "double" arm, members exposed by their
    orders through the real exposure recording, each arm found by the documented hash. Every
    member's order of 10.00 earns 10 points, and 10 more in the double arm: points cost 6
    against 13 (at 3 points = 0.02) for the same revenue."""
    bonus = RuleFactory(name="Double")
    rule_id = str(bonus.public_id)
    arms = (
        ArmDefinition("holdout", 1, control=True, rule_ids=()),
        ArmDefinition("double", 1, rule_ids=(rule_id,)),
    )
    ids = [f"m{n:02d}" for n in range(12)]
    members(*ids)
    view = running(session, target={"kind": "rules", "rule_ids": [rule_id]}, arms=arms)
    for external_id in ids:
        order(f"{external_id}-o", external_id, 10, T0 + DAY)
    expected = Counter(
        assign_arm("winback", external_id, [("holdout", 1), ("double", 1)]) for external_id in ids
    )

    report = experiment_results(session, view.public_id, now=T0 + 28 * DAY)

    assert report.exposed == {"holdout": expected["holdout"], "double": expected["double"]}
    assert report.results is not None
    holdout, double = report.results.arms
    assert (holdout.revenue_per_member, double.revenue_per_member) == (1000, 1000)
    assert (holdout.points_cost_per_member, double.points_cost_per_member) == (6, 13)
