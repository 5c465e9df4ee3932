"""The English demo (`loyalty demo seed`): a shop selling stationery, apparel and homeware in
the program's currency (USD unless changed)."""

from __future__ import annotations

from loyalty.demo.locale import DemoExperiment, DemoLocale, DemoMember, DemoNames, PastOrder
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

NAMES = DemoNames(
    spend_rule="1 point per dollar",
    apparel_rule="Double points on apparel",
    first_order_rule="First order bonus",
    signup_rule="Welcome",
    review_rule="Product review",
    welcome_automation="Welcome",
    win_back_automation="Win back after 90 quiet days",
    buy_again_automation="Time to buy again",
    expiring_automation="Points expire within 30 days",
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
    names=NAMES,
    tiers=TIERS,
    rewards=REWARDS,
    shopper_order_sizes=(2500, 4500, 9000),
    experiment=EXPERIMENT,
)
