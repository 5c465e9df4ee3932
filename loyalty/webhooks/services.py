"""Fan-out of outbox events into deliveries, and delivery with retries.

Deliveries are claimed by pushing their next attempt a lease ahead and committing before
the HTTP call, so no row lock is held while a receiver is slow, and two workers never send
the same attempt. Each request carries

    Loyalty-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>

so a receiver can check it came from us and is fresh (see the README's verifier).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty import metrics
from loyalty.db import transaction, utcnow
from loyalty.errors import NotFound
from loyalty.webhooks import outbox, targets
from loyalty.webhooks.models import (
    DeliveryStatus,
    OutboxEvent,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)

MAX_ATTEMPTS = 8
LEASE = dt.timedelta(seconds=60)


class WebhookNotFound(NotFound):
    title = "Webhook not found"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The Loyalty-Signature header (kept beside the Standard Webhooks headers)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def standard_signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header of the Standard Webhooks specification: v1 and the
    base64 HMAC-SHA256 of "<id>.<timestamp>.<body>" under the secret's key. The key is the
    base64 after `whsec_`, decoded the way the specification's libraries decode it (so an
    endpoint registered before secrets were standard base64 verifies too)."""
    key = base64.b64decode(secret.removeprefix("whsec_") + "==")
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def backoff(attempts: int) -> dt.timedelta:
    """Wait before the next try after `attempts` failures: 30 s doubling, at most 6 hours."""
    return min(dt.timedelta(seconds=30 * 2 ** (attempts - 1)), dt.timedelta(hours=6))


def active_endpoints(session: Session) -> list[WebhookEndpoint]:
    """The endpoints not deleted, oldest first."""
    return list(
        session.execute(
            sa.select(WebhookEndpoint)
            .where(WebhookEndpoint.active.is_(True))
            .order_by(WebhookEndpoint.id)
        ).scalars()
    )


def dispatch(session: Session, now: dt.datetime | None = None, batch_size: int = 5000) -> int:
    """Fan new outbox events out into one delivery per subscribed endpoint; returns how many
    events were dispatched.

    Set-based, in batches of `batch_size` events, each a transaction of two statements: an
    UPDATE that marks the oldest undispatched events dispatched and returns them (claimed
    ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two workers never take the same event) and
    one multi-row INSERT of their deliveries. A first pass of automations can emit a
    million events; loading each as an object took minutes for them."""
    now = now or utcnow()
    events = OutboxEvent.__table__
    endpoints = [(endpoint.id, endpoint.event_types) for endpoint in active_endpoints(session)]
    total = 0
    while True:
        with transaction(session):
            claimed = (
                sa.select(events.c.id)
                .where(events.c.dispatched_at.is_(None))
                .order_by(events.c.id)
                .limit(batch_size)
                .with_for_update(skip_locked=True)
            )
            rows = session.execute(
                sa.update(events)
                .where(events.c.id.in_(claimed.scalar_subquery()), events.c.dispatched_at.is_(None))
                .values(dispatched_at=now)
                .returning(events.c.id, events.c.type)
            ).all()
            deliveries = [
                {
                    "endpoint_id": endpoint_id,
                    "event_id": event_id,
                    "status": DeliveryStatus.PENDING.value,
                    "next_attempt_at": now,
                    "created_at": now,
                }
                for event_id, event_type in sorted(rows)
                for endpoint_id, event_types in endpoints
                if outbox.receives(event_types, event_type)
            ]
            if deliveries:
                session.execute(sa.insert(WebhookDelivery.__table__), deliveries)
        total += len(rows)
        if len(rows) < batch_size:
            break
    metrics.WEBHOOK_EVENTS.inc(total)
    return total


