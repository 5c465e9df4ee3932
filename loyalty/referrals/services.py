"""Referrals: linking a friend to the member whose code they enrolled with, and rewarding
both once the friend's first order is past its return window.

The reward waits for the window instead of being paid at the order and taken back on a
refund: a cancelled referral then costs nothing, and nobody spends a bonus that may vanish.
The friend's order, a refund of it and the payout each hold the locks of the members they
touch, the referrer's included, so a referral changes state once whichever comes first.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty import days
from loyalty.db import transaction, utcnow
from loyalty.events import services as events
from loyalty.ledger.models import Account, MemberBalance, TransactionKind
from loyalty.ledger.postings import credit, lock_balance
from loyalty.members import referral_codes as codes
from loyalty.members.exceptions import ReferrerNotFound
from loyalty.members.lookup import external_id_of, member_by_external_id, with_merged
from loyalty.members.models import Member
from loyalty.program import config
from loyalty.program.models import ProgramSettings
from loyalty.referrals.exceptions import ReferralCodeNotFound, SelfReferral
from loyalty.referrals.models import COUNTED, Referral, ReferralStatus
from loyalty.settlement.services import settle_member
from loyalty.webhooks import outbox


@dataclass(frozen=True, slots=True)
class Referrer:
    """Who a friend enrolling names as their referrer, and how (the code, if they used one)."""

    member: Member
    code: str | None


def find_referrer(
    session: Session,
    *,
    external_id: str,
    email: str | None,
    referral_code: str | None,
    referred_by: str | None,
) -> Referrer | None:
    """The member a friend enrolling as `external_id` (with `email`) was referred by, named by
    their referral code or (deprecated) their external id; None when neither is given.

    Raises ReferralCodeNotFound, ReferrerNotFound, or SelfReferral when the referrer is the
    friend themselves (the same external id, or the same email in any case).
    """
    if referral_code:
        code = codes.normalized(referral_code)
        member = session.execute(
            sa.select(Member).where(Member.referral_code == code)
        ).scalar_one_or_none()
        if member is None:
            raise ReferralCodeNotFound(f"No member has the referral code {code!r}.")
        found = Referrer(member, code)
    elif referred_by:
        if referred_by == external_id:
            raise SelfReferral("A member cannot refer themselves.")
        member = member_by_external_id(session, referred_by)
        if member is None:
            raise ReferrerNotFound(f"No member with external_id {referred_by!r}.")
        found = Referrer(member, None)
    else:
        return None
    if email and found.member.email and email.casefold() == found.member.email.casefold():
        raise SelfReferral("The referrer has the same email: a member cannot refer themselves.")
    return found


def _payload(session: Session, referral: Referral, **extra: Any) -> dict[str, Any]:
    return {
        "referral_id": str(referral.public_id),
        "referrer_id": external_id_of(session, referral.referrer_id),
        "member_id": external_id_of(session, referral.referred_id),
        "status": referral.status.value,
        "linked_at": referral.linked_at.isoformat(),
        **extra,
    }


def link(session: Session, referrer: Referrer, friend: Member, now: dt.datetime) -> Referral:
    """Link a newly enrolled friend to their referrer, in the enrolment's transaction.

    Within the program's limit (`referral_max_per_period` in `referral_period_days`) the
    referral waits for the friend's first order; past it, it is recorded as over_limit and
    never rewarded. The referrer's balance row is locked first, so two friends enrolling with
    the same code at once are counted one after the other. Returns the referral.
    """
    settings = config.current(session).settings
    lock_balance(session, referrer.member.id)
    status = ReferralStatus.LINKED
    if settings.referral_max_per_period is not None:
        since = days.add_days(now, -settings.referral_period_days, settings.zone)
        taken = session.scalar(
            sa.select(sa.func.count())
            .select_from(Referral)
            .where(
                Referral.referrer_id == referrer.member.id,
                Referral.linked_at > since,
                Referral.status.in_([s.value for s in COUNTED]),
            )
        )
        if (taken or 0) >= settings.referral_max_per_period:
            status = ReferralStatus.OVER_LIMIT
    referral = Referral(
        referrer_id=referrer.member.id,
        referred_id=friend.id,
        code=referrer.code,
        status=status,
        linked_at=now,
    )
    session.add(referral)
    session.flush()
    outbox.emit(session, "referral.linked", _payload(session, referral), now)
    return referral


def _referral_of(session: Session, friend_id: int) -> Referral | None:
    return session.execute(
        sa.select(Referral)
        .where(Referral.referred_id == friend_id)
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()


def first_order_placed(
    session: Session,
    friend: Member,
    friend_balance: MemberBalance,
    referrer_balance: MemberBalance,
    order_id: str,
    placed_at: dt.datetime,
    now: dt.datetime,
) -> None:
    """The friend's first earning order was placed (the caller holds both members' locks):
    the referral qualifies when the order's return window ends, and is rewarded at once if
    it already has (an order placed that long ago, or a program without a window)."""
    referral = _referral_of(session, friend.id)
    if referral is None or referral.status != ReferralStatus.LINKED:
        return
    settings = config.current(session).settings
    referral.status = ReferralStatus.QUALIFYING
    referral.order_id = order_id
    referral.qualifies_at = placed_at + dt.timedelta(days=settings.pending_days)
    session.flush()
    if referral.qualifies_at <= now:
        _reward(session, referral, friend, friend_balance, referrer_balance, settings, now)


def order_refunded(session: Session, member_id: int, order_id: str, now: dt.datetime) -> None:
    """An order of member `member_id` was refunded (the caller holds their lock): if it is a
    referral's qualifying order and its return window is still open, the referral is
    cancelled and nothing is paid. A refund after the window leaves the reward alone, whether
    or not the jobs have paid it yet."""
    # The friend is the order's member, or a duplicate merged into them (the order moved):
    # naming them keeps the lookup on the member's rows (docs/scaling.md).
    referral = session.execute(
        sa.select(Referral)
        .where(Referral.referred_id.in_(with_merged(member_id)), Referral.order_id == order_id)
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if referral is None or referral.status != ReferralStatus.QUALIFYING:
        return
    assert referral.qualifies_at is not None  # set with the order
    if now >= referral.qualifies_at:
        return
    referral.status = ReferralStatus.CANCELLED
    referral.cancelled_at = now
    session.flush()
    outbox.emit(
        session,
        "referral.cancelled",
        _payload(
            session, referral, order_id=order_id, reason="refunded", cancelled_at=now.isoformat()
        ),
        now,
    )


def _credit(
    session: Session,
    balance: MemberBalance,
    member: Member | None,
    points: int,
    settings: ProgramSettings,
    referral: Referral,
    role: str,
    now: dt.datetime,
) -> int:
    """Credit one side's reward, available at once (the window has passed); an inactive
    member gets nothing. Returns the points credited."""
    if not points or member is None or not member.is_active:
        return 0
    settle_member(session, balance, now)
    credit(
        session,
        balance,
        settings,
        points,
        kind=TransactionKind.EARN,
        source=Account.ISSUED,
        now=now,
        pending=False,
        reference=f"referral:{referral.public_id}",
        details={"referral_id": str(referral.public_id), "role": role},
    )
    return points


def _reward(
    session: Session,
    referral: Referral,
    friend: Member,
    friend_balance: MemberBalance,
    referrer_balance: MemberBalance,
    settings: ProgramSettings,
    now: dt.datetime,
) -> None:
    referrer = session.get(Member, referral.referrer_id, populate_existing=True)
    referral.referrer_points = _credit(
        session,
        referrer_balance,
        referrer,
        settings.referral_referrer_points,
        settings,
        referral,
        "referrer",
        now,
    )
    referral.friend_points = _credit(
        session,
        friend_balance,
        friend,
        settings.referral_friend_points,
        settings,
        referral,
        "friend",
        now,
    )
    # A `referral` event rule, if the program has one, pays the referrer at the same moment.
    events.grant_referral(session, friend, referrer_balance, now)
    referral.status = ReferralStatus.REWARDED
    referral.rewarded_at = now
    session.flush()
    outbox.emit(
        session,
        "referral.rewarded",
        _payload(
            session,
            referral,
            order_id=referral.order_id,
            referrer_points=referral.referrer_points,
            friend_points=referral.friend_points,
            rewarded_at=now.isoformat(),
        ),
        now,
    )


def reward_due(session: Session, now: dt.datetime | None = None, batch_size: int = 500) -> int:
    """Reward every referral whose qualifying order's return window has ended by `now`, each
    in a transaction of its own holding both members' locks (in id order, as orders take
    them), so a worker running at once, an order or a refund never pays or cancels one
    twice. Returns how many were rewarded."""
    now = now or utcnow()
    rewarded = 0
    due = (
        sa.select(Referral.id)
        .where(
            Referral.status == ReferralStatus.QUALIFYING.value,
            Referral.qualifies_at <= now,
        )
        .order_by(Referral.qualifies_at, Referral.id)
        .limit(batch_size)
    )
    while True:
        with transaction(session):
            ids = list(session.scalars(due))
        if not ids:
            return rewarded
        for referral_id in ids:
            with transaction(session):
                pair = session.execute(
                    sa.select(Referral.referrer_id, Referral.referred_id).where(
                        Referral.id == referral_id
                    )
                ).one()
                locked = {member_id: lock_balance(session, member_id) for member_id in sorted(pair)}
                referral = session.get(Referral, referral_id, populate_existing=True)
                assert referral is not None  # referrals are never deleted
                if referral.status != ReferralStatus.QUALIFYING:
                    continue  # another worker paid it while this one waited for the locks
                friend = session.get(Member, referral.referred_id, populate_existing=True)
                assert friend is not None
                _reward(
                    session,
                    referral,
                    friend,
                    locked[referral.referred_id],
                    locked[referral.referrer_id],
                    config.current(session).settings,
                    now,
                )
                rewarded += 1
