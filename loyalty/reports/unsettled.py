"""What settling would change as of `now`, for reports that must not write.

A report answers as of `now` whether or not ``jobs run`` has caught up: the members due by
then are planned exactly as the job would settle them (``ledger.batch_settlement.plan_many``:
maturings, expiries, holds timing out), and the plans are added up; tier reviews due are
decided the same way, without recording them. Nothing is locked or written, so a report
never waits on the job or a checkout, and never does their work.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty import days
from loyalty.ledger import batch_settlement
from loyalty.ledger.models import MemberBalance
from loyalty.members.models import Member
from loyalty.tiers import services as tiers

# Members planned per round trip of the three reads.
BATCH = 2_000


@dataclass
class Unsettled:
    """Settling every member due by `now` would move `accounts` by these amounts (member
    and program accounts by name) and post `expired_on` points to expired on each day."""

    accounts: Counter[str] = field(default_factory=Counter)
    expired_on: Counter[dt.date] = field(default_factory=Counter)


def unsettled(session: Session, now: dt.datetime, tz: dt.tzinfo = days.UTC) -> Unsettled:
    """Add up what settling every member due by `now` would post, expiries by their day in
    the program's zone `tz`; writes nothing."""
    found = Unsettled()
    for balances in batch_settlement.due_balances(session, now, BATCH):
        for plan in batch_settlement.plan_many(session, balances, now):
            for posting in plan.postings:
                for account, amount in posting.legs:
                    found.accounts[account] += amount
                if posting.kind == "expire":
                    day = days.today(posting.effective_at, tz)
                    found.expired_on[day] += sum(a for acc, a in posting.legs if acc == "expired")
    return found


def tier_moves(session: Session, now: dt.datetime) -> Counter[str]:
    """How the members per tier (code, "none" for none) would change if the tier reviews
    due by `now` (retentions that ran out) were made; decides, records nothing."""
    moves: Counter[str] = Counter()
    # A retention that ran out makes the member due (``next_due_at``): found by that index,
    # not by a scan of every member.
    due = session.scalars(
        sa.select(Member)
        .join(MemberBalance, MemberBalance.member_id == Member.id)
        .where(MemberBalance.next_due_at <= now, Member.tier_retained_until <= now)
        .order_by(Member.id)
    ).all()
    for member in due:
        before = tiers.member_tier_code(session, member)
        after = tiers.tier_after_review(session, member, now)
        if after != before:
            moves[before or "none"] -= 1
            moves[after or "none"] += 1
    return moves
