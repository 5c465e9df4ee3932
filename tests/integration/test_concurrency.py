"""Concurrent writers: each member's writes serialize on their balance row, so no debit ever
spends points another one already took, no credit is lost, and members never wait on each
other. Every worker runs in its own app context, so in its own session and connection, as
concurrent requests do."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from flask import Flask

from loyalty.db import transaction
from loyalty.extensions import db
from loyalty.ledger import postings
from loyalty.ledger import verify as ledger_verify
from loyalty.ledger.exceptions import InsufficientPoints
from loyalty.ledger.models import Account, MemberBalance, PointLot, TransactionKind
from loyalty.membership import adjustments
from loyalty.program.services import get_settings, update_settings
from tests.commands import program_changes
from tests.concurrency import race
from tests.factories import MemberFactory

T0 = dt.datetime(2025, 1, 15, 12, 0, tzinfo=dt.UTC)
# Racing threads each commit on their own connection.
pytestmark = pytest.mark.committed

WORKERS = 20


def run_together(app: Flask, work: Callable[[int], object]) -> Counter[str]:
    """Run `work(i)` in WORKERS threads released at the same moment; count the outcomes."""

    def outcome(result: object) -> str:
        if not isinstance(result, Exception):
            return "ok"
        if isinstance(result, InsufficientPoints):
            return "insufficient_points"
        return f"{type(result).__name__}: {result}"  # a failure the test must show

    return Counter(outcome(result) for result in race(app, WORKERS, work))


def stored_balance(session, member) -> MemberBalance:
    session.expire_all()
    return session.get(MemberBalance, member.id)


@pytest.fixture
def member_with_10_points(session):
    update_settings(session, program_changes({"expiry_policy": "never"}))
    member = MemberFactory()
    adjustments.adjust(session, member.external_id, 10, "start", None, now=T0)
    # The test's own session must not sit in a transaction (on SQLite: hold the write lock).
    session.close()
    return member


def test_20_concurrent_debits_of_1_from_10_points_let_exactly_10_through(
    app, session, member_with_10_points
):
    external_id = member_with_10_points.external_id

    outcomes = run_together(
        app, lambda i: adjustments.adjust(db.session, external_id, -1, f"debit {i}", None, now=T0)
    )

    assert outcomes == Counter(ok=10, insufficient_points=10)
    balance = stored_balance(session, member_with_10_points)
    assert (balance.available, balance.pending, balance.held) == (0, 0, 0)
    assert session.scalar(sa.select(sa.func.sum(PointLot.remaining))) == 0
    assert ledger_verify.verify(session).ok


def test_20_concurrent_credits_to_one_member_all_land(app, session):
    update_settings(session, program_changes({"expiry_policy": "never"}))
    member = MemberFactory()
    session.close()

    outcomes = run_together(
        app,
        lambda i: adjustments.adjust(db.session, member.external_id, i + 1, "credit", None, now=T0),
    )

    assert outcomes == Counter(ok=WORKERS)
    assert stored_balance(session, member).available == sum(range(1, WORKERS + 1))
    assert session.scalar(sa.select(sa.func.count(PointLot.id))) == WORKERS
    assert ledger_verify.verify(session).ok


def test_concurrent_earning_and_spending_on_one_member_stays_consistent(
    app, session, member_with_10_points
):
    external_id = member_with_10_points.external_id

    def earn_or_spend(i: int) -> None:
        adjustments.adjust(db.session, external_id, 3 if i % 2 else -4, f"#{i}", None, now=T0)

    outcomes = run_together(app, earn_or_spend)

    assert set(outcomes) <= {"ok", "insufficient_points"}
    refused_debits = outcomes["insufficient_points"]
    expected = 10 + 3 * (WORKERS // 2) - 4 * (WORKERS // 2 - refused_debits)
    balance = stored_balance(session, member_with_10_points)
    assert balance.available == expected >= 0
    assert ledger_verify.verify(session).ok


@pytest.mark.postgresql_only
def test_a_write_in_progress_on_one_member_does_not_block_another_member(app, session):
    first, second = MemberFactory(), MemberFactory()
    session.close()
    holding, release = threading.Event(), threading.Event()

    def write_to_first_and_wait() -> None:
        with app.app_context(), transaction(db.session):
            balance = postings.lock_balance(db.session, first.id)
            postings.credit(
                db.session,
                balance,
                get_settings(db.session),
                5,
                kind=TransactionKind.ADJUST,
                source=Account.ADJUSTED,
                now=T0,
                pending=False,
            )
            db.session.flush()
            holding.set()
            release.wait(timeout=30)

    writer = threading.Thread(target=write_to_first_and_wait)
    writer.start()
    try:
        assert holding.wait(timeout=10)
        with app.app_context():
            # The first member is really locked: a writer there gives up after 200 ms...
            db.session.execute(sa.text("SET LOCAL lock_timeout = '200ms'"))
            with pytest.raises(sa.exc.OperationalError, match="lock timeout"):
                adjustments.adjust(db.session, first.external_id, 1, "blocked", None, now=T0)
        with app.app_context():
            # ...while a writer on the second member goes straight through.
            db.session.execute(sa.text("SET LOCAL lock_timeout = '5s'"))
            adjustments.adjust(db.session, second.external_id, 7, "not blocked", None, now=T0)
    finally:
        release.set()
        writer.join(timeout=30)

    assert stored_balance(session, first).available == 5
    assert stored_balance(session, second).available == 7
    assert ledger_verify.verify(session).ok
