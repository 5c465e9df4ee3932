"""Managing tiers, reviewing members' tiers, and the benefits members hold."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from loyalty.audit import services as audit
from loyalty.db import transaction, utcnow
from loyalty.ledger.models import LedgerTransaction, MemberBalance
from loyalty.ledger.policy import add_months
from loyalty.members.models import Member
from loyalty.program import config
from loyalty.tiers import policy
from loyalty.tiers.exceptions import TierExists, TierInUse, TierNotFound
from loyalty.tiers.models import BenefitGrant, Tier, TierChange
from loyalty.webhooks import outbox

TIER_FIELDS = ("code", "name", "rank", "threshold", "retention_months", "benefits")


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


def list_tiers(session: Session) -> list[Tier]:
    """Every tier, lowest rank first."""
    return list(session.execute(sa.select(Tier).order_by(Tier.rank)).scalars())


def member_counts(session: Session) -> dict[int, int]:
    """How many members each tier holds now, by tier id."""
    return {
        tier_id: int(count)
        for tier_id, count in session.execute(
            sa.select(Member.tier_id, sa.func.count(Member.id))
            .where(Member.tier_id.is_not(None))
            .group_by(Member.tier_id)
        ).all()
        if tier_id is not None
    }


def find_tier(session: Session, code: str) -> Tier:
    """The tier with this code. Raises TierNotFound."""
    tier = session.execute(sa.select(Tier).where(Tier.code == code)).scalar_one_or_none()
    if tier is None:
        raise TierNotFound(f"No tier with code {code!r}.")
    return tier


def create_tier(session: Session, fields: dict[str, Any], actor: str | None = None) -> Tier:
    """Create a tier. Raises TierExists when its code or rank is taken."""
    try:
        with transaction(session):
            tier = Tier(**{name: fields[name] for name in TIER_FIELDS})
            session.add(tier)
            session.flush()
            config.changed(session)
            audit.record(
                session, actor, "tier.create", "tier", tier.code, None, audit.snapshot(tier)
            )
    except IntegrityError:
        raise TierExists("A tier with this code or rank already exists.") from None
    return tier


def update_tier(
    session: Session, code: str, changes: dict[str, Any], actor: str | None = None
) -> Tier:
    """Change a tier (members are reviewed against it on their next touch). Raises
    TierNotFound, TierExists for a rank taken by another tier."""
    try:
        with transaction(session):
            tier = find_tier(session, code)
            before = audit.snapshot(tier)
            for name, value in changes.items():
                setattr(tier, name, value)
            session.flush()
            config.changed(session)
            audit.record(session, actor, "tier.update", "tier", code, before, audit.snapshot(tier))
    except IntegrityError:
        raise TierExists("Another tier has this rank.") from None
    return tier


def delete_tier(session: Session, code: str, actor: str | None = None) -> None:
    """Delete a tier nobody is in. Raises TierNotFound, TierInUse."""
    with transaction(session):
        tier = find_tier(session, code)
        members = session.scalar(
            sa.select(sa.func.count(Member.id)).where(Member.tier_id == tier.id)
        )
        if members:
            raise TierInUse(f"{members} members are in tier {code!r}; they keep it until reviewed.")
        audit.record(session, actor, "tier.delete", "tier", code, audit.snapshot(tier), None)
        session.delete(tier)
        config.changed(session)


def qualifying_earnings(
    session: Session, member_id: int, now: dt.datetime, window_months: int
) -> list[tuple[dt.datetime, int]]:
    """The member's qualifying movements inside the rolling window: (when, points)."""
    since = add_months(now, -window_months)
    rows = session.execute(
        sa.select(LedgerTransaction.qualifying_at, LedgerTransaction.qualifying).where(
            LedgerTransaction.member_id == member_id,
            LedgerTransaction.qualifying_at > since,
            LedgerTransaction.qualifying != 0,
        )
    )
    return [(when, int(points)) for when, points in rows if when is not None]


