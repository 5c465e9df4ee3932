"""Finding members: by the shop's external id, and the external id of a member row."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.db import transaction_cache
from loyalty.members.exceptions import MemberNotFound
from loyalty.members.models import Member

_MEMBER_BY_EXTERNAL_ID = sa.select(Member).where(Member.external_id == sa.bindparam("external_id"))
_EXTERNAL_ID = sa.select(Member.external_id).where(Member.id == sa.bindparam("member_id"))


def member_by_external_id(session: Session, external_id: str) -> Member | None:
    """The member with this external id, or None."""
    member = session.execute(
        _MEMBER_BY_EXTERNAL_ID, {"external_id": external_id}
    ).scalar_one_or_none()
    if member is not None:
        _known_ids(session)[member.id] = member.external_id
    return member


def find_member(session: Session, external_id: str) -> Member:
    """Return the member with this external id. Raises MemberNotFound."""
    member = member_by_external_id(session, external_id)
    if member is None:
        raise MemberNotFound(f"No member with external_id {external_id!r}.")
    return member


def _known_ids(session: Session) -> dict[int, str]:
    """External ids of members this transaction has read."""
    known: dict[int, str] = transaction_cache(session).setdefault("external_ids", {})
    return known


def external_id_of(session: Session, member_id: int) -> str:
    """The external id of the member with this row id ("" if there is none), for answers
    and webhook payloads that name the member: remembered for the transaction, else a
    prebuilt Core query."""
    known = _known_ids(session)
    if member_id not in known:
        found = session.connection().execute(_EXTERNAL_ID, {"member_id": member_id}).scalar()
        if found is None:
            return ""
        known[member_id] = found
    return known[member_id]


def with_merged(member_id: int) -> sa.Select[int]:
    """The ids of the member and of the duplicates merged into them: whose transactions
    make up the member's history and qualifying points."""
    return sa.select(Member.id).where(
        sa.or_(Member.id == member_id, Member.merged_into_id == member_id)
    )
