"""Enrolment, the member card, history and holds, status and profile changes."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from loyalty.audit import services as audit
from loyalty.changes import UNCHANGED, Maybe, given
from loyalty.db import transaction, utcnow
from loyalty.events import services as events
from loyalty.ledger.closing import Forfeiture, forfeit_all
from loyalty.ledger.models import MemberBalance
from loyalty.ledger.postings import lock_balance
from loyalty.ledger.queries import (
    ExpiringPoints,
    LotView,
    Movement,
    expiring_lots,
    live_lots_page,
    transactions_page,
)
from loyalty.members.exceptions import MemberClosed
from loyalty.members.lookup import find_member, member_by_external_id
from loyalty.members.models import CONSENT_CHANNELS, Member, MemberStatus
from loyalty.pagination import Page
from loyalty.program import config
from loyalty.referrals import services as referrals
from loyalty.settlement.services import settle_member, settled_balance, settled_snapshot
from loyalty.tiers import services as tiers
from loyalty.webhooks import outbox

EXPIRING_SOON = dt.timedelta(days=30)


@dataclass(frozen=True, slots=True)
class EnrollMember:
    external_id: str
    email: str | None = None
    name: str | None = None
    birthday: dt.date | None = None
    referral_code: str | None = None  # the referrer's code
    referred_by: str | None = None  # the referrer's external id (deprecated: use the code)
    metadata: dict[str, Any] = field(default_factory=dict)
    # Marketing consent the shop collected at signup (None: not asked).
    marketing_email: bool | None = None
    marketing_sms: bool | None = None


@dataclass(frozen=True, slots=True)
class MemberChanges:
    status: Maybe[MemberStatus] = UNCHANGED
    email: Maybe[str | None] = UNCHANGED
    name: Maybe[str | None] = UNCHANGED
    birthday: Maybe[dt.date | None] = UNCHANGED
    metadata: Maybe[dict[str, Any]] = UNCHANGED
    marketing_email: Maybe[bool] = UNCHANGED
    marketing_sms: Maybe[bool] = UNCHANGED


@dataclass(frozen=True, slots=True)
class Consent:
    """Consent on one marketing channel, and when it was last given or withdrawn (None:
    never asked)."""

    granted: bool
    changed_at: dt.datetime | None


def consent_of(member: Member) -> dict[str, Consent]:
    """The member's consent, channel by channel."""
    return {
        channel: Consent(getattr(member, channel), getattr(member, f"{channel}_changed_at"))
        for channel in CONSENT_CHANNELS
    }


def consent_flags(member: Member) -> dict[str, bool]:
    """The member's consent as webhook payloads carry it: whether the shop may send them
    marketing on each channel."""
    return {channel: bool(getattr(member, channel)) for channel in CONSENT_CHANNELS}


def _record_consent(member: Member, channel: str, granted: bool, now: dt.datetime) -> None:
    # Stating the same answer again keeps the time it was given: that is when it changed.
    if getattr(member, channel) != granted or getattr(member, f"{channel}_changed_at") is None:
        setattr(member, channel, granted)
        setattr(member, f"{channel}_changed_at", now)


@dataclass(frozen=True, slots=True)
class MemberCard:
    """The member as the app and checkout show them."""

    external_id: str
    status: MemberStatus
    email: str | None
    name: str | None
    birthday: dt.date | None
    metadata: dict[str, Any]
    enrolled_at: dt.datetime
    referral_code: str
    consent: dict[str, Consent]
    available: int
    pending: int
    held: int
    expiring_soon: tuple[ExpiringPoints, ...]
    progress: tiers.Progress


def enroll(
    session: Session, command: EnrollMember, now: dt.datetime | None = None
) -> tuple[MemberCard, bool]:
    """Enroll a member, or find the one already enrolled under the same external id.

    Returns (their card, created). The balance row is created with the member, so there is
    always a row to lock before the first points move; a signup event rule, if any, credits
    its points in the same transaction, and a friend who names a referrer (by
    `referral_code`, or by `referred_by`) is linked to them. Raises ReferralCodeNotFound or
    ReferrerNotFound when they name nobody, SelfReferral when the referrer is the friend
    themselves.
    """
    now = now or utcnow()
    if member_by_external_id(session, command.external_id) is not None:
        return card(session, command.external_id, now), False
    referrer = referrals.find_referrer(
        session,
        external_id=command.external_id,
        email=command.email,
        referral_code=command.referral_code,
        referred_by=command.referred_by,
    )
    try:
        with transaction(session, savepoint=True):
            member = Member(
                external_id=command.external_id,
                email=command.email,
                name=command.name,
                birthday=command.birthday,
                referred_by_id=referrer.member.id if referrer else None,
                metadata_=command.metadata,
                enrolled_at=now,
            )
            for channel in CONSENT_CHANNELS:
                granted = getattr(command, channel)
                if granted is not None:
                    _record_consent(member, channel, granted, now)
            session.add(member)
            session.flush()
            balance = MemberBalance(member_id=member.id)
            session.add(balance)
            session.flush()
            outbox.emit(
                session,
                "member.enrolled",
                {
                    "member_id": member.external_id,
                    "email": member.email,
                    "name": member.name,
                    "consent": consent_flags(member),
                },
                now,
            )
            events.grant_signup(session, member, balance, now)
            if referrer is not None:
                referrals.link(session, referrer, member, now)
            # A tier with no threshold (an entry tier) applies from enrolment.
            tiers.review_member(session, member, now)
            session.flush()
            enrolled = _card_of(session, member, balance, now, config.current(session))
    except IntegrityError:
        # Two enrolments of one customer raced and the other committed first: theirs stands.
        if member_by_external_id(session, command.external_id) is None:
            raise
        return card(session, command.external_id, now), False
    return enrolled, True


