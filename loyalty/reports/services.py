"""Reports, computed by aggregation over the ledger (never from a hot counter row)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty import days
from loyalty.db import day_number, utcnow
from loyalty.errors import ValidationFailed
from loyalty.ledger.models import (
    Account,
    LedgerEntry,
    LedgerTransaction,
    MemberBalance,
    TransactionKind,
)
from loyalty.members.models import Member
from loyalty.program import config
from loyalty.program.services import get_settings
from loyalty.reports.unsettled import tier_moves, unsettled
from loyalty.tiers.models import Tier

PROGRAM_ACCOUNTS = (Account.ISSUED, Account.REDEEMED, Account.EXPIRED, Account.ADJUSTED)
MAX_DAYS = 366


@dataclass
class Liability:
    available: int
    pending: int
    held: int
    outstanding: int
    value: int
    currency: str
    members_total: int
    program_accounts: dict[str, int]
    consistent: bool


def liability(session: Session, now: dt.datetime | None = None) -> Liability:
    """Points the program owes its members, by member account, with their money value.

    The outstanding total comes from the program accounts (issued, adjusted, redeemed,
    expired, aggregated over the ledger); `consistent` says it equals the sum of every
    member's balance. It answers as of `now` (default: the present) whether or not
    ``jobs run`` has caught up: what settling the members due by then would post (points
    matured, expired, holds timed out) is added in, without writing (``unsettled``), so
    points that expired are not owed.
    """
    now = now or utcnow()
    settings = get_settings(session)
    due = unsettled(session, now).accounts
    sums: dict[Account, int] = dict(
        session.execute(
            sa.select(LedgerEntry.account, sa.func.coalesce(sa.func.sum(LedgerEntry.amount), 0))
            .where(LedgerEntry.account.in_([a.value for a in PROGRAM_ACCOUNTS]))
            .group_by(LedgerEntry.account)
        ).all()
    )
    program = {a.value: int(sums.get(a, 0)) + due[a.value] for a in PROGRAM_ACCOUNTS}
    available, pending, held = (
        int(v or 0) + due[account]
        for v, account in zip(
            session.execute(
                sa.select(
                    sa.func.sum(MemberBalance.available),
                    sa.func.sum(MemberBalance.pending),
                    sa.func.sum(MemberBalance.held),
                )
            ).one(),
            ("available", "pending", "held"),
            strict=True,
        )
    )
    outstanding = -sum(program.values())
    return Liability(
        available=available,
        pending=pending,
        held=held,
        outstanding=outstanding,
        value=settings.points_value(max(outstanding, 0)),
        currency=settings.currency,
        members_total=available + pending + held,
        program_accounts=program,
        consistent=outstanding == available + pending + held,
    )


@dataclass
class Day:
    date: dt.date
    earned: int = 0
    redeemed: int = 0
    restored: int = 0
    expired: int = 0
    adjusted: int = 0
    reversed: int = 0
    new_members: int = 0


@dataclass
class Activity:
    days: list[Day]
    members_by_tier: dict[str, int] = field(default_factory=dict)


def activity(
    session: Session, first: dt.date, last: dt.date, now: dt.datetime | None = None
) -> Activity:
    """Points earned, redeemed, restored, expired, adjusted and reversed per day from `first`
    to `last` inclusive (days of the program's time zone: 23 or 25 hours across a clock
    change), new members per day, and members per tier now.

    As of `now` (default: the present) whether or not ``jobs run`` has caught up: expiries
    that settling would post count on their day, and tier reviews due count as made, both
    worked out without writing (``unsettled``). Raises ValidationFailed for a reversed range
    or one longer than a year.
    """
    if last < first:
        raise ValidationFailed({"to": ["Must not be before from."]})
    if (last - first).days >= MAX_DAYS:
        raise ValidationFailed({"to": [f"At most {MAX_DAYS} days per report."]})
    now = now or utcnow()
    zone = config.current(session).settings.zone
    start, end = days.start_of(first, zone), days.start_of(last + dt.timedelta(days=1), zone)
    per_day = {
        first + dt.timedelta(days=n): Day(first + dt.timedelta(days=n))
        for n in range((last - first).days + 1)
    }

    day = day_number(LedgerTransaction.effective_at, zone).label("day")
    rows = session.execute(
        sa.select(day, LedgerTransaction.kind, LedgerEntry.account, sa.func.sum(LedgerEntry.amount))
        .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
        .where(
            LedgerTransaction.effective_at >= start,
            LedgerTransaction.effective_at < end,
            LedgerEntry.account.in_([a.value for a in PROGRAM_ACCOUNTS]),
        )
        .group_by(day, LedgerTransaction.kind, LedgerEntry.account)
    )
    for when, kind, account, amount in rows:
        target = per_day.get(_as_date(when))
        if target is None:
            continue
        amount = int(amount or 0)
        if account == Account.ISSUED and kind == TransactionKind.EARN:
            target.earned += -amount
        elif account == Account.ISSUED and kind == TransactionKind.REVERSE:
            target.reversed += amount
        elif account == Account.REDEEMED and kind == TransactionKind.RESTORE:
            target.restored += -amount
        elif account == Account.REDEEMED:
            target.redeemed += amount
        elif account == Account.EXPIRED:
            target.expired += amount
        elif account == Account.ADJUSTED:
            target.adjusted += -amount
    for on, expired in unsettled(session, now, zone).expired_on.items():
        if on in per_day:
            per_day[on].expired += expired

    enrolled = day_number(Member.enrolled_at, zone).label("day")
    for when, count in session.execute(
        sa.select(enrolled, sa.func.count(Member.id))
        .where(Member.enrolled_at >= start, Member.enrolled_at < end)
        .group_by(enrolled)
    ):
        target = per_day.get(_as_date(when))
        if target is not None:
            target.new_members = int(count)

    by_tier: dict[str, int] = defaultdict(int)
    for code, count in session.execute(
        sa.select(Tier.code, sa.func.count(Member.id))
        .select_from(Member)
        .outerjoin(Tier, Tier.id == Member.tier_id)
        .group_by(Tier.code)
    ):
        by_tier[code or "none"] = int(count)
    for code, moved in tier_moves(session, now).items():
        by_tier[code] += moved
    return Activity(
        days=list(per_day.values()), members_by_tier={c: n for c, n in by_tier.items() if n}
    )


def _as_date(number: int) -> dt.date:
    # A day number of SQL's day_number: days since days.EPOCH.
    return days.EPOCH + dt.timedelta(days=int(number))
