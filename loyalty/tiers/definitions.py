"""The program's tiers as admins define them: list, create, change, delete, each audited."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from loyalty.audit import services as audit
from loyalty.changes import UNCHANGED, Maybe, given
from loyalty.db import transaction
from loyalty.members.models import Member
from loyalty.program import config
from loyalty.tiers.exceptions import TierExists, TierInUse, TierNotFound
from loyalty.tiers.models import Tier


@dataclass(frozen=True, slots=True)
class TierDefinition:
    code: str
    name: str
    rank: int
    threshold: int
    retention_months: int
    benefits: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class TierChanges:
    code: Maybe[str] = UNCHANGED
    name: Maybe[str] = UNCHANGED
    rank: Maybe[int] = UNCHANGED
    threshold: Maybe[int] = UNCHANGED
    retention_months: Maybe[int] = UNCHANGED
    benefits: Maybe[tuple[dict[str, Any], ...]] = UNCHANGED


@dataclass(frozen=True, slots=True)
class DefinedTier:
    """A tier as admins see it, with how many members hold it now."""

    code: str
    name: str
    rank: int
    threshold: int
    retention_months: int
    benefits: tuple[dict[str, Any], ...]
    members: int
    updated_at: dt.datetime


def _view(tier: Tier, members: int) -> DefinedTier:
    return DefinedTier(
        code=tier.code,
        name=tier.name,
        rank=tier.rank,
        threshold=tier.threshold,
        retention_months=tier.retention_months,
        benefits=tuple(tier.benefits),
        members=members,
        updated_at=tier.updated_at,
    )


def _members_in(session: Session, tier_id: int) -> int:
    return int(
        session.scalar(sa.select(sa.func.count(Member.id)).where(Member.tier_id == tier_id)) or 0
    )


def list_tiers(session: Session) -> list[DefinedTier]:
    """Every tier, lowest rank first, with its members counted in one query."""
    counts = dict(
        session.execute(
            sa.select(Member.tier_id, sa.func.count(Member.id))
            .where(Member.tier_id.is_not(None))
            .group_by(Member.tier_id)
        ).all()
    )
    tiers = session.execute(sa.select(Tier).order_by(Tier.rank)).scalars()
    return [_view(tier, int(counts.get(tier.id, 0))) for tier in tiers]


def _find(session: Session, code: str) -> Tier:
    tier = session.execute(sa.select(Tier).where(Tier.code == code)).scalar_one_or_none()
    if tier is None:
        raise TierNotFound(f"No tier with code {code!r}.")
    return tier


def find_tier(session: Session, code: str) -> DefinedTier:
    """The tier with this code. Raises TierNotFound."""
    tier = _find(session, code)
    return _view(tier, _members_in(session, tier.id))


def create_tier(
    session: Session, definition: TierDefinition, actor: str | None = None
) -> DefinedTier:
    """Create a tier. Raises TierExists when its code or rank is taken."""
    try:
        with transaction(session, savepoint=True):
            tier = Tier(
                code=definition.code,
                name=definition.name,
                rank=definition.rank,
                threshold=definition.threshold,
                retention_months=definition.retention_months,
                benefits=list(definition.benefits),
            )
            session.add(tier)
            session.flush()
            config.changed(session)
            audit.record(
                session, actor, "tier.create", "tier", tier.code, None, audit.snapshot(tier)
            )
    except IntegrityError:
        raise TierExists("A tier with this code or rank already exists.") from None
    return _view(tier, 0)


def update_tier(
    session: Session, code: str, changes: TierChanges, actor: str | None = None
) -> DefinedTier:
    """Change a tier (members are reviewed against it on their next touch). Raises
    TierNotFound, TierExists for a rank taken by another tier."""
    try:
        with transaction(session, savepoint=True):
            tier = _find(session, code)
            before = audit.snapshot(tier)
            for name, value in given(changes).items():
                setattr(tier, name, list(value) if name == "benefits" else value)
            session.flush()
            config.changed(session)
            audit.record(session, actor, "tier.update", "tier", code, before, audit.snapshot(tier))
            members = _members_in(session, tier.id)
    except IntegrityError:
        raise TierExists("Another tier has this rank.") from None
    return _view(tier, members)


def delete_tier(session: Session, code: str, actor: str | None = None) -> None:
    """Delete a tier nobody is in. Raises TierNotFound, TierInUse."""
    with transaction(session):
        tier = _find(session, code)
        members = _members_in(session, tier.id)
        if members:
            raise TierInUse(f"{members} members are in tier {code!r}; they keep it until reviewed.")
        audit.record(session, actor, "tier.delete", "tier", code, audit.snapshot(tier), None)
        session.delete(tier)
        config.changed(session)
