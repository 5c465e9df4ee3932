"""Erasing a member's personal data on request, while the ledger keeps its amounts.

The member row stays (the ledger, orders and tier history point at it, and ``ledger verify``
must still balance), but nothing left identifies the person: the profile and consent are
cleared, event attributes emptied, and the shop's customer id is replaced everywhere it was
copied (event ids, the audit log, the webhook outbox) by a pseudonym. The pseudonym starts
with a keyed hash of the customer id, so asking again for the same customer finds the
erasure (the request is idempotent) without the id being stored; a random tail keeps a
re-enrolled and again erased customer from colliding with their first erasure.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.audit import services as audit
from loyalty.audit.models import AuditEntry
from loyalty.db import transaction, utcnow
from loyalty.events.models import MemberEvent
from loyalty.grants.models import BulkGrantTarget
from loyalty.idempotency.models import IdempotencyRecord
from loyalty.ledger.postings import lock_balance
from loyalty.members.exceptions import MemberNotFound
from loyalty.members.lookup import member_by_external_id
from loyalty.members.models import Member, MemberStatus
from loyalty.membership.services import close_accounts
from loyalty.webhooks import outbox
from loyalty.webhooks.models import OutboxEvent

PSEUDONYM_PREFIX = "erased:"
# What the audit log's snapshots and the outbox's payloads may hold about the person.
PERSONAL_FIELDS = frozenset({"email", "name", "birthday", "metadata_", "metadata"})


@dataclass(frozen=True, slots=True)
class Erasure:
    """An erased member: the pseudonym that now stands for them and when they were erased."""

    pseudonym: str
    erased_at: dt.datetime


def pseudonym_stem(key: str, external_id: str) -> str:
    """The part of every pseudonym of `external_id` that the key derives from it."""
    digest = hmac.new(key.encode(), external_id.encode(), hashlib.sha256).hexdigest()
    return f"{PSEUDONYM_PREFIX}{digest[:32]}:"


def erase(
    session: Session,
    external_id: str,
    key: str,
    actor: str | None,
    now: dt.datetime | None = None,
) -> Erasure:
    """Erase the personal data of the member `external_id` (their customer id or, asked
    again, the pseudonym), audited.

    The member is closed first, which forfeits their points (``close_accounts``), so they
    can never earn again. Idempotent: a member already erased is returned as they are,
    found by their pseudonym or by the customer id they had (under the same `key`). Returns
    the erasure. Raises MemberNotFound.
    """
    now = now or utcnow()
    with transaction(session):
        member = member_by_external_id(session, external_id) or _erased_as(
            session, key, external_id
        )
        if member is None:
            raise MemberNotFound(f"No member with external_id {external_id!r}.")
        balance = lock_balance(session, member.id)
        # Read under the lock: an erasure that just committed is seen, not done twice.
        session.refresh(member)
        if member.erased_at is not None:
            return Erasure(member.external_id, member.erased_at)
        original = member.external_id
        pseudonym = pseudonym_stem(key, original) + secrets.token_hex(4)
        member.external_id = pseudonym
        if member.status != MemberStatus.CLOSED:
            member.status = MemberStatus.CLOSED
            close_accounts(session, member, balance, now)
        member.email = member.name = member.birthday = None
        member.metadata_ = {}
        member.marketing_email = member.marketing_sms = False
        member.marketing_email_changed_at = member.marketing_sms_changed_at = now
        member.erased_at = now
        session.flush()
        _pseudonymise_events(session, member.id, original, pseudonym)
        _pseudonymise_audit_log(session, original, pseudonym)
        _pseudonymise_outbox(session, original, pseudonym)
        # A bulk grant's report names the members it was given: by the pseudonym from now.
        session.execute(
            sa.update(BulkGrantTarget)
            .where(BulkGrantTarget.external_id == original)
            .values(external_id=pseudonym)
        )
        _forget_replays(session, original)
        audit.record(
            session,
            actor,
            "member.erase",
            "member",
            pseudonym,
            None,
            {"erased_at": now.isoformat()},
            now,
        )
        outbox.emit(
            session, "member.erased", {"member_id": pseudonym, "erased_at": now.isoformat()}, now
        )
        return Erasure(pseudonym, now)


def _erased_as(session: Session, key: str, external_id: str) -> Member | None:
    """The member last erased who had this customer id, or None."""
    return session.execute(
        sa.select(Member)
        .where(Member.external_id.startswith(pseudonym_stem(key, external_id), autoescape=True))
        .order_by(Member.erased_at.desc(), Member.id.desc())
        .limit(1)
    ).scalar_one_or_none()


def _pseudonymise_events(session: Session, member_id: int, original: str, pseudonym: str) -> None:
    """Forget the attributes of the member's events (the shop sends free-form ones: a
    review's text, an address) and put the pseudonym in the ids the program made from the
    customer id: their signup and birthday events, and the referral their referrer earned."""
    own = session.execute(
        sa.select(MemberEvent).where(MemberEvent.member_id == member_id)
    ).scalars()
    for event in own:
        event.attributes = {}
        if event.event_id == f"signup:{original}":
            event.event_id = f"signup:{pseudonym}"
        elif event.event_id.startswith(f"birthday:{original}:"):
            year = event.event_id.rsplit(":", 1)[1]
            event.event_id = f"birthday:{pseudonym}:{year}"
    referral = session.execute(
        sa.select(MemberEvent).where(MemberEvent.event_id == f"referral:{original}")
    ).scalar_one_or_none()
    if referral is not None:
        referral.event_id = f"referral:{pseudonym}"
        referral.attributes = {**referral.attributes, "referred": pseudonym}


def _scrubbed(record: dict[str, Any] | None, original: str, pseudonym: str) -> Any:
    if record is None:
        return None
    return {
        name: pseudonym if value == original else value
        for name, value in record.items()
        if name not in PERSONAL_FIELDS
    }


def _pseudonymise_audit_log(session: Session, original: str, pseudonym: str) -> None:
    entries = session.execute(
        sa.select(AuditEntry).where(
            AuditEntry.target_type == "member", AuditEntry.target_id == original
        )
    ).scalars()
    for entry in entries:
        entry.target_id = pseudonym
        entry.before = _scrubbed(entry.before, original, pseudonym)
        entry.after = _scrubbed(entry.after, original, pseudonym)


def _pseudonymise_outbox(session: Session, original: str, pseudonym: str) -> None:
    # Events not yet sent are sent with the pseudonym; those sent stay in the log without
    # the person. A scan of the outbox: erasures are rare, a JSON index is not worth it.
    # Referral events name the referrer beside the friend.
    events = session.execute(
        sa.select(OutboxEvent).where(
            sa.or_(
                OutboxEvent.payload["member_id"].as_string() == original,
                OutboxEvent.payload["referrer_id"].as_string() == original,
            )
        )
    ).scalars()
    for event in events:
        event.payload = _scrubbed(event.payload, original, pseudonym)


def _forget_replays(session: Session, original: str) -> None:
    # A stored answer to an idempotent request may show the member's card (their email and
    # name); forgetting it means a retry of that request is done again instead of replayed.
    session.execute(
        sa.delete(IdempotencyRecord).where(
            IdempotencyRecord.response_body.contains(json.dumps(original), autoescape=True)
        )
    )
