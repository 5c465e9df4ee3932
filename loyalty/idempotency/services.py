"""The life of an idempotency key: claim it with the work, store the answer with the work.

A claim is an insert in the request's own transaction, and the response is stored in that
same transaction before it commits: work, claim and answer are kept together or not at all.
A concurrent duplicate's insert waits on the unique index until the first request ends
(PostgreSQL; SQLite serializes writers anyway), then replays its answer, or, if the first
request failed or its worker died, does the work itself: a crash never leaves a claim
behind, so a retry never has to wait for one to run out.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.db import insert_ignoring_conflicts
from loyalty.errors import BusinessRuleViolation
from loyalty.idempotency.models import IdempotencyRecord


class IdempotencyKeyReused(BusinessRuleViolation):
    code = "idempotency_key_reused"
    title = "Idempotency key reused with a different request"


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


def _insert(session: Session, **values: Any) -> int | None:
    """Insert a record unless (api key, key) exists; its id, or None when it does."""
    inserted: int | None = session.execute(
        insert_ignoring_conflicts(session, IdempotencyRecord, ["api_key_id", "key"])
        .values(**values)
        .returning(IdempotencyRecord.id)
    ).scalar()
    return inserted


def claim(
    session: Session, api_key_id: int, key: str, fingerprint: str
) -> tuple[int, StoredResponse | None]:
    """Claim `key` for a request, in the caller's transaction. Returns (record id, stored
    response or None).

    A stored response means this is a retry of a finished request: replay it. None means the
    caller owns the key until its transaction ends, and must ``complete`` it before
    committing. Raises IdempotencyKeyReused for a different request under the same key.
    """
    record_id = _insert(session, api_key_id=api_key_id, key=key, request_hash=fingerprint)
    if record_id is not None:
        return record_id, None
    existing = session.execute(
        sa.select(IdempotencyRecord)
        .where(IdempotencyRecord.api_key_id == api_key_id, IdempotencyRecord.key == key)
        # A record without an answer comes from an earlier version, which committed claims
        # on their own; the lock makes one retry take it over.
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one()
    if existing.request_hash != fingerprint:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was used for a different request; use a new key."
        )
    if existing.response_status is not None and existing.response_body is not None:
        return existing.id, StoredResponse(existing.response_status, existing.response_body)
    return existing.id, None


def complete(session: Session, record_id: int, status: int, body: str) -> None:
    """Store the response for `record_id` in the caller's current transaction."""
    session.execute(
        sa.update(IdempotencyRecord)
        .where(IdempotencyRecord.id == record_id)
        .values(response_status=status, response_body=body)
    )


def store_refusal(
    session: Session, api_key_id: int, key: str, fingerprint: str, status: int, body: str
) -> None:
    """Keep a refusal (4xx) after its work was rolled back, in a new transaction of the
    caller's, so a retry gets the same answer. A duplicate that claimed the key meanwhile
    keeps its own answer."""
    _insert(
        session,
        api_key_id=api_key_id,
        key=key,
        request_hash=fingerprint,
        response_status=status,
        response_body=body,
    )
