"""Enrolment, the member card, history and holds, status and profile changes."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from loyalty.audit import services as audit
from loyalty.db import transaction, utcnow
from loyalty.events import services as events
from loyalty.ledger.models import LedgerTransaction, MemberBalance, Redemption
from loyalty.ledger.postings import lock_balance
from loyalty.ledger.queries import ExpiringPoints, expiring_lots, transactions_page
from loyalty.members.exceptions import MemberClosed, ReferrerNotFound
from loyalty.members.lookup import find_member
from loyalty.members.models import Member, MemberStatus
from loyalty.pagination import Page
from loyalty.settlement.services import settled_balance, settled_snapshot
from loyalty.tiers import services as tiers
from loyalty.webhooks import outbox

EXPIRING_SOON = dt.timedelta(days=30)


def enroll(session: Session, fields: dict[str, Any]) -> tuple[Member, bool]:
    """Enroll a member, or find the one already enrolled under the same external id.

    Returns (member, created). The balance row is created with the member, so there is
    always a row to lock before the first points move; a signup event rule, if any, credits
    its points in the same transaction. Raises ReferrerNotFound when `referred_by` names
    nobody.
    """
    external_id = fields["external_id"]
    existing = _by_external_id(session, external_id)
    if existing is not None:
        return existing, False
    referrer = None
    if fields.get("referred_by"):
        referrer = _by_external_id(session, fields["referred_by"])
        if referrer is None:
            raise ReferrerNotFound(f"No member with external_id {fields['referred_by']!r}.")
    try:
        with transaction(session, savepoint=True):
            member = Member(
                external_id=external_id,
                email=fields.get("email"),
                name=fields.get("name"),
                birthday=fields.get("birthday"),
                referred_by_id=referrer.id if referrer else None,
                metadata_=fields.get("metadata") or {},
            )
            session.add(member)
            session.flush()
            balance = MemberBalance(member_id=member.id)
            session.add(balance)
            session.flush()
            now = utcnow()
            outbox.emit(
                session,
                "member.enrolled",
                {"member_id": member.external_id, "email": member.email, "name": member.name},
                now,
            )
            events.grant_signup(session, member, balance, now)
            # A tier with no threshold (an entry tier) applies from enrolment.
            tiers.review_member(session, member, now)
    except IntegrityError:
        # Two enrolments of one customer raced and the other committed first: theirs stands.
        existing = _by_external_id(session, external_id)
        if existing is None:
            raise
        return existing, False
    return member, True


def _by_external_id(session: Session, external_id: str) -> Member | None:
    return session.execute(
        sa.select(Member).where(Member.external_id == external_id)
    ).scalar_one_or_none()


@dataclass
class MemberCard:
    member: Member
    balance: MemberBalance
    expiring_soon: list[ExpiringPoints]
    progress: tiers.Progress


def card(session: Session, external_id: str, now: dt.datetime | None = None) -> MemberCard:
    """The member as the app and checkout show it, right as of `now`. Raises MemberNotFound.

    The member and balance it returns are read-only copies (not in the session).
    """
    now = now or utcnow()
    member, balance, program = settled_snapshot(session, external_id, now)
    due = balance.next_due_at
    # next_due_at is never later than the soonest expiry: with none in the window, no lot
    # needs reading (a member with a long history costs the same as a new one).
    soon = (
        expiring_lots(session, member.id, now, EXPIRING_SOON)
        if due is not None and due <= now + EXPIRING_SOON
        else []
    )
    return MemberCard(
        member=member,
        balance=balance,
        expiring_soon=soon,
        progress=tiers.progress(session, member, now, program),
    )


ALLOWED_TRANSITIONS = {
    MemberStatus.ACTIVE: {MemberStatus.SUSPENDED, MemberStatus.CLOSED},
    MemberStatus.SUSPENDED: {MemberStatus.ACTIVE, MemberStatus.CLOSED},
    MemberStatus.CLOSED: set(),
}


def update_member(
    session: Session, external_id: str, changes: dict[str, Any], actor: str | None = None
) -> Member:
    """Change a member's status or profile fields and return the member.

    A closed membership is final. Raises MemberNotFound, or MemberClosed for any change to a
    closed member.
    """
    with transaction(session):
        member = find_member(session, external_id)
        lock_balance(session, member.id)
        session.refresh(member)
        before = audit.snapshot(member)
        current = MemberStatus(member.status)
        if current == MemberStatus.CLOSED:
            raise MemberClosed(f"Member {external_id!r} is closed; a closed membership is final.")
        status = changes.pop("status", None)
        if status is not None and status != current:
            if status not in ALLOWED_TRANSITIONS[current]:
                raise MemberClosed(f"Cannot change status from {current} to {status}.")
            member.status = status
        if "metadata" in changes:
            member.metadata_ = changes.pop("metadata")
        for name, value in changes.items():
            setattr(member, name, value)
        session.flush()
        audit.record(
            session, actor, "member.update", "member", external_id, before, audit.snapshot(member)
        )
        outbox.emit(session, "member.updated", {"member_id": external_id, "status": member.status})
    return member


def search(session: Session, query: str, limit: int = 50) -> list[Member]:
    """Members whose external id or email starts with `query` (case-insensitive email)."""
    pattern = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return list(
        session.execute(
            sa.select(Member)
            .where(
                sa.or_(
                    Member.external_id.like(pattern, escape="\\"),
                    sa.func.lower(Member.email).like(pattern.lower(), escape="\\"),
                )
            )
            .order_by(Member.external_id)
            .limit(limit)
        ).scalars()
    )


def history(
    session: Session, external_id: str, limit: int, cursor: str | None
) -> Page[LedgerTransaction]:
    """The member's transactions as of now (settled first), newest first, one page at a
    time. Raises MemberNotFound, or ValidationFailed for a bad cursor."""
    member = find_member(session, external_id)
    settled_balance(session, member)
    return transactions_page(session, member.id, limit, cursor)


def holds(session: Session, member_id: int, limit: int = 50) -> list[Redemption]:
    """The member's redemption holds, newest first, whatever their state."""
    return list(
        session.execute(
            sa.select(Redemption)
            .where(Redemption.member_id == member_id)
            .order_by(Redemption.id.desc())
            .limit(limit)
        ).scalars()
    )
