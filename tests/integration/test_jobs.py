"""The background jobs (`loyalty jobs run`): settling every member whose state fell due, even
members nobody reads, expiry notices, and birthday events.

`settle_due` matures pending points, expires lots, releases holds that timed out and reviews
tiers whose retention ran out, in batches that each commit, so an interrupted run keeps what
it finished and a rerun resumes; a second run changes nothing. On PostgreSQL several workers
may run at once: members are claimed with FOR UPDATE SKIP LOCKED, so none is settled twice.

The program earns 1 point per 1.00 spent and otherwise runs at its defaults (14-day return
window, points expire 12 months after they are earned, holds last 15 minutes). Time is moved
with `now=`; stored state is read directly, never through a read that would settle lazily.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from loyalty.db import transaction, utcnow
from loyalty.events.models import MemberEvent
from loyalty.extensions import db
from loyalty.jobs import services as jobs
from loyalty.ledger.models import (
    LedgerTransaction,
    MemberBalance,
    PointLot,
    Redemption,
    TransactionKind,
)
from loyalty.ledger.policy import add_months
from loyalty.members import lookup
from loyalty.members.models import Member, MemberStatus
from loyalty.membership import adjustments
from loyalty.membership import services as members
from loyalty.program.services import update_settings
from loyalty.redemptions import services as redemptions
from loyalty.settlement import services as settlement
from loyalty.tiers import services as tiers
from loyalty.tiers.models import TierChange
from loyalty.webhooks.models import OutboxEvent
from tests.commands import program_changes
from tests.concurrency import race, raised, waiting_on_locks
from tests.factories import FREE_SHIPPING, ApiKeyFactory, RuleFactory, TierFactory, auth
from tests.helpers import credit_earned, order_placed_at

# After every test the whole ledger must verify.
pytestmark = pytest.mark.usefixtures("ledger_verifies_after_each_test")

DAY = dt.timedelta(days=1)
MINUTE = dt.timedelta(minutes=1)
LOYALTY = Path(sys.executable).with_name("loyalty")
SUMMARY = re.compile(
    r"^settled (\d+) members \((\d+) transactions\), (\d+) expiry notices, (\d+) birthdays, "
    r"(\d+) referrals rewarded, (\d+) events dispatched, (\d+) webhooks delivered, (\d+) failed, "
    r"(\d+) automations fired, (\d+) experiments ended, (\d+) experiments flagged, "
    r"(\d+) member tokens purged, (\d+) bulk grants \((\d+) refused\), "
    r"insight (refreshed|up to date|refreshing elsewhere)$"
)


# --- helpers -------------------------------------------------------------------------------


@pytest.fixture
def admin(app: Flask) -> dict[str, str]:
    with app.app_context():
        return auth(ApiKeyFactory(scopes=("admin",)))


def add_rule(client: FlaskClient, admin: dict[str, str], rule: dict[str, Any]) -> None:
    response = client.post("/v1/admin/rules", json=rule, headers=admin)
    assert response.status_code == 201, response.json


@pytest.fixture
def spend_rule(client: FlaskClient, admin: dict[str, str]) -> None:
    add_rule(client, admin, RuleFactory.build())


@pytest.fixture
def t0() -> dt.datetime:
    return utcnow()


def enroll(app: Flask, external_id: str, **fields: Any) -> None:
    with app.app_context():
        members.enroll(db.session, members.EnrollMember(**{"external_id": external_id, **fields}))


def adjust(app: Flask, external_id: str, points: int, now: dt.datetime) -> None:
    with app.app_context():
        adjustments.adjust(db.session, external_id, points, "test", "ops", now=now)


def settle(app: Flask, now: dt.datetime, **options: Any) -> jobs.RunSummary:
    with app.app_context():
        return jobs.settle_due(db.session, now=now, **options)


def member_id(app: Flask, external_id: str) -> int:
    with app.app_context():
        return lookup.find_member(db.session, external_id).id


def stored_balance(app: Flask, external_id: str) -> tuple[int, int, int]:
    """(available, pending, held) as stored: no lazy settling on the way."""
    with app.app_context():
        balance = db.session.get(MemberBalance, member_id(app, external_id))
        return balance.available, balance.pending, balance.held


def stored_tier(app: Flask, external_id: str) -> str | None:
    with app.app_context():
        return tiers.member_tier_code(db.session, lookup.find_member(db.session, external_id))


def kinds(app: Flask, external_id: str) -> list[str]:
    """The member's ledger transactions, oldest first, by kind."""
    with app.app_context():
        return list(
            db.session.scalars(
                sa.select(LedgerTransaction.kind)
                .where(LedgerTransaction.member_id == member_id(app, external_id))
                .order_by(LedgerTransaction.id)
            )
        )


