"""What a demo locale decides: its currency and time zone, and the names, texts and amounts the
seed writes. One procedure (``loyalty.demo.seed``) seeds every locale, so a locale is data
only: ``english`` and ``chinese`` hold one each."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from loyalty.automations.definitions import AutomationDefinition
from loyalty.program.services import SettingsChanges
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
    # Earning rules in the stored shape (RuleDefinition.from_fields)
    rules: tuple[dict[str, Any], ...]
    referrals: SettingsChanges
    tiers: tuple[TierDefinition, ...]
    rewards: tuple[RewardDefinition, ...]
    automations: tuple[AutomationDefinition, ...]
    # Typical order sizes (minor units) the imported shoppers' own sizes are drawn around
    shopper_order_sizes: tuple[int, int, int]
    experiment: DemoExperiment
