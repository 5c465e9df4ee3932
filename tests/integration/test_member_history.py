"""The member's history names the experiment and arm behind points an experiment's rule gave."""

from __future__ import annotations

from loyalty.membership import services as membership
from tests.factories import OrderFactory
from tests.integration.test_experiment_exposure import DAY, T0, arm_of, enrol, single_vs_double


def test_an_earning_by_an_experiments_rule_names_the_experiment_and_arm(session):
    enrol("c1")
    single_vs_double(session)
    OrderFactory(order_id="o-1", worth=100, now=T0 + DAY)

    [earned] = [m for m in membership.history(session, "c1", 50, None).items if m.order_id]

    assert [(c["experiment"], c["arm"], c["version"]) for c in earned.breakdown] == [
        ("double-points", arm_of("c1"), 1)
    ]
