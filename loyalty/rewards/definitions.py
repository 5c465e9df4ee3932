"""The rewards catalog as admins keep it: add, change, list, each audited."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.audit import services as audit
from loyalty.changes import UNCHANGED, Maybe, given
from loyalty.db import transaction
from loyalty.errors import ValidationFailed
from loyalty.members.segments import SegmentUse, check_segment_keys
from loyalty.program.services import get_settings
from loyalty.rewards.exceptions import RewardNotFound
from loyalty.rewards.models import Reward, RewardCode, RewardKind
from loyalty.tiers.models import Tier


@dataclass(frozen=True, slots=True)
class RewardDefinition:
    name: str
    kind: RewardKind
    cost_points: int
    description: str | None = None
    value_amount: int | None = None
    percent_off_bps: int | None = None
    valid_days: int | None = None
    stock: int | None = None
    min_tier: str | None = None  # a tier's code
    segments: tuple[str, ...] = ()  # saved segment keys (none: anyone)
    per_member_limit: int | None = None
    starts_at: dt.datetime | None = None
    ends_at: dt.datetime | None = None
    active: bool = True
    codes: tuple[str, ...] = ()  # a pool of coupon codes; none: codes are generated


@dataclass(frozen=True, slots=True)
class RewardChanges:
    name: Maybe[str] = UNCHANGED
    description: Maybe[str | None] = UNCHANGED
    kind: Maybe[RewardKind] = UNCHANGED
    cost_points: Maybe[int] = UNCHANGED
    value_amount: Maybe[int | None] = UNCHANGED
    percent_off_bps: Maybe[int | None] = UNCHANGED
    valid_days: Maybe[int | None] = UNCHANGED
    stock: Maybe[int | None] = UNCHANGED
    min_tier: Maybe[str | None] = UNCHANGED
    segments: Maybe[tuple[str, ...]] = UNCHANGED
    per_member_limit: Maybe[int | None] = UNCHANGED
    starts_at: Maybe[dt.datetime | None] = UNCHANGED
    ends_at: Maybe[dt.datetime | None] = UNCHANGED
    active: Maybe[bool] = UNCHANGED
    codes: Maybe[tuple[str, ...]] = UNCHANGED  # added to the pool


@dataclass(frozen=True, slots=True)
class RewardView:
    """A reward as the catalog shows it."""

    public_id: uuid.UUID
    name: str
    description: str | None
    kind: RewardKind
    cost_points: int
    value_amount: int | None
    percent_off_bps: int | None
    valid_days: int | None
    currency: str
    stock: int | None
    min_tier: str | None
    segments: tuple[str, ...]
    per_member_limit: int | None
    starts_at: dt.datetime | None
    ends_at: dt.datetime | None
    active: bool


def view(session: Session, reward: Reward) -> RewardView:
    """The reward as the catalog shows it (in the program's currency)."""
    return RewardView(
        public_id=reward.public_id,
        name=reward.name,
        description=reward.description,
        kind=RewardKind(reward.kind),
        cost_points=reward.cost_points,
        value_amount=reward.value_amount,
        percent_off_bps=reward.percent_off_bps,
        valid_days=reward.valid_days,
        currency=get_settings(session).currency,
        stock=reward.stock,
        min_tier=_lowest_tier_code(session, reward.min_tier_rank),
        segments=tuple(reward.segments or ()),
        per_member_limit=reward.per_member_limit,
        starts_at=reward.starts_at,
        ends_at=reward.ends_at,
        active=reward.active,
    )


def _tier_rank(session: Session, code: str | None) -> int | None:
    if code is None:
        return None
    rank = session.scalar(sa.select(Tier.rank).where(Tier.code == code))
    if rank is None:
        raise ValidationFailed({"min_tier": [f"No tier with code {code!r}."]})
    return int(rank)


def _lowest_tier(session: Session, rank: int) -> tuple[str, str] | None:
    """(code, name) of the lowest tier at `rank` or above."""
    row = session.execute(
        sa.select(Tier.code, Tier.name).where(Tier.rank >= rank).order_by(Tier.rank).limit(1)
    ).first()
    return (row.code, row.name) if row else None


def _lowest_tier_code(session: Session, rank: int | None) -> str | None:
    """The code of the lowest tier allowed to redeem (None: anyone)."""
    lowest = _lowest_tier(session, rank) if rank is not None else None
    return lowest[0] if lowest else None


def tier_name_for_rank(session: Session, rank: int) -> str:
    lowest = _lowest_tier(session, rank)
    return lowest[1] if lowest else f"tier rank {rank}"


def create_reward(
    session: Session, definition: RewardDefinition, actor: str | None = None
) -> RewardView:
    """Add a reward to the catalog, with an optional pool of coupon codes. Raises
    ValidationFailed for an unknown `min_tier` or both an amount and a percentage,
    UnknownSegment (a ValidationFailed) for a
    `segments` key that is no live saved segment's."""
    with transaction(session):
        check_segment_keys(session, definition.segments, "segments")
        reward = Reward(
            name=definition.name,
            description=definition.description,
            kind=RewardKind(definition.kind).value,
            cost_points=definition.cost_points,
            value_amount=definition.value_amount,
            percent_off_bps=definition.percent_off_bps,
            valid_days=definition.valid_days,
            stock=definition.stock,
            min_tier_rank=_tier_rank(session, definition.min_tier),
            segments=list(definition.segments) or None,
            per_member_limit=definition.per_member_limit,
            starts_at=definition.starts_at,
            ends_at=definition.ends_at,
            active=definition.active,
        )
        _check_value(reward)
        session.add(reward)
        session.flush()
        _add_codes(session, reward, definition.codes)
        audit.record(
            session,
            actor,
            "reward.create",
            "reward",
            reward.public_id,
            None,
            audit.snapshot(reward),
        )
        return view(session, reward)


def _check_value(reward: Reward) -> None:
    """Raises ValidationFailed unless the reward's code carries one value at most, and a
    percent_discount a percentage (checked on the whole reward: a change may name one
    field of the pair)."""
    if reward.value_amount is not None and reward.percent_off_bps is not None:
        raise ValidationFailed(
            {"percent_off": ["A reward is worth an amount or a percentage, not both."]}
        )
    if reward.kind == RewardKind.PERCENT_DISCOUNT and reward.percent_off_bps is None:
        raise ValidationFailed({"percent_off": ["Required for percent_discount rewards."]})


def _add_codes(session: Session, reward: Reward, codes: tuple[str, ...]) -> None:
    known = set(
        session.execute(
            sa.select(RewardCode.code).where(RewardCode.reward_id == reward.id)
        ).scalars()
    )
    for code in dict.fromkeys(codes):
        if code not in known:
            session.add(RewardCode(reward_id=reward.id, code=code))
    session.flush()


def find(session: Session, public_id: uuid.UUID) -> Reward:
    """The reward with this id, for the services that change or redeem it. Raises
    RewardNotFound."""
    reward = session.execute(
        sa.select(Reward).where(Reward.public_id == public_id)
    ).scalar_one_or_none()
    if reward is None:
        raise RewardNotFound(f"No reward with id {public_id}.")
    return reward


def find_reward(session: Session, public_id: uuid.UUID) -> RewardView:
    """The reward with this id. Raises RewardNotFound."""
    return view(session, find(session, public_id))


def update_reward(
    session: Session, public_id: uuid.UUID, changes: RewardChanges, actor: str | None = None
) -> RewardView:
    """Change a reward; `codes` adds codes to its pool. Raises RewardNotFound,
    ValidationFailed (an unknown `min_tier`, both an amount and a percentage, a
    percent_discount without a percentage), UnknownSegment (a ValidationFailed: a
    `segments` key that is no live saved segment's)."""
    with transaction(session):
        reward = find(session, public_id)
        before = audit.snapshot(reward)
        fields = given(changes)
        if "min_tier" in fields:
            reward.min_tier_rank = _tier_rank(session, fields.pop("min_tier"))
        if "segments" in fields:
            segments = fields.pop("segments")
            check_segment_keys(session, segments, "segments")
            reward.segments = list(segments) or None
        _add_codes(session, reward, fields.pop("codes", ()))
        for name, value in fields.items():
            setattr(reward, name, value)
        _check_value(reward)
        session.flush()
        action = "reward.deactivate" if before["active"] and not reward.active else "reward.update"
        audit.record(session, actor, action, "reward", public_id, before, audit.snapshot(reward))
        return view(session, reward)


def list_rewards(session: Session, active: bool | None = None) -> list[RewardView]:
    """The whole catalog for admins, newest first."""
    stmt = sa.select(Reward).order_by(Reward.id.desc())
    if active is not None:
        stmt = stmt.where(Reward.active.is_(active))
    return [view(session, reward) for reward in session.execute(stmt).scalars()]


def rewards_naming_segment(session: Session, key: str) -> list[SegmentUse]:
    """The rewards limited to the saved segment `key`, active or not (an inactive reward
    can be made active again), oldest first."""
    # The catalog is admin-made and small: read the lists and look here, not with a JSON
    # containment that PostgreSQL and SQLite spell differently.
    rows = session.execute(
        sa.select(Reward.public_id, Reward.name, Reward.segments)
        .where(Reward.segments.is_not(None))
        .order_by(Reward.id)
    )
    return [
        SegmentUse(kind="reward", id=public_id, name=name)
        for public_id, name, segments in rows
        if key in (segments or ())
    ]


def codes_left(session: Session, reward_id: int) -> int | None:
    """Unused codes in the reward's pool, or None when it generates its codes."""
    total, unused = session.execute(
        sa.select(
            sa.func.count(RewardCode.id),
            sa.func.count(RewardCode.id).filter(RewardCode.redemption_id.is_(None)),
        ).where(RewardCode.reward_id == reward_id)
    ).one()
    return int(unused) if total else None
