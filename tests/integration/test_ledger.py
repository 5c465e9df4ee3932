"""The points ledger: earning, maturing, expiry, spending, debt, history and verification.

Every test moves time by passing an explicit `now`; no batch job ever runs, so whatever a
read shows is what the ledger computes on its own as of that moment.
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from loyalty.db import transaction
from loyalty.errors import ValidationFailed
from loyalty.ledger import postings, spending
from loyalty.ledger import verify as ledger_verify
from loyalty.ledger.exceptions import InsufficientPoints
from loyalty.ledger.models import (
    Account,
    LedgerEntry,
    LedgerTransaction,
    LotState,
    MemberBalance,
    PointLot,
    TransactionKind,
)
from loyalty.ledger.policy import add_months
from loyalty.membership import adjustments
from loyalty.membership import services as membership
from loyalty.membership.services import card
from loyalty.program.services import get_settings, update_settings
from loyalty.settlement import services as settlement
from tests.commands import program_changes
from tests.factories import MemberFactory
from tests.helpers import credit_earned

T0 = dt.datetime(2025, 1, 15, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
TICK = dt.timedelta(microseconds=1)


# --- helpers: the building blocks used the way the use cases use them --------------------


def earn(session, member, points, now, *, pending=True):
    """Earn `points` as an order would: pending for the return window unless `pending=False`."""
    with transaction(session):
        return credit_earned(
            session, member.id, points, now, pending=pending, settle=True, reference="order:test"
        )


def debit(session, member, points, now, **kwargs):
    settings = get_settings(session)
    with transaction(session):
        balance = postings.lock_balance(session, member.id)
        settlement.settle_member(session, balance, now)
        txn, taken = spending.debit(session, balance, settings, points, now=now, **kwargs)
    return txn, taken


def spend(session, member, points, now):
    """Redeem `points` from available."""
    return debit(
        session, member, points, now, kind=TransactionKind.REDEEM, destination=Account.REDEEMED
    )


def reverse_refund(session, member, points, now):
    """Take back earned points for a refund: the one debit allowed to go below zero."""
    return debit(
        session,
        member,
        points,
        now,
        kind=TransactionKind.REVERSE,
        destination=Account.ISSUED,
        allow_negative=True,
    )


def program(session, **changes):
    update_settings(session, program_changes(changes))


def points(session, member, now):
    """(available, pending) on the member card as of `now`."""
    balance = card(session, member.external_id, now)
    return balance.available, balance.pending


def lots_of(session, member):
    """The member's lots as stored, oldest first."""
    stmt = (
        sa.select(PointLot)
        .where(PointLot.member_id == member.id)
        .order_by(PointLot.id)
        .execution_options(populate_existing=True)
    )
    return list(session.execute(stmt).scalars())


def transactions_of(session, member, kind=None):
    stmt = sa.select(LedgerTransaction).where(LedgerTransaction.member_id == member.id)
    if kind is not None:
        stmt = stmt.where(LedgerTransaction.kind == kind.value)
    return list(session.execute(stmt.order_by(LedgerTransaction.id)).scalars())


def count(session, model):
    return session.scalar(sa.select(sa.func.count()).select_from(model))


@pytest.fixture
def member(session):
    return MemberFactory()


@pytest.fixture
def immediate(session):
    """A program without a return window: earned points are available at once."""
    program(session, pending_days=0)


# --- earning and maturing ----------------------------------------------------------------


def test_earned_points_wait_in_pending_for_the_return_window(session, member):
    program(session, pending_days=14)
    lot = earn(session, member, 100, T0)
    assert points(session, member, T0) == (0, 100)
    assert lot.state == LotState.PENDING
    assert lot.available_at == T0 + 14 * DAY


def test_earned_points_are_available_at_once_without_a_return_window(session, member):
    program(session, pending_days=0)
    lot = earn(session, member, 100, T0)
    assert points(session, member, T0) == (100, 0)
    assert lot.state == LotState.AVAILABLE
    assert lot.available_at == T0


def test_credit_can_skip_the_return_window(session, member):
    program(session, pending_days=14)
    earn(session, member, 100, T0, pending=False)
    assert points(session, member, T0) == (100, 0)


