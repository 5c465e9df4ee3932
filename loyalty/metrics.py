"""Prometheus metrics. Counters live here, free of Flask, so services can count what they do.

Under gunicorn each worker is a process: with PROMETHEUS_MULTIPROC_DIR set (gunicorn.conf.py
sets it), every worker writes its samples there and /metrics adds them up.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

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
WEBHOOKS = Counter(
    "loyalty_webhook_deliveries_total", "Webhook delivery attempts by outcome.", ["outcome"]
)


def exposition() -> tuple[bytes, str]:
    """The metrics in Prometheus text format, summed over worker processes if there are."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
