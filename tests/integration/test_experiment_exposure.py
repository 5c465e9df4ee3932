"""Experiments at work: a member meets the experiment at a quote, an order, an event or an
automation's evaluation; their arm (the documented hash) decides which of the target's rules,
whether the automation and whether the benefit apply to them; the breakdown names the
experiment and arm behind each point; the first exposure is recorded once; members outside the
experiment, and everyone once it stops, get the control's behaviour."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa

from loyalty.conclusions.promotion import promote_arm
from loyalty.events.services import record_event
from loyalty.experiments import services
from loyalty.experiments.assignment import assign_arm
from loyalty.experiments.definitions import ArmDefinition, Eligibility, ExperimentDefinition
from loyalty.experiments.exceptions import ExperimentTargetTaken
from loyalty.experiments.models import (
    Experiment,
    ExperimentArm,
    ExperimentAssignment,
    ExposureSource,
)
from loyalty.experiments.stored import ExperimentView
from loyalty.extensions import db
from loyalty.members.models import Member
from loyalty.membership import overview
from loyalty.orders.earning import quote
from tests.commands import event_command, quote_command
from tests.concurrency import race, raised
from tests.factories import MemberFactory, OrderFactory, RuleFactory, TierFactory
from tests.integration.test_automations import automation, fired_for, run

T0 = dt.datetime(2031, 3, 12, 12, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
MEMBERS = [f"m{n:02d}" for n in range(24)]
TEE = {"sku": "tee", "category": "apparel", "quantity": 1, "unit_price": 10000}


def experiment(session: Any, target: dict[str, Any], arms: Any, **fields: Any) -> ExperimentView:
    definition = ExperimentDefinition(
        **{
            "key": "double-points",
            "name": "Double points",
            "hypothesis": "Double points make members order more than they cost.",
            "target": target,
            "arms": arms,
            "starts_at": T0,
            "ends_at": T0 + 28 * DAY,
            "margin": "0.3",
            **fields,
        }
    )
    created = services.create_experiment(session, definition, "admin", now=T0 - 2 * DAY)
    return services.start_experiment(session, created.public_id, "admin", T0 - DAY)


def single_vs_double(session: Any, **fields: Any) -> tuple[str, str]:
    """Two spend rules under test: the control's 1 point per dollar, the arm's 2."""
    single = str(RuleFactory(name="Single").public_id)
    double = str(RuleFactory(name="Double", points=2).public_id)
    experiment(
        session,
        {"kind": "rules", "rule_ids": [single, double]},
        (
            ArmDefinition("control", 1, control=True, rule_ids=(single,)),
            ArmDefinition("double", 1, rule_ids=(double,)),
        ),
        **fields,
    )
    return single, double


def arm_of(external_id: str, key: str = "double-points") -> str:
    return assign_arm(key, external_id, [("control", 1), ("double", 1)])


def quoted(session: Any, external_id: str, now: dt.datetime) -> Any:
    cart = {"member_id": external_id, "currency": "USD", "lines": [TEE]}
    return quote(session, quote_command(cart), now=now)


def exposures(session: Any) -> dict[str, tuple[str, str, dt.datetime]]:
    """Each exposed member's (arm, source, first exposure), by external id."""
    rows = session.execute(
        sa.select(
            Member.external_id,
            ExperimentArm.key,
            ExperimentAssignment.exposure_source,
            ExperimentAssignment.first_exposed_at,
        )
        .join(Member, Member.id == ExperimentAssignment.member_id)
        .join(ExperimentArm, ExperimentArm.id == ExperimentAssignment.arm_id)
    ).all()
    return {row[0]: (row[1], row[2], row[3]) for row in rows}


def enrol(*external_ids: str, now: dt.datetime = T0 - 10 * DAY) -> None:
    for external_id in external_ids:
        MemberFactory(external_id=external_id, now=now)


