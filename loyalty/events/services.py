"""Events earn points through `event` rules: signup (on enrolment), referral (when a
referral is rewarded: see loyalty.referrals), review, birthday, or any custom type."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from loyalty.db import transaction, utcnow
from loyalty.errors import Conflict, ValidationFailed
from loyalty.events.models import MemberEvent
from loyalty.experiments.models import ExposureSource
from loyalty.idempotency.services import body_fingerprint
from loyalty.ledger.exceptions import MemberInactive
from loyalty.ledger.models import MemberBalance
from loyalty.ledger.postings import lock_balance
from loyalty.members.lookup import external_id_of, find_member
from loyalty.members.models import Member
from loyalty.program import config
from loyalty.rules import earning as rules
from loyalty.rules import policy
from loyalty.settlement.services import settle_member
from loyalty.tiers import services as tiers

CLOCK_SKEW = dt.timedelta(minutes=5)
# Recorded by loyalty itself (enrolment, a referral's reward), never by callers,
# so their points cannot be claimed twice.
SYSTEM_EVENT_TYPES = frozenset({"signup", "referral"})


class EventConflict(Conflict):
    code = "event_conflict"
    title = "event_id reused with a different event"


def _find(session: Session, event_id: str) -> MemberEvent | None:
    return session.execute(
        sa.select(MemberEvent)
        .where(MemberEvent.event_id == event_id)
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()


def _grant(
    session: Session,
    member: Member,
    balance: MemberBalance,
    event_id: str,
    event_type: str,
    occurred_at: dt.datetime,
    attributes: dict[str, Any],
    request_hash: str,
    now: dt.datetime,
) -> MemberEvent:
    """Record the event and credit what the event rules (and, on a birthday, the tier's
    birthday gift) give for it (available at once, caps and budgets respected); the caller
    holds the member's lock."""
    tier = tiers.member_tier_code(session, member)
    facts = rules.member_facts(member, tier)
    active = rules.experiment_rules(
        session, rules.active_rules(session, ("event",)), facts, now, ExposureSource.EVENT
    )
    candidates = [rule.policy for rule in active] + rules.tier_gift(
        session, member, facts, event_type, now
    )
    context = policy.MemberContext(
        tier=tier,
        segments=rules.member_segments(session, member, [rule.policy for rule in active]),
        remaining_caps=rules.remaining_caps(session, member.id, active, now),
    )
    points, breakdown, reserved = rules.within_budgets(
        session,
        active,
        context,
        lambda ctx: policy.event_points(candidates, event_type, ctx, occurred_at),
        now,
        reserve=True,
    )
    event = MemberEvent(
        event_id=event_id,
        member_id=member.id,
        type=event_type,
        occurred_at=occurred_at,
        attributes=attributes,
        points_earned=points,
        request_hash=request_hash,
        breakdown=[c.as_dict() for c in breakdown],
        created_at=now,
    )
    session.add(event)
    if points:
        rules.award(
            session,
            member,
            balance,
            config.current(session).settings,
            (points, breakdown),
            active,
            source=f"event:{event_id}",
            earned_at=now,
            now=now,
            pending=False,
            details={"event_type": event_type},
            payload={"event_id": event_id, "event_type": event_type},
            reserved=reserved,
        )
        tiers.review_member(session, member, now)
    session.flush()
    return event


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """A member's event as recorded, with the points it earned."""

    event_id: str
    external_id: str  # the member's
    type: str
    occurred_at: dt.datetime
    points_earned: int
    breakdown: tuple[dict[str, Any], ...]


def _recorded(session: Session, event: MemberEvent) -> RecordedEvent:
    return RecordedEvent(
        event_id=event.event_id,
        external_id=external_id_of(session, event.member_id),
        type=event.type,
        occurred_at=event.occurred_at,
        points_earned=event.points_earned,
        breakdown=tuple(event.breakdown),
    )


@dataclass(frozen=True, slots=True)
class RecordEvent:
    event_id: str  # the shop's
    external_id: str  # the member's
    type: str
    occurred_at: dt.datetime | None = None  # default: now
    attributes: dict[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """The event as the API received it, hashed: tells a retry from a different event
        reusing the event_id (stored with the event, so the shape never changes)."""
        return body_fingerprint(
            {
                "event_id": self.event_id,
                "member_id": self.external_id,
                "type": self.type,
                "occurred_at": self.occurred_at,
                "attributes": self.attributes,
            }
        )


def record_event(
    session: Session, command: RecordEvent, now: dt.datetime | None = None
) -> tuple[RecordedEvent, bool]:
    """Record a member's event and credit its points. Returns (event, created); exactly once
    per event_id.

    Raises EventConflict for an event_id reused with a different body, MemberNotFound,
    MemberInactive, ValidationFailed.
    """
    now = now or utcnow()
    if command.type in SYSTEM_EVENT_TYPES:
        raise ValidationFailed({"type": [f"{command.type} events are recorded by loyalty itself."]})
    request_hash = command.fingerprint()
    occurred_at = command.occurred_at or now
    if occurred_at > now + CLOCK_SKEW:
        raise ValidationFailed({"occurred_at": ["Must not be in the future."]})
    member = find_member(session, command.external_id)

    try:
        with transaction(session, savepoint=True):
            balance = lock_balance(session, member.id)
            existing = _find(session, command.event_id)
            if existing is None:
                session.refresh(member)
                if not member.is_active:
                    raise MemberInactive(f"Member {member.external_id!r} is {member.status}.")
                settle_member(session, balance, now)
                event = _grant(
                    session,
                    member,
                    balance,
                    command.event_id,
                    command.type,
                    occurred_at,
                    command.attributes,
                    request_hash,
                    now,
                )
                return _recorded(session, event), True
    except IntegrityError:
        # The same event_id was recorded concurrently: compare with it.
        existing = _find(session, command.event_id)
        if existing is None:
            raise
    if existing.request_hash != request_hash:
        raise EventConflict(f"Event {command.event_id!r} was recorded differently.")
    return _recorded(session, existing), False


def grant_signup(
    session: Session, member: Member, balance: MemberBalance, now: dt.datetime
) -> None:
    """The signup event of a newly enrolled member (points only if a signup rule exists)."""
    event_id = f"signup:{member.external_id}"
    _grant(
        session,
        member,
        balance,
        event_id,
        "signup",
        now,
        {},
        body_fingerprint({"event_id": event_id}),
        now,
    )


def grant_referral(
    session: Session, referred: Member, referrer_balance: MemberBalance, now: dt.datetime
) -> None:
    """Record the referrer's referral event (points if a `referral` event rule exists) when
    the referral of the member they referred is rewarded. The caller holds both members'
    locks."""
    referrer = session.get(Member, referrer_balance.member_id)
    if referrer is None or not referrer.is_active:
        return
    event_id = f"referral:{referred.external_id}"
    if _find(session, event_id) is not None:
        return
    settle_member(session, referrer_balance, now)
    attributes = {"referred": referred.external_id}
    _grant(
        session,
        referrer,
        referrer_balance,
        event_id,
        "referral",
        now,
        attributes,
        body_fingerprint({"event_id": event_id}),
        now,
    )
