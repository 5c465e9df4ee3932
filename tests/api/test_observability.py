"""Observability: Prometheus metrics at /metrics, request ids, and JSON log lines.

Metrics are process-wide counters, so each test reads them before and after what it does and
checks the difference. A request id is taken from X-Request-Id when it is a sane token (at
most 128 letters, digits or . _ : -) and made up otherwise; it is echoed in the response and
written on every log line of the request.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import re
from typing import Any

import pytest
from flask import g
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from loyalty.db import utcnow
from loyalty.extensions import db
from loyalty.jobs import services as jobs
from loyalty.logs import JsonFormatter
from tests.factories import HoldFactory, RuleFactory

MEMBER_CARD = "/v1/members/<string:external_id>"
GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")


# --- helpers -------------------------------------------------------------------------------


def scrape(client: FlaskClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample /metrics shows, by (name, labels)."""
    response = client.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def enroll(client: FlaskClient, checkout: dict[str, str], external_id: str = "c1") -> None:
    response = client.post("/v1/members", json={"external_id": external_id}, headers=checkout)
    assert response.status_code == 201, response.json


def records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


# --- /metrics ------------------------------------------------------------------------------


def test_metrics_are_prometheus_text_without_a_key(client):
    response = client.get("/metrics")

    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    text = response.get_data(as_text=True)
    assert "# TYPE loyalty_http_requests_total counter" in text
    assert "# TYPE loyalty_http_request_duration_seconds histogram" in text


def test_metrics_count_requests_per_endpoint_method_and_status(client, checkout):
    enroll(client, checkout)
    before = scrape(client)

    for _ in range(3):
        assert client.get("/v1/members/c1", headers=checkout).status_code == 200
    assert client.get("/v1/members/nobody", headers=checkout).status_code == 404
    after = scrape(client)

    ok = {"endpoint": MEMBER_CARD, "method": "GET", "status": "200"}
    missing = {**ok, "status": "404"}
    requests = "loyalty_http_requests_total"
    assert value(after, requests, **ok) - value(before, requests, **ok) == 3
    assert value(after, requests, **missing) - value(before, requests, **missing) == 1


def test_metrics_time_each_endpoint(client, checkout):
    enroll(client, checkout)
    before = scrape(client)

    client.get("/v1/members/c1", headers=checkout)
    client.get("/v1/members/c1", headers=checkout)
    after = scrape(client)

    labels = {"endpoint": MEMBER_CARD, "method": "GET"}
    count = "loyalty_http_request_duration_seconds_count"
    total = "loyalty_http_request_duration_seconds_sum"
    every = "loyalty_http_request_duration_seconds_bucket"
    assert value(after, count, **labels) - value(before, count, **labels) == 2
    assert value(after, total, **labels) > value(before, total, **labels)
    assert value(after, every, **labels, le="+Inf") - value(before, every, **labels, le="+Inf") == 2


def test_paths_that_match_no_route_share_one_label(client):
    before = scrape(client)

    client.get("/no/such/path/1")
    client.get("/no/such/path/2")
    after = scrape(client)

    labels = {"endpoint": "unmatched", "method": "GET", "status": "404"}
    requests = "loyalty_http_requests_total"
    assert value(after, requests, **labels) - value(before, requests, **labels) == 2
    assert not any("/no/such/path" in dict(labels).get("endpoint", "") for _, labels in after)


def test_metrics_count_points_earned(client, admin, checkout):
    assert (
        client.post("/v1/admin/rules", json=RuleFactory.build(), headers=admin).status_code == 201
    )
    enroll(client, checkout)
    before = scrape(client)

    response = client.post(
        "/v1/orders",
        json={
            "order_id": "o1",
            "member_id": "c1",
            "currency": "USD",
            "lines": [{"sku": "tee", "quantity": 1, "unit_price": 4200}],
        },
        headers=checkout,
    )
    after = scrape(client)

    assert response.status_code == 201, response.json
    points = "loyalty_points_total"
    assert value(after, points, kind="earn") - value(before, points, kind="earn") == 42


def test_metrics_count_points_adjusted_by_kind(client, admin, checkout):
    enroll(client, checkout)
    before = scrape(client)

    client.post(
        "/v1/admin/members/c1/adjustments", json={"points": 30, "reason": "sorry"}, headers=admin
    )
    after = scrape(client)

    points = "loyalty_points_total"
    assert value(after, points, kind="adjust") - value(before, points, kind="adjust") == 30
    assert value(after, points, kind="earn") == value(before, points, kind="earn")


