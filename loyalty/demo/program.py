"""The demo's earning rules, referral rewards and automations: the same design in every
locale, named in the locale's language (``DemoNames``). Amounts in minor units are per major
unit of the program's currency (a point per dollar, a point per yuan)."""

from __future__ import annotations

from typing import Any

from loyalty.automations.definitions import AutomationDefinition
from loyalty.demo.locale import DemoNames
from loyalty.program.services import SettingsChanges

# Referrals pay by the program's settings, once the friend's first order is past its window.
REFERRALS = SettingsChanges(
    referral_referrer_points=500,
    referral_friend_points=250,
    referral_max_per_period=10,
    referral_period_days=30,
)


def earning_rules(names: DemoNames) -> tuple[dict[str, Any], ...]:
    """The rules in the stored shape (RuleDefinition.from_fields)."""
    return (
        {
            "name": names.spend_rule,
            "kind": "spend",
            "priority": 10,
            "config": {"points": 1, "per_amount": 100},
        },
        {
            "name": names.apparel_rule,
            "kind": "multiplier",
            "priority": 20,
            "config": {"factor": "2"},
            "conditions": {"categories": ["apparel"]},
        },
        {
            "name": names.first_order_rule,
            "kind": "bonus",
            "priority": 30,
            "config": {"points": 200},
            "conditions": {"first_order": True},
        },
        {
            "name": names.signup_rule,
            "kind": "event",
            "priority": 10,
            "config": {"points": 100, "event_type": "signup"},
        },
        {
            "name": names.review_rule,
            "kind": "event",
            "priority": 10,
            "config": {"points": 50, "event_type": "review"},
            "caps": {"per_member": {"count": 3, "period_days": 30}},
        },
    )


def automations(names: DemoNames) -> tuple[AutomationDefinition, ...]:
    """Moments the shop's email tool hears about (`automation.fired` webhooks) once `loyalty
    jobs run` passes: the shoppers' history has lapsed buyers, regulars due to buy again and
    points about to expire; the welcome greets whoever enrols from now on."""
    return (
        AutomationDefinition(
            name=names.welcome_automation,
            trigger={"kind": "enrolled", "delay_days": 0},
            actions=[{"type": "webhook"}],
        ),
        AutomationDefinition(
            name=names.win_back_automation,
            trigger={"kind": "inactive", "days": 90},
            actions=[{"type": "webhook"}],
        ),
        AutomationDefinition(
            name=names.buy_again_automation,
            trigger={"kind": "repurchase_due", "default_gap_days": 45, "factor": "1.5"},
            actions=[{"type": "webhook"}],
            dedup_days=30,
        ),
        AutomationDefinition(
            name=names.expiring_automation,
            trigger={"kind": "points_expiring", "within_days": 30},
            actions=[{"type": "webhook"}],
        ),
    )
