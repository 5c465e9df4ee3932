"""A finished experiment for the demo: a 300-point bonus on big orders (60.00 or more in the
English demo: the locale's DemoExperiment names it and says how big) against a holdout, run
over 600 members through the real checkout (a quote exposes each member, their arm decides
whether the bonus applies, orders earn by it), then ended by its window, no arm promoted
yet: the console's experiment page shows a result an admin can read and act on (until then
no one gets the bonus: the target stays at the holdout's behaviour).

The members' behaviour is drawn with a known uplift (seeded, the same on every machine):
members offered the bonus order more often (34% against 22%) and about as much per order, so
the conversion and revenue uplifts are real and the bonus's points cost visible.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.conclusions.lifecycle import end_due
from loyalty.db import transaction
from loyalty.demo.locale import DemoExperiment
from loyalty.experiments import services as experiments
from loyalty.experiments.definitions import ArmDefinition, ExperimentDefinition
from loyalty.experiments.models import Experiment, ExperimentArm, ExperimentAssignment
from loyalty.members.models import Member
from loyalty.membership import services as members
from loyalty.orders import services as orders
from loyalty.orders.earning import CartLine, QuoteCart, quote
from loyalty.program.services import get_settings
from loyalty.rules import services as rules
from loyalty.rules.definitions import RuleDefinition

KEY = "big-basket-bonus"
MEMBERS = 600
ORDER_RATE = {"holdout": 0.22, "bonus": 0.34}
DAY = dt.timedelta(days=1)
STARTED_DAYS_AGO = 40
LASTED_DAYS = 28


def seed_experiment(session: Session, now: dt.datetime, design: DemoExperiment) -> Iterator[str]:
    if session.scalar(sa.select(sa.exists().where(Experiment.key == KEY))):
        yield "experiment already present"
        return
    starts_at = now - STARTED_DAYS_AGO * DAY
    rule = rules.create_rule(
        session,
        RuleDefinition.from_fields(
            {
                "name": design.rule_name,
                "kind": "bonus",
                "config": {"points": 300},
                "active": True,
                "priority": 40,
                "starts_at": None,
                "ends_at": None,
                "conditions": {"min_amount": design.min_amount},
                "caps": {},
            }
        ),
        actor="demo",
        now=starts_at - 2 * DAY,
    )
    draft = experiments.create_experiment(
        session,
        ExperimentDefinition(
            key=KEY,
            name=design.name,
            hypothesis=design.hypothesis,
            target={"kind": "rules", "rule_ids": [str(rule.public_id)]},
            arms=(
                ArmDefinition("holdout", 1, control=True, rule_ids=()),
                ArmDefinition("bonus", 1, rule_ids=(str(rule.public_id),)),
            ),
            starts_at=starts_at,
            ends_at=starts_at + LASTED_DAYS * DAY,
            margin="0.4",
        ),
        actor="demo",
        now=starts_at - 2 * DAY,
    )
    experiments.start_experiment(session, draft.public_id, "demo", starts_at - DAY)
    # One transaction for all of them: a commit per member's call tripled the seed's time.
    with transaction(session):
        orders_placed = _members_shop(session, starts_at, design.apparel)
    end_due(session, now)
    yield (
        f"experiment {KEY!r}: {MEMBERS} members over {LASTED_DAYS} days, "
        f"{orders_placed} orders, ended (see the console's Experiments page)"
    )


def _members_shop(
    session: Session, starts_at: dt.datetime, apparel: tuple[tuple[str, int], ...]
) -> int:
    """Each member enrols before the experiment, is quoted a cart within its window (their
    exposure, which records their arm) and orders by their arm's rate; returns how many
    orders they placed."""
    rng = random.Random(15)  # noqa: S311 - the same members on every machine, not a secret
    currency = get_settings(session).currency
    placed = 0
    # A second visit buys one of the first garment.
    again = CartLine(apparel[0][0], "apparel", 1, apparel[0][1])
    for n in range(1, MEMBERS + 1):
        external_id = f"trial_{n:04d}"
        members.enroll(
            session,
            members.EnrollMember(external_id=external_id),
            now=starts_at - rng.uniform(5, 200) * DAY,
        )
        sku, price = rng.choice(apparel)
        line = CartLine(sku, "apparel", quantity=rng.randint(1, 3), unit_price=price)
        seen_at = starts_at + rng.uniform(0, LASTED_DAYS - 8) * DAY
        quote(session, QuoteCart(external_id, currency, (line,)), now=seen_at)
        arm = session.execute(
            sa.select(ExperimentArm.key)
            .join(ExperimentAssignment, ExperimentAssignment.arm_id == ExperimentArm.id)
            .join(Member, Member.id == ExperimentAssignment.member_id)
            .where(Member.external_id == external_id)
        ).scalar_one()
        if rng.random() >= ORDER_RATE[arm]:
            continue
        for visit in range(1 + int(rng.random() < 0.3)):
            placed_at = seen_at + rng.uniform(0, 7) * DAY * (visit + 1)
            orders.place_order(
                session,
                orders.PlaceOrder(
                    order_id=f"trial-{external_id}-{visit}",
                    external_id=external_id,
                    currency=currency,
                    lines=(line,) if visit == 0 else (again,),
                ),
                now=placed_at,
            )
            placed += 1
    return placed
