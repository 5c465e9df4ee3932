"""The batch settlement of `jobs run` writes what settling member by member writes.

Each example builds a world of twins: two members given the same earnings, spendings,
refund reversals (debt), holds and time steps, at the same moments. Then time passes with
nothing read, so maturings, expiries and hold time-outs pile up; one twin is settled by a
read (``settled_balance``: member by member, as every use case does), the other by
``jobs.settle_due`` (set-based, in batches). Their ledgers must be the same, transaction by
transaction and entry by entry, lot by lot, hold by hold, with the same balance, next due
time and ``points.expired`` webhooks, and the whole ledger must verify.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from loyalty.db import transaction
from loyalty.extensions import db
from loyalty.jobs import services as jobs
from loyalty.ledger import postings, spending
from loyalty.ledger import verify as ledger_verify
from loyalty.ledger.exceptions import InsufficientPoints
from loyalty.ledger.models import (
    Account,
    LedgerTransaction,
    MemberBalance,
    PointLot,
    Redemption,
    TransactionKind,
)
from loyalty.members.models import Member
from loyalty.program.services import get_settings, update_settings
from loyalty.redemptions import services as redemptions
from loyalty.settlement import services as settlement
from loyalty.webhooks.models import OutboxEvent
from tests.commands import program_changes
from tests.database import delete_every_row
from tests.factories import MemberFactory

# Each example empties the tables on its own connection (delete_every_row).
pytestmark = pytest.mark.committed

START = dt.datetime(2025, 1, 31, 10, 0, tzinfo=dt.UTC)
PAIRS = 3

WAITS = st.one_of(
    st.integers(1, 30).map(lambda minutes: dt.timedelta(minutes=minutes)),
    st.integers(1, 48).map(lambda hours: dt.timedelta(hours=hours)),
    st.integers(1, 90).map(lambda days: dt.timedelta(days=days)),
)
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("earn"), st.integers(0, PAIRS - 1), st.integers(1, 500), st.booleans()),
        st.tuples(st.just("spend"), st.integers(0, PAIRS - 1), st.integers(1, 120)),
        st.tuples(st.just("reverse"), st.integers(0, PAIRS - 1), st.integers(1, 300)),
        st.tuples(st.just("hold"), st.integers(0, PAIRS - 1), st.integers(1, 100)),
        st.tuples(st.just("wait"), WAITS),
    ),
    max_size=25,
)
PROGRAMS = st.tuples(
    st.sampled_from([0, 3, 14]),
    st.sampled_from([("fixed", 1), ("fixed", 2), ("inactivity", 1), ("never", None)]),
)


class World:
    """Twin members, written to alike: `twins[n]` is (settled by a read, settled by the job)."""

    def __init__(self) -> None:
        self.session = db.session
        self.now = START
        self.twins = [(MemberFactory(), MemberFactory()) for _ in range(PAIRS)]

    def each_twin(self, pair: int, write: Any) -> None:
        for member in self.twins[pair]:
            with transaction(self.session):
                balance = postings.lock_balance(self.session, member.id)
                settlement.settle_member(self.session, balance, self.now)
                write(member, balance)

    def apply(self, operation: tuple[Any, ...]) -> None:
        kind, *args = operation
        if kind == "wait":
            self.now += args[0]
            return
        pair, amount, *more = args
        settings_row = get_settings(self.session)
        if kind == "earn":
            self.each_twin(
                pair,
                lambda _, balance: postings.credit(
                    self.session, balance, settings_row, amount, kind=TransactionKind.EARN,
                    source=Account.ISSUED, now=self.now, pending=more[0],
                ),
            )  # fmt: skip
        elif kind in ("spend", "reverse"):
            destination = Account.REDEEMED if kind == "spend" else Account.ISSUED
            txn_kind = TransactionKind.REDEEM if kind == "spend" else TransactionKind.REVERSE

            def debit(_: Member, balance: MemberBalance) -> None:
                points = max(1, balance.available * amount // 100) if kind == "spend" else amount
                with contextlib.suppress(InsufficientPoints):  # the same for both twins
                    spending.debit(
                        self.session, balance, settings_row, points, kind=txn_kind,
                        destination=destination, now=self.now, allow_negative=kind == "reverse",
                    )  # fmt: skip

            self.each_twin(pair, debit)
        elif kind == "hold":
            for member in self.twins[pair]:
                available = settlement.settled_balance(self.session, member, self.now).available
                points = max(100, available * amount // 100)
                if available >= points:
                    redemptions.hold(self.session, member.external_id, points, now=self.now)


def ledger_of(session: Any, member: Member) -> dict[str, Any]:
    """Everything settling writes for the member, with ids replaced by their order."""
    lots = list(
        session.scalars(sa.select(PointLot).where(PointLot.member_id == member.id).order_by("id"))
    )
    holds = list(
        session.scalars(
            sa.select(Redemption).where(Redemption.member_id == member.id).order_by("id")
        )
    )
    names = {f"lot:{lot.id}": f"lot #{n}" for n, lot in enumerate(lots)}
    names |= {f"redemption:{hold.public_id}": f"hold #{n}" for n, hold in enumerate(holds)}
    transactions = list(
        session.scalars(
            sa.select(LedgerTransaction)
            .where(LedgerTransaction.member_id == member.id)
            .order_by(LedgerTransaction.id)
        )
    )
    balance = session.get(MemberBalance, member.id)
    expired = session.scalars(
        sa.select(OutboxEvent.payload)
        .where(OutboxEvent.type == "points.expired")
        .order_by(OutboxEvent.id)
    )
    return {
        "transactions": [
            (txn.kind, txn.effective_at, names.get(txn.reference or "", txn.reference), txn.details)
            for txn in transactions
        ],
        "entries": [[(e.account, e.amount) for e in txn.entries] for txn in transactions],
        "qualifying": [txn.qualifying for txn in transactions],
        "lots": [
            (lot.points, lot.remaining, lot.state, lot.available_at, lot.expires_at) for lot in lots
        ],
        "holds": [(h.points, h.status, h.expires_at, h.released_at) for h in holds],
        "balance": (balance.available, balance.pending, balance.held, balance.next_due_at),
        "expired": [p["points"] for p in expired if p["member_id"] == member.external_id],
    }


MINUTE, HOUR, DAY = dt.timedelta(minutes=1), dt.timedelta(hours=1), dt.timedelta(days=1)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(program=PROGRAMS, operations=OPERATIONS, backlog=WAITS, batch_size=st.integers(1, 4))
# A debt (a refund reversal beyond what is left) repaid by points maturing in the backlog.
@example(
    program=(14, ("fixed", 12)),
    operations=[("earn", 0, 100, False), ("reverse", 0, 300), ("earn", 0, 500, True)],
    backlog=20 * DAY,
    batch_size=2,
)
# A hold taken 10 minutes before its lot expires and timing out after the lot expired (a
# read settled it): its points go back to the expired lot, which expires them again.
@example(
    program=(0, ("fixed", 1)),
    operations=[
        ("earn", 0, 300, False), ("wait", 27 * DAY), ("wait", 23 * HOUR), ("wait", 30 * MINUTE),
        ("wait", 20 * MINUTE), ("hold", 0, 30), ("wait", 10 * MINUTE), ("spend", 0, 1),
    ],
    backlog=10 * MINUTE,
    batch_size=1,
)  # fmt: skip
def test_the_job_settles_a_member_as_a_read_settles_their_twin(
    session, program, operations, backlog, batch_size
):
    session.close()  # no open transaction may hold locks while the tables are emptied
    with db.engine.begin() as connection:
        delete_every_row(connection)
    pending_days, (policy, months) = program
    changes = {"pending_days": pending_days, "expiry_policy": policy, "expiry_months": months}
    update_settings(session, program_changes(changes))
    world = World()
    for operation in operations:
        world.apply(operation)
    moment = world.now + backlog
    for by_read, _ in world.twins:
        settlement.settled_balance(session, by_read, moment)

    summary = jobs.settle_due(session, now=moment, batch_size=batch_size)

    for by_read, by_job in world.twins:
        assert ledger_of(session, by_job) == ledger_of(session, by_read)
    assert summary.members_settled <= PAIRS
    assert jobs.due_count(session, moment) == 0
    assert ledger_verify.verify(session).ok
    session.close()
