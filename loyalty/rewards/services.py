"""The rewards catalog and redeeming rewards for points.

Redeeming takes the member's lock, checks every condition, takes one unit of stock with a
conditional UPDATE (stock = stock - 1 WHERE stock > 0: two members can never both take the
last unit), takes a code, and debits the points, all in one transaction: a failed
redemption charges nothing.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.audit import services as audit
from loyalty.db import transaction, utcnow
from loyalty.errors import ValidationFailed
from loyalty.ledger.exceptions import MemberInactive
from loyalty.ledger.models import Account, TransactionKind
from loyalty.ledger.postings import lock_balance
from loyalty.ledger.spending import debit
from loyalty.members.lookup import find_member
from loyalty.members.models import Member
from loyalty.program.services import get_settings
from loyalty.rewards.exceptions import OutOfStock, RewardNotFound, RewardUnavailable
from loyalty.rewards.models import Reward, RewardCode, RewardRedemption
from loyalty.settlement.services import settle_member, settled_balance
from loyalty.tiers.models import Tier
from loyalty.webhooks import outbox

REWARD_FIELDS = (
    "name",
    "description",
    "kind",
    "cost_points",
    "value_amount",
    "stock",
    "per_member_limit",
    "starts_at",
    "ends_at",
    "active",
)


def _tier_rank(session: Session, code: str | None) -> int | None:
    if code is None:
        return None
    rank = session.scalar(sa.select(Tier.rank).where(Tier.code == code))
    if rank is None:
        raise ValidationFailed({"min_tier": [f"No tier with code {code!r}."]})
    return int(rank)


def create_reward(session: Session, fields: dict[str, Any], actor: str | None = None) -> Reward:
    """Add a reward to the catalog, with an optional pool of coupon codes. Raises
    ValidationFailed for an unknown `min_tier`."""
    with transaction(session):
        reward = Reward(
            **{name: fields.get(name) for name in REWARD_FIELDS},
            min_tier_rank=_tier_rank(session, fields.get("min_tier")),
        )
        reward.active = fields.get("active", True)
        session.add(reward)
        session.flush()
        _add_codes(session, reward, fields.get("codes") or [])
        audit.record(
            session,
            actor,
            "reward.create",
            "reward",
            reward.public_id,
            None,
            audit.snapshot(reward),
        )
    return reward


def _add_codes(session: Session, reward: Reward, codes: list[str]) -> None:
    known = set(
        session.execute(
            sa.select(RewardCode.code).where(RewardCode.reward_id == reward.id)
        ).scalars()
    )
    for code in dict.fromkeys(codes):
        if code not in known:
            session.add(RewardCode(reward_id=reward.id, code=code))
    session.flush()


def find_reward(session: Session, public_id: uuid.UUID) -> Reward:
    """The reward with this id. Raises RewardNotFound."""
    reward = session.execute(
        sa.select(Reward).where(Reward.public_id == public_id)
    ).scalar_one_or_none()
    if reward is None:
        raise RewardNotFound(f"No reward with id {public_id}.")
    return reward


def update_reward(
    session: Session, public_id: uuid.UUID, changes: dict[str, Any], actor: str | None = None
) -> Reward:
    """Change a reward; `codes` adds codes to its pool. Raises RewardNotFound,
    ValidationFailed."""
    with transaction(session):
        reward = find_reward(session, public_id)
        before = audit.snapshot(reward)
        if "min_tier" in changes:
            reward.min_tier_rank = _tier_rank(session, changes.pop("min_tier"))
        _add_codes(session, reward, changes.pop("codes", None) or [])
        for name, value in changes.items():
            setattr(reward, name, value)
        session.flush()
        action = "reward.deactivate" if before["active"] and not reward.active else "reward.update"
        audit.record(session, actor, action, "reward", public_id, before, audit.snapshot(reward))
    return reward


def list_rewards(session: Session, active: bool | None = None) -> list[Reward]:
    """The whole catalog for admins, newest first."""
    stmt = sa.select(Reward).order_by(Reward.id.desc())
    if active is not None:
        stmt = stmt.where(Reward.active.is_(active))
    return list(session.execute(stmt).scalars())


def codes_left(session: Session, reward: Reward) -> int | None:
    """Unused codes in the reward's pool, or None when it generates its codes."""
    total, unused = session.execute(
        sa.select(
            sa.func.count(RewardCode.id),
            sa.func.count(RewardCode.id).filter(RewardCode.redemption_id.is_(None)),
        ).where(RewardCode.reward_id == reward.id)
    ).one()
    return int(unused) if total else None


def min_tier_code(session: Session, reward: Reward) -> str | None:
    """The code of the lowest tier allowed to redeem the reward (None: anyone)."""
    if reward.min_tier_rank is None:
        return None
    return session.scalar(
        sa.select(Tier.code).where(Tier.rank >= reward.min_tier_rank).order_by(Tier.rank).limit(1)
    )


def tier_name_for_rank(session: Session, rank: int) -> str:
    name = session.scalar(
        sa.select(Tier.name).where(Tier.rank >= rank).order_by(Tier.rank).limit(1)
    )
    return str(name) if name else f"tier rank {rank}"


@dataclass
class CatalogItem:
    reward: Reward
    redeemable: bool
    locked_reason: str | None