def test_each_member_earns_by_their_arm_and_the_quote_names_it(session):
    enrol(*MEMBERS)
    single, double = single_vs_double(session)

    for external_id in MEMBERS:
        arm = arm_of(external_id)
        [contribution] = quoted(session, external_id, T0 + DAY).breakdown
        assert (contribution.rule_id, contribution.points) == (
            (double, 200) if arm == "double" else (single, 100)
        )
        assert (contribution.experiment, contribution.arm) == ("double-points", arm)

    recorded = exposures(session)
    assert {member: arm for member, (arm, _, _) in recorded.items()} == {
        member: arm_of(member) for member in MEMBERS
    }
    assert {(source, at) for _, source, at in recorded.values()} == {
        (ExposureSource.QUOTE, T0 + DAY)
    }
    # Both arms are met by 24 members (the hash is pinned, so this is no chance).
    assert {arm for arm, _, _ in recorded.values()} == {"control", "double"}


def test_the_first_exposure_stands_and_the_order_breakdown_names_the_arm(session):
    enrol("c1")
    single_vs_double(session)
    quoted(session, "c1", T0 + DAY)

    order = OrderFactory(worth=100, now=T0 + 2 * DAY)

    arm = arm_of("c1")
    assert exposures(session) == {"c1": (arm, ExposureSource.QUOTE, T0 + DAY)}
    assert order.points_earned == (200 if arm == "double" else 100)
    assert [(c["experiment"], c["arm"]) for c in order.breakdown] == [("double-points", arm)]


def test_an_order_exposes_a_member_who_never_quoted(session):
    enrol("c1")
    single_vs_double(session)

    OrderFactory(worth=100, now=T0 + DAY)

    assert exposures(session) == {"c1": (arm_of("c1"), ExposureSource.ORDER, T0 + DAY)}


@pytest.mark.parametrize("when", [T0 - dt.timedelta(seconds=1), T0 + 28 * DAY])
def test_outside_its_window_everyone_gets_the_control_and_no_one_is_exposed(session, when):
    enrol(*MEMBERS)
    single, _ = single_vs_double(session)

    for external_id in MEMBERS:
        [contribution] = quoted(session, external_id, when).breakdown
        assert (contribution.rule_id, contribution.experiment) == (single, None)
    assert exposures(session) == {}


def test_an_ineligible_member_gets_the_control_and_is_not_exposed(session):
    TierFactory(threshold=0)
    TierFactory(gold=True)
    enrol(*MEMBERS)
    single, _ = single_vs_double(session, eligibility=Eligibility(tiers=("gold",)))

    for external_id in MEMBERS:
        [contribution] = quoted(session, external_id, T0 + DAY).breakdown
        assert (contribution.rule_id, contribution.arm) == (single, None)
    assert exposures(session) == {}


def test_new_members_only_exposes_those_enrolled_since_its_start(session):
    enrol("old", now=T0 - DAY)
    enrol("new", now=T0 + DAY)
    single_vs_double(session, eligibility=Eligibility(new_members_only=True))

    quoted(session, "old", T0 + 2 * DAY)
    quoted(session, "new", T0 + 2 * DAY)

    assert list(exposures(session)) == ["new"]


def test_once_stopped_everyone_gets_the_control(session):
    enrol(*MEMBERS)
    single, _ = single_vs_double(session)
    running = session.scalars(sa.select(Experiment.public_id)).one()
    services.stop_experiment(session, running, "admin", T0 + DAY)

    for external_id in MEMBERS:
        [contribution] = quoted(session, external_id, T0 + 2 * DAY).breakdown
        assert (contribution.rule_id, contribution.experiment) == (single, None)
    assert exposures(session) == {}


def test_rules_outside_the_target_apply_to_everyone(session):
    enrol(*MEMBERS)
    welcome = RuleFactory(bonus=True, conditions={})
    single_vs_double(session)

    for external_id in MEMBERS:
        breakdown = quoted(session, external_id, T0 + DAY).breakdown
        assert str(welcome.public_id) in [c.rule_id for c in breakdown]


def test_an_event_exposes_the_member_and_pays_by_their_arm(session):
    enrol(*MEMBERS)
    plain = str(RuleFactory(review=True).public_id)
    generous = str(RuleFactory(review=True, name="Generous review", points=100).public_id)
    experiment(
        session,
        {"kind": "rules", "rule_ids": [plain, generous]},
        (
            ArmDefinition("control", 1, control=True, rule_ids=(plain,)),
            ArmDefinition("double", 1, rule_ids=(generous,)),
        ),
    )

    for n, external_id in enumerate(MEMBERS):
        body = {"event_id": f"e{n}", "member_id": external_id, "type": "review"}
        event, _ = record_event(session, event_command(body), now=T0 + DAY)
        assert event.points_earned == (100 if arm_of(external_id) == "double" else 25)

    assert {source for _, source, _ in exposures(session).values()} == {ExposureSource.EVENT}
    assert len(exposures(session)) == len(MEMBERS)