def test_pending_points_are_still_pending_just_before_available_at(session, member):
    program(session, pending_days=14)
    earn(session, member, 100, T0)
    assert points(session, member, T0 + 14 * DAY - TICK) == (0, 100)


def test_pending_points_mature_exactly_at_available_at_without_any_job(session, member):
    program(session, pending_days=14)
    earn(session, member, 100, T0)
    assert points(session, member, T0 + 14 * DAY) == (100, 0)
    (lot,) = lots_of(session, member)
    assert (lot.state, lot.remaining) == (LotState.AVAILABLE, 100)


def test_settled_balance_is_right_as_of_now_without_any_job(session, member):
    program(session, pending_days=14)
    earn(session, member, 100, T0)
    balance = settlement.settled_balance(session, member, T0 + 14 * DAY)
    assert (balance.available, balance.pending) == (100, 0)
    session.expire_all()
    stored = session.get(MemberBalance, member.id)
    assert (stored.available, stored.pending) == (100, 0)


def test_maturing_is_a_transaction_dated_at_available_at(session, member):
    program(session, pending_days=14)
    lot = earn(session, member, 100, T0)
    points(session, member, T0 + 40 * DAY)
    (mature,) = transactions_of(session, member, TransactionKind.MATURE)
    assert mature.effective_at == T0 + 14 * DAY
    assert mature.reference == f"lot:{lot.id}"
    assert sorted((e.account, e.amount) for e in mature.entries) == [
        (Account.AVAILABLE.value, 100),
        (Account.PENDING.value, -100),
    ]


def test_reading_twice_settles_once(session, member):
    program(session, pending_days=14)
    earn(session, member, 100, T0)
    points(session, member, T0 + 20 * DAY)
    points(session, member, T0 + 21 * DAY)
    assert len(transactions_of(session, member, TransactionKind.MATURE)) == 1


# --- expiry policies ---------------------------------------------------------------------


def test_fixed_policy_points_are_available_until_just_before_expiry(session, member, immediate):
    program(session, expiry_policy="fixed", expiry_months=12)
    earn(session, member, 100, T0)
    assert points(session, member, add_months(T0, 12) - TICK) == (100, 0)


def test_fixed_policy_points_expire_months_after_they_were_earned(session, member, immediate):
    program(session, expiry_policy="fixed", expiry_months=12)
    earn(session, member, 100, T0)
    assert points(session, member, add_months(T0, 12)) == (0, 0)
    (lot,) = lots_of(session, member)
    assert (lot.state, lot.remaining) == (LotState.EXPIRED, 0)


def test_fixed_policy_expires_each_lot_on_its_own_date(session, member, immediate):
    program(session, expiry_policy="fixed", expiry_months=12)
    earn(session, member, 100, T0)
    earn(session, member, 30, T0 + 60 * DAY)
    assert points(session, member, add_months(T0, 12)) == (30, 0)
    assert points(session, member, add_months(T0 + 60 * DAY, 12)) == (0, 0)


def test_fixed_policy_activity_does_not_extend_earlier_lots(session, member, immediate):
    program(session, expiry_policy="fixed", expiry_months=12)
    earn(session, member, 100, T0)
    spend(session, member, 10, add_months(T0, 11))
    assert points(session, member, add_months(T0, 12)) == (0, 0)


def test_expiry_is_a_transaction_dated_at_the_lots_expiry_time(session, member, immediate):
    program(session, expiry_policy="fixed", expiry_months=12)
    lot = earn(session, member, 100, T0)
    points(session, member, add_months(T0, 15))
    (expire,) = transactions_of(session, member, TransactionKind.EXPIRE)
    assert expire.effective_at == add_months(T0, 12)
    assert expire.reference == f"lot:{lot.id}"
    assert sorted((e.account, e.amount) for e in expire.entries) == [
        (Account.AVAILABLE.value, -100),
        (Account.EXPIRED.value, 100),
    ]


def test_only_the_unspent_part_of_a_lot_expires(session, member, immediate):
    program(session, expiry_policy="fixed", expiry_months=12)
    earn(session, member, 100, T0)
    spend(session, member, 60, T0 + DAY)
    points(session, member, add_months(T0, 12))
    (expire,) = transactions_of(session, member, TransactionKind.EXPIRE)
    assert {e.account: e.amount for e in expire.entries}[Account.EXPIRED.value] == 40


