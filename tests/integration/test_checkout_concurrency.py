"""Checkout under real traffic: many requests for the same member, order, hold or refund at
the same instant. Each racer runs in its own thread with its own app context (so its own
session and connection), and all of them are released together by a barrier.

The holds and the capture/release race need PostgreSQL's row locks (`postgresql_only`); the
exactly-once and cap tests run on SQLite too, whose writers queue on the database lock.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import pytest
import sqlalchemy as sa

from loyalty.events import services as events
from loyalty.extensions import db
from loyalty.ledger import verify as ledger_verify
from loyalty.ledger.exceptions import InsufficientPoints
from loyalty.ledger.models import LedgerTransaction, MemberBalance, TransactionKind
from loyalty.members import lookup
from loyalty.membership import adjustments
from loyalty.orders import refunds
from loyalty.orders import services as orders
from loyalty.orders.models import Order, Refund
from loyalty.program import services as program
from loyalty.redemptions import services as redemptions
from loyalty.redemptions.exceptions import AlreadyCaptured, AlreadyReleased
from tests.commands import event_command, order_command, refund_command
from tests.concurrency import race
from tests.factories import ApiKeyFactory, MemberFactory, OrderFactory, RuleFactory, auth

# Racing threads each commit on their own connection.
pytestmark = pytest.mark.committed

# 62.00: 62 points under the rule below
ORDER = {**OrderFactory.build(), "discount": 0, "redemption_id": None, "placed_at": None}


def points(session, external_id="c1") -> dict[str, int]:
    session.expire_all()
    member = lookup.find_member(session, external_id)
    balance = session.get(MemberBalance, member.id)
    return {"available": balance.available, "pending": balance.pending, "held": balance.held}


def assert_ledger_verifies(session) -> None:
    session.expire_all()
    report = ledger_verify.verify(session)
    assert report.ok, report.problems


def count(session, model, *where) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def event_rule(session, event_type: str, points: int, caps=None) -> None:
    RuleFactory(review=True, name=event_type, event_type=event_type, points=points, caps=caps)


@pytest.fixture
def spend_rule(session):
    RuleFactory()


@pytest.fixture
def member(session):
    MemberFactory(external_id="c1")
    return "c1"


@pytest.mark.postgresql_only
def test_fifty_concurrent_holds_against_points_for_ten_hold_exactly_ten(session, app, member):
    adjustments.adjust(session, "c1", 1000, "gift", None)
    session.close()

    results = race(app, 50, lambda _: redemptions.hold(db.session, "c1", 100).public_id)

    held = {r for r in results if isinstance(r, uuid.UUID)}
    refused = [r for r in results if isinstance(r, InsufficientPoints)]
    assert (len(held), len(refused)) == (10, 40)
    assert {r.code for r in refused} == {"insufficient_points"}
    assert points(session) == {"available": 0, "pending": 0, "held": 1000}
    assert_ledger_verifies(session)


def test_the_same_order_posted_by_ten_threads_at_once_earns_once(session, app, spend_rule, member):
    session.close()

    results = race(app, 10, lambda _: orders.place_order(db.session, order_command(dict(ORDER)))[1])

    assert Counter(results) == {True: 1, False: 9}
    assert points(session) == {"available": 0, "pending": 62, "held": 0}
    assert count(session, Order) == 1
    earned = count(session, LedgerTransaction, LedgerTransaction.kind == TransactionKind.EARN)
    assert earned == 1
    assert_ledger_verifies(session)


def test_the_same_order_posted_over_http_by_ten_clients_at_once_earns_once(
    session, app, spend_rule, member
):
    headers = auth(ApiKeyFactory(scopes=("checkout",)))
    session.close()
    body = {key: value for key, value in ORDER.items() if value is not None}

    def post(_: int) -> tuple[int, Any]:
        response = app.test_client().post("/v1/orders", json=body, headers=headers)
        return response.status_code, response.get_json()

    results = race(app, 10, post)

    assert {status for status, _ in results} == {201}
    assert all(answer == results[0][1] for _, answer in results)
    assert results[0][1]["points_earned"] == 62
    assert points(session) == {"available": 0, "pending": 62, "held": 0}
    assert count(session, Order) == 1
    assert_ledger_verifies(session)


@pytest.mark.postgresql_only
def test_a_capture_racing_a_release_on_one_hold_has_exactly_one_winner(session, app, member):
    adjustments.adjust(session, "c1", 2000, "gift", None)
    holds = [redemptions.hold(session, "c1", 100).public_id for _ in range(10)]
    session.close()

    def capture_or_release(racer: int, public_id) -> str:
        action = redemptions.capture if racer == 0 else redemptions.release
        return action(db.session, public_id).status

    captures = 0
    for public_id in holds:
        capture, release = race(app, 2, lambda n, h=public_id: capture_or_release(n, h))
        if capture == "captured":
            loser = release
            assert isinstance(loser, AlreadyCaptured), loser
            captures += 1
        else:
            loser = capture
            assert isinstance(loser, AlreadyReleased), loser
            assert release == "released"
        assert loser.status == 409

    assert points(session) == {"available": 2000 - 100 * captures, "pending": 0, "held": 0}
    assert_ledger_verifies(session)


def test_the_same_refund_by_several_threads_applies_once(session, app, spend_rule, member):
    orders.place_order(session, order_command(dict(ORDER)))
    session.close()

    results = race(
        app,
        8,
        lambda _: refunds.refund_order(
            db.session, "o1", refund_command({"refund_id": "r1", "amount": 3100})
        )[1],
    )

    assert Counter(results) == {True: 1, False: 7}
    assert points(session) == {"available": 0, "pending": 31, "held": 0}
    assert count(session, Refund) == 1
    assert session.scalar(sa.select(Order.points_reversed)) == 31
    assert_ledger_verifies(session)


def test_different_refunds_of_one_order_at_once_never_refund_more_than_it(
    session, app, spend_rule, member
):
    orders.place_order(session, order_command(dict(ORDER)))
    session.close()

    results = race(
        app,
        8,
        lambda n: (
            refunds.refund_order(
                db.session, "o1", refund_command({"refund_id": f"r{n}", "amount": 1000})
            )[0].points_reversed
        ),
    )

    refunded = [r for r in results if isinstance(r, int)]
    refused = [r for r in results if not isinstance(r, int)]
    assert len(refunded) == 6  # 6 x 10.00 fit in 62.00, the 7th and 8th do not
    assert {type(r).__name__ for r in refused} == {"RefundExceedsOrder"}
    assert sum(refunded) == 62 * 6000 // 6200
    assert points(session)["pending"] == 62 - sum(refunded)
    assert_ledger_verifies(session)


def test_one_order_id_sent_for_two_members_at_once_is_recorded_for_one(
    session, app, spend_rule, member
):
    MemberFactory(external_id="c2")
    session.close()

    results = race(
        app,
        2,
        lambda n: orders.place_order(
            db.session, order_command({**ORDER, "member_id": f"c{n + 1}"})
        )[1],
    )

    assert sorted(type(r).__name__ for r in results) == ["OrderConflict", "bool"]
    assert True in results
    assert count(session, Order) == 1
    assert sum(points(session, m)["pending"] for m in ("c1", "c2")) == 62
    assert_ledger_verifies(session)


def test_concurrent_first_orders_of_a_referred_member_credit_the_referrer_once(
    session, app, spend_rule
):
    event_rule(session, "referral", 500)
    # No return window: the first order rewards the referral at once.
    program.update_settings(session, program.SettingsChanges(pending_days=0))
    MemberFactory(external_id="host")
    MemberFactory(external_id="friend", referred_by="host")
    session.close()

    results = race(
        app,
        6,
        lambda n: orders.place_order(
            db.session, order_command({**ORDER, "order_id": f"o{n}", "member_id": "friend"})
        )[1],
    )

    assert results == [True] * 6
    assert points(session, "host") == {"available": 500, "pending": 0, "held": 0}
    assert points(session, "friend")["available"] == 6 * 62
    assert_ledger_verifies(session)


def test_concurrent_events_respect_a_per_member_count_cap(session, app, member):
    event_rule(session, "review", 25, caps={"per_member": {"period_days": 30, "count": 3}})
    session.close()

    results = race(
        app,
        10,
        lambda n: (
            events.record_event(
                db.session,
                event_command({"event_id": f"e{n}", "member_id": "c1", "type": "review"}),
            )[0].points_earned
        ),
    )

    assert sorted(results) == [0] * 7 + [25] * 3
    assert points(session) == {"available": 75, "pending": 0, "held": 0}
    assert_ledger_verifies(session)
