"""Calls the tier tests share: orders and refunds over HTTP or, at a moment of the test's
choosing, through the services; the member card, the stored tier and the tier history.

The program used below earns 1 point per 1.00 spent and has three tiers:

    Silver    rank 1    100 qualifying points    kept 12 months
    Gold      rank 2    500 qualifying points    kept  6 months, free shipping
    Platinum  rank 3  2,000 qualifying points    kept  3 months, free shipping, x2 points

Unless a test says otherwise the program runs at its defaults (pending_days 14, points expire
12 months after they are earned, a 12-month tier window). While a member qualifies, their tier
is kept until its retention after the moment the qualification would lapse (when the points
leave the window); once they stop qualifying (a refund), at most its retention from then.
Time is moved by calling the services with `now=`; after every test the whole ledger must
verify.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from loyalty.members import lookup
from loyalty.membership import services as members
from loyalty.orders import refunds
from loyalty.program.services import update_settings
from loyalty.tiers import services as tiers
from tests.commands import program_changes, refund_command
from tests.factories import OrderFactory
from tests.helpers import created, order_placed_at, services

SECOND = dt.timedelta(seconds=1)
DAY = dt.timedelta(days=1)


def order(
    client: FlaskClient,
    checkout: dict[str, str],
    order_id: str,
    dollars: int,
    external_id: str = "c1",
    **fields: Any,
) -> dict[str, Any]:
    """Place an order worth `dollars` (so `dollars` points under the spend rule)."""
    body = OrderFactory.build(order_id=order_id, member_id=external_id, worth=dollars, **fields)
    return created(client.post("/v1/orders", json=body, headers=checkout))


def refund(
    client: FlaskClient, checkout: dict[str, str], order_id: str, **body: Any
) -> dict[str, Any]:
    response = client.post(f"/v1/orders/{order_id}/refunds", json=body, headers=checkout)
    assert response.status_code == 201, response.json
    return response.json


def order_at(app: Flask, order_id: str, dollars: int, moment: dt.datetime) -> None:
    """An order worth `dollars` placed at `moment`, as the checkout would send it then."""
    order_placed_at(app, order_id, "c1", dollars, moment)


def refund_at(app: Flask, order_id: str, dollars: int, moment: dt.datetime) -> None:
    """`dollars` of the order refunded at `moment`."""
    fields = {"refund_id": f"{order_id}-refund", "amount": dollars * 100}
    with services(app) as session:
        refunds.refund_order(session, order_id, refund_command(fields), now=moment)


def card(client: FlaskClient, headers: dict[str, str], external_id: str = "c1") -> dict[str, Any]:
    response = client.get(f"/v1/members/{external_id}", headers=headers)
    assert response.status_code == 200, response.json
    return response.json


def tier_code(found: members.MemberCard) -> str | None:
    """The code of the tier a card (read through the service) shows, None without one."""
    return found.progress.tier.code if found.progress.tier is not None else None


def progress(found: members.MemberCard) -> tuple[str | None, int, dt.datetime | None]:
    """A card's tier code, qualifying points and the date the tier is retained until."""
    return (tier_code(found), found.progress.qualifying_points, found.progress.retained_until)


def tier_of(found: dict[str, Any]) -> str | None:
    return found["tier"]["code"] if found["tier"] else None


def history(client: FlaskClient, admin: dict[str, str], external_id: str = "c1") -> list[Any]:
    response = client.get(f"/v1/admin/members/{external_id}/tier-history", headers=admin)
    assert response.status_code == 200, response.json
    return response.json["items"]


def moves(client: FlaskClient, admin: dict[str, str]) -> list[tuple[Any, Any, str]]:
    """The member's tier changes as (from, to, why), newest first."""
    return [(c["from_tier"], c["to_tier"], c["reason"]) for c in history(client, admin)]


def settings(app: Flask, **changes: Any) -> None:
    with services(app) as session:
        update_settings(session, program_changes(changes))


def stored_tier(app: Flask, external_id: str = "c1") -> str | None:
    """The member's tier as stored, read without touching (and so reviewing) the member."""
    with services(app) as session:
        member = lookup.find_member(session, external_id)
        return tiers.member_tier_code(session, member)


def card_at(app: Flask, moment: dt.datetime, external_id: str = "c1") -> members.MemberCard:
    """Read the member card the way a request at `moment` would."""
    with services(app) as session:
        found = members.card(session, external_id, now=moment)
        session.expunge_all()
        return found
