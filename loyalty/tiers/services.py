"""Managing tiers, reviewing members' tiers, and the benefits members hold."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from loyalty.days import add_months
from loyalty.ledger.models import LedgerTransaction, MemberBalance
from loyalty.members.lookup import with_merged
from loyalty.members.models import Member
from loyalty.program import config
from loyalty.tiers import policy
from loyalty.tiers.models import Tier, TierChange
from loyalty.webhooks import outbox


@dataclass(frozen=True, slots=True)
class ProgramTiers:
    """The program's tiers under one config version: read-only copies, lowest rank first."""

    all: tuple[Tier, ...]

    def of(self, tier_id: int | None) -> Tier | None:
        return next((tier for tier in self.all if tier.id == tier_id), None)


def _load_tiers(connection: Connection) -> ProgramTiers:
    rows = connection.execute(sa.select(Tier.__table__).order_by(Tier.rank))
    return ProgramTiers(tuple(Tier(**row._asdict()) for row in rows))


def program_tiers(session: Session, program: config.ProgramConfig | None = None) -> ProgramTiers:
    """The tiers as of this transaction's configuration (kept per process and version)."""
    return (program or config.current(session)).part(session, _load_tiers)


def view(tier: Tier) -> policy.TierView:
    return policy.TierView(tier.code, tier.name, tier.rank, tier.threshold, tier.retention_months)


def qualifying_earnings(
    session: Session, member_id: int, now: dt.datetime, window_months: int
) -> list[tuple[dt.datetime, int]]:
    """The member's qualifying movements inside the rolling window (months of the program's
    zone), with those of the duplicates merged into them: (when, points)."""
    since = add_months(now, -window_months, config.current(session).settings.zone)
    rows = session.execute(
        sa.select(LedgerTransaction.qualifying_at, LedgerTransaction.qualifying).where(
            LedgerTransaction.member_id.in_(with_merged(member_id)),
            LedgerTransaction.qualifying_at > since,
            LedgerTransaction.qualifying != 0,
        )
    )
    return [(when, int(points)) for when, points in rows if when is not None]


def qualifying_points(session: Session, member_id: int, now: dt.datetime) -> int:
    """Points earned from orders and events over the program's rolling window, less what
    refunds reversed (adjustments and restored points do not qualify), with those of the
    duplicates merged into the member."""
    settings = config.current(session).settings
    since = add_months(now, -settings.tier_window_months, settings.zone)
    total = session.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(LedgerTransaction.qualifying), 0)).where(
            LedgerTransaction.member_id.in_(with_merged(member_id)),
            LedgerTransaction.qualifying_at > since,
            LedgerTransaction.qualifying != 0,
        )
    )
    return int(total or 0)


@dataclass(frozen=True, slots=True)
class _Review:
    tiers: list[Tier]
    current: Tier | None
    points: int
    decision: policy.Decision


def _decide(session: Session, member: Member, now: dt.datetime) -> _Review | None:
    """Where the member stands at `now`; None when the program has no tiers and the member
    none either."""
    program = config.current(session)
    defined = program_tiers(session, program)
    tiers = defined.all
    if not tiers and member.tier_id is None:
        return None
    current = defined.of(member.tier_id)
    window_months = program.settings.tier_window_months
    earnings = qualifying_earnings(session, member.id, now, window_months)
    points = sum(amount for _, amount in earnings)
    decision = policy.review(
        [view(t) for t in tiers],
        view(current) if current else None,
        member.tier_retained_until,
        points,
        now,
        (earnings, window_months),
        program.settings.zone,
    )
    return _Review(list(tiers), current, points, decision)


def tier_after_review(session: Session, member: Member, now: dt.datetime) -> str | None:
    """The code of the tier reviewing the member at `now` would leave them in (None for
    none), without reviewing: for reads that answer as of `now` before the review ran."""
    review = _decide(session, member, now)
    if review is None or review.decision.tier is None:
        return None
    return review.decision.tier.code


def review_member(session: Session, member: Member, now: dt.datetime) -> TierChange | None:
    """Move the member to the tier their qualifying points earn them now, keeping their tier
    until its retention runs out. The caller holds the member's lock. Returns the change
    recorded, if any."""
    review = _decide(session, member, now)
    if review is None:
        return None
    tiers, current, points, decision = (
        review.tiers, review.current, review.points, review.decision
    )  # fmt: skip
    member.tier_retained_until = decision.retained_until
    _review_again_by(session, member, decision.retained_until)
    if decision.reason is None:
        return None
    new = next(t for t in tiers if t.code == decision.tier.code) if decision.tier else None
    member.tier_id = new.id if new else None
    change = TierChange(
        member_id=member.id,
        from_tier=current.code if current else None,
        to_tier=new.code if new else None,
        reason=decision.reason,
        qualifying_points=points,
        changed_at=now,
    )
    session.add(change)
    outbox.emit(
        session,
        "tier.changed",
        {
            "member_id": member.external_id,
            "from": change.from_tier,
            "to": change.to_tier,
            "reason": change.reason,
            "qualifying_points": points,
        },
        now,
    )
    return change


