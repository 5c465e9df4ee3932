"""The catalog as a member sees it, and redeeming rewards for points.

Redeeming takes the member's lock, checks every condition, takes one unit of stock with a
conditional UPDATE (stock = stock - 1 WHERE stock > 0: two members can never both take the
last unit), takes a code, and debits the points, all in one transaction: a failed
redemption charges nothing.

An automation may also grant a reward as a coupon (``grant_coupon``): the same unit of
stock and code, no points, an expiry, in the firing's transaction.

What the checkout does with a code (validate, consume) and cancelling a redemption are in
``loyalty.rewards.codes``.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.db import transaction, utcnow
from loyalty.ledger.exceptions import MemberInactive
from loyalty.ledger.models import Account, TransactionKind
from loyalty.ledger.postings import lock_balance
from loyalty.ledger.spending import debit
from loyalty.members.lookup import find_member
from loyalty.members.models import Member
from loyalty.members.segments import in_any_segment
from loyalty.program.services import get_settings
from loyalty.rewards.definitions import RewardView, codes_left, find, tier_name_for_rank, view
from loyalty.rewards.exceptions import OutOfStock, RewardUnavailable
from loyalty.rewards.models import (
    Reward,
    RewardAllocation,
    RewardCode,
    RewardRedemption,
    RewardRedemptionStatus,
)
from loyalty.rewards.policy import CodeState, code_expiry, code_state
from loyalty.settlement.services import settle_member, settled_balance
from loyalty.tiers.models import Tier
from loyalty.webhooks import outbox


@dataclass(frozen=True, slots=True)
class CatalogItem:
    reward: RewardView
    redeemable: bool
    locked_reason: str | None


@dataclass(frozen=True, slots=True)
class RedeemedReward:
    """A reward redemption: the reward, its code, the points it cost."""

    public_id: uuid.UUID
    reward_public_id: uuid.UUID
    reward_name: str
    external_id: str  # the member's
    points: int
    code: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    status: CodeState


@dataclass(frozen=True, slots=True)
class Coupon:
    """A reward granted as a coupon: its redemption's id, the reward, the code, when the
    code stops being honoured, and what the reward costs in points (what a budget counts)."""

    public_id: uuid.UUID
    reward_public_id: uuid.UUID
    reward_name: str
    code: str
    expires_at: dt.datetime
    cost_points: int


def _open(reward: Reward, now: dt.datetime) -> bool:
    return (
        reward.active
        and (reward.starts_at is None or reward.starts_at <= now)
        and (reward.ends_at is None or now < reward.ends_at)
    )


def _redeemed_count(session: Session, member_id: int, reward_id: int) -> int:
    """The member's redemptions of the reward that count against its per-member limit:
    all but the cancelled, whose unit came back."""
    return int(
        session.scalar(
            sa.select(sa.func.count(RewardRedemption.id)).where(
                RewardRedemption.member_id == member_id,
                RewardRedemption.reward_id == reward_id,
                RewardRedemption.status != RewardRedemptionStatus.CANCELLED.value,
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
    if reward.segments and not in_any_segment(session, member.id, reward.segments):
        return "not in its segments"
    if reward.per_member_limit is not None and (
        _redeemed_count(session, member.id, reward.id) >= reward.per_member_limit
    ):
        return "limit reached"
    if reward.stock == 0 or codes_left(session, reward.id) == 0:
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
        items.append(CatalogItem(view(session, reward), reason is None, reason))
    return items


def redeem(
    session: Session, external_id: str, reward_id: uuid.UUID, now: dt.datetime | None = None
) -> RedeemedReward:
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
        reward = find(session, reward_id)
        if not _open(reward, now):
            raise RewardUnavailable("This reward is not available now.")
        reason = _lock_reason(session, reward, member, balance.available)
        if reason == "out of stock":
            raise OutOfStock(f"{reward.name} is out of stock.")
        if reason is not None and not reason.endswith("more points needed"):
            raise RewardUnavailable(f"Cannot redeem {reward.name}: {reason}.", reason=reason)
        txn, taken = debit(
            session,
            balance,
            settings,
            reward.cost_points,
            kind=TransactionKind.REDEEM,
            destination=Account.REDEEMED,
            now=now,
            reference=f"reward:{reward.public_id}",
        )
        code, pooled = _claim_code(session, reward)
        _take_unit(session, reward)
        session.flush()
        redemption = RewardRedemption(
            reward_id=reward.id,
            member_id=member.id,
            points=reward.cost_points,
            code=code,
            transaction_id=txn.id,
            created_at=now,
            expires_at=code_expiry(reward.valid_days, now),
        )
        _hand_out(session, redemption, pooled)
        session.add_all(
            RewardAllocation(reward_redemption_id=redemption.id, lot_id=lot_id, points=points)
            for lot_id, points in taken
        )
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
    return RedeemedReward(
        public_id=redemption.public_id,
        reward_public_id=reward.public_id,
        reward_name=reward.name,
        external_id=external_id,
        points=redemption.points,
        code=redemption.code,
        created_at=redemption.created_at,
        expires_at=redemption.expires_at,
        status=CodeState.ACTIVE,
    )


def _claim_code(session: Session, reward: Reward) -> tuple[str, RewardCode | None]:
    """A code for one unit of the reward: a generated one when it has no pool, else the
    pool's next free code, locked (SKIP LOCKED: two redemptions never queue for one code)
    for ``_hand_out`` to assign. Writes nothing. Raises OutOfStock when the pool is empty."""
    if codes_left(session, reward.id) is None:
        return "LOY-" + secrets.token_hex(5).upper(), None
    code = session.execute(
        sa.select(RewardCode)
        .where(RewardCode.reward_id == reward.id, RewardCode.redemption_id.is_(None))
        .order_by(RewardCode.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).scalar_one_or_none()
    if code is None:
        raise OutOfStock(f"{reward.name} has no codes left.")
    return code.code, code


def _take_unit(session: Session, reward: Reward) -> None:
    """Take one unit of the reward's stock (if it keeps one) with a conditional UPDATE, so
    the last unit goes once. Raises OutOfStock, having written nothing, when none is left."""
    if reward.stock is None:
        return
    taken = session.execute(
        sa.update(Reward)
        .where(Reward.id == reward.id, Reward.stock > 0)
        .values(stock=Reward.stock - 1)
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        raise OutOfStock(f"{reward.name} is out of stock.")


def _hand_out(session: Session, redemption: RewardRedemption, pooled: RewardCode | None) -> None:
    """Record the redemption and mark its pooled code (if any) as handed out with it."""
    session.add(redemption)
    session.flush()
    if pooled is not None:
        pooled.redemption_id = redemption.id
        session.flush()


def grantable_reward(session: Session, reward_id: uuid.UUID, now: dt.datetime) -> Reward | None:
    """The reward, if it exists and is open now (active, within its window): what an
    automation may grant as a coupon."""
    reward = session.execute(
        sa.select(Reward).where(Reward.public_id == reward_id)
    ).scalar_one_or_none()
    return reward if reward is not None and _open(reward, now) else None


def grant_coupon(
    session: Session,
    reward: Reward,
    member_id: int,
    firing_id: int,
    expires_at: dt.datetime,
    now: dt.datetime,
) -> Coupon:
    """Give the member `reward` (open: see ``grantable_reward``) as a coupon for an
    automation's firing (its row id), in the caller's transaction: a unit of stock and a
    code like a redemption, but no points; the code is honoured until `expires_at`. The
    member's tier, segments and per-member limit are not asked (the automation's conditions
    chose the member), but the coupon counts as one of the member's redemptions of it.
    Returns the coupon. Raises OutOfStock, having written nothing, when no unit or code is
    left; IntegrityError if the firing granted one already (its key is unique)."""
    code, pooled = _claim_code(session, reward)
    _take_unit(session, reward)
    redemption = RewardRedemption(
        reward_id=reward.id,
        member_id=member_id,
        points=0,
        code=code,
        transaction_id=None,
        created_at=now,
        expires_at=expires_at,
        firing_id=firing_id,
    )
    _hand_out(session, redemption, pooled)
    return Coupon(
        public_id=redemption.public_id,
        reward_public_id=reward.public_id,
        reward_name=reward.name,
        code=code,
        expires_at=expires_at,
        cost_points=reward.cost_points,
    )


def member_redemptions(
    session: Session, member_id: int, limit: int = 50, now: dt.datetime | None = None
) -> list[RedeemedReward]:
    """The member's reward redemptions, newest first, each with its code's state at `now`."""
    now = now or utcnow()
    rows = session.execute(
        sa.select(RewardRedemption, Reward.public_id, Reward.name, Member.external_id)
        .join(Reward, Reward.id == RewardRedemption.reward_id)
        .join(Member, Member.id == RewardRedemption.member_id)
        .where(RewardRedemption.member_id == member_id)
        .order_by(RewardRedemption.id.desc())
        .limit(limit)
    )
    return [
        RedeemedReward(
            public_id=redemption.public_id,
            reward_public_id=reward_public_id,
            reward_name=reward_name,
            external_id=external_id,
            points=redemption.points,
            code=redemption.code,
            created_at=redemption.created_at,
            expires_at=redemption.expires_at,
            status=code_state(redemption.status, redemption.expires_at, now),
        )
        for redemption, reward_public_id, reward_name, external_id in rows
    ]