def test_pending_points_that_expire_before_they_mature_are_gone(session, member):
    program(session, pending_days=45, expiry_policy="fixed", expiry_months=1)
    earn(session, member, 100, T0)
    assert points(session, member, add_months(T0, 1)) == (0, 0)
    assert points(session, member, T0 + 45 * DAY) == (0, 0)
    assert ledger_verify.verify(session).ok


def test_points_maturing_and_expiring_at_the_same_instant_are_available_first(session, member):
    program(session, pending_days=31, expiry_policy="fixed", expiry_months=1)
    # Jan 15 + 31 days = Feb 15 = Jan 15 + 1 month.
    earn(session, member, 100, T0)
    assert points(session, member, T0 + 31 * DAY) == (0, 0)
    assert [t.kind for t in transactions_of(session, member)] == ["earn", "mature", "expire"]
    assert ledger_verify.verify(session).ok


def test_points_maturing_as_they_expire_still_repay_the_debt_first(session, member):
    program(session, pending_days=31, expiry_policy="fixed", expiry_months=1)
    reverse_refund(session, member, 20, T0)
    earn(session, member, 100, T0)  # matures and expires together, on Feb 15
    assert points(session, member, T0 + 31 * DAY) == (0, 0)
    (expire,) = transactions_of(session, member, TransactionKind.EXPIRE)
    assert {e.account: e.amount for e in expire.entries}[Account.EXPIRED.value] == 80


def test_inactivity_policy_points_expire_months_after_the_last_activity(session, member, immediate):
    program(session, expiry_policy="inactivity", expiry_months=6)
    earn(session, member, 100, T0)
    assert points(session, member, add_months(T0, 6) - TICK) == (100, 0)
    assert points(session, member, add_months(T0, 6)) == (0, 0)


def test_inactivity_policy_earning_pushes_every_lots_expiry_out(session, member, immediate):
    program(session, expiry_policy="inactivity", expiry_months=6)
    earn(session, member, 100, T0)
    later = add_months(T0, 5)
    earn(session, member, 50, later)
    assert points(session, member, add_months(T0, 6)) == (150, 0)
    assert [lot.expires_at for lot in lots_of(session, member)] == [add_months(later, 6)] * 2
    assert points(session, member, add_months(later, 6)) == (0, 0)


def test_inactivity_policy_spending_pushes_every_lots_expiry_out(session, member, immediate):
    program(session, expiry_policy="inactivity", expiry_months=6)
    earn(session, member, 100, T0)
    earn(session, member, 100, T0 + DAY)
    later = add_months(T0, 5)
    spend(session, member, 10, later)
    assert points(session, member, add_months(later, 6) - TICK) == (190, 0)
    assert points(session, member, add_months(later, 6)) == (0, 0)


def test_inactivity_policy_activity_pushes_pending_lots_out_too(session, member):
    program(session, pending_days=14, expiry_policy="inactivity", expiry_months=1)
    earn(session, member, 100, T0)
    later = T0 + 5 * DAY
    earn(session, member, 50, later)  # both lots are still pending
    assert [lot.expires_at for lot in lots_of(session, member)] == [add_months(later, 1)] * 2
    assert points(session, member, add_months(T0, 1)) == (150, 0)
    assert points(session, member, add_months(later, 1)) == (0, 0)


def test_never_policy_points_never_expire(session, member, immediate):
    program(session, expiry_policy="never")
    lot = earn(session, member, 100, T0)
    assert lot.expires_at is None
    assert points(session, member, T0 + 50 * 365 * DAY) == (100, 0)
    assert transactions_of(session, member, TransactionKind.EXPIRE) == []


def test_a_policy_change_applies_to_points_earned_afterwards(session, member, immediate):
    program(session, expiry_policy="fixed", expiry_months=12)
    earn(session, member, 100, T0)
    program(session, expiry_policy="never")
    earn(session, member, 30, T0 + DAY)
    assert points(session, member, add_months(T0, 24)) == (30, 0)


# --- spending ----------------------------------------------------------------------------


