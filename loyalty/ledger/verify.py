"""``ledger verify``: every invariant of the whole ledger, checked in SQL."""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.ledger.models import (
    MEMBER_ACCOUNTS,
    LedgerEntry,
    LedgerTransaction,
    LotState,
    MemberBalance,
    PointLot,
    Redemption,
    RedemptionAllocation,
    RedemptionStatus,
)


@dataclass
class VerifyReport:
    transactions: int = 0
    members: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(session: Session, max_problems: int = 100) -> VerifyReport:
    """Check every ledger invariant; return a report listing each breach found.

    - every transaction has two or more entries that sum to zero;
    - each member's balance row equals the sum of their entries, account by account;
    - pending lots hold exactly the pending balance, available lots exactly the available
      balance (none while the member is in debt); a lot never holds less than 0 or more
      than it was given (that one is a CHECK constraint in the schema);
    - the points open holds took from lots add up to the held balance.
    """
    report = VerifyReport()
    report.transactions = session.scalar(sa.select(sa.func.count(LedgerTransaction.id))) or 0
    report.members = session.scalar(sa.select(sa.func.count(MemberBalance.member_id))) or 0

    entry_sums = (
        sa.select(
            LedgerTransaction.id,
            sa.func.coalesce(sa.func.sum(LedgerEntry.amount), 0),
            sa.func.count(LedgerEntry.id),
        )
        .outerjoin(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
        .group_by(LedgerTransaction.id)
        .having(
            sa.or_(
                sa.func.coalesce(sa.func.sum(LedgerEntry.amount), 0) != 0,
                sa.func.count(LedgerEntry.id) < 2,
            )
        )
        .limit(max_problems)
    )
    for txn_id, total, count in session.execute(entry_sums):
        report.problems.append(f"transaction {txn_id}: {count} entries summing to {total}")

    by_account = {
        account.value: sa.func.coalesce(
            sa.func.sum(sa.case((LedgerEntry.account == account.value, LedgerEntry.amount))), 0
        )
        for account in MEMBER_ACCOUNTS
    }
    sums = (
        sa.select(LedgerEntry.member_id, *by_account.values())
        .group_by(LedgerEntry.member_id)
        .subquery()
    )
    lot_sums = (
        sa.select(
            PointLot.member_id,
            sa.func.sum(
                sa.case((PointLot.state == LotState.PENDING.value, PointLot.remaining), else_=0)
            ).label("pending"),
            sa.func.sum(
                sa.case((PointLot.state == LotState.AVAILABLE.value, PointLot.remaining), else_=0)
            ).label("available"),
        )
        .group_by(PointLot.member_id)
        .subquery()
    )
    hold_sums = (
        sa.select(Redemption.member_id, sa.func.sum(RedemptionAllocation.points).label("held"))
        .join(RedemptionAllocation, RedemptionAllocation.redemption_id == Redemption.id)
        .where(Redemption.status == RedemptionStatus.HELD.value)
        .group_by(Redemption.member_id)
        .subquery()
    )
    cols = list(sums.c)[1:]
    rows = session.execute(
        sa.select(
            MemberBalance.member_id,
            MemberBalance.available,
            MemberBalance.pending,
            MemberBalance.held,
            *(sa.func.coalesce(c, 0) for c in cols),
            sa.func.coalesce(lot_sums.c.pending, 0),
            sa.func.coalesce(lot_sums.c.available, 0),
            sa.func.coalesce(hold_sums.c.held, 0),
        )
        .outerjoin(sums, sums.c.member_id == MemberBalance.member_id)
        .outerjoin(lot_sums, lot_sums.c.member_id == MemberBalance.member_id)
        .outerjoin(hold_sums, hold_sums.c.member_id == MemberBalance.member_id)
    )
    for member_id, available, pending, held, e_av, e_pe, e_he, l_pe, l_av, h_al in rows:
        if (available, pending, held) != (e_av, e_pe, e_he):
            report.problems.append(
                f"member {member_id}: balance (available {available}, pending {pending}, "
                f"held {held}) != entries ({e_av}, {e_pe}, {e_he})"
            )
        if l_pe != pending or l_av != max(available, 0):
            report.problems.append(
                f"member {member_id}: lots (pending {l_pe}, available {l_av}) != balance "
                f"(pending {pending}, available {max(available, 0)})"
            )
        if h_al != held:
            report.problems.append(
                f"member {member_id}: open holds took {h_al} points from lots, held is {held}"
            )
        if len(report.problems) >= max_problems:
            break

    orphans = session.scalar(
        sa.select(sa.func.count(sa.distinct(LedgerEntry.member_id))).where(
            # NOT EXISTS, not NOT IN: PostgreSQL runs NOT IN over a subquery too big for
            # work_mem as a scan per entry (minutes at ten million entries).
            ~sa.exists().where(MemberBalance.member_id == LedgerEntry.member_id)
        )
    )
    if orphans:
        report.problems.append(f"{orphans} members have entries but no balance row")
    grand_total = session.scalar(sa.select(sa.func.coalesce(sa.func.sum(LedgerEntry.amount), 0)))
    if grand_total:
        report.problems.append(f"all entries sum to {grand_total}, not 0")
    return report