def transaction_count(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count(LedgerTransaction.id))) or 0


def outbox(app: Flask, event_type: str) -> list[dict[str, Any]]:
    with app.app_context():
        return list(
            db.session.scalars(
                sa.select(OutboxEvent.payload)
                .where(OutboxEvent.type == event_type)
                .order_by(OutboxEvent.id)
            )
        )


def matured_per_lot(app: Flask) -> dict[str, int]:
    """How many times each lot matured: reference -> count of mature transactions."""
    with app.app_context():
        return dict(
            db.session.execute(
                sa.select(LedgerTransaction.reference, sa.func.count(LedgerTransaction.id))
                .where(LedgerTransaction.kind == TransactionKind.MATURE.value)
                .group_by(LedgerTransaction.reference)
            ).all()
        )


def due_count(app: Flask, now: dt.datetime) -> int:
    with app.app_context():
        return jobs.due_count(db.session, now)


# --- settling members nobody reads ---------------------------------------------------------


def test_pending_points_mature_once_the_return_window_is_over(app, spend_rule, t0):
    enroll(app, "c1")
    order_placed_at(app, "o1", "c1", 100, t0)

    summary = settle(app, t0 + 15 * DAY)

    assert stored_balance(app, "c1") == (100, 0, 0)
    assert kinds(app, "c1") == ["earn", "mature"]
    assert (summary.members_settled, summary.transactions_written) == (1, 1)


def test_a_matured_lot_is_dated_when_it_matured_not_when_the_job_ran(app, spend_rule, t0):
    enroll(app, "c1")
    order_placed_at(app, "o1", "c1", 100, t0)

    settle(app, t0 + 40 * DAY)

    with app.app_context():
        matured = db.session.scalar(
            sa.select(LedgerTransaction.effective_at).where(
                LedgerTransaction.kind == TransactionKind.MATURE.value
            )
        )
    assert matured == t0 + 14 * DAY


def test_nothing_happens_before_the_return_window_is_over(app, spend_rule, t0):
    enroll(app, "c1")
    order_placed_at(app, "o1", "c1", 100, t0)

    summary = settle(app, t0 + 13 * DAY)

    assert stored_balance(app, "c1") == (0, 100, 0)
    assert (summary.members_settled, summary.transactions_written) == (0, 0)


def test_points_expire_and_the_expiry_is_announced(app, t0):
    enroll(app, "c1")
    adjust(app, "c1", 50, t0)

    settle(app, add_months(t0, 12) + MINUTE)

    assert stored_balance(app, "c1") == (0, 0, 0)
    assert kinds(app, "c1") == ["adjust", "expire"]
    assert outbox(app, "points.expired") == [{"member_id": "c1", "points": 50}]


def test_a_hold_that_timed_out_is_released(app, t0):
    enroll(app, "c1")
    adjust(app, "c1", 500, t0)
    with app.app_context():
        redemptions.hold(db.session, "c1", 200, now=t0)
    assert stored_balance(app, "c1") == (300, 0, 200)

    settle(app, t0 + 16 * MINUTE)

    assert stored_balance(app, "c1") == (500, 0, 0)
    assert kinds(app, "c1") == ["adjust", "hold", "release"]
    with app.app_context():
        assert db.session.scalar(sa.select(Redemption.status)) == "expired"


