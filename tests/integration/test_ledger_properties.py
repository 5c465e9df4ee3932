"""The ledger against a model: random earning, spending, refunds, adjustments, time passing and
program changes, over a few members, must always leave a ledger that verifies and balances
that match a plain-Python model of the lots.

The model is written from the rules in API.md, not from the services: lots hold earned
points; spending takes the soonest-expiring lots first (never-expiring last, then oldest);
a refund reversal may leave a debt that the next points to become available repay; lots
mature at `available_at` and expire at `expires_at`, maturing first at the same instant;
under the inactivity policy every earning or spending moves every live lot's expiry out.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from loyalty.db import transaction
from loyalty.extensions import db
from loyalty.ledger import postings, spending
from loyalty.ledger import verify as ledger_verify
from loyalty.ledger.exceptions import InsufficientPoints
from loyalty.ledger.models import Account, PointLot, TransactionKind
from loyalty.ledger.policy import add_months
from loyalty.members.models import Member
from loyalty.membership import adjustments
from loyalty.program.services import DEFAULTS, get_settings, update_settings
from loyalty.settlement import services as settlement
from tests.commands import program_changes
from tests.database import delete_every_row
from tests.factories import MemberFactory

# Each hypothesis example empties the tables on its own connection (delete_every_row).
pytestmark = pytest.mark.committed

START = dt.datetime(2025, 1, 31, 10, 0, tzinfo=dt.UTC)
FAR_FUTURE = dt.datetime.max.replace(tzinfo=dt.UTC)

# Debits ask for a share (in %) of what is available, sometimes more than all of it.
SHARES = st.integers(1, 120)


def share_of(available: int, share: int) -> int:
    return max(1, available * share // 100)


RETURN_WINDOWS = st.sampled_from([0, 3, 14, 30, 45])
EXPIRY_CHOICES = [
    ("fixed", 1),
    ("fixed", 12),
    ("inactivity", 2),
    ("inactivity", 6),
    ("never", None),
]


@dataclass
class ModelLot:
    seq: int
    points: int
    remaining: int
    state: str
    available_at: dt.datetime
    expires_at: dt.datetime | None

    @property
    def live(self) -> bool:
        return self.state in ("pending", "available") and self.remaining > 0

    def as_row(self) -> tuple[int, int, str, dt.datetime, dt.datetime | None]:
        return (self.points, self.remaining, self.state, self.available_at, self.expires_at)


@dataclass
class ModelMember:
    member: Member
    lots: list[ModelLot] = field(default_factory=list)
    debt: int = 0

    @property
    def available(self) -> int:
        return sum(lot.remaining for lot in self.lots if lot.state == "available") - self.debt

    @property
    def pending(self) -> int:
        return sum(lot.remaining for lot in self.lots if lot.state == "pending")

    def next_due(self) -> dt.datetime | None:
        times = [lot.available_at for lot in self.lots if lot.state == "pending"]
        times += [lot.expires_at for lot in self.lots if lot.live and lot.expires_at]
        return min(times, default=None)

    def settle(self, now: dt.datetime) -> None:
        """Mature and expire, moment by moment, everything that fell due by `now`."""
        while (moment := self.next_due()) is not None and moment <= now:
            for lot in self.lots:
                if lot.state == "pending" and lot.available_at == moment:
                    lot.state = "available"
                    repaid = min(self.debt, lot.remaining)
                    self.debt -= repaid
                    lot.remaining -= repaid
            for lot in self.lots:
                if lot.live and lot.expires_at == moment:
                    lot.remaining, lot.state = 0, "expired"

    def activity(self, now: dt.datetime, program: ModelProgram) -> None:
        if program.policy == "inactivity":
            for lot in self.lots:
                if lot.live:
                    lot.expires_at = add_months(now, program.months)

    def credit(self, points: int, now: dt.datetime, program: ModelProgram, pending: bool) -> None:
        self.activity(now, program)
        expires_at = None if program.policy == "never" else add_months(now, program.months)
        if pending and program.pending_days:
            available_at = now + dt.timedelta(days=program.pending_days)
            state, remaining = "pending", points
        else:
            repaid = min(self.debt, points)
            self.debt -= repaid
            available_at, state, remaining = now, "available", points - repaid
        self.lots.append(
            ModelLot(len(self.lots), points, remaining, state, available_at, expires_at)
        )

    def debit(self, points: int, now: dt.datetime, program: ModelProgram) -> None:
        """Take `points`, soonest-expiring lots first; whatever the lots lack becomes debt."""
        spendable = sorted(
            (lot for lot in self.lots if lot.state == "available" and lot.remaining),
            key=lambda lot: (lot.expires_at or FAR_FUTURE, lot.available_at, lot.seq),
        )
        needed = points
        for lot in spendable:
            take = min(lot.remaining, needed)
            lot.remaining -= take
            needed -= take
        self.debt += needed
        self.activity(now, program)


@dataclass
class ModelProgram:
    pending_days: int = DEFAULTS["pending_days"]
    policy: str = DEFAULTS["expiry_policy"]
    months: int | None = DEFAULTS["expiry_months"]


def empty_the_database() -> None:
    with db.engine.begin() as connection:
        delete_every_row(connection)


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.session = db.session
        self.session.close()  # no open transaction may hold locks while the tables are emptied
        empty_the_database()
        self.program = ModelProgram()
        self.now = START
        self.members: list[ModelMember] = []

    # --- helpers -------------------------------------------------------------------------

    def pick(self, who: int) -> ModelMember:
        return self.members[who % len(self.members)]

    def locked(self, model: ModelMember):
        """Lock and settle the member's balance, as every use case does before writing."""
        balance = postings.lock_balance(self.session, model.member.id)
        settlement.settle_member(self.session, balance, self.now)
        model.settle(self.now)
        return balance

    def debit(self, model: ModelMember, points: int, **kwargs) -> None:
        settings_row = get_settings(self.session)
        with transaction(self.session):
            balance = self.locked(model)
            spending.debit(self.session, balance, settings_row, points, now=self.now, **kwargs)

    # --- rules ---------------------------------------------------------------------------

    @initialize(
        count=st.integers(min_value=1, max_value=3),
        pending_days=RETURN_WINDOWS,
        expiry=st.sampled_from(EXPIRY_CHOICES),
    )
    def start_a_program_with_members(self, count, pending_days, expiry):
        self.change_the_return_window(pending_days)
        self.change_the_expiry_policy(expiry)
        self.members = [ModelMember(MemberFactory()) for _ in range(count)]

    @rule(who=st.integers(0, 2), points=st.integers(1, 500))
    def earn_for_an_order(self, who, points):
        self.earn(who, points, pending=True)

    @rule(who=st.integers(0, 2), points=st.integers(1, 500))
    def earn_available_at_once(self, who, points):
        self.earn(who, points, pending=False)

    def earn(self, who: int, points: int, pending: bool) -> None:
        model = self.pick(who)
        settings_row = get_settings(self.session)
        with transaction(self.session):
            balance = self.locked(model)
            postings.credit(
                self.session,
                balance,
                settings_row,
                points,
                kind=TransactionKind.EARN,
                source=Account.ISSUED,
                now=self.now,
                pending=pending,
            )
        model.credit(points, self.now, self.program, pending)

    @rule(who=st.integers(0, 2), share=SHARES)
    def spend(self, who, share):
        model = self.pick(who)
        model.settle(self.now)
        points = share_of(model.available, share)
        kwargs = {"kind": TransactionKind.REDEEM, "destination": Account.REDEEMED}
        if model.available < points:
            with pytest.raises(InsufficientPoints):
                self.debit(model, points, **kwargs)
        else:
            self.debit(model, points, **kwargs)
            model.debit(points, self.now, self.program)

    @rule(who=st.integers(0, 2), points=st.integers(1, 200))
    def reverse_a_refund(self, who, points):
        model = self.pick(who)
        kwargs = {"kind": TransactionKind.REVERSE, "destination": Account.ISSUED}
        self.debit(model, points, allow_negative=True, reference="refund:test", **kwargs)
        model.debit(points, self.now, self.program)

    @rule(who=st.integers(0, 2), added=st.integers(1, 400), share=SHARES, remove=st.booleans())
    def adjust(self, who, added, share, remove):
        model = self.pick(who)
        model.settle(self.now)
        points = -share_of(model.available, share) if remove else added
        external_id = model.member.external_id
        if points < 0 and model.available < -points:
            with pytest.raises(InsufficientPoints):
                adjustments.adjust(self.session, external_id, points, "test", None, now=self.now)
        else:
            adjustments.adjust(self.session, external_id, points, "test", None, now=self.now)
            if points > 0:
                model.credit(points, self.now, self.program, pending=False)
            else:
                model.debit(-points, self.now, self.program)

    @rule(
        step=st.one_of(
            st.integers(0, 48).map(lambda hours: dt.timedelta(hours=hours)),
            st.integers(1, 60).map(lambda days: dt.timedelta(days=days)),
            st.integers(60, 400).map(lambda days: dt.timedelta(days=days)),
        )
    )
    def time_passes(self, step):
        self.now += step

    def next_due(self) -> dt.datetime | None:
        return min(
            (when for model in self.members if (when := model.next_due()) is not None),
            default=None,
        )

    @precondition(lambda self: self.next_due() is not None)
    @rule()
    def time_passes_to_the_next_maturing_or_expiry(self):
        self.now = max(self.now, self.next_due())

    @rule(pending_days=RETURN_WINDOWS)
    def change_the_return_window(self, pending_days):
        update_settings(self.session, program_changes({"pending_days": pending_days}))
        self.program.pending_days = pending_days

    @rule(expiry=st.sampled_from(EXPIRY_CHOICES))
    def change_the_expiry_policy(self, expiry):
        policy, months = expiry
        update_settings(
            self.session, program_changes({"expiry_policy": policy, "expiry_months": months})
        )
        self.program.policy, self.program.months = policy, months

    # --- after every step ----------------------------------------------------------------

    @invariant()
    def ledger_verifies(self):
        report = ledger_verify.verify(self.session)
        assert report.problems == []

    @invariant()
    def balances_and_lots_match_the_model(self):
        for model in self.members:
            balance = settlement.settled_balance(self.session, model.member, self.now)
            model.settle(self.now)
            assert (balance.available, balance.pending, balance.held) == (
                model.available,
                model.pending,
                0,
            )
            lots = self.session.execute(
                sa.select(
                    PointLot.points,
                    PointLot.remaining,
                    PointLot.state,
                    PointLot.available_at,
                    PointLot.expires_at,
                )
                .where(PointLot.member_id == model.member.id)
                .order_by(PointLot.id)
            ).all()
            assert [tuple(row) for row in lots] == [lot.as_row() for lot in model.lots]

    def teardown(self):
        self.session.close()


def test_the_ledger_agrees_with_a_model_of_its_lots_under_random_operations(session):
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(max_examples=40, stateful_step_count=30, deadline=None),
    )
