"""Calls the checkout tests share: enrol, give points, place orders, hold and refund over
HTTP, and what the database holds meanwhile.

Unless a test says otherwise the program runs at its defaults: USD, 100 points = 1.00,
pending_days 14, hold_ttl_seconds 900, max_redemption_percent 50, min_redemption_points 100.
Time is moved by calling the services with `now=` (or by backdating `placed_at`), never by a
batch job.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from loyalty.db import utcnow
from loyalty.events.models import MemberEvent
from loyalty.extensions import db
from loyalty.ledger.models import LedgerEntry, LedgerTransaction, PointLot, Redemption
from loyalty.orders.models import Order, QuotedCart, Refund
from loyalty.rules.models import RuleAward
from tests.factories import HoldFactory, OrderFactory
from tests.helpers import created

DAY = dt.timedelta(days=1)
CART = OrderFactory.build(order_id=None)  # 2 tees at 25.00 and a mug at 12.00: 62.00


def add_rule(client, admin, body):
    return created(client.post("/v1/admin/rules", json=body, headers=admin))


def enroll(client, checkout, external_id, **fields):
    response = client.post(
        "/v1/members", json={"external_id": external_id, **fields}, headers=checkout
    )
    assert response.status_code in (200, 201), response.json
    return response.json


def give(client, admin, external_id, points):
    """Available points, added by an admin adjustment."""
    response = client.post(
        f"/v1/admin/members/{external_id}/adjustments",
        json={"points": points, "reason": "test"},
        headers=admin,
    )
    assert response.status_code == 201, response.json


def settings(client, admin, **changes):
    response = client.patch("/v1/admin/program", json=changes, headers=admin)
    assert response.status_code == 200, response.json


def balance(client, checkout, external_id="c1"):
    response = client.get(f"/v1/members/{external_id}", headers=checkout)
    assert response.status_code == 200, response.json
    found = response.json["balance"]
    return {key: found[key] for key in ("available", "pending", "held")}


def order(client, checkout, order_id="o1", **fields):
    return client.post(
        "/v1/orders", json=OrderFactory.build(order_id=order_id, **fields), headers=checkout
    )


def hold(client, checkout, points, external_id="c1"):
    body = HoldFactory.build(member_id=external_id, points=points)
    return created(client.post("/v1/redemptions", json=body, headers=checkout))


def refund(client, checkout, body, order_id="o1"):
    return client.post(f"/v1/orders/{order_id}/refunds", json=body, headers=checkout)


def table_counts(app):
    with app.app_context():
        return {
            model.__name__: db.session.scalar(sa.select(sa.func.count()).select_from(model))
            for model in (
                LedgerTransaction,
                LedgerEntry,
                PointLot,
                Order,
                Refund,
                Redemption,
                RuleAward,
                MemberEvent,
                QuotedCart,
            )
        }


def backdated_hold(app, points, ago, external_id="c1"):
    """A hold made `ago` in the past (its TTL may already have run out)."""
    with app.app_context():
        held = HoldFactory(member_id=external_id, points=points, now=utcnow() - ago)
        return str(held.public_id)


def ended_five_days_before(now):
    """A rule's window that ran from 10 to 5 days before `now`."""
    return {"starts_at": (now - 10 * DAY).isoformat(), "ends_at": (now - 5 * DAY).isoformat()}