def test_a_tier_is_kept_through_its_retention_and_lost_after_it(app, client, admin, spend_rule, t0):
    """Silver is kept 3 months; qualifying points count for 1 month. Two months on the member
    still holds it; once both the window and the retention are over, the job takes it away."""
    tier = {"code": "silver", "name": "Silver", "rank": 1, "threshold": 100}
    response = client.post("/v1/admin/tiers", json={**tier, "retention_months": 3}, headers=admin)
    assert response.status_code == 201
    with app.app_context():
        update_settings(db.session, program_changes({"tier_window_months": 1}))
    enroll(app, "c1")
    order_placed_at(app, "o1", "c1", 100, t0)
    assert stored_tier(app, "c1") == "silver"

    settle(app, add_months(t0, 2))
    kept = stored_tier(app, "c1")
    settle(app, add_months(t0, 4) + DAY)

    assert kept == "silver"
    assert stored_tier(app, "c1") is None
    with app.app_context():
        change = db.session.scalars(sa.select(TierChange).order_by(TierChange.id.desc())).first()
    assert (change.from_tier, change.to_tier, change.reason) == (
        "silver",
        None,
        "retention_expired",
    )
    assert outbox(app, "tier.changed")[-1]["to"] is None


def test_an_entry_tier_without_retention_does_not_keep_the_job_busy_forever(app, client, admin, t0):
    """An entry tier (threshold 0) kept 0 months is due for review again the moment it is
    reviewed: the job must still finish, settling each member at most once per run."""
    tier = {"code": "basic", "name": "Basic", "rank": 1, "threshold": 0, "retention_months": 0}
    assert client.post("/v1/admin/tiers", json=tier, headers=admin).status_code == 201
    enroll(app, "c1")
    assert stored_tier(app, "c1") == "basic"
    batches: list[int] = []

    def at_most_a_few_batches(settled: int) -> None:
        batches.append(settled)
        if len(batches) > 5:
            raise AssertionError(f"settle_due keeps claiming the same member: {batches}")

    summary = settle(app, utcnow() + DAY, progress=at_most_a_few_batches)

    assert summary.members_settled == 1
    assert stored_tier(app, "c1") == "basic"


def test_every_kind_of_due_work_is_done_in_one_run(app, spend_rule, t0):
    for external_id in ("maturing", "expiring", "holding"):
        enroll(app, external_id)
    order_placed_at(app, "o1", "maturing", 100, add_months(t0, 12) - 20 * DAY)
    adjust(app, "expiring", 50, t0)
    adjust(app, "holding", 500, add_months(t0, 12) - MINUTE)
    with app.app_context():
        redemptions.hold(db.session, "holding", 200, now=add_months(t0, 12) - MINUTE)
    moment = add_months(t0, 12) + 15 * MINUTE

    summary = settle(app, moment)

    assert summary.members_settled == 3
    assert stored_balance(app, "maturing") == (100, 0, 0)
    assert stored_balance(app, "expiring") == (0, 0, 0)
    assert stored_balance(app, "holding") == (500, 0, 0)
    assert due_count(app, moment) == 0


# --- idempotent and resumable --------------------------------------------------------------


@pytest.fixture
def ten_due_members(app: Flask, spend_rule: None, t0: dt.datetime) -> dt.datetime:
    """Ten members with an order each, all matured by the moment returned."""
    for n in range(10):
        enroll(app, f"c{n}")
        order_placed_at(app, f"o{n}", f"c{n}", 10 + n, t0)
    return t0 + 15 * DAY


def test_due_count_says_how_many_members_are_due(app, ten_due_members, t0):
    assert due_count(app, t0) == 0
    assert due_count(app, ten_due_members) == 10

    settle(app, ten_due_members)

    assert due_count(app, ten_due_members) == 0