def test_spending_takes_the_soonest_expiring_lots_first(session, member, immediate):
    program(session, expiry_policy="fixed", expiry_months=12)
    first = earn(session, member, 100, T0)  # expires T0 + 12 months
    second = earn(session, member, 50, T0 + 30 * DAY)  # expires a month later
    program(session, expiry_policy="never")
    forever = earn(session, member, 70, T0 + 60 * DAY)  # never expires
    program(session, expiry_policy="fixed", expiry_months=1)
    soonest = earn(session, member, 20, T0 + 90 * DAY)  # expires T0 + 4 months: first of all

    _, taken = spend(session, member, 130, T0 + 100 * DAY)

    assert taken == [(soonest.id, 20), (first.id, 100), (second.id, 10)]
    remaining = {lot.id: lot.remaining for lot in lots_of(session, member)}
    assert remaining == {first.id: 0, second.id: 40, forever.id: 70, soonest.id: 0}
    assert points(session, member, T0 + 100 * DAY) == (110, 0)


def test_spending_takes_never_expiring_lots_last(session, member, immediate):
    program(session, expiry_policy="never")
    forever = earn(session, member, 50, T0)
    program(session, expiry_policy="fixed", expiry_months=12)
    expiring = earn(session, member, 50, T0 + DAY)
    _, taken = spend(session, member, 60, T0 + 2 * DAY)
    assert taken == [(expiring.id, 50), (forever.id, 10)]


def test_spending_cannot_use_pending_points(session, member):
    program(session, pending_days=14)
    earn(session, member, 100, T0)
    with pytest.raises(InsufficientPoints):
        spend(session, member, 1, T0 + 14 * DAY - TICK)


def test_spending_can_use_points_that_matured_since_the_last_write(session, member):
    program(session, pending_days=14)
    earn(session, member, 100, T0)
    spend(session, member, 100, T0 + 14 * DAY)
    assert points(session, member, T0 + 14 * DAY) == (0, 0)


def test_spending_cannot_use_points_that_expired_since_the_last_write(session, member, immediate):
    program(session, expiry_policy="fixed", expiry_months=12)
    earn(session, member, 100, T0)
    with pytest.raises(InsufficientPoints):
        spend(session, member, 1, add_months(T0, 12))


def test_a_positive_adjustment_is_available_at_once(session, member):
    program(session, pending_days=14)
    txn = adjustments.adjust(session, member.external_id, 25, "goodwill", "admin@shop", now=T0)
    assert points(session, member, T0) == (25, 0)
    assert (txn.kind, txn.reason, txn.actor) == ("adjust", "goodwill", "admin@shop")
    assert {e.account: e.amount for e in txn.entries} == {"adjusted": -25, "available": 25}


def test_a_negative_adjustment_removes_available_points(session, member, immediate):
    earn(session, member, 100, T0)
    txn = adjustments.adjust(session, member.external_id, -40, "fraud", "admin@shop", now=T0 + DAY)
    assert points(session, member, T0 + DAY) == (60, 0)
    assert {e.account: e.amount for e in txn.entries} == {"available": -40, "adjusted": 40}


def test_a_negative_adjustment_beyond_available_is_refused_and_writes_nothing(
    session, member, immediate
):
    earn(session, member, 100, T0)
    before = (count(session, LedgerTransaction), count(session, LedgerEntry))

    with pytest.raises(InsufficientPoints) as refused:
        adjustments.adjust(session, member.external_id, -101, "oops", "admin@shop", now=T0 + DAY)

    assert refused.value.extra == {"available": 100, "requested": 101}
    assert (count(session, LedgerTransaction), count(session, LedgerEntry)) == before
    assert [lot.remaining for lot in lots_of(session, member)] == [100]
    session.expire_all()
    stored = session.get(MemberBalance, member.id)
    assert (stored.available, stored.pending, stored.last_activity_at) == (100, 0, T0)


def test_a_zero_adjustment_is_a_validation_error(session, member):
    with pytest.raises(ValidationFailed):
        adjustments.adjust(session, member.external_id, 0, "nothing", "admin@shop", now=T0)


# --- debt from refund reversals ----------------------------------------------------------


