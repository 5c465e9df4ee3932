"""Request ids, structured JSON logs and request metrics for every request, and /metrics.

A request id comes from X-Request-Id (when it is a sane token) or is made up; it is echoed in
the response, put on every log line written while the request runs, and so lets a shop's
engineers follow one checkout call through their logs and ours.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Blueprint, Flask, Response, g, request

from loyalty import metrics

REQUEST_ID = "X-Request-Id"
SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
log = logging.getLogger("loyalty.request")
blp = Blueprint("metrics", __name__)


def _start() -> None:
    incoming = request.headers.get(REQUEST_ID, "")
    g.request_id = incoming if SANE_ID.match(incoming) else uuid.uuid4().hex
    g.started = time.perf_counter()


def _finish(response: Response) -> Response:
    response.headers[REQUEST_ID] = g.get("request_id", "")
    elapsed = time.perf_counter() - g.get("started", time.perf_counter())
    endpoint = request.url_rule.rule if request.url_rule else "unmatched"
    metrics.REQUESTS.labels(endpoint, request.method, str(response.status_code)).inc()
    metrics.LATENCY.labels(endpoint, request.method).observe(elapsed)
    log.info(
        "request",
        extra={
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "duration_ms": round(elapsed * 1000, 2),
            "api_key": g.caller.name if "caller" in g else None,
            # A view marked reads_from_replica: which server served it (loyalty.api.replica).
            **({"db": g.db_target.value} if "db_target" in g else {}),
        },
    )
    return response


@blp.get("/metrics")
def metrics_endpoint() -> Response:
    """Prometheus text format: request counts and latency per endpoint, points, jobs, webhooks."""
    body, content_type = metrics.exposition()
    return Response(body, content_type=content_type)


def init_app(app: Flask) -> None:
    app.before_request(_start)
    app.after_request(_finish)
    app.register_blueprint(blp)
