"""Closing a member: their holds are released and every point is forfeited to the program in
one ledger transaction, so the liability report stops counting them."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from loyalty.extensions import db
from loyalty.ledger.models import LedgerEntry, LedgerTransaction, PointLot
from loyalty.webhooks.models import OutboxEvent
from tests.api.checkout_calls import balance, hold, order, refund, settings
from tests.helpers import ok, problem

# After every test the whole ledger must verify.
pytestmark = pytest.mark.usefixtures("ledger_verifies_after_each_test")


def close(client, admin, external_id="c1"):
    return ok(
        client.patch(f"/v1/admin/members/{external_id}", json={"status": "closed"}, headers=admin)
    )


def liability(client, admin):
    return ok(client.get("/v1/admin/reports/liability", headers=admin))


def forfeits(app):
    with app.app_context():
        return db.session.execute(
            sa.select(LedgerEntry.account, LedgerEntry.amount)
            .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
            .where(LedgerTransaction.kind == "forfeit")
            .order_by(LedgerEntry.account)
        ).all()


def test_closing_forfeits_available_and_pending_points_in_one_transaction(
    client, admin, checkout, app, rule, funded
):
    order(client, checkout)  # 62 points, pending for the return window
    assert balance(client, checkout) == {"available": 1000, "pending": 62, "held": 0}

    card = close(client, admin)

    assert card["balance"] | {"expiring_soon": None} == {
        "available": 0,
        "pending": 0,
        "held": 0,
        "expiring_soon": None,
    }
    assert forfeits(app) == [("available", -1000), ("expired", 1062), ("pending", -62)]
    history = ok(client.get("/v1/members/c1/transactions", headers=checkout))["items"]
    assert (history[0]["kind"], history[0]["points"]) == ("forfeit", -1062)


def test_after_closing_the_liability_report_no_longer_counts_the_member(
    client, admin, checkout, rule, funded
):
    assert liability(client, admin)["outstanding"] == 1000

    close(client, admin)

    report = liability(client, admin)
    assert (report["outstanding"], report["available"], report["consistent"]) == (0, 0, True)
    assert report["program_accounts"]["expired"] == 1000


def test_closing_releases_open_holds_before_forfeiting_their_points(
    client, admin, checkout, app, funded
):
    held = hold(client, checkout, 300)

    close(client, admin)

    response = client.post(f"/v1/redemptions/{held['redemption_id']}/capture", headers=checkout)
    problem(response, 409, "already_released")
    assert forfeits(app) == [("available", -1000), ("expired", 1000)]


def test_closing_writes_off_a_debt(client, admin, checkout, rule, member):
    settings(client, admin, pending_days=0, min_redemption_points=1)
    order(client, checkout)  # 62 points, available at once
    spent = hold(client, checkout, 62)
    client.post(f"/v1/redemptions/{spent['redemption_id']}/capture", headers=checkout)
    refund(client, checkout, {"refund_id": "r1", "amount": 6200})
    assert balance(client, checkout)["available"] == -62

    close(client, admin)

    assert balance(client, checkout) == {"available": 0, "pending": 0, "held": 0}
    report = liability(client, admin)
    assert (report["outstanding"], report["consistent"]) == (0, True)


def test_closing_empties_the_members_lots(client, admin, checkout, app, rule, funded):
    order(client, checkout)

    close(client, admin)

    with app.app_context():
        left = db.session.scalar(sa.select(sa.func.sum(PointLot.remaining)))
        states = set(db.session.scalars(sa.select(PointLot.state)))
    assert (left, states) == (0, {"expired"})


def test_closing_announces_the_forfeit(client, admin, checkout, app, rule, funded):
    order(client, checkout)

    close(client, admin)

    with app.app_context():
        payload = db.session.scalar(
            sa.select(OutboxEvent.payload).where(OutboxEvent.type == "points.forfeited")
        )
    assert payload == {"member_id": "c1", "available": 1000, "pending": 62, "released_holds": []}


def test_closing_a_member_without_points_writes_no_transaction(client, admin, app, member):
    close(client, admin)

    assert forfeits(app) == []