def test_running_twice_changes_nothing_the_second_time(app, ten_due_members):
    first = settle(app, ten_due_members, batch_size=3)
    written = transaction_count(app)
    balances = [stored_balance(app, f"c{n}") for n in range(10)]

    second = settle(app, ten_due_members, batch_size=3)

    assert (first.members_settled, first.transactions_written, first.batches) == (10, 10, 4)
    assert (second.members_settled, second.transactions_written, second.batches) == (0, 0, 0)
    assert transaction_count(app) == written
    assert [stored_balance(app, f"c{n}") for n in range(10)] == balances


def test_an_interrupted_run_keeps_the_batches_it_finished(app, ten_due_members, monkeypatch):
    real_settle = settlement.settle_due_batch
    calls = []

    def crash_on_the_second_batch(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        settled = real_settle(*args, **kwargs)  # written, then lost with the transaction
        if len(calls) == 2:
            raise RuntimeError("worker killed")
        return settled

    monkeypatch.setattr(settlement, "settle_due_batch", crash_on_the_second_batch)
    with pytest.raises(RuntimeError, match="worker killed"):
        settle(app, ten_due_members, batch_size=1)

    assert len(matured_per_lot(app)) == 1
    assert due_count(app, ten_due_members) == 9


def test_the_next_run_resumes_with_what_was_left(app, ten_due_members, monkeypatch):
    real_settle = settlement.settle_due_batch
    calls = []

    def crash_on_the_fourth_batch(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        settled = real_settle(*args, **kwargs)  # written, then lost with the transaction
        if len(calls) == 4:
            raise RuntimeError("worker killed")
        return settled

    monkeypatch.setattr(settlement, "settle_due_batch", crash_on_the_fourth_batch)
    with pytest.raises(RuntimeError):
        settle(app, ten_due_members, batch_size=1)
    monkeypatch.setattr(settlement, "settle_due_batch", real_settle)

    resumed = settle(app, ten_due_members, batch_size=1)

    assert resumed.members_settled == 7
    matured = matured_per_lot(app)
    assert len(matured) == 10
    assert set(matured.values()) == {1}


def test_progress_is_told_each_batch(app, ten_due_members):
    told: list[int] = []

    settle(app, ten_due_members, batch_size=4, progress=told.append)

    assert told == [4, 4, 2]


# --- expiry notices ------------------------------------------------------------------------


def test_points_expiring_soon_are_announced_once(app, t0):
    enroll(app, "c1")
    adjust(app, "c1", 50, t0)
    expires = add_months(t0, 12)

    with app.app_context():
        first = jobs.notify_expiring(db.session, now=expires - 10 * DAY, within_days=14)
        second = jobs.notify_expiring(db.session, now=expires - 9 * DAY, within_days=14)

    assert (first, second) == (1, 0)
    assert outbox(app, "points.expiring") == [
        {"member_id": "c1", "points": 50, "expires_at": expires.isoformat()}
    ]


def test_points_expiring_later_than_the_notice_period_are_not_announced_yet(app, t0):
    enroll(app, "c1")
    adjust(app, "c1", 50, t0)

    with app.app_context():
        notified = jobs.notify_expiring(
            db.session, now=add_months(t0, 12) - 15 * DAY, within_days=14
        )

    assert notified == 0
    assert outbox(app, "points.expiring") == []


def test_a_later_lot_gets_its_own_notice(app, t0):
    enroll(app, "c1")
    adjust(app, "c1", 50, t0)
    adjust(app, "c1", 30, t0 + 60 * DAY)
    with app.app_context():
        jobs.notify_expiring(db.session, now=add_months(t0, 12) - DAY)
        jobs.notify_expiring(db.session, now=add_months(t0 + 60 * DAY, 12) - DAY)

    assert [e["points"] for e in outbox(app, "points.expiring")] == [50, 30]


def test_lots_expiring_together_are_announced_in_one_notice(app, t0):
    enroll(app, "c1")
    adjust(app, "c1", 50, t0)
    adjust(app, "c1", 30, t0 + DAY)

    with app.app_context():
        notified = jobs.notify_expiring(db.session, now=add_months(t0, 12) - 5 * DAY)

    assert notified == 1
    assert outbox(app, "points.expiring") == [
        {"member_id": "c1", "points": 80, "expires_at": add_months(t0, 12).isoformat()}
    ]


def test_a_member_whose_lots_straddle_two_batches_gets_one_notice(app, t0):
    enroll(app, "c1")
    enroll(app, "c2")
    for day, points in enumerate((50, 30, 20)):
        adjust(app, "c1", points, t0 + day * DAY)
    adjust(app, "c2", 5, t0)

    with app.app_context():
        notified = jobs.notify_expiring(db.session, now=add_months(t0, 12) - 5 * DAY, batch_size=2)

    assert notified == 2
    assert [(e["member_id"], e["points"]) for e in outbox(app, "points.expiring")] == [
        ("c1", 100),
        ("c2", 5),
    ]


def test_points_already_spent_are_not_announced(app, t0):
    enroll(app, "c1")
    adjust(app, "c1", 50, t0)
    adjust(app, "c1", -50, t0 + DAY)

    with app.app_context():
        notified = jobs.notify_expiring(db.session, now=add_months(t0, 12) - 5 * DAY)

    assert notified == 0


# --- birthdays -----------------------------------------------------------------------------


@pytest.fixture
def birthday_rule(client: FlaskClient, admin: dict[str, str]) -> None:
    add_rule(
        client,
        admin,
        RuleFactory.build(review=True, name="Birthday", points=100, event_type="birthday"),
    )


def birthdays(app: Flask, now: dt.datetime) -> int:
    with app.app_context():
        return jobs.grant_birthdays(db.session, now=now)


def birthday_events(app: Flask) -> list[str]:
    with app.app_context():
        return list(
            db.session.scalars(
                sa.select(MemberEvent.event_id)
                .where(MemberEvent.type == "birthday")
                .order_by(MemberEvent.event_id)
            )
        )


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def test_a_birthday_is_recorded_and_credits_the_birthday_rule(app, birthday_rule):
    enroll(app, "c1", birthday=dt.date(1990, 3, 15))
    enroll(app, "c2", birthday=dt.date(1990, 3, 16))
    enroll(app, "c3")

    recorded = birthdays(app, at("2027-03-15T09:00:00+00:00"))

    assert recorded == 1
    assert birthday_events(app) == ["birthday:c1:2027"]
    assert stored_balance(app, "c1") == (100, 0, 0)
    assert stored_balance(app, "c2") == (0, 0, 0)


def test_a_tiers_birthday_gift_is_paid_on_the_birthday_with_the_birthday_rule(app, birthday_rule):
    with app.app_context():
        gift = {"code": "birthday_gift", "params": {"points": 250}}
        TierFactory(code="member", name="Member", rank=1, threshold=0, benefits=[gift])
        TierFactory(code="silver", name="Silver", rank=2, threshold=100)
    enroll(app, "c1", birthday=dt.date(1990, 3, 15))

    birthdays(app, at("2027-03-15T09:00:00+00:00"))

    assert stored_balance(app, "c1") == (350, 0, 0)
    with app.app_context():
        event = db.session.scalars(
            sa.select(MemberEvent).where(MemberEvent.type == "birthday")
        ).one()
    assert [(c["rule_id"], c["name"], c["points"]) for c in event.breakdown] == [
        ("tier:member:birthday_gift", "Member tier birthday gift", 250),
        (event.breakdown[1]["rule_id"], "Birthday", 100),
    ]


def test_a_tier_without_a_birthday_gift_gives_nothing_on_the_birthday(app):
    with app.app_context():
        TierFactory(code="member", name="Member", rank=1, threshold=0, benefits=[FREE_SHIPPING])
    enroll(app, "c1", birthday=dt.date(1990, 3, 15))

    birthdays(app, at("2027-03-15T09:00:00+00:00"))

    assert birthday_events(app) == ["birthday:c1:2027"]
    assert stored_balance(app, "c1") == (0, 0, 0)


def test_a_birthday_is_recorded_once_however_often_the_job_runs_that_day(app, birthday_rule):
    enroll(app, "c1", birthday=dt.date(1990, 3, 15))
    birthdays(app, at("2027-03-15T00:05:00+00:00"))

    again = birthdays(app, at("2027-03-15T23:55:00+00:00"))

    assert again == 0
    assert birthday_events(app) == ["birthday:c1:2027"]
    assert stored_balance(app, "c1") == (100, 0, 0)


def test_a_birthday_is_recorded_again_the_next_year(app, birthday_rule):
    enroll(app, "c1", birthday=dt.date(1990, 3, 15))
    birthdays(app, at("2027-03-15T09:00:00+00:00"))

    assert birthdays(app, at("2028-03-15T09:00:00+00:00")) == 1
    assert birthday_events(app) == ["birthday:c1:2027", "birthday:c1:2028"]


def test_a_leap_day_birthday_is_on_february_28_in_other_years(app, birthday_rule):
    enroll(app, "leapling", birthday=dt.date(2000, 2, 29))

    assert birthdays(app, at("2027-02-28T09:00:00+00:00")) == 1
    assert birthdays(app, at("2027-03-01T09:00:00+00:00")) == 0
    assert birthday_events(app) == ["birthday:leapling:2027"]


def test_a_leap_day_birthday_is_on_february_29_in_leap_years(app, birthday_rule):
    enroll(app, "leapling", birthday=dt.date(2000, 2, 29))

    assert birthdays(app, at("2028-02-28T09:00:00+00:00")) == 0
    assert birthdays(app, at("2028-02-29T09:00:00+00:00")) == 1
    assert birthday_events(app) == ["birthday:leapling:2028"]


def test_a_birthday_is_recorded_without_points_when_no_rule_gives_any(app):
    enroll(app, "c1", birthday=dt.date(1990, 3, 15))

    assert birthdays(app, at("2027-03-15T09:00:00+00:00")) == 1
    assert birthday_events(app) == ["birthday:c1:2027"]
    assert stored_balance(app, "c1") == (0, 0, 0)


def test_suspended_members_get_no_birthday(app, birthday_rule):
    enroll(app, "c1", birthday=dt.date(1990, 3, 15))
    with app.app_context():
        members.update_member(
            db.session, "c1", members.MemberChanges(status=MemberStatus.SUSPENDED)
        )

    assert birthdays(app, at("2027-03-15T09:00:00+00:00")) == 0
    assert birthday_events(app) == []


# --- the command ---------------------------------------------------------------------------


def due_at_real_time(app: Flask, external_ids: list[str], points: int = 10) -> None:
    """Give each member a pending lot that matured a day ago (earned 15 days ago), so a
    `jobs run`, which works at the real time, finds them due."""
    earned = utcnow() - 15 * DAY
    with app.app_context():
        session = db.session
        ids = dict(
            session.execute(
                sa.select(Member.external_id, Member.id).where(Member.external_id.in_(external_ids))
            ).all()
        )
        with transaction(session):
            for external_id in external_ids:
                credit_earned(
                    session, ids[external_id], points, earned, reference=f"seed:{external_id}"
                )


def test_jobs_run_prints_a_one_line_summary_when_not_on_a_terminal(app):
    for external_id in ("c1", "c2"):
        enroll(app, external_id)
    due_at_real_time(app, ["c1", "c2"])

    result = app.test_cli_runner().invoke(args=["jobs", "run"])

    assert result.exit_code == 0, result.output
    [line] = result.stdout.splitlines()
    found = SUMMARY.match(line)
    assert found, line
    assert found.groups()[:4] == ("2", "2", "0", "0")
    assert found.group(6) == "2"  # the two member.enrolled events
    assert stored_balance(app, "c1") == (10, 0, 0)


def test_jobs_run_twice_settles_nothing_the_second_time(app):
    enroll(app, "c1")
    due_at_real_time(app, ["c1"])
    runner = app.test_cli_runner()
    runner.invoke(args=["jobs", "run"])

    result = runner.invoke(args=["jobs", "run"])

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("settled 0 members (0 transactions), 0 expiry notices")


# --- several workers at once (PostgreSQL) --------------------------------------------------

MANY = 300


@pytest.fixture
def many_due_members(app: Flask) -> list[str]:
    external_ids = [f"m{n:04d}" for n in range(MANY)]
    for external_id in external_ids:
        enroll(app, external_id)
    due_at_real_time(app, external_ids)
    return external_ids


def assert_each_lot_matured_exactly_once(app: Flask) -> None:
    matured = matured_per_lot(app)
    with app.app_context():
        lots = db.session.scalar(sa.select(sa.func.count(PointLot.id))) or 0
    assert lots == MANY
    assert len(matured) == MANY
    assert {count for count in matured.values()} == {1}
    assert due_count(app, utcnow()) == 0
    assert sum(stored_balance(app, f"m{n:04d}")[0] for n in range(MANY)) == 10 * MANY


@pytest.mark.committed  # threads or processes, each on its own connection
@pytest.mark.postgresql_only
def test_two_job_processes_at_once_settle_each_member_once(app, migrated_app, many_due_members):
    """Both `loyalty jobs run` processes are held at their first claim by a table lock until
    both wait there, so they really run at the same time; then they share the members."""
    env = {
        **os.environ,
        "DATABASE_URL": migrated_app.config["SQLALCHEMY_DATABASE_URI"],
        "LOYALTY_LOG_LEVEL": "WARNING",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    # One settling thread each: the gate counts one waiting claim per process.
    command = [str(LOYALTY), "jobs", "run", "--batch-size", "5", "--settle-workers", "1"]
    with app.app_context(), db.engine.connect() as gate:
        gate.exec_driver_sql("LOCK TABLE member_balances IN ACCESS EXCLUSIVE MODE")
        workers = [
            subprocess.Popen(  # noqa: S603 - our own command
                command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for _ in range(2)
        ]
        deadline = time.monotonic() + 60
        while waiting_on_locks(app) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        both_waiting = waiting_on_locks(app)
        gate.rollback()
    outputs = [worker.communicate(timeout=300) for worker in workers]

    assert both_waiting == 2
    settled = []
    for worker, (stdout, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stderr
        [line] = stdout.splitlines()
        found = SUMMARY.match(line)
        assert found, line
        settled.append(int(found.group(1)))
    assert min(settled) > 0, f"one process did everything: {settled}"
    assert sum(settled) == MANY
    assert_each_lot_matured_exactly_once(app)


@pytest.mark.committed  # threads or processes, each on its own connection
@pytest.mark.postgresql_only
def test_two_workers_racing_share_the_members_and_settle_each_once(app, many_due_members):
    moment = utcnow()

    summaries = race(app, 2, lambda _: jobs.settle_due(db.session, now=moment, batch_size=1))

    assert raised(summaries) == []
    assert sorted(s.members_settled for s in summaries)[0] > 0, "one worker did everything"
    assert sum(s.members_settled for s in summaries) == MANY
    assert sum(s.transactions_written for s in summaries) == MANY
    assert_each_lot_matured_exactly_once(app)


@pytest.mark.committed  # threads, each on its own connection
@pytest.mark.postgresql_only
def test_settling_in_threads_settles_each_member_once(app, many_due_members):
    moment = utcnow()

    with app.app_context():
        summary = jobs.settle_due(db.session, now=moment, batch_size=2, workers=3)

    assert summary.members_settled == MANY
    assert summary.transactions_written == MANY
    assert summary.batches >= MANY // 2
    assert_each_lot_matured_exactly_once(app)


def test_jobs_run_refuses_a_metrics_bind_without_a_port(app):
    result = app.test_cli_runner().invoke(args=["jobs", "run", "--metrics-bind", "localhost"])

    assert result.exit_code == 2
    assert "expected HOST:PORT" in result.output
