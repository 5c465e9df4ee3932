"""Benefits: what a member's tier gives them, and benefits granted to one member directly."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.audit import services as audit
from loyalty.db import transaction, utcnow
from loyalty.members.lookup import find_member
from loyalty.members.models import Member
from loyalty.tiers.models import BenefitGrant
from loyalty.tiers.services import program_tiers


@dataclass(frozen=True, slots=True)
class Benefit:
    code: str
    params: dict[str, Any]
    source: str  # "tier" or "grant"
    ends_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class GrantBenefit:
    """Give one member a benefit outside their tier, from `starts_at` (default: now) until
    `ends_at` (default: for good)."""

    code: str
    params: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    starts_at: dt.datetime | None = None
    ends_at: dt.datetime | None = None


def member_benefits(session: Session, member: Member, now: dt.datetime) -> list[Benefit]:
    """The benefits the member holds now: their tier's, then their own grants."""
    held: list[Benefit] = []
    tier = program_tiers(session).of(member.tier_id)
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
    external_id: str,
    command: GrantBenefit,
    actor: str | None,
    now: dt.datetime | None = None,
) -> Benefit:
    """Give the member a benefit outside their tier; returns it. Raises MemberNotFound."""
    now = now or utcnow()
    with transaction(session):
        return grant_to_member(session, find_member(session, external_id), command, actor, now)


def grant_to_member(
    session: Session,
    member: Member,
    command: GrantBenefit,
    actor: str | None,
    now: dt.datetime,
    *,
    about: Mapping[str, Any] | None = None,
) -> Benefit:
    """``grant_benefit`` for a member already read, in the caller's transaction, audited
    (`about` adds to the audit entry, e.g. the bulk grant that made it); returns it."""
    grant = BenefitGrant(
        member_id=member.id,
        code=command.code,
        params=command.params,
        reason=command.reason,
        starts_at=command.starts_at or now,
        ends_at=command.ends_at,
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
        {**audit.snapshot(grant), **(about or {})},
    )
    return Benefit(grant.code, grant.params, "grant", grant.ends_at)


def grant_for_firing(
    session: Session,
    member_id: int,
    firing_id: int,
    command: GrantBenefit,
    actor: str,
    now: dt.datetime,
) -> Benefit:
    """Give the member a benefit for an automation's firing (its row id), in the caller's
    transaction; returns it. Not audited one by one: the firing is the record of why. Raises
    IntegrityError if the firing granted one already (its key is unique)."""
    grant = BenefitGrant(
        member_id=member_id,
        code=command.code,
        params=dict(command.params),
        reason=command.reason,
        starts_at=command.starts_at or now,
        ends_at=command.ends_at,
        actor=actor,
        created_at=now,
        firing_id=firing_id,
    )
    session.add(grant)
    session.flush()
    return Benefit(grant.code, grant.params, "grant", grant.ends_at)
