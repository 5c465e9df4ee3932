"""Prometheus metrics. Counters live here, free of Flask, so services can count what they do.

Under gunicorn each worker is a process: with PROMETHEUS_MULTIPROC_DIR set (gunicorn.conf.py
sets it), every worker writes its samples there and /metrics adds them up.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

REQUESTS = Counter(
    "loyalty_http_requests_total",
    "HTTP requests by endpoint, method and status.",
    ["endpoint", "method", "status"],
)
LATENCY = Histogram(
    "loyalty_http_request_duration_seconds",
    "HTTP request latency by endpoint and method.",
    ["endpoint", "method"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
POINTS = Counter("loyalty_points_total", "Points moved, by kind of ledger transaction.", ["kind"])
JOBS = Counter("loyalty_jobs_members_settled_total", "Members settled by background jobs.")
EXPIRY_NOTICES = Counter(
    "loyalty_jobs_expiry_notices_total", "Members told that points expire soon, by jobs."
)
BIRTHDAYS = Counter("loyalty_jobs_birthday_events_total", "Birthday events recorded by jobs.")
JOB_PASSES = Histogram(
    "loyalty_jobs_pass_duration_seconds",
    "Duration of each pass of `loyalty jobs run` (its count is the number of passes).",
    buckets=(0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0),
)
WEBHOOK_EVENTS = Counter(
    "loyalty_webhook_events_dispatched_total", "Outbox events fanned out into deliveries."
)
WEBHOOKS = Counter(
    "loyalty_webhook_deliveries_total", "Webhook delivery attempts by outcome.", ["outcome"]
)
RATE_LIMIT_STORAGE_ERRORS = Counter(
    "loyalty_rate_limit_storage_errors_total",
    "Failed calls to the rate limit store (the limiter then counts in each process's memory).",
)

# Reads that may lag (the views marked reads_from_replica, loyalty.api.replica): one per request.
DB_READS = Counter(
    "loyalty_db_reads_total",
    "Requests to views that may read from the replica, by the server that served them.",
    ["target"],
)
REPLICA_FALLBACKS = Counter(
    "loyalty_replica_fallbacks_total",
    "Reads that may lag sent to the primary: the replica down, lagging, or behind the "
    "console session's latest write.",
    ["reason"],
)
REPLICA_LAG = Gauge(
    "loyalty_replica_lag_seconds",
    "The replica's lag at the latest probe (NaN while it cannot be reached).",
    multiprocess_mode="livemostrecent",
)


_PENDING = "loyalty.points_pending"
_SAVEPOINTS = "loyalty.points_savepoints"


def count_points(session: Session, kind: str, points: int) -> None:
    """Count `points` moved by a transaction of `kind` once the session's transaction commits:
    points a rollback undoes (a refused request, a lost race) were never moved."""
    session.info.setdefault(_PENDING, []).append((kind, points))


@event.listens_for(Session, "after_commit")
def _count_committed(session: Session) -> None:
    if session.get_nested_transaction() is not None:
        return  # a savepoint was released; the transaction around it may still roll back
    for kind, points in session.info.pop(_PENDING, []):
        POINTS.labels(kind).inc(points)
    session.info.pop(_SAVEPOINTS, None)


@event.listens_for(Session, "after_transaction_create")
def _mark_savepoint(session: Session, transaction: SessionTransaction) -> None:
    if transaction.nested:
        marks = session.info.setdefault(_SAVEPOINTS, {})
        marks[id(transaction)] = len(session.info.get(_PENDING, []))


@event.listens_for(Session, "after_soft_rollback")
def _forget_rolled_back(session: Session, previous: Any) -> None:
    pending = session.info.get(_PENDING)
    if not pending:
        return
    if previous.nested:
        mark = session.info.get(_SAVEPOINTS, {}).pop(id(previous), len(pending))
        del pending[mark:]
    else:
        session.info.pop(_PENDING, None)
        session.info.pop(_SAVEPOINTS, None)


def _registry() -> CollectorRegistry:
    """This process's metrics, or those of every process sharing PROMETHEUS_MULTIPROC_DIR."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


def exposition() -> tuple[bytes, str]:
    """The metrics in Prometheus text format, summed over worker processes if there are."""
    return generate_latest(_registry()), CONTENT_TYPE_LATEST


def serve(host: str, port: int) -> None:
    """Serve /metrics from a background thread: a `jobs run` worker is not behind gunicorn,
    so its own figures are scraped here."""
    start_http_server(port, host, registry=_registry())