def test_only_a_refund_reversal_takes_available_below_zero(session, member, immediate):
    earn(session, member, 30, T0)
    with pytest.raises(InsufficientPoints):
        spend(session, member, 50, T0 + DAY)
    reverse_refund(session, member, 50, T0 + DAY)
    assert points(session, member, T0 + DAY) == (-20, 0)
    assert [lot.remaining for lot in lots_of(session, member)] == [0]
    assert ledger_verify.verify(session).ok


def test_nothing_can_be_spent_while_in_debt(session, member, immediate):
    earn(session, member, 30, T0)
    reverse_refund(session, member, 50, T0 + DAY)
    with pytest.raises(InsufficientPoints) as refused:
        spend(session, member, 1, T0 + DAY)
    assert refused.value.extra == {"available": 0, "requested": 1}


def test_the_next_credit_repays_the_debt_first(session, member, immediate):
    earn(session, member, 30, T0)
    reverse_refund(session, member, 50, T0 + DAY)
    lot = earn(session, member, 50, T0 + 2 * DAY)
    assert points(session, member, T0 + 2 * DAY) == (30, 0)
    assert lots_of(session, member)[-1].id == lot.id
    assert lot.remaining == 30
    assert ledger_verify.verify(session).ok


def test_a_credit_smaller_than_the_debt_only_reduces_it(session, member, immediate):
    reverse_refund(session, member, 50, T0)
    lot = earn(session, member, 20, T0 + DAY)
    assert points(session, member, T0 + DAY) == (-30, 0)
    assert lot.remaining == 0
    assert ledger_verify.verify(session).ok


def test_pending_points_maturing_repay_the_debt_first(session, member):
    program(session, pending_days=14)
    reverse_refund(session, member, 20, T0)
    earn(session, member, 50, T0 + DAY)
    assert points(session, member, T0 + DAY) == (-20, 50)
    assert points(session, member, T0 + 15 * DAY) == (30, 0)
    assert [lot.remaining for lot in lots_of(session, member)] == [30]
    assert ledger_verify.verify(session).ok


def test_repaid_points_do_not_expire_again(session, member, immediate):
    program(session, expiry_policy="fixed", expiry_months=12)
    reverse_refund(session, member, 20, T0)
    earn(session, member, 50, T0 + DAY)
    points(session, member, add_months(T0 + DAY, 12))
    (expire,) = transactions_of(session, member, TransactionKind.EXPIRE)
    assert {e.account: e.amount for e in expire.entries}[Account.EXPIRED.value] == 30
    assert points(session, member, add_months(T0 + DAY, 12)) == (0, 0)


# --- history -----------------------------------------------------------------------------


def test_history_pages_newest_first(session, member):
    program(session, expiry_policy="never")
    for amount in (1, 2, 3, 4, 5):
        adjustments.adjust(session, member.external_id, amount, f"#{amount}", None, now=T0)

    first = membership.history(session, member.external_id, limit=2, cursor=None)
    second = membership.history(session, member.external_id, limit=2, cursor=first.next_cursor)
    last = membership.history(session, member.external_id, limit=2, cursor=second.next_cursor)

    assert [t.reason for t in first.items] == ["#5", "#4"]
    assert [t.reason for t in second.items] == ["#3", "#2"]
    assert [t.reason for t in last.items] == ["#1"]
    assert last.next_cursor is None


def test_history_has_no_next_page_when_the_page_holds_everything(session, member):
    program(session, expiry_policy="never")
    for amount in (1, 2):
        adjustments.adjust(session, member.external_id, amount, f"#{amount}", None, now=T0)
    page = membership.history(session, member.external_id, limit=2, cursor=None)
    assert [t.reason for t in page.items] == ["#2", "#1"]
    assert page.next_cursor is None


def test_history_shows_only_the_members_own_transactions(session, member):
    program(session, expiry_policy="never")
    other = MemberFactory()
    adjustments.adjust(session, member.external_id, 5, "mine", None, now=T0)
    adjustments.adjust(session, other.external_id, 7, "theirs", None, now=T0)
    page = membership.history(session, member.external_id, limit=50, cursor=None)
    assert [t.reason for t in page.items] == ["mine"]


def test_history_refuses_a_cursor_it_never_made(session, member):
    with pytest.raises(ValidationFailed):
        membership.history(session, member.external_id, limit=2, cursor="not-a-cursor")