def test_points_a_refused_request_rolled_back_are_not_counted(app, client, admin, checkout):
    """A capture after the hold ran out settles the member (the hold's points go back, a
    release) and is refused with 409: the release is rolled back with it, and so is its
    count."""
    enroll(client, checkout)
    client.post(
        "/v1/admin/members/c1/adjustments", json={"points": 500, "reason": "gift"}, headers=admin
    )
    with app.app_context():
        hold = HoldFactory(points=200, now=utcnow() - dt.timedelta(hours=2))
    before = scrape(client)

    response = client.post(f"/v1/redemptions/{hold.public_id}/capture", headers=checkout)
    after = scrape(client)

    assert response.status_code == 409, response.json
    points = "loyalty_points_total"
    assert value(after, points, kind="release") == value(before, points, kind="release")


def test_metrics_count_members_settled_by_the_job(app, client, admin, checkout):
    enroll(client, checkout)
    client.post(
        "/v1/admin/members/c1/adjustments", json={"points": 30, "reason": "sorry"}, headers=admin
    )
    before = scrape(client)

    with app.app_context():
        jobs.settle_due(db.session, now=utcnow() + dt.timedelta(days=400))
    after = scrape(client)

    settled = "loyalty_jobs_members_settled_total"
    assert value(after, settled) - value(before, settled) == 1


# --- request ids ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sane",
    ["checkout-7f3a", "0b9e2c1d-4a5f-4e6b-8c7d-9e0f1a2b3c4d", "svc:api.v1_req-9", "x" * 128],
)
def test_a_sane_request_id_is_echoed(client, sane):
    response = client.get("/healthz", headers={"X-Request-Id": sane})

    assert response.headers["X-Request-Id"] == sane


def test_a_request_id_is_made_up_when_none_is_sent(client):
    first = client.get("/healthz").headers["X-Request-Id"]
    second = client.get("/healthz").headers["X-Request-Id"]

    assert GENERATED_ID.match(first)
    assert GENERATED_ID.match(second)
    assert first != second


@pytest.mark.parametrize(
    "insane",
    ["x" * 129, "y" * 300, "has spaces in it", "<script>", "semi;colon", ""],
    ids=["129-chars", "300-chars", "spaces", "markup", "semicolon", "empty"],
)
def test_an_insane_request_id_is_replaced(client, insane):
    response = client.get("/healthz", headers={"X-Request-Id": insane})

    assert GENERATED_ID.match(response.headers["X-Request-Id"])


def test_the_request_id_is_echoed_on_errors_too(client):
    unauthorized = client.get("/v1/members/c1", headers={"X-Request-Id": "trace-401"})
    not_found = client.get("/nowhere", headers={"X-Request-Id": "trace-404"})

    assert (unauthorized.status_code, unauthorized.headers["X-Request-Id"]) == (401, "trace-401")
    assert (not_found.status_code, not_found.headers["X-Request-Id"]) == (404, "trace-404")


# --- JSON logs -----------------------------------------------------------------------------


def test_each_request_is_logged_as_one_json_line_with_its_request_id(client, checkout, log_lines):
    enroll(client, checkout)
    log_lines.truncate(0)
    log_lines.seek(0)

    client.get("/v1/members/c1", headers={**checkout, "X-Request-Id": "trace-42"})

    [entry] = records(log_lines)
    assert entry["request_id"] == "trace-42"
    assert entry["level"] == "info"
    assert entry["logger"] == "loyalty.request"
    assert entry["message"] == "request"
    assert (entry["method"], entry["path"], entry["status"]) == ("GET", "/v1/members/c1", 200)
    assert entry["api_key"].startswith("key-")
    assert entry["duration_ms"] >= 0
    assert entry["time"].endswith("Z")
    dt.datetime.fromisoformat(entry["time"].replace("Z", "+00:00"))


def test_the_logged_request_id_is_the_one_echoed(client, log_lines):
    response = client.get("/healthz")

    [entry] = records(log_lines)
    assert entry["request_id"] == response.headers["X-Request-Id"]


def test_a_multi_line_message_and_a_traceback_stay_on_one_line(app):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.observability")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        with app.test_request_context("/v1/orders"):
            g.request_id = "trace-multi"
            logger.info("first line\nsecond line", extra={"order_id": "o1"})
            try:
                raise ValueError("boom\nand more")
            except ValueError:
                logger.exception("it failed")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True

    info, failure = records(stream)
    assert len(stream.getvalue().splitlines()) == 2
    assert info["message"] == "first line\nsecond line"
    assert info["order_id"] == "o1"
    assert info["request_id"] == failure["request_id"] == "trace-multi"
    assert failure["level"] == "error"
    assert "ValueError: boom" in failure["exception"]


def test_a_log_line_outside_a_request_has_no_request_id():
    record = logging.LogRecord("loyalty.jobs", logging.INFO, __file__, 1, "settled %d", (3,), None)

    entry = json.loads(JsonFormatter().format(record))

    assert entry["message"] == "settled 3"
    assert "request_id" not in entry
