"""The English demo (`loyalty demo seed`): a shop selling stationery, apparel and homeware in
the program's currency (USD unless changed)."""

from __future__ import annotations

from loyalty.automations.definitions import AutomationDefinition
from loyalty.demo.locale import DemoExperiment, DemoLocale, DemoMember, PastOrder
from loyalty.program.services import SettingsChanges
from loyalty.rewards.definitions import RewardDefinition
from loyalty.rewards.models import RewardKind
from loyalty.tiers.definitions import TierDefinition

MEMBERS = (
    DemoMember(
        "cust_1001",
        "Ada Lovelace",
        "ada@example.com",
        (
            PastOrder(340, "notebook", "stationery", 3000),
            PastOrder(200, "tee-black-m", "apparel", 6000),
            PastOrder(3, "mug", "home", 4500),
        ),
        birthday_today=True,
    ),
    DemoMember(
        "cust_1002",
        "Grace Hopper",
        "grace@example.com",
        (
            PastOrder(40, "hoodie-grey-l", "apparel", 8000),
            PastOrder(10, "lamp", "home", 25000),
        ),
    ),
    DemoMember(
        "cust_1003",
        "Alan Turing",
        "alan@example.com",
        (PastOrder(1, "pen", "stationery", 1500),),
        referred_by="cust_1001",
    ),
)

RULES = (
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
)

# Referrals pay by the program's settings, once the friend's first order is past its window.
REFERRALS = SettingsChanges(
    referral_referrer_points=500,
    referral_friend_points=250,
    referral_max_per_period=10,
    referral_period_days=30,
)

TIERS = (
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
)

REWARDS = (
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
)

# Moments the shop's email tool hears about (`automation.fired` webhooks) once `loyalty jobs
# run` passes: the shoppers' history has lapsed buyers, regulars due to buy again and points
# about to expire; the welcome greets whoever enrols from now on.
AUTOMATIONS = (
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
)

EXPERIMENT = DemoExperiment(
    rule_name="Big basket bonus",
    name="Big basket bonus",
    hypothesis="Members offered 300 points on orders of 60.00 or more order more "
    "often, and the extra orders pay for the points.",
    min_amount=6000,
    apparel=(("tee", 2500), ("hoodie", 5500), ("cap", 1800), ("jacket", 9900)),
)

ENGLISH = DemoLocale(
    code="en",
    currency=None,
    time_zone=None,
    members=MEMBERS,
    rules=RULES,
    referrals=REFERRALS,
    tiers=TIERS,
    rewards=REWARDS,
    automations=AUTOMATIONS,
    shopper_order_sizes=(2500, 4500, 9000),
    experiment=EXPERIMENT,
)
