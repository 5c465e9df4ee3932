"""Demo data: a few members with a history worth looking at, and one API key per scope."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator
from typing import Any

from sqlalchemy.orm import Session

from loyalty.auth.services import create_key
from loyalty.db import utcnow
from loyalty.members import services as members
from loyalty.orders import services as orders
from loyalty.program.services import get_settings
from loyalty.rules import services as rules

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
        rules.create_rule(session, fields, actor="demo")
        yield f"rule {definition['name']!r} created"


def seed(session: Session, now: dt.datetime | None = None) -> Iterator[str]:
    """Create the demo earning rules, enroll the demo members (once: re-seeding leaves
    their history alone), give them earnings in the past so the card shows pending and
    soon-expiring points, and yield lines to print, ending with fresh API keys."""
    now = now or utcnow()
    settings = get_settings(session)
    yield from _seed_rules(session)
    for external_id, name, email, earnings in DEMO_MEMBERS:
        _, created = members.enroll(
            session,
            {
                "external_id": external_id,
                "name": name,
                "email": email,
                # Alan was referred by Ada: his first order credits her referral points.
                "referred_by": "cust_1001" if external_id == "cust_1003" else None,
            },
        )
        if not created:
            yield f"member {external_id} already enrolled"
            continue
        for days_ago, sku, category, price in earnings:
            orders.place_order(
                session,
                {
                    "order_id": f"demo-{external_id}-{days_ago}",
                    "member_id": external_id,
                    "currency": settings.currency,
                    "lines": [
                        {"sku": sku, "category": category, "quantity": 1, "unit_price": price}
                    ],
                    "discount": 0,
                    "placed_at": now - dt.timedelta(days=days_ago),
                },
                now=now,
            )
        yield f"member {external_id} enrolled with {len(earnings)} past orders"
    stamp = now.strftime("%Y%m%d%H%M%S")
    yield "API keys (shown once):"
    for scope in ("checkout", "app", "admin"):
        # A random suffix: seeding twice within one second must not reuse a key name.
        _, raw = create_key(session, f"demo-{scope}-{stamp}-{secrets.token_hex(3)}", [scope])
        yield f"  {scope:<9} {raw}"