def _open(reward: Reward, now: dt.datetime) -> bool:
    return (
        reward.active
        and (reward.starts_at is None or reward.starts_at <= now)
        and (reward.ends_at is None or now < reward.ends_at)
    )


def _redeemed_count(session: Session, member_id: int, reward_id: int) -> int:
    return int(
        session.scalar(
            sa.select(sa.func.count(RewardRedemption.id)).where(
                RewardRedemption.member_id == member_id, RewardRedemption.reward_id == reward_id
            )
        )
        or 0
    )


def _lock_reason(session: Session, reward: Reward, member: Member, available: int) -> str | None:
    """Why the member cannot redeem the reward now (None: they can)."""
    if reward.min_tier_rank is not None:
        rank = (
            session.scalar(sa.select(Tier.rank).where(Tier.id == member.tier_id))
            if member.tier_id
            else None
        )
        if rank is None or rank < reward.min_tier_rank:
            return f"reach {tier_name_for_rank(session, reward.min_tier_rank)}"
    if reward.per_member_limit is not None and (
        _redeemed_count(session, member.id, reward.id) >= reward.per_member_limit
    ):
        return "limit reached"
    if reward.stock == 0 or codes_left(session, reward) == 0:
        return "out of stock"
    if available < reward.cost_points:
        return f"{reward.cost_points - max(available, 0)} more points needed"
    return None


def catalog(
    session: Session, external_id: str, now: dt.datetime | None = None
) -> list[CatalogItem]:
    """The rewards open now, each with whether this member may redeem it and why not.
    Raises MemberNotFound."""
    now = now or utcnow()
    member = find_member(session, external_id)
    balance = settled_balance(session, member, now)
    rewards = session.execute(
        sa.select(Reward).where(Reward.active.is_(True)).order_by(Reward.cost_points, Reward.id)
    ).scalars()
    items = []
    for reward in rewards:
        if not _open(reward, now):
            continue
        reason = _lock_reason(session, reward, member, balance.available)
        items.append(CatalogItem(reward, reason is None, reason))
    return items


def redeem(
    session: Session, external_id: str, reward_id: uuid.UUID, now: dt.datetime | None = None
) -> RewardRedemption:
    """Spend the member's points on a reward and return the redemption with its code.

    Raises MemberNotFound, RewardNotFound, MemberInactive, RewardUnavailable (closed,
    tier, limit), OutOfStock, InsufficientPoints. Nothing is charged when any is raised.
    """
    now = now or utcnow()
    settings = get_settings(session)
    with transaction(session):
        member = find_member(session, external_id)
        balance = lock_balance(session, member.id)
        session.refresh(member)
        if not member.is_active:
            raise MemberInactive(f"Member {external_id!r} is {member.status}.")
        settle_member(session, balance, now)
        reward = find_reward(session, reward_id)
        if not _open(reward, now):
            raise RewardUnavailable("This reward is not available now.")
        reason = _lock_reason(session, reward, member, balance.available)
        if reason == "out of stock":
            raise OutOfStock(f"{reward.name} is out of stock.")
        if reason is not None and not reason.endswith("more points needed"):
            raise RewardUnavailable(f"Cannot redeem {reward.name}: {reason}.", reason=reason)
        txn, _ = debit(
            session,
            balance,
            settings,
            reward.cost_points,
            kind=TransactionKind.REDEEM,
            destination=Account.REDEEMED,
            now=now,
            reference=f"reward:{reward.public_id}",
        )
        if reward.stock is not None:
            taken = session.execute(
                sa.update(Reward)
                .where(Reward.id == reward.id, Reward.stock > 0)
                .values(stock=Reward.stock - 1)
                .execution_options(synchronize_session=False)
            )
            if taken.rowcount != 1:  # type: ignore[attr-defined]
                raise OutOfStock(f"{reward.name} is out of stock.")
        session.flush()
        redemption = RewardRedemption(
            reward_id=reward.id,
            member_id=member.id,
            points=reward.cost_points,
            code="",
            transaction_id=txn.id,
            created_at=now,
        )
        session.add(redemption)
        session.flush()
        redemption.code = _take_code(session, reward, redemption)
        session.flush()
        outbox.emit(
            session,
            "reward.redeemed",
            {
                "member_id": external_id,
                "reward_id": str(reward.public_id),
                "reward": reward.name,
                "points": reward.cost_points,
                "code": redemption.code,
            },
            now,
        )
    return redemption


def _take_code(session: Session, reward: Reward, redemption: RewardRedemption) -> str:
    if codes_left(session, reward) is None:
        return "LOY-" + secrets.token_hex(5).upper()
    code = session.execute(
        sa.select(RewardCode)
        .where(RewardCode.reward_id == reward.id, RewardCode.redemption_id.is_(None))
        .order_by(RewardCode.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).scalar_one_or_none()
    if code is None:
        raise OutOfStock(f"{reward.name} has no codes left.")
    code.redemption_id = redemption.id
    return code.code


def member_redemptions(
    session: Session, member_id: int, limit: int = 50
) -> list[tuple[RewardRedemption, Reward]]:
    """The member's reward redemptions with their rewards, newest first."""
    return [
        (redemption, reward)
        for redemption, reward in session.execute(
            sa.select(RewardRedemption, Reward)
            .join(Reward, Reward.id == RewardRedemption.reward_id)
            .where(RewardRedemption.member_id == member_id)
            .order_by(RewardRedemption.id.desc())
            .limit(limit)
        ).all()
    ]