def test_an_automation_fires_only_for_the_arm_it_applies_to(session):
    welcome = automation(session, {"kind": "enrolled", "delay_days": 0})
    experiment(
        session,
        {"kind": "automation", "automation_id": str(welcome.public_id)},
        (
            ArmDefinition("holdout", 1, control=True, applies=False),
            ArmDefinition("double", 1, applies=True),
        ),
    )
    enrol(*MEMBERS, now=T0 + DAY)

    run(session, T0 + DAY)

    fires = {m for m in MEMBERS if arm_of(m) == "double"}
    assert set(fired_for(session)) == fires
    recorded = exposures(session)
    assert set(recorded) == set(MEMBERS)
    assert {source for _, source, _ in recorded.values()} == {ExposureSource.AUTOMATION}
    # The held-out members are exposed again at the next pass, and still not fired for.
    run(session, T0 + 2 * DAY)
    assert set(fired_for(session)) == fires
    assert {at for _, _, at in exposures(session).values()} == {T0 + DAY}


def test_a_benefit_is_withheld_from_the_arm_it_does_not_apply_to(session):
    TierFactory(platinum=True, threshold=0)
    RuleFactory()
    enrol(*MEMBERS)
    experiment(
        session,
        {"kind": "benefit", "code": "points_multiplier"},
        (
            ArmDefinition("holdout", 1, control=True, applies=False),
            ArmDefinition("double", 1, applies=True),
        ),
    )

    for external_id in MEMBERS:
        doubled = arm_of(external_id) == "double"
        codes = [b.code for b in overview.benefits(session, external_id, now=T0 + DAY)]
        assert ("points_multiplier" in codes) == doubled
        assert "free_shipping" in codes
        breakdown = quoted(session, external_id, T0 + DAY).breakdown
        boosts = [c for c in breakdown if c.rule_id.startswith("tier:")]
        assert [(c.experiment, c.arm) for c in boosts] == (
            [("double-points", "double")] if doubled else []
        )
    # Reading the benefits exposes no one; the quotes did.
    assert {source for _, source, _ in exposures(session).values()} == {ExposureSource.QUOTE}


def test_two_running_experiments_never_share_a_target(session):
    _, double = single_vs_double(session)
    arms = (
        ArmDefinition("control", 1, control=True, rule_ids=()),
        ArmDefinition("double", 1, rule_ids=(double,)),
    )
    created = services.create_experiment(
        session,
        ExperimentDefinition(
            key="again",
            name="Again",
            hypothesis="The same rule, tested twice.",
            target={"kind": "rules", "rule_ids": [double]},
            arms=arms,
            starts_at=T0,
            ends_at=T0 + DAY,
            margin="0.3",
        ),
        "admin",
        now=T0 - DAY,
    )

    with pytest.raises(ExperimentTargetTaken) as refused:
        services.start_experiment(session, created.public_id, "admin", T0 - DAY)

    assert refused.value.extra == {"experiments": ["double-points"]}


@pytest.mark.committed
@pytest.mark.postgresql_only
def test_two_quotes_at_once_record_one_first_exposure(app):
    with app.app_context():
        enrol("c1")
        single_vs_double(db.session)

    results = race(app, 2, lambda _: quoted(db.session, "c1", T0 + DAY))

    assert raised(results) == []
    with app.app_context():
        assert list(exposures(db.session)) == ["c1"]


def test_a_promoted_arm_is_what_everyone_gets(session):
    enrol(*MEMBERS)
    _, double = single_vs_double(session)
    stopped = services.stop_experiment(
        session, session.scalars(sa.select(Experiment.public_id)).one(), "admin", T0 + DAY
    )

    promote_arm(session, stopped.public_id, "double", "admin", T0 + 2 * DAY)

    for external_id in MEMBERS:
        [contribution] = quoted(session, external_id, T0 + 3 * DAY).breakdown
        assert (contribution.rule_id, contribution.experiment) == (double, None)
    assert exposures(session) == {}
