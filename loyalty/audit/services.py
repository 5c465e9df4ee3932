"""Recording admin writes, in the same transaction as the write itself (so a change that
rolls back leaves no entry and no committed change lacks one), and reading them back."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.audit.models import AuditEntry
from loyalty.db import utcnow


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One entry of the audit log: who did what to which target, before and after."""

    actor: str
    action: str
    target_type: str
    target_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    created_at: dt.datetime


# Never copied into the log.
SECRET_COLUMNS = frozenset({"key_hash"})
INTERNAL_COLUMNS = frozenset({"id", "created_at", "updated_at"})


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID | decimal.Decimal):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    return value


def snapshot(obj: Any) -> dict[str, Any]:
    """A model's columns as JSON-safe values, without secrets or bookkeeping."""
    columns = sa.inspect(obj).mapper.column_attrs
    return {
        column.key: _plain(getattr(obj, column.key))
        for column in columns
        if column.key not in SECRET_COLUMNS | INTERNAL_COLUMNS
    }


def record(
    session: Session,
    actor: str | None,
    action: str,
    target_type: str,
    target_id: Any,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    now: dt.datetime | None = None,
) -> None:
    """Append an entry in the caller's transaction."""
    session.add(
        AuditEntry(
            actor=actor or "system",
            action=action,
            target_type=target_type,
            target_id=str(target_id),
            before=before,
            after=after,
            created_at=now or utcnow(),
        )
    )


def entries(
    session: Session,
    *,
    target_type: str | None,
    target_id: str | None,
    since: dt.datetime | None,
    until: dt.datetime | None,
    limit: int,
    before_position: int | None,
) -> tuple[list[AuditRecord], int | None]:
    """Entries newest first, filtered; returns (page, position of the next page or None)."""
    stmt = sa.select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit + 1)
    if target_type:
        stmt = stmt.where(AuditEntry.target_type == target_type)
    if target_id:
        stmt = stmt.where(AuditEntry.target_id == target_id)
    if since:
        stmt = stmt.where(AuditEntry.created_at >= since)
    if until:
        stmt = stmt.where(AuditEntry.created_at < until)
    if before_position is not None:
        stmt = stmt.where(AuditEntry.id < before_position)
    found = list(session.execute(stmt).scalars())
    next_position = found[limit - 1].id if len(found) > limit else None
    return [_record(entry) for entry in found[:limit]], next_position


def _record(entry: AuditEntry) -> AuditRecord:
    return AuditRecord(
        actor=entry.actor,
        action=entry.action,
        target_type=entry.target_type,
        target_id=entry.target_id,
        before=entry.before,
        after=entry.after,
        created_at=entry.created_at,
    )