def event_body(event: OutboxEvent) -> bytes:
    return json.dumps(
        {
            "id": str(event.public_id),
            "type": event.type,
            "created_at": event.created_at.isoformat(),
            "data": event.payload,
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()


@dataclass
class DeliveryRun:
    succeeded: int = 0
    failed_attempts: int = 0


def _claim(session: Session, now: dt.datetime, batch_size: int, lease: dt.timedelta) -> list[int]:
    with transaction(session):
        due = list(
            session.execute(
                sa.select(WebhookDelivery)
                .where(
                    WebhookDelivery.status == DeliveryStatus.PENDING.value,
                    WebhookDelivery.next_attempt_at <= now,
                )
                .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
                .limit(batch_size)
                .with_for_update(skip_locked=True)
            ).scalars()
        )
        for delivery in due:
            delivery.next_attempt_at = now + lease
        return [delivery.id for delivery in due]


def _prepare(session: Session, delivery_id: int) -> tuple[str, bytes, dict[str, str]] | None:
    """What to send for a claimed delivery: (url, body, headers), read in a short transaction."""
    with transaction(session):
        delivery = session.get(WebhookDelivery, delivery_id)
        endpoint = session.get(WebhookEndpoint, delivery.endpoint_id) if delivery else None
        event = session.get(OutboxEvent, delivery.event_id) if delivery else None
        if delivery is None or endpoint is None or event is None:
            return None
        body = event_body(event)
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "loyalty-webhooks/1",
            "Loyalty-Event-Id": str(event.public_id),
            "Loyalty-Event-Type": event.type,
            "Loyalty-Delivery-Id": str(delivery.public_id),
            "Loyalty-Signature": signature(endpoint.secret, timestamp, body),
            # Standard Webhooks: the id is the event's, the same on every retry.
            "webhook-id": str(event.public_id),
            "webhook-timestamp": str(timestamp),
            "webhook-signature": standard_signature(
                endpoint.secret, str(event.public_id), timestamp, body
            ),
        }
        return endpoint.url, body, headers


def _record(
    session: Session,
    delivery_id: int,
    status_code: int | None,
    error: str | None,
    duration_ms: int,
    attempt_at: dt.datetime,
) -> bool:
    """Record one attempt and schedule what comes next; True when it succeeded."""
    succeeded = status_code is not None and 200 <= status_code < 300
    with transaction(session):
        delivery = session.get(WebhookDelivery, delivery_id)
        if delivery is None:
            return succeeded
        session.add(
            WebhookAttempt(
                delivery_id=delivery.id,
                attempted_at=attempt_at,
                status_code=status_code,
                error=error,
                duration_ms=duration_ms,
            )
        )
        delivery.attempts += 1
        if succeeded:
            delivery.status, delivery.delivered_at = DeliveryStatus.SUCCEEDED, attempt_at
            delivery.next_attempt_at = None
        elif delivery.attempts >= MAX_ATTEMPTS:
            delivery.status, delivery.next_attempt_at = DeliveryStatus.FAILED, None
        else:
            delivery.next_attempt_at = attempt_at + backoff(delivery.attempts)
    metrics.WEBHOOKS.labels("succeeded" if succeeded else "failed").inc()
    return succeeded


def deliver_due(
    session: Session,
    now: dt.datetime | None = None,
    batch_size: int = 100,
    *,
    allow_local: bool = False,
    budget_seconds: float | None = None,
    lease: dt.timedelta = LEASE,
    clock: Callable[[], float] = time.monotonic,
) -> DeliveryRun:
    """Send every delivery due by `now`, batch after batch, until none is left or
    `budget_seconds` (measured by `clock`) has run out; a worker's pass then gets back to its
    other work and the next pass resumes. Each attempt goes through ``targets.post``, which
    refuses addresses webhooks may not reach unless `allow_local`; each is recorded and a
    failure is retried later with exponential backoff, giving up after MAX_ATTEMPTS. No
    transaction stays open while a receiver answers (on SQLite that would hold the
    database's write lock). A batch's deliveries are claimed for `lease`: a worker that dies
    mid-batch leaves the rest to another worker once it has run out."""
    now = now or utcnow()
    deadline = None if budget_seconds is None else clock() + budget_seconds
    run = DeliveryRun()
    attempted: set[int] = set()
    while deadline is None or clock() < deadline:
        claimed = _claim(session, now, batch_size, lease)
        # A failed attempt is due again only after `now` unless `now` lies ahead of the real
        # time (tests): it is tried once per pass, not in a loop.
        fresh = [delivery_id for delivery_id in claimed if delivery_id not in attempted]
        for delivery_id in fresh:
            attempted.add(delivery_id)
            succeeded = _attempt(session, delivery_id, allow_local)
            if succeeded is not None:
                run.succeeded += succeeded
                run.failed_attempts += not succeeded
        if len(claimed) < batch_size or not fresh:
            break
    return run


def _attempt(session: Session, delivery_id: int, allow_local: bool) -> bool | None:
    """Send one claimed delivery and record the attempt: whether it succeeded, or None when
    the delivery, its endpoint or its event is gone."""
    prepared = _prepare(session, delivery_id)
    if prepared is None:
        return None
    url, body, headers = prepared
    started = time.perf_counter()
    status_code, error = None, None
    try:
        status_code = targets.post(url, body, headers, allow_local=allow_local)
    except OSError as failure:
        error = targets.failure(failure)
    duration_ms = int((time.perf_counter() - started) * 1000)
    return _record(session, delivery_id, status_code, error, duration_ms, utcnow())
