"""Reward codes at the checkout, and cancelling a reward redemption.

A redemption's code is honoured once, for its member, until it expires. The checkout
validates a code (no side effects) and consumes it; consuming is a conditional UPDATE
(status 'active' to 'used', only while unexpired), so of two checkouts using one code at
once exactly one wins and the other is told the code was used. Cancelling takes the
member's lock and the redemption's row lock, so it and a consume never both succeed: the
points go back into the lots they came from in one ledger transaction, with the unit of
stock and a pooled code, and a used code cannot be cancelled.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.audit import services as audit
from loyalty.db import transaction, utcnow
from loyalty.ledger.exceptions import MemberInactive
from loyalty.ledger.models import Account, LedgerTransaction, MemberBalance, TransactionKind
from loyalty.ledger.postings import credit, lock_balance
from loyalty.ledger.spending import give_back
from loyalty.members.lookup import find_member
from loyalty.members.models import Member
from loyalty.program.models import ProgramSettings
from loyalty.program.services import get_settings
from loyalty.rewards.exceptions import (
    RewardCodeCancelled,
    RewardCodeExpired,
    RewardCodeMemberMismatch,
    RewardCodeNotFound,
    RewardCodeUsed,
    RewardRedemptionNotFound,
)
from loyalty.rewards.models import (
    Reward,
    RewardAllocation,
    RewardCode,
    RewardKind,
    RewardRedemption,
    RewardRedemptionStatus,
)
from loyalty.rewards.policy import CodeState, RewardValue, code_state, reward_value
from loyalty.settlement.services import settle_member
from loyalty.webhooks import outbox


@dataclass(frozen=True, slots=True)
class RewardCodeView:
    """A redemption's code as the checkout sees it: whose it is, what it is worth, and
    where it stands. `usable`: active and, when a member was named, theirs."""

    code: str
    redemption_public_id: uuid.UUID
    reward_public_id: uuid.UUID
    reward_name: str
    reward_kind: RewardKind
    external_id: str  # the member's
    points: int
    value: RewardValue | None
    status: CodeState
    usable: bool
    created_at: dt.datetime
    expires_at: dt.datetime | None
    used_at: dt.datetime | None
    used_order_id: str | None
    cancelled_at: dt.datetime | None


# Which of several redemptions sharing a code text the checkout means: a pooled code goes
# back to its pool when a redemption is cancelled and may be handed out again, and two
# rewards' pools may hold the same text.
_PREFERENCE = {
    RewardRedemptionStatus.ACTIVE: 0,
    RewardRedemptionStatus.USED: 1,
    RewardRedemptionStatus.CANCELLED: 2,
}


def _holders(session: Session, code: str) -> list[tuple[RewardRedemption, Reward, str]]:
    """Every redemption with this code, with its reward and its member's external id: live
    ones first, then used, then cancelled, newest first within each."""
    rows = session.execute(
        sa.select(RewardRedemption, Reward, Member.external_id)
        .join(Reward, Reward.id == RewardRedemption.reward_id)
        .join(Member, Member.id == RewardRedemption.member_id)
        .where(RewardRedemption.code == code)
        .order_by(RewardRedemption.id.desc())
        .execution_options(populate_existing=True)
    ).all()
    held = [(redemption, reward, external_id) for redemption, reward, external_id in rows]
    return sorted(held, key=lambda row: _PREFERENCE[RewardRedemptionStatus(row[0].status)])


def _pick(
    session: Session, code: str, external_id: str | None
) -> tuple[RewardRedemption, Reward, str]:
    """The redemption the code names: the named member's if they hold it, else anyone's.
    Raises RewardCodeNotFound."""
    holders = _holders(session, code)
    if not holders:
        raise RewardCodeNotFound(f"No reward code {code!r}.")
    own = [row for row in holders if row[2] == external_id]
    return (own or holders)[0]


def _view(
    session: Session,
    redemption: RewardRedemption,
    reward: Reward,
    external_id: str,
    now: dt.datetime,
    asked_by: str | None = None,
) -> RewardCodeView:
    status = code_state(redemption.status, redemption.expires_at, now)
    return RewardCodeView(
        code=redemption.code,
        redemption_public_id=redemption.public_id,
        reward_public_id=reward.public_id,
        reward_name=reward.name,
        reward_kind=RewardKind(reward.kind),
        external_id=external_id,
        points=redemption.points,
        value=reward_value(
            reward.value_amount, reward.percent_off_bps, get_settings(session).currency
        ),
        status=status,
        usable=status == CodeState.ACTIVE and asked_by in (None, external_id),
        created_at=redemption.created_at,
        expires_at=redemption.expires_at,
        used_at=redemption.used_at,
        used_order_id=redemption.used_order_id,
        cancelled_at=redemption.cancelled_at,
    )


def validate(
    session: Session, code: str, external_id: str | None = None, now: dt.datetime | None = None
) -> RewardCodeView:
    """The code's redemption (the member's, when `external_id` names one who holds it):
    whose it is, its value and its state at `now`; `usable` says whether the checkout may
    consume it for that member now. Changes nothing. Raises RewardCodeNotFound."""
    now = now or utcnow()
    redemption, reward, holder = _pick(session, code, external_id)
    return _view(session, redemption, reward, holder, now, asked_by=external_id)


def _refuse(redemption: RewardRedemption, now: dt.datetime) -> None:
    """Raises RewardCodeUsed, RewardCodeExpired or RewardCodeCancelled unless the code is
    active at `now`."""
    status = code_state(redemption.status, redemption.expires_at, now)
    if status == CodeState.USED:
        raise RewardCodeUsed(
            f"Code {redemption.code!r} was used at {redemption.used_at:%Y-%m-%dT%H:%M:%SZ}.",
            used_order_id=redemption.used_order_id,
        )
    if status == CodeState.EXPIRED:
        raise RewardCodeExpired(f"Code {redemption.code!r} expired.")
    if status == CodeState.CANCELLED:
        raise RewardCodeCancelled(f"Code {redemption.code!r} was cancelled.")


def _replays(redemption: RewardRedemption, order_id: str | None) -> bool:
    """Whether a consume is a retry of the one that used the code: the same order."""
    return (
        order_id is not None
        and redemption.status == RewardRedemptionStatus.USED
        and redemption.used_order_id == order_id
    )


def consume(
    session: Session,
    code: str,
    external_id: str,
    order_id: str | None = None,
    now: dt.datetime | None = None,
) -> RewardCodeView:
    """Use the member's code, once, before it expires; returns it as used. A consume for the
    same `order_id` as the one that used it gets the same answer (a retry), anything else
    after the first is refused.

    Raises RewardCodeNotFound, RewardCodeMemberMismatch (another member's code),
    RewardCodeUsed, RewardCodeExpired, RewardCodeCancelled.
    """
    now = now or utcnow()
    with transaction(session):
        redemption, reward, holder = _pick(session, code, external_id)
        if holder != external_id:
            raise RewardCodeMemberMismatch(f"Code {code!r} belongs to another member.")
        if _replays(redemption, order_id):
            return _view(session, redemption, reward, holder, now)
        _refuse(redemption, now)
        # Conditional: of two consumes at once, the second waits for the first's row lock
        # and then matches nothing (PostgreSQL re-reads the row it waited for).
        used = session.execute(
            sa.update(RewardRedemption)
            .where(
                RewardRedemption.id == redemption.id,
                RewardRedemption.status == RewardRedemptionStatus.ACTIVE.value,
                sa.or_(RewardRedemption.expires_at.is_(None), RewardRedemption.expires_at > now),
            )
            .values(status=RewardRedemptionStatus.USED.value, used_at=now, used_order_id=order_id)
            .execution_options(synchronize_session=False)
        )
        session.refresh(redemption)
        if used.rowcount != 1:  # type: ignore[attr-defined]
            if _replays(redemption, order_id):
                return _view(session, redemption, reward, holder, now)
            _refuse(redemption, now)
        outbox.emit(
            session,
            "reward.code_used",
            {
                "id": str(redemption.public_id),
                "member_id": holder,
                "reward_id": str(reward.public_id),
                "reward": reward.name,
                "code": redemption.code,
                "order_id": order_id,
                "used_at": now.isoformat(),
            },
            now,
        )
        return _view(session, redemption, reward, holder, now)


def cancel(
    session: Session,
    external_id: str,
    redemption_id: uuid.UUID,
    actor: str | None = None,
    now: dt.datetime | None = None,
) -> RewardCodeView:
    """Cancel the member's reward redemption whose code is unused and unexpired: its points
    go back into the lots they came from in one ledger transaction, its unit of stock back
    to the reward, a pooled code back to the pool; audited. Cancelling it again returns it
    unchanged.

    Raises MemberNotFound, RewardRedemptionNotFound, MemberInactive, RewardCodeUsed,
    RewardCodeExpired.
    """
    now = now or utcnow()
    settings = get_settings(session)
    with transaction(session):
        member = find_member(session, external_id)
        balance = lock_balance(session, member.id)
        # Locked, so a consume of its code waits and then finds it cancelled (or this waits
        # for the consume and then finds the code used).
        redemption = session.execute(
            sa.select(RewardRedemption)
            .where(
                RewardRedemption.public_id == redemption_id,
                RewardRedemption.member_id == member.id,
            )
            .with_for_update()
            .execution_options(populate_existing=True)
        ).scalar_one_or_none()
        if redemption is None:
            raise RewardRedemptionNotFound(
                f"Member {external_id!r} has no reward redemption {redemption_id}."
            )
        reward = session.get_one(Reward, redemption.reward_id)
        if redemption.status == RewardRedemptionStatus.CANCELLED:
            return _view(session, redemption, reward, external_id, now)
        session.refresh(member)
        if not member.is_active:
            raise MemberInactive(f"Member {external_id!r} is {member.status}.")
        _refuse(redemption, now)
        before = audit.snapshot(redemption)
        settle_member(session, balance, now)
        restored = (
            _give_points_back(session, balance, settings, redemption, now, actor)
            if redemption.points
            else None
        )
        if reward.stock is not None:
            session.execute(
                sa.update(Reward)
                .where(Reward.id == reward.id)
                .values(stock=Reward.stock + 1)
                .execution_options(synchronize_session=False)
            )
        session.execute(
            sa.update(RewardCode)
            .where(RewardCode.redemption_id == redemption.id)
            .values(redemption_id=None)
            .execution_options(synchronize_session=False)
        )
        redemption.status = RewardRedemptionStatus.CANCELLED
        redemption.cancelled_at = now
        redemption.restore_transaction_id = restored.id if restored is not None else None
        session.flush()
        audit.record(
            session,
            actor,
            "reward_redemption.cancel",
            "reward_redemption",
            redemption.public_id,
            before,
            audit.snapshot(redemption),
            now,
        )
        outbox.emit(
            session,
            "reward.redemption_cancelled",
            {
                "id": str(redemption.public_id),
                "member_id": external_id,
                "reward_id": str(reward.public_id),
                "reward": reward.name,
                "code": redemption.code,
                "points_restored": redemption.points,
                "cancelled_at": now.isoformat(),
            },
            now,
        )
        return _view(session, redemption, reward, external_id, now)


def _give_points_back(
    session: Session,
    balance: MemberBalance,
    settings: ProgramSettings,
    redemption: RewardRedemption,
    now: dt.datetime,
    actor: str | None,
) -> LedgerTransaction:
    """Post the one transaction that returns the redemption's points (redeemed to
    available), into the lots they were taken from; returns it."""
    reference = f"reward_redemption:{redemption.public_id}"
    taken = [
        (allocation.lot_id, allocation.points)
        for allocation in session.execute(
            sa.select(RewardAllocation)
            .where(RewardAllocation.reward_redemption_id == redemption.id)
            .order_by(RewardAllocation.id)
        ).scalars()
    ]
    if not taken:
        # Redeemed before redemptions kept their lots (migration 0026): a new lot, under the
        # program's expiry policy, like the points a refund restores.
        txn, _ = credit(
            session,
            balance,
            settings,
            redemption.points,
            kind=TransactionKind.RESTORE,
            source=Account.REDEEMED,
            now=now,
            pending=False,
            reference=reference,
            actor=actor,
        )
        return txn
    return give_back(
        session,
        balance,
        redemption.points,
        taken,
        kind=TransactionKind.RESTORE,
        source=Account.REDEEMED,
        now=now,
        reference=reference,
        actor=actor,
    )
