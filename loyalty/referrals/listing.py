"""The referrals a member made, newest first, for the customer app and the console."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased

from loyalty.members.lookup import find_member
from loyalty.members.models import Member
from loyalty.pagination import Page, cursor_to, position_of
from loyalty.referrals.models import Referral, ReferralStatus


@dataclass(frozen=True, slots=True)
class ReferralView:
    id: uuid.UUID
    referrer_external_id: str
    friend_external_id: str
    code: str | None
    status: ReferralStatus
    order_id: str | None
    linked_at: dt.datetime
    qualifies_at: dt.datetime | None
    rewarded_at: dt.datetime | None
    cancelled_at: dt.datetime | None
    referrer_points: int
    friend_points: int


_REFERRER = aliased(Member)
_FRIEND = aliased(Member)
_VIEW = (
    sa.select(Referral, _REFERRER.external_id, _FRIEND.external_id)
    .join(_REFERRER, _REFERRER.id == Referral.referrer_id)
    .join(_FRIEND, _FRIEND.id == Referral.referred_id)
)


def _view(row: sa.Row[Referral, str, str]) -> ReferralView:
    referral, referrer, friend = row
    return ReferralView(
        id=referral.public_id,
        referrer_external_id=referrer,
        friend_external_id=friend,
        code=referral.code,
        status=referral.status,
        order_id=referral.order_id,
        linked_at=referral.linked_at,
        qualifies_at=referral.qualifies_at,
        rewarded_at=referral.rewarded_at,
        cancelled_at=referral.cancelled_at,
        referrer_points=referral.referrer_points,
        friend_points=referral.friend_points,
    )


def referrals_made(
    session: Session, external_id: str, limit: int, cursor: str | None
) -> Page[ReferralView]:
    """The friends who enrolled on the member's referral, newest first, one page at a time.
    Raises MemberNotFound, or ValidationFailed for a bad cursor."""
    member = find_member(session, external_id)
    stmt = _VIEW.where(Referral.referrer_id == member.id).order_by(Referral.id.desc())
    before = position_of(cursor)
    if before is not None:
        stmt = stmt.where(Referral.id < before)
    rows = session.execute(stmt.limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(
        items=[_view(row) for row in rows],
        next_cursor=cursor_to(rows[-1][0].id if more else None),
    )


def referral_of(session: Session, member_id: int) -> ReferralView | None:
    """The referral the member enrolled on, if any (a member is referred once at most)."""
    row = session.execute(_VIEW.where(Referral.referred_id == member_id)).one_or_none()
    return None if row is None else _view(row)