def enter_tier(session: Session, member_ids: Sequence[int], now: dt.datetime) -> int:
    """Give members who have no qualifying points yet (just imported) the tier that needs
    none, if the program has one, each change recorded in their tier history, in bulk.
    No tier.changed event: an import is not something the member did (it gives no signup
    points either), and a million events would flood the shop's endpoint. Returns how many
    members it placed."""
    program = config.current(session)
    defined = program_tiers(session, program).all
    zone = program.settings.zone
    decision = policy.review([view(t) for t in defined], None, None, 0, now, None, zone)
    if decision.tier is None or not member_ids:
        return 0
    entry = next(t for t in defined if t.code == decision.tier.code)
    session.execute(
        sa.update(Member)
        .where(Member.id.in_(member_ids))
        .values(tier_id=entry.id, tier_retained_until=decision.retained_until)
    )
    session.execute(
        sa.insert(TierChange),
        [
            {
                "member_id": member_id,
                "from_tier": None,
                "to_tier": entry.code,
                "reason": decision.reason,
                "qualifying_points": 0,
                "changed_at": now,
            }
            for member_id in member_ids
        ],
    )
    return len(member_ids)


def _review_again_by(session: Session, member: Member, when: dt.datetime | None) -> None:
    """Make the member due for settling (which reviews their tier) when the retention runs
    out, even when no points fall due before then: the next read or `jobs run` downgrades."""
    balance = session.get(MemberBalance, member.id)
    if (
        when is not None
        and balance is not None
        and (balance.next_due_at is None or when < balance.next_due_at)
    ):
        balance.next_due_at = when


@dataclass(frozen=True, slots=True)
class TierMove:
    """One change of a member's tier: from, to, why, when."""

    from_tier: str | None
    to_tier: str | None
    reason: str
    qualifying_points: int
    changed_at: dt.datetime


def tier_history(session: Session, member_id: int, limit: int) -> list[TierMove]:
    """The member's tier changes, newest first."""
    stmt = (
        sa.select(TierChange)
        .where(TierChange.member_id == member_id)
        .order_by(TierChange.id.desc())
        .limit(limit)
    )
    return [
        TierMove(c.from_tier, c.to_tier, c.reason, c.qualifying_points, c.changed_at)
        for c in session.execute(stmt).scalars()
    ]


@dataclass(frozen=True, slots=True)
class TierRef:
    code: str
    name: str
    threshold: int


@dataclass(frozen=True, slots=True)
class Progress:
    tier: TierRef | None
    qualifying_points: int
    next_tier: TierRef | None
    points_to_next: int | None
    retained_until: dt.datetime | None


def _ref(tier: Tier | None) -> TierRef | None:
    return TierRef(tier.code, tier.name, tier.threshold) if tier else None


def progress(
    session: Session, member: Member, now: dt.datetime, program: config.ProgramConfig | None = None
) -> Progress:
    """The member's tier and how far they are from the next one (under `program`, the
    configuration of this transaction, when the caller has it)."""
    defined = program_tiers(session, program)
    tiers, current = defined.all, defined.of(member.tier_id)
    points = qualifying_points(session, member.id, now) if tiers else 0
    upcoming = policy.next_tier([view(t) for t in tiers], view(current) if current else None)
    next_tier = next((t for t in tiers if upcoming and t.code == upcoming.code), None)
    return Progress(
        tier=_ref(current),
        qualifying_points=points,
        next_tier=_ref(next_tier),
        points_to_next=max(next_tier.threshold - points, 0) if next_tier else None,
        retained_until=member.tier_retained_until if current else None,
    )


def member_tier_code(session: Session, member: Member) -> str | None:
    """The code of the member's tier (None when they have none)."""
    tier = program_tiers(session).of(member.tier_id)
    return tier.code if tier else None


MULTIPLIER_BENEFIT = "points_multiplier"
BIRTHDAY_GIFT = "birthday_gift"
# The event the jobs record on a member's birthday (loyalty.jobs), when the gift is paid.
BIRTHDAY_EVENT = "birthday"


def birthday_gift(tier: Tier) -> int | None:
    """The points of the tier's birthday_gift benefit ({"points": N}), if it has one."""
    for benefit in tier.benefits:
        points = (benefit.get("params") or {}).get("points")
        if benefit["code"] == BIRTHDAY_GIFT and type(points) is int and points > 0:
            return points
    return None


def tier_multiplier(session: Session, member: Member) -> tuple[Tier, str] | None:
    """The member's tier and its points_multiplier factor, if the tier has one."""
    tier = program_tiers(session).of(member.tier_id)
    if tier is None:
        return None
    for benefit in tier.benefits:
        if benefit["code"] == MULTIPLIER_BENEFIT and (benefit.get("params") or {}).get("factor"):
            return tier, str(benefit["params"]["factor"])
    return None
