"""Demo data: a few members with a history worth looking at, a crowd of shoppers with two
years of orders (so the insight page has segments and a fitted model), a finished experiment
(``experiment``), and one API key per scope."""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
import secrets
from collections.abc import Iterator
from typing import Any

from sqlalchemy.orm import Session

from loyalty.auth.services import create_key
from loyalty.automations import services as automations
from loyalty.automations.definitions import AutomationDefinition
from loyalty.db import utcnow
from loyalty.demo.experiment import seed_experiment
from loyalty.imports import services as imports
from loyalty.imports.orders import import_orders
from loyalty.insight import services as insight
from loyalty.members.lookup import member_by_external_id
from loyalty.membership import services as members
from loyalty.orders import services as orders
from loyalty.orders.earning import CartLine
from loyalty.program.services import SettingsChanges, get_settings, update_settings
from loyalty.rewards import definitions as reward_definitions
from loyalty.rewards.definitions import RewardDefinition
from loyalty.rewards.models import RewardKind
from loyalty.rules import services as rules
from loyalty.rules.definitions import RuleDefinition
from loyalty.tiers import definitions as tier_definitions
from loyalty.tiers.definitions import TierDefinition

DEMO_MEMBERS = [
    # external id, name, email, past orders: (days ago, sku, category, unit price in cents)
    (
        "cust_1001",
        "Ada Lovelace",
        "ada@example.com",
        [
            (340, "notebook", "stationery", 3000),
            (200, "tee-black-m", "apparel", 6000),
            (3, "mug", "home", 4500),
        ],
    ),
    (
        "cust_1002",
        "Grace Hopper",
        "grace@example.com",
        [(40, "hoodie-grey-l", "apparel", 8000), (10, "lamp", "home", 25000)],
    ),
    ("cust_1003", "Alan Turing", "alan@example.com", [(1, "pen", "stationery", 1500)]),
]


DEMO_RULES: list[dict[str, Any]] = [
    {
        "name": "1 point per dollar",
        "kind": "spend",
        "priority": 10,
        "config": {"points": 1, "per_amount": 100},
    },
    {
        "name": "Double points on apparel",
        "kind": "multiplier",
        "priority": 20,
        "config": {"factor": "2"},
        "conditions": {"categories": ["apparel"]},
    },
    {
        "name": "First order bonus",
        "kind": "bonus",
        "priority": 30,
        "config": {"points": 200},
        "conditions": {"first_order": True},
    },
    {
        "name": "Welcome",
        "kind": "event",
        "priority": 10,
        "config": {"points": 100, "event_type": "signup"},
    },
    {
        "name": "Product review",
        "kind": "event",
        "priority": 10,
        "config": {"points": 50, "event_type": "review"},
        "caps": {"per_member": {"count": 3, "period_days": 30}},
    },
]
# Referrals pay by the program's settings, once the friend's first order is past its window.
DEMO_REFERRALS = SettingsChanges(
    referral_referrer_points=500,
    referral_friend_points=250,
    referral_max_per_period=10,
    referral_period_days=30,
)


DEMO_TIERS = [
    TierDefinition(
        code="bronze",
        name="Bronze",
        rank=1,
        threshold=0,
        retention_months=12,
        benefits=({"code": "birthday_gift", "params": {"points": 100}},),
    ),
    TierDefinition(
        code="silver",
        name="Silver",
        rank=2,
        threshold=500,
        retention_months=12,
        benefits=(
            {"code": "birthday_gift", "params": {"points": 250}},
            {"code": "free_shipping", "params": {"min_amount": 5000}},
        ),
    ),
    TierDefinition(
        code="gold",
        name="Gold",
        rank=3,
        threshold=2000,
        retention_months=12,
        benefits=(
            {"code": "birthday_gift", "params": {"points": 500}},
            {"code": "free_shipping", "params": {}},
            {"code": "points_multiplier", "params": {"factor": "1.5"}},
        ),
    ),
]

