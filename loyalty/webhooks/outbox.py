"""Writing events to the outbox, inside the caller's transaction: an event exists exactly
when the change it reports was committed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from itertools import islice
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from loyalty import metrics
from loyalty.db import utcnow
from loyalty.webhooks.models import DeliveryStatus, OutboxEvent, WebhookDelivery, WebhookEndpoint

EVENT_TYPES = (
    "member.enrolled",
    "member.updated",
    "member.erased",
    "member.merged",
    "member.segment_changed",
    "points.earned",
    "points.adjusted",
    "points.expiring",
    "points.expired",
    "points.reversed",
    "points.forfeited",
    "tier.changed",
    "redemption.captured",
    "reward.redeemed",
    "reward.code_used",
    "reward.redemption_cancelled",
    "referral.linked",
    "referral.rewarded",
    "referral.cancelled",
    "rule.budget_exhausted",
    "automation.fired",
    "automation.budget_exhausted",
    "experiment.started",
    "experiment.ended",
    "experiment.flagged",
)


_INSERT = OutboxEvent.__table__.insert()


def emit(
    session: Session, event_type: str, payload: dict[str, Any], now: dt.datetime | None = None
) -> None:
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type}")
    # Core, not the unit of work: every checkout write emits one, and nothing reads it back.
    session.connection().execute(
        _INSERT, {"type": event_type, "payload": payload, "created_at": now or utcnow()}
    )


# Rows per multi-row INSERT when many events are written at once.
BATCH = 5_000


def emit_many(
    session: Session,
    event_type: str,
    payloads: Iterable[dict[str, Any]],
    now: dt.datetime | None = None,
) -> int:
    """Emit one event of `event_type` per payload, in multi-row INSERTs of BATCH rows (a
    refresh can announce a million segment changes: one statement each would take minutes).
    Returns how many were written."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type}")
    created_at = now or utcnow()
    rows = iter(payloads)
    written = 0
    while batch := list(islice(rows, BATCH)):
        session.connection().execute(
            _INSERT,
            [{"type": event_type, "payload": p, "created_at": created_at} for p in batch],
        )
        written += len(batch)
    return written


def emit_selected(
    session: Session,
    event_type: str,
    rows: sa.Select[*tuple[Any, ...]],
    now: dt.datetime | None = None,
) -> int:
    """Emit one event of `event_type` per row of `rows`, its payload the row's labelled
    columns. On PostgreSQL one INSERT ... SELECT builds the payloads (json_build_object) and
    the ids (gen_random_uuid) in the database, and the same statement fans them out: each
    event is born dispatched, with its delivery to every endpoint subscribed to the type (as
    ``services.dispatch`` would write them). A refresh announcing a million changes, or an
    automation's first pass, sends no row through Python, and leaves the worker no million
    events to dispatch. Elsewhere the rows are read and written in batches (emit_many) and
    dispatched later. Returns how many were written."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type}")
    created_at = now or utcnow()
    if session.get_bind().dialect.name != "postgresql":
        return emit_many(session, event_type, (dict(r._mapping) for r in session.execute(rows)))
    selected = rows.subquery("payload_rows")
    payload = sa.func.json_build_object(
        *(
            part
            for column in selected.c
            for part in (sa.cast(sa.literal(column.name), sa.Text), column)
        )
    )
    table = OutboxEvent.__table__
    at = sa.literal(created_at, table.c.created_at.type)
    inserted = (
        table.insert()
        .from_select(
            ["public_id", "type", "payload", "created_at", "dispatched_at"],
            sa.select(sa.func.gen_random_uuid(), sa.literal(event_type), payload, at, at),
        )
        .returning(table.c.id)
        .cte("inserted")
    )
    # Counted in the database (psycopg reports no row count for an INSERT ... SELECT here).
    count = sa.select(sa.func.count()).select_from(inserted)
    subscribed = _subscribed(session, event_type)
    if subscribed:
        endpoint = (
            sa.func.unnest(sa.literal(subscribed, postgresql.ARRAY(sa.BigInteger)))
            .table_valued("endpoint_id")
            .render_derived()
        )
        deliveries = WebhookDelivery.__table__
        fanned_out = (
            deliveries.insert()
            .from_select(
                [
                    "public_id",
                    "endpoint_id",
                    "event_id",
                    "status",
                    "attempts",
                    "next_attempt_at",
                    "created_at",
                ],
                sa.select(
                    sa.func.gen_random_uuid(),
                    endpoint.c.endpoint_id,
                    inserted.c.id,
                    sa.literal(DeliveryStatus.PENDING.value),
                    sa.literal(0),
                    sa.literal(created_at, deliveries.c.next_attempt_at.type),
                    sa.literal(created_at, deliveries.c.created_at.type),
                ).select_from(inserted.join(endpoint, sa.true())),
            )
            .cte("fanned_out")
        )
        count = count.add_cte(fanned_out)
    emitted = int(session.scalar(count) or 0)
    metrics.WEBHOOK_EVENTS.inc(emitted)
    return emitted


def _subscribed(session: Session, event_type: str) -> list[int]:
    """The active endpoints that receive `event_type`, as dispatching would choose them."""
    endpoints = session.execute(
        sa.select(WebhookEndpoint.id, WebhookEndpoint.event_types).where(
            WebhookEndpoint.active.is_(True)
        )
    )
    return [id_ for id_, types in endpoints if receives(types, event_type)]


def receives(event_types: list[str], event_type: str) -> bool:
    """Whether an endpoint subscribed to `event_types` receives an event of `event_type`."""
    return "*" in event_types or event_type in event_types