def qualifying_points(session: Session, member_id: int, now: dt.datetime) -> int:
    """Points earned from orders and events over the program's rolling window, less what
    refunds reversed (adjustments and restored points do not qualify)."""
    since = add_months(now, -config.current(session).settings.tier_window_months)
    total = session.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(LedgerTransaction.qualifying), 0)).where(
            LedgerTransaction.member_id == member_id,
            LedgerTransaction.qualifying_at > since,
            LedgerTransaction.qualifying != 0,
        )
    )
    return int(total or 0)


def review_member(session: Session, member: Member, now: dt.datetime) -> TierChange | None:
    """Move the member to the tier their qualifying points earn them now, keeping their tier
    until its retention runs out. The caller holds the member's lock. Returns the change
    recorded, if any."""
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
    )
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


def tier_history(
    session: Session, member_id: int, limit: int, before: int | None
) -> list[TierChange]:
    """The member's tier changes, newest first."""
    stmt = (
        sa.select(TierChange)
        .where(TierChange.member_id == member_id)
        .order_by(TierChange.id.desc())
        .limit(limit)
    )
    if before is not None:
        stmt = stmt.where(TierChange.id < before)
    return list(session.execute(stmt).scalars())


@dataclass
class Progress:
    tier: Tier | None
    qualifying_points: int
    next_tier: Tier | None
    points_to_next: int | None
    retained_until: dt.datetime | None


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
        tier=current,
        qualifying_points=points,
        next_tier=next_tier,
        points_to_next=max(next_tier.threshold - points, 0) if next_tier else None,
        retained_until=member.tier_retained_until if current else None,
    )


@dataclass(frozen=True)
class Benefit:
    code: str
    params: dict[str, Any]
    source: str  # "tier" or "grant"
    ends_at: dt.datetime | None


def member_benefits(
    session: Session, member: Member, now: dt.datetime | None = None
) -> list[Benefit]:
    """The benefits the member holds now: their tier's, then their own grants."""
    now = now or utcnow()
    held: list[Benefit] = []
    if member.tier_id is not None:
        tier = session.get(Tier, member.tier_id)
        if tier is not None:
            held += [Benefit(b["code"], b.get("params") or {}, "tier", None) for b in tier.benefits]
    grants = session.execute(
        sa.select(BenefitGrant)
        .where(
            BenefitGrant.member_id == member.id,
            BenefitGrant.starts_at <= now,
            sa.or_(BenefitGrant.ends_at.is_(None), BenefitGrant.ends_at > now),
        )
        .order_by(BenefitGrant.id)
    ).scalars()
    held += [Benefit(g.code, g.params, "grant", g.ends_at) for g in grants]
    return held


def grant_benefit(
    session: Session,
    member: Member,
    fields: dict[str, Any],
    actor: str | None,
    now: dt.datetime | None = None,
) -> BenefitGrant:
    """Give one member a benefit outside their tier, optionally until `ends_at`."""
    now = now or utcnow()
    with transaction(session):
        grant = BenefitGrant(
            member_id=member.id,
            code=fields["code"],
            params=fields.get("params") or {},
            reason=fields.get("reason"),
            starts_at=fields.get("starts_at") or now,
            ends_at=fields.get("ends_at"),
            actor=actor,
            created_at=now,
        )
        session.add(grant)
        session.flush()
        audit.record(
            session,
            actor,
            "benefit.grant",
            "member",
            member.external_id,
            None,
            audit.snapshot(grant),
        )
    return grant


def member_tier_code(session: Session, member: Member) -> str | None:
    """The code of the member's tier (None when they have none)."""
    tier = program_tiers(session).of(member.tier_id)
    return tier.code if tier else None


def tier_multiplier(session: Session, member: Member) -> tuple[Tier, str] | None:
    """The member's tier and its points_multiplier factor, if the tier has one."""
    tier = program_tiers(session).of(member.tier_id)
    if tier is None:
        return None
    for benefit in tier.benefits:
        if benefit["code"] == "points_multiplier" and (benefit.get("params") or {}).get("factor"):
            return tier, str(benefit["params"]["factor"])
    return None