DEMO_REWARDS = [
    RewardDefinition(
        name="$5 off your next order",
        kind=RewardKind.FIXED_DISCOUNT,
        cost_points=500,
        value_amount=500,
    ),
    RewardDefinition(
        name="Free tote bag",
        kind=RewardKind.PRODUCT,
        cost_points=800,
        stock=25,
    ),
    RewardDefinition(
        name="20% off coupon",
        kind=RewardKind.COUPON,
        cost_points=1500,
        per_member_limit=1,
        codes=tuple(f"SAVE20-{n:04d}" for n in range(1, 51)),
    ),
    RewardDefinition(
        name="Early access to the winter sale",
        kind=RewardKind.COUPON,
        cost_points=300,
        min_tier="gold",
    ),
]


def _seed_catalog(session: Session) -> Iterator[str]:
    if tier_definitions.list_tiers(session):
        yield "tiers already present"
    else:
        for tier in DEMO_TIERS:
            tier_definitions.create_tier(session, tier)
            yield f"tier {tier.name!r} created"
    if reward_definitions.list_rewards(session):
        yield "rewards already present"
        return
    for reward in DEMO_REWARDS:
        reward_definitions.create_reward(session, reward)
        yield f"reward {reward.name!r} created"


# Moments the shop's email tool hears about (`automation.fired` webhooks) once `loyalty jobs
# run` passes: the shoppers' history has lapsed buyers, regulars due to buy again and points
# about to expire; the welcome greets whoever enrols from now on.
DEMO_AUTOMATIONS = [
    AutomationDefinition(
        name="Welcome", trigger={"kind": "enrolled", "delay_days": 0}, actions=[{"type": "webhook"}]
    ),
    AutomationDefinition(
        name="Win back after 90 quiet days",
        trigger={"kind": "inactive", "days": 90},
        actions=[{"type": "webhook"}],
    ),
    AutomationDefinition(
        name="Time to buy again",
        trigger={"kind": "repurchase_due", "default_gap_days": 45, "factor": "1.5"},
        actions=[{"type": "webhook"}],
        dedup_days=30,
    ),
    AutomationDefinition(
        name="Points expire within 30 days",
        trigger={"kind": "points_expiring", "within_days": 30},
        actions=[{"type": "webhook"}],
    ),
]


def _seed_automations(session: Session) -> Iterator[str]:
    """After the members: a welcome created before them would greet every imported shopper
    (their enrolment is the import's)."""
    if automations.list_automations(session, active=None, limit=1, after=None)[0]:
        yield "automations already present"
        return
    for definition in DEMO_AUTOMATIONS:
        automations.create_automation(session, definition, actor="demo")
        yield f"automation {definition.name!r} created"


def _seed_rules(session: Session) -> Iterator[str]:
    if rules.list_rules(session, active=None, kind=None, limit=1, after=None)[0]:
        yield "earning rules already present"
        return
    for definition in DEMO_RULES:
        fields = {
            "active": True,
            "starts_at": None,
            "ends_at": None,
            "conditions": {},
            "caps": {},
            **definition,
        }
        rules.create_rule(session, RuleDefinition.from_fields(fields), actor="demo")
        yield f"rule {definition['name']!r} created"
    update_settings(session, DEMO_REFERRALS, actor="demo")
    yield "referrals: 500 points for the referrer, 250 for the friend"


def _code_of(session: Session, external_id: str) -> str | None:
    member = member_by_external_id(session, external_id)
    return member.referral_code if member else None


def _birthday_today(now: dt.datetime) -> dt.date:
    # 29 February is celebrated on the 28th in other years (see jobs.grant_birthdays).
    day = 28 if (now.month, now.day) == (2, 29) else now.day
    return dt.date(1990, now.month, day)


