"""Adjusting a member's points by hand, with a reason: an admin's use case, audited."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from loyalty.audit import services as audit
from loyalty.db import transaction, utcnow
from loyalty.errors import ValidationFailed
from loyalty.ledger.exceptions import MemberInactive
from loyalty.ledger.models import Account, LedgerTransaction, TransactionKind
from loyalty.ledger.postings import credit, lock_balance
from loyalty.ledger.queries import Movement, movement
from loyalty.ledger.spending import debit
from loyalty.members.lookup import find_member
from loyalty.members.models import Member, MemberStatus
from loyalty.program import config
from loyalty.settlement.services import settle_member
from loyalty.webhooks import outbox


def adjust(
    session: Session,
    external_id: str,
    points: int,
    reason: str,
    actor: str | None,
    now: dt.datetime | None = None,
) -> Movement:
    """Add (points > 0) or remove (points < 0) points by hand, with a reason.

    Added points are available at once and expire under the program's policy. Returns the
    transaction. Raises MemberNotFound, MemberInactive for a closed member, and
    InsufficientPoints when removing more than is available.
    """
    now = now or utcnow()
    if points == 0:
        raise ValidationFailed({"points": ["Must not be zero."]})
    with transaction(session):
        txn = adjust_member(session, find_member(session, external_id), points, reason, actor, now)
    return movement(txn)


def adjust_member(
    session: Session,
    member: Member,
    points: int,
    reason: str,
    actor: str | None,
    now: dt.datetime,
    *,
    about: Mapping[str, Any] | None = None,
) -> LedgerTransaction:
    """``adjust`` for a member already read, in the caller's transaction: the one place an
    admin's grant or removal of points is written, audited and announced (`about` adds to
    the audit entry, e.g. the bulk grant that made it). Returns the transaction. Raises
    MemberInactive for a closed member (nothing written) and InsufficientPoints.
    """
    external_id = member.external_id
    settings = config.current(session).settings
    balance = lock_balance(session, member.id)
    # Read under the lock: a status change that just committed is seen.
    session.refresh(member)
    if member.status == MemberStatus.CLOSED:
        raise MemberInactive(f"Member {external_id!r} is closed.")
    settle_member(session, balance, now)
    fields: dict[str, Any] = {"reason": reason, "actor": actor, "reference": "adjustment"}
    if points > 0:
        txn, _ = credit(
            session,
            balance,
            settings,
            points,
            kind=TransactionKind.ADJUST,
            source=Account.ADJUSTED,
            now=now,
            pending=False,
            **fields,
        )
    else:
        txn, _ = debit(
            session,
            balance,
            settings,
            -points,
            kind=TransactionKind.ADJUST,
            destination=Account.ADJUSTED,
            now=now,
            **fields,
        )
    session.flush()
    audit.record(
        session,
        actor,
        "points.adjust",
        "member",
        external_id,
        None,
        {
            "points": points,
            "reason": reason,
            "transaction": str(txn.public_id),
            **(about or {}),
        },
    )
    outbox.emit(
        session,
        "points.adjusted",
        {"member_id": external_id, "points": points, "reason": reason},
        now,
    )
    return txn
