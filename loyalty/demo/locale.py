"""What a demo locale decides: its currency and time zone, and the names, texts and amounts the
seed writes (the design of the earning rules and automations is every locale's: ``program``).
One procedure (``loyalty.demo.seed``) seeds every locale, so a locale is data only:
``english`` and ``chinese`` hold one each."""

from __future__ import annotations

from dataclasses import dataclass

from loyalty.rewards.definitions import RewardDefinition
from loyalty.tiers.definitions import TierDefinition


@dataclass(frozen=True, slots=True)
class PastOrder:
    days_ago: int
    sku: str
    category: str
    unit_price: int  # minor units


@dataclass(frozen=True, slots=True)
class DemoMember:
    """A member with a history worth looking at on the card."""

    external_id: str
    name: str
    email: str
    orders: tuple[PastOrder, ...]
    # The member whose referral code they enrolled with: both are rewarded once their first
    # order is past the return window.
    referred_by: str | None = None
    # A birthday today: the first `jobs run` pays their tier's birthday gift.
    birthday_today: bool = False


@dataclass(frozen=True, slots=True)
class DemoNames:
    """What the earning rules and automations are called (their design: ``program``)."""

    spend_rule: str
    apparel_rule: str
    first_order_rule: str
    signup_rule: str
    review_rule: str
    welcome_automation: str
    win_back_automation: str
    buy_again_automation: str
    expiring_automation: str


@dataclass(frozen=True, slots=True)
class DemoExperiment:
    """The finished experiment's texts and amounts (loyalty/demo/experiment.py)."""

    rule_name: str
    name: str
    hypothesis: str
    min_amount: int  # minor units: the order that earns the bonus
    # (sku, unit price in minor units) of the apparel the members buy; a second visit buys
    # the first of them.
    apparel: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class DemoLocale:
    code: str
    # None: the program keeps its currency (the English demo seeds in whatever it is).
    currency: str | None
    # The program's IANA time zone; printed by the seed until the program has a setting for
    # it. None: the program's own.
    time_zone: str | None
    members: tuple[DemoMember, ...]
    names: DemoNames
    tiers: tuple[TierDefinition, ...]
    rewards: tuple[RewardDefinition, ...]
    # Typical order sizes (minor units) the imported shoppers' own sizes are drawn around
    shopper_order_sizes: tuple[int, int, int]
    experiment: DemoExperiment