# --- verify ------------------------------------------------------------------------------


@pytest.fixture
def busy_ledger(session, member):
    """A member with earning, maturing, spending, expiry and a debt behind them."""
    program(session, pending_days=14, expiry_policy="fixed", expiry_months=1)
    earn(session, member, 100, T0)
    earn(session, member, 40, T0 + DAY, pending=False)
    spend(session, member, 30, T0 + 20 * DAY)
    reverse_refund(session, member, 10, T0 + 21 * DAY)
    points(session, member, T0 + 90 * DAY)
    reverse_refund(session, member, 15, T0 + 91 * DAY)
    adjustments.adjust(session, MemberFactory().external_id, 5, "welcome", None, now=T0)
    return member


def tampered(session, statement: str, params: dict[str, object]):
    """What verify reports once `statement` has changed the stored ledger behind its back."""
    session.execute(sa.text(statement), params)
    session.commit()
    return ledger_verify.verify(session)


def test_verify_reports_a_clean_ledger_as_ok(session, busy_ledger):
    report = ledger_verify.verify(session)
    assert report.problems == []
    assert report.ok
    assert report.members == 2
    assert report.transactions == count(session, LedgerTransaction)
    assert points(session, busy_ledger, T0 + 91 * DAY) == (-15, 0)


def test_verify_reports_an_empty_ledger_as_ok(session):
    assert ledger_verify.verify(session).ok


def test_verify_detects_an_unbalanced_transaction(session, busy_ledger):
    txn = transactions_of(session, busy_ledger, TransactionKind.EARN)[0]
    session.execute(
        sa.text(
            "UPDATE ledger_entries SET amount = amount - 1"
            " WHERE transaction_id = :txn AND account = 'issued'"
        ),
        {"txn": txn.id},
    )
    session.commit()
    report = ledger_verify.verify(session)
    assert not report.ok
    assert f"transaction {txn.id}: 2 entries summing to -1" in report.problems


def test_verify_detects_a_transaction_with_a_single_entry(session, busy_ledger):
    txn = transactions_of(session, busy_ledger, TransactionKind.REDEEM)[0]
    report = tampered(
        session,
        "DELETE FROM ledger_entries WHERE transaction_id = :txn AND account = 'redeemed'",
        {"txn": txn.id},
    )
    assert any(
        problem.startswith(f"transaction {txn.id}: 1 entries") for problem in report.problems
    )


def test_verify_detects_a_balance_row_that_disagrees_with_the_entries(session, busy_ledger):
    # -15 becomes -10: still in debt, so the (empty) lots agree; only the entries disagree.
    report = tampered(
        session,
        "UPDATE member_balances SET available = available + 5 WHERE member_id = :m",
        {"m": busy_ledger.id},
    )
    assert len(report.problems) == 1
    assert report.problems[0].startswith(f"member {busy_ledger.id}: balance")
    assert "!= entries" in report.problems[0]


def test_verify_detects_lots_that_disagree_with_the_balance(session, member, immediate):
    earn(session, member, 100, T0)
    report = tampered(
        session,
        "UPDATE point_lots SET remaining = remaining - 1 WHERE member_id = :m",
        {"m": member.id},
    )
    assert report.problems == [
        f"member {member.id}: lots (pending 0, available 99) != balance (pending 0, available 100)"
    ]


def test_verify_detects_spendable_lots_while_the_member_is_in_debt(session, busy_ledger):
    (debt_lot,) = [lot for lot in lots_of(session, busy_ledger) if lot.points == 40]
    report = tampered(
        session,
        "UPDATE point_lots SET remaining = 5, state = 'available' WHERE id = :lot",
        {"lot": debt_lot.id},
    )
    assert len(report.problems) == 1
    assert "lots (pending 0, available 5)" in report.problems[0]


def test_verify_detects_pending_lots_that_disagree_with_the_balance(session, member):
    program(session, pending_days=14)
    earn(session, member, 100, T0)
    session.execute(
        sa.text("UPDATE point_lots SET state = 'expired' WHERE member_id = :m"),
        {"m": member.id},
    )
    session.commit()
    assert ledger_verify.verify(session).problems == [
        f"member {member.id}: lots (pending 0, available 0) != balance (pending 100, available 0)"
    ]
