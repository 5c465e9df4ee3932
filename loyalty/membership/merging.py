"""Merging a duplicate member into another: an admin's use case, audited."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.audit import services as audit
from loyalty.db import transaction, utcnow
from loyalty.events.models import MemberEvent
from loyalty.ledger.merging import move_points
from loyalty.ledger.postings import lock_balance
from loyalty.members.exceptions import MemberClosed, MergeIntoItself
from loyalty.members.lookup import find_member
from loyalty.members.models import Member, MemberStatus
from loyalty.membership.services import MemberCard, card
from loyalty.orders.models import Order, QuotedCart
from loyalty.settlement.services import settle_member
from loyalty.tiers import services as tiers
from loyalty.tiers.models import TierChange
from loyalty.webhooks import outbox


def merge(
    session: Session,
    external_id: str,
    into: str,
    actor: str | None,
    now: dt.datetime | None = None,
) -> MemberCard:
    """Merge the member `external_id` (a duplicate) into the member `into`, in one
    transaction: every point (available, pending, held) with its lots and holds, the
    duplicate's orders, quoted carts and events, their history (the survivor's lists the
    duplicate's transactions) and their tier (the survivor keeps the higher, and their
    qualifying points count together). The duplicate is closed and points to the survivor.

    Both members are locked in the order of their row ids, so two merges of the same pair,
    either way round, never deadlock. Idempotent: a duplicate already merged into `into`
    returns the survivor's card again. Returns the survivor's card. Raises MemberNotFound,
    MergeIntoItself, or MemberClosed when either member is closed (the duplicate other than
    by this merge).
    """
    now = now or utcnow()
    with transaction(session):
        duplicate = find_member(session, external_id)
        survivor = find_member(session, into)
        if duplicate.id == survivor.id:
            raise MergeIntoItself(f"Member {external_id!r} cannot be merged into itself.")
        first, second = sorted((duplicate.id, survivor.id))
        balances = {first: lock_balance(session, first), second: lock_balance(session, second)}
        # Read under the locks: a merge or a closing that just committed is seen.
        session.refresh(duplicate)
        session.refresh(survivor)
        if duplicate.merged_into_id == survivor.id:
            return card(session, into, now)
        for member in (duplicate, survivor):
            if member.status == MemberStatus.CLOSED:
                raise MemberClosed(f"Member {member.external_id!r} is closed.")
        for member in (duplicate, survivor):
            settle_member(session, balances[member.id], now)
        moved = move_points(
            session, balances[duplicate.id], balances[survivor.id], now, f"merge:{external_id}"
        )
        for model in (Order, QuotedCart, MemberEvent):
            session.execute(
                sa.update(model)
                .where(model.member_id == duplicate.id)
                .values(member_id=survivor.id)
                .execution_options(synchronize_session="fetch")
            )
        # Members merged into the duplicate earlier follow it: one level to read.
        session.execute(
            sa.update(Member)
            .where(Member.merged_into_id == duplicate.id)
            .values(merged_into_id=survivor.id)
            .execution_options(synchronize_session="fetch")
        )
        duplicate.status = MemberStatus.CLOSED
        duplicate.merged_into_id = survivor.id
        _keep_higher_tier(session, duplicate, survivor, now)
        session.flush()
        tiers.review_member(session, survivor, now)
        # The card reads with Core, which does not flush.
        session.flush()
        audit.record(
            session,
            actor,
            "member.merge",
            "member",
            external_id,
            None,
            {
                "into": into,
                "available": moved.available,
                "pending": moved.pending,
                "held": moved.held,
            },
            now,
        )
        outbox.emit(
            session,
            "member.merged",
            {
                "member_id": external_id,
                "into": into,
                "available": moved.available,
                "pending": moved.pending,
                "held": moved.held,
            },
            now,
        )
        return card(session, into, now)


def _keep_higher_tier(
    session: Session, duplicate: Member, survivor: Member, now: dt.datetime
) -> None:
    # A tier the duplicate reached stays reached: its retention runs as it would have.
    defined = tiers.program_tiers(session)
    theirs, ours = defined.of(duplicate.tier_id), defined.of(survivor.tier_id)
    if theirs is None or (ours is not None and ours.rank >= theirs.rank):
        return
    survivor.tier_id = theirs.id
    survivor.tier_retained_until = max(
        (when for when in (duplicate.tier_retained_until, survivor.tier_retained_until) if when),
        default=None,
    )
    change = TierChange(
        member_id=survivor.id,
        from_tier=ours.code if ours else None,
        to_tier=theirs.code,
        reason="merged",
        qualifying_points=tiers.qualifying_points(session, survivor.id, now),
        changed_at=now,
    )
    session.add(change)
    outbox.emit(
        session,
        "tier.changed",
        {
            "member_id": survivor.external_id,
            "from": change.from_tier,
            "to": change.to_tier,
            "reason": change.reason,
            "qualifying_points": change.qualifying_points,
        },
        now,
    )
