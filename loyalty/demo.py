"""Demo data: a few members with a history worth looking at, and one API key per scope."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator
from typing import Any

from sqlalchemy.orm import Session

from loyalty.auth.services import create_key
from loyalty.db import utcnow
from loyalty.membership import services as members
from loyalty.orders import services as orders
from loyalty.orders.earning import CartLine
from loyalty.program.services import get_settings
from loyalty.rewards import definitions as reward_definitions
from loyalty.rewards.definitions import RewardDefinition
from loyalty.rewards.models import RewardKind
from loyalty.rules import services as rules
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
    {
        "name": "Referral",
        "kind": "event",
        "priority": 10,
        "config": {"points": 500, "event_type": "referral"},
    },
]


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
        rules.create_rule(session, rules.RuleDefinition.from_fields(fields), actor="demo")
        yield f"rule {definition['name']!r} created"


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
                # Alan was referred by Ada: his first order credits her referral points.
                referred_by="cust_1001" if external_id == "cust_1003" else None,
            ),
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
    stamp = now.strftime("%Y%m%d%H%M%S")
    yield "API keys (shown once):"
    for scope in ("checkout", "app", "admin"):
        # A random suffix: seeding twice within one second must not reuse a key name.
        _, raw = create_key(session, f"demo-{scope}-{stamp}-{secrets.token_hex(3)}", [scope])
        yield f"  {scope:<9} {raw}"
