"""The life of an idempotency key: claim it, then store the response or let it go.

A claim is committed on its own before the work starts, so a concurrent duplicate sees it
and is told the first request is in progress. The response is stored in the same
transaction as the work (see ``complete``), so a crash can never leave work done without
its stored answer: a retry after a crash either replays or redoes work that rolled back.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from loyalty.db import transaction, utcnow
from loyalty.errors import BusinessRuleViolation, Conflict
from loyalty.idempotency.models import IdempotencyRecord


class IdempotencyKeyReused(BusinessRuleViolation):
    code = "idempotency_key_reused"
    title = "Idempotency key reused with a different request"


class IdempotencyInProgress(Conflict):
    code = "idempotency_in_progress"
    title = "A request with this idempotency key is in progress"


def body_fingerprint(fields: dict[str, Any]) -> str:
    """A stable hash of a validated body, to tell a retry under a natural id (order_id,
    refund_id, event_id) from a different request reusing it."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def request_fingerprint(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(b"\n".join([method.encode(), path.encode(), body])).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    body: str


def claim(
    session: Session,
    api_key_id: int,
    key: str,
    fingerprint: str,
    lease: dt.timedelta,
    now: dt.datetime | None = None,
) -> tuple[int, StoredResponse | None]:
    """Claim `key` for a request. Returns (record id, stored response or None).

    A stored response means this is a retry of a finished request: replay it. None means the
    caller owns the key and must ``complete`` or ``release`` it. Raises IdempotencyKeyReused
    for a different request under the same key, IdempotencyInProgress while the first
    request runs (a claim older than `lease` is taken over: its request died).
    """
    now = now or utcnow()
    try:
        with transaction(session):
            record = IdempotencyRecord(
                api_key_id=api_key_id, key=key, request_hash=fingerprint, locked_at=now
            )
            session.add(record)
            session.flush()
            return record.id, None
    except IntegrityError:
        pass
    with transaction(session):
        existing = session.execute(
            sa.select(IdempotencyRecord)
            .where(IdempotencyRecord.api_key_id == api_key_id, IdempotencyRecord.key == key)
            .execution_options(populate_existing=True)
        ).scalar_one()
        if existing.request_hash != fingerprint:
            raise IdempotencyKeyReused(
                "This Idempotency-Key was used for a different request; use a new key."
            )
        if existing.response_status is not None and existing.response_body is not None:
            return existing.id, StoredResponse(existing.response_status, existing.response_body)
        taken_over = session.execute(
            sa.update(IdempotencyRecord)
            .where(
                IdempotencyRecord.id == existing.id,
                IdempotencyRecord.response_status.is_(None),
                IdempotencyRecord.locked_at < now - lease,
            )
            .values(locked_at=now)
        )
        if taken_over.rowcount != 1:  # type: ignore[attr-defined]
            raise IdempotencyInProgress(
                "The first request with this Idempotency-Key has not finished; retry later."
            )
        return existing.id, None


def complete(session: Session, record_id: int, status: int, body: str) -> None:
    """Store the response for `record_id` in the caller's current transaction."""
    session.execute(
        sa.update(IdempotencyRecord)
        .where(IdempotencyRecord.id == record_id)
        .values(response_status=status, response_body=body)
    )


def release(session: Session, record_id: int) -> None:
    """Forget the claim (the request failed on our side), so a retry runs it again."""
    with transaction(session):
        session.execute(sa.delete(IdempotencyRecord).where(IdempotencyRecord.id == record_id))