def seed(session: Session, now: dt.datetime | None = None) -> Iterator[str]:
    """Create the demo earning rules, tiers and rewards, enroll the demo members (once:
    re-seeding leaves their history alone) with orders in the past so the card shows
    pending and soon-expiring points, and yield lines to print, ending with fresh API keys."""
    now = now or utcnow()
    settings = get_settings(session)
    yield from _seed_rules(session)
    yield from _seed_catalog(session)
    for external_id, name, email, earnings in DEMO_MEMBERS:
        _, created = members.enroll(
            session,
            members.EnrollMember(
                external_id=external_id,
                name=name,
                email=email,
                # Alan enrolled with Ada's code: both are rewarded once his first order (a
                # day old) is past the return window; `loyalty jobs run` then pays it.
                referral_code=_code_of(session, "cust_1001")
                if external_id == "cust_1003"
                else None,
                # Ada's birthday is today: the first `jobs run` pays her tier's birthday gift.
                birthday=_birthday_today(now) if external_id == "cust_1001" else None,
                marketing_email=True,
            ),
            # Members since the day before their first order, which earns like the rest.
            now=now - dt.timedelta(days=max(days for days, *_ in earnings) + 1),
        )
        if not created:
            yield f"member {external_id} already enrolled"
            continue
        for days_ago, sku, category, price in earnings:
            orders.place_order(
                session,
                orders.PlaceOrder(
                    order_id=f"demo-{external_id}-{days_ago}",
                    external_id=external_id,
                    currency=settings.currency,
                    lines=(CartLine(sku, category, quantity=1, unit_price=price),),
                    placed_at=now - dt.timedelta(days=days_ago),
                ),
                now=now,
            )
        yield f"member {external_id} enrolled with {len(earnings)} past orders"
    yield from _seed_shoppers(session, now)
    yield from seed_experiment(session, now)
    yield from _seed_automations(session)
    summary = insight.refresh(session, as_of=now)
    yield (
        f"insight: {summary.buyers} buyers in {len(summary.segments)} segments, "
        f"lifetime-value model {summary.model_status.value}"
    )
    stamp = now.strftime("%Y%m%d%H%M%S")
    yield "API keys (shown once):"
    for scope in ("checkout", "app", "admin"):
        # A random suffix: seeding twice within one second must not reuse a key name.
        _, raw = create_key(session, f"demo-{scope}-{stamp}-{secrets.token_hex(3)}", [scope])
        yield f"  {scope:<9} {raw}"


SHOPPERS = 400
HISTORY_DAYS = 730


def _shopper_orders(
    rng: random.Random, external_id: str, currency: str, now: dt.datetime
) -> Iterator[list[str]]:
    """One shopper's orders as BG/NBD and Gamma-Gamma have customers behave: a purchase rate
    of their own, a chance to stop after each purchase, and an order size of their own."""
    rate = rng.gammavariate(0.8, 1 / 40)  # purchases a day while active
    stop = rng.betavariate(1.0, 3.0)  # the chance to stop after each purchase
    size = rng.gammavariate(6.0, 1 / 6.0) * rng.choice((2500, 4500, 9000))  # minor units
    day = rng.uniform(0, HISTORY_DAYS)  # days before now of the first purchase
    n = 0
    while day > 0:
        amount = max(100, round(size * rng.uniform(0.6, 1.4)))
        placed_at = now - dt.timedelta(days=day)
        yield [external_id, f"hist-{external_id}-{n}", placed_at.isoformat(), str(amount), currency]
        n += 1
        if rng.random() < stop:
            return
        day -= rng.expovariate(rate)


def _seed_shoppers(session: Session, now: dt.datetime) -> Iterator[str]:
    """Shoppers with up to two years of orders from before the program, imported as history
    (no points), as a shop moving from another system would."""
    if member_by_external_id(session, "shopper_0001") is not None:
        yield "shoppers already imported"
        return
    rng = random.Random(13)  # noqa: S311 - the same crowd on every machine, not a secret
    currency = get_settings(session).currency
    people = io.StringIO()
    history = io.StringIO()
    people_out, orders_out = csv.writer(people), csv.writer(history)
    people_out.writerow(["external_id", "marketing_email"])
    orders_out.writerow(["external_id", "order_id", "placed_at", "amount", "currency"])
    for n in range(1, SHOPPERS + 1):
        external_id = f"shopper_{n:04d}"
        # Four in five signed up for the newsletter: automations' messages reach them.
        people_out.writerow([external_id, "true" if n % 5 else ""])
        orders_out.writerows(_shopper_orders(rng, external_id, currency, now))
    people.seek(0)
    history.seek(0)
    joined = imports.import_members(session, people)
    imported = import_orders(session, history)
    yield f"{joined.imported} shoppers with {imported.imported} past orders imported as history"