def card(session: Session, external_id: str, now: dt.datetime | None = None) -> MemberCard:
    """The member as the app and checkout show them, right as of `now`. Raises
    MemberNotFound."""
    now = now or utcnow()
    member, balance, program = settled_snapshot(session, external_id, now)
    return _card_of(session, member, balance, now, program)


def _card_of(
    session: Session,
    member: Member,
    balance: MemberBalance,
    now: dt.datetime,
    program: config.ProgramConfig,
) -> MemberCard:
    due = balance.next_due_at
    # next_due_at is never later than the soonest expiry: with none in the window, no lot
    # needs reading (a member with a long history costs the same as a new one).
    soon = (
        expiring_lots(session, member.id, now, EXPIRING_SOON)
        if due is not None and due <= now + EXPIRING_SOON
        else []
    )
    return MemberCard(
        external_id=member.external_id,
        status=MemberStatus(member.status),
        email=member.email,
        name=member.name,
        birthday=member.birthday,
        metadata=dict(member.metadata_ or {}),
        enrolled_at=member.enrolled_at,
        referral_code=member.referral_code,
        consent=consent_of(member),
        available=balance.available,
        pending=balance.pending,
        held=balance.held,
        expiring_soon=tuple(soon),
        progress=tiers.progress(session, member, now, program),
    )


ALLOWED_TRANSITIONS = {
    MemberStatus.ACTIVE: {MemberStatus.SUSPENDED, MemberStatus.CLOSED},
    MemberStatus.SUSPENDED: {MemberStatus.ACTIVE, MemberStatus.CLOSED},
    MemberStatus.CLOSED: set(),
}


def update_member(
    session: Session,
    external_id: str,
    changes: MemberChanges,
    actor: str | None = None,
    now: dt.datetime | None = None,
) -> MemberCard:
    """Change a member's status or profile fields and return their card.

    Closing forfeits every point (``close_accounts``). A closed membership is final. Raises
    MemberNotFound, or MemberClosed for any change to a closed member.
    """
    now = now or utcnow()
    with transaction(session):
        member = find_member(session, external_id)
        balance = lock_balance(session, member.id)
        session.refresh(member)
        before = audit.snapshot(member)
        current = MemberStatus(member.status)
        if current == MemberStatus.CLOSED:
            raise MemberClosed(f"Member {external_id!r} is closed; a closed membership is final.")
        profile = given(changes)
        status = profile.pop("status", current)
        if status != current:
            if status not in ALLOWED_TRANSITIONS[current]:
                raise MemberClosed(f"Cannot change status from {current} to {status}.")
            member.status = status.value
            if status == MemberStatus.CLOSED:
                close_accounts(session, member, balance, now)
        if "metadata" in profile:
            member.metadata_ = profile.pop("metadata")
        for channel in CONSENT_CHANNELS:
            if channel in profile:
                _record_consent(member, channel, profile.pop(channel), now)
        for name, value in profile.items():
            setattr(member, name, value)
        session.flush()
        audit.record(
            session, actor, "member.update", "member", external_id, before, audit.snapshot(member)
        )
        outbox.emit(
            session,
            "member.updated",
            {
                "member_id": external_id,
                "status": member.status,
                "consent": consent_flags(member),
            },
            now,
        )
        return card(session, external_id, now)


def close_accounts(
    session: Session, member: Member, balance: MemberBalance, now: dt.datetime
) -> Forfeiture:
    """Settle the member (locked by the caller) as of `now`, then release their holds and
    forfeit their points, announcing a forfeit with ``points.forfeited``. Returns what was
    forfeited."""
    settle_member(session, balance, now)
    done = forfeit_all(session, balance, now)
    if done.transaction is not None:
        outbox.emit(
            session,
            "points.forfeited",
            {
                "member_id": member.external_id,
                "available": done.available,
                "pending": done.pending,
                "released_holds": [str(hold.public_id) for hold in done.released_holds],
            },
            now,
        )
    return done


def history(session: Session, external_id: str, limit: int, cursor: str | None) -> Page[Movement]:
    """The member's transactions as of now (settled first), newest first, one page at a
    time. Raises MemberNotFound, or ValidationFailed for a bad cursor."""
    member = find_member(session, external_id)
    settled_balance(session, member)
    return transactions_page(session, member.id, limit, cursor)


def lots(session: Session, external_id: str, limit: int, cursor: str | None) -> Page[LotView]:
    """The member's live lots as of now (settled first: due points matured, expired points
    gone), soonest-expiring first, one page at a time. Raises MemberNotFound, or
    ValidationFailed for a bad cursor."""
    member = find_member(session, external_id)
    settled_balance(session, member)
    return live_lots_page(session, member.id, limit, cursor)
