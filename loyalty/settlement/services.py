"""Settling a member and reacting to it: what every use case calls before it reads or moves
a member's points.

The ledger settles and reports (``ledger.settlement.Settlement``); here the program reacts:
a ``points.expired`` webhook, a tier review when the retention ran out. Later reactions
(automations) belong here too, never in the ledger.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.db import among, transaction, utcnow
from loyalty.ledger import batch_settlement
from loyalty.ledger.models import MemberBalance
from loyalty.ledger.postings import lock_balance
from loyalty.ledger.settlement import Settlement, reschedule, settle
from loyalty.members.exceptions import MemberNotFound
from loyalty.members.lookup import find_member
from loyalty.members.models import Member
from loyalty.program import config
from loyalty.tiers import services as tiers
from loyalty.webhooks import outbox


def settle_member(session: Session, balance: MemberBalance, now: dt.datetime) -> Settlement:
    """Settle the member whose balance the caller holds locked, and react to what fell due.
    Returns the settlement."""
    done = settle(session, balance, now)
    if not done.changed:
        return done
    member = session.get(Member, balance.member_id)
    if member is None:
        raise RuntimeError(f"balance {balance.member_id} has no member")
    if done.expired:
        payload = {"member_id": member.external_id, "points": done.expired}
        outbox.emit(session, "points.expired", payload, now)
    if done.tier_review_due:
        tiers.review_member(session, member, now)
        reschedule(session, balance, now)
    return done


def settle_due_batch(
    session: Session, now: dt.datetime, size: int
) -> list[batch_settlement.Settled]:
    """Claim up to `size` members due by `now` that no other worker holds, settle them
    together (``ledger.batch_settlement``) and react as ``settle_member`` does: a
    ``points.expired`` webhook per member whose points expired, a tier review (member by
    member: few are due at once) where the retention ran out. Returns what was done per
    member; an empty list when nobody is due."""
    done = batch_settlement.settle_many(
        session, batch_settlement.claim_due(session, now, size), now
    )
    expired = {settled.member_id: settled.expired for settled in done if settled.expired}
    if expired:
        externals = session.execute(
            sa.select(Member.id, Member.external_id).where(among(session, Member.id, list(expired)))
        ).all()
        payloads = [{"member_id": external, "points": expired[id_]} for id_, external in externals]
        outbox.emit_many(session, "points.expired", payloads, now)
    for settled in done:
        if settled.tier_review_due:
            member = session.get(Member, settled.member_id)
            balance = session.get(MemberBalance, settled.member_id)
            if member is None or balance is None:
                raise RuntimeError(f"balance {settled.member_id} has no member")
            tiers.review_member(session, member, now)
            reschedule(session, balance, now)
    return done


def settled_balance(
    session: Session, member: Member, now: dt.datetime | None = None
) -> MemberBalance:
    """The member's balance as of `now`: if a lot matured or expired since the last write,
    settle it first (under the member's lock), so no read depends on a batch job."""
    now = now or utcnow()
    balance = session.get(MemberBalance, member.id)
    if balance is None:
        raise RuntimeError(f"member {member.id} has no balance row")
    if balance.next_due_at is not None and balance.next_due_at <= now:
        with transaction(session):
            balance = lock_balance(session, member.id)
            settle_member(session, balance, now)
    return balance


def _labelled(model: Any, prefix: str) -> list[tuple[str, sa.Label[Any]]]:
    return [
        (attr.key, attr.columns[0].label(prefix + attr.key))
        for attr in sa.inspect(model).column_attrs
    ]


# Card and quote, the most frequent reads, need the member, their balance and the program:
# one prebuilt Core query instead of three ORM loads.
_MEMBER_FIELDS = _labelled(Member, "m_")
_BALANCE_FIELDS = _labelled(MemberBalance, "b_")
_SNAPSHOT = (
    sa.select(*(label for _, label in _MEMBER_FIELDS + _BALANCE_FIELDS), config.version_column())
    .join_from(Member, MemberBalance, MemberBalance.member_id == Member.id)
    .where(Member.external_id == sa.bindparam("external_id"))
)


def settled_snapshot(
    session: Session, external_id: str, now: dt.datetime
) -> tuple[Member, MemberBalance, config.ProgramConfig]:
    """Read-only copies (not in the session) of the member and their balance as of `now`,
    with the program's configuration, for reads. Settles first (under the lock) when
    something fell due. Raises MemberNotFound."""
    row = session.connection().execute(_SNAPSHOT, {"external_id": external_id}).one_or_none()
    if row is None:
        raise MemberNotFound(f"No member with external_id {external_id!r}.")
    member = Member(**{key: getattr(row, label.name) for key, label in _MEMBER_FIELDS})
    balance = MemberBalance(**{key: getattr(row, label.name) for key, label in _BALANCE_FIELDS})
    program = config.current(session, row.config_version)
    if balance.next_due_at is not None and balance.next_due_at <= now:
        member = find_member(session, external_id)
        balance = settled_balance(session, member, now)
    return member, balance, program
