"""Webhooks over HTTP, checked by a real receiver: an HTTP server on 127.0.0.1 in a thread of
this test process, which records what it is sent and answers what the test tells it to.

Admins register an endpoint and get its signing secret once. Changes write their events to
an outbox in the same transaction; `dispatch` fans each event out into one delivery per
subscribed endpoint and `deliver_due` POSTs the due deliveries, signed as the README says,
retrying failures after a backoff (moved through with `now=`) and recording every attempt.
A change that rolled back has no event, so nothing is ever sent for it.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import http.server
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import standardwebhooks
from flask import Flask
from flask.testing import FlaskClient

from loyalty.db import transaction, utcnow
from loyalty.errors import ValidationFailed
from loyalty.events import services as events
from loyalty.extensions import db
from loyalty.members.models import Member
from loyalty.membership import adjustments
from loyalty.membership import services as members
from loyalty.orders import services as orders
from loyalty.webhooks import outbox
from loyalty.webhooks import services as webhooks
from loyalty.webhooks.models import OutboxEvent, WebhookDelivery
from loyalty.webhooks.outbox import EVENT_TYPES
from tests.commands import order_command
from tests.concurrency import race, raised
from tests.factories import OrderFactory
from tests.helpers import created, free_port, problem

SECOND = dt.timedelta(seconds=1)
HOUR = dt.timedelta(hours=1)


# --- the README's sample verifier, copied as a receiver would -------------------------------


def verify(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
    fields = dict(part.split("=", 1) for part in header.split(","))
    timestamp, received = int(fields["t"]), fields["v1"]
    expected = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(expected, received) and abs(time.time() - timestamp) <= tolerance


# --- the receiver ---------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


class Receiver:
    """Records every POST; answers the scripted statuses in order, then `default`."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.script: list[int] = []
        self.default = 200
        self._lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.received.append(Received(self.path, dict(self.headers), body))
                    status = receiver.script.pop(0) if receiver.script else receiver.default
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep the test output clean

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hooks/loyalty"

    def answer(self, *statuses: int) -> None:
        self.script.extend(statuses)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    found.thread.start()
    yield found
    found.server.shutdown()
    found.server.server_close()
    found.thread.join(timeout=5)


# --- helpers --------------------------------------------------------------------------------


def register(
    client: FlaskClient, admin: dict[str, str], url: str, event_types: list[str] | None = None
) -> dict[str, Any]:
    body = {"url": url, "event_types": event_types or ["*"]}
    return created(client.post("/v1/admin/webhooks", json=body, headers=admin))


def enroll(client: FlaskClient, headers: dict[str, str], external_id: str = "c1") -> None:
    created(client.post("/v1/members", json={"external_id": external_id}, headers=headers))


def run_worker(app: Flask, now: dt.datetime | None = None) -> webhooks.DeliveryRun:
    """One worker pass over the outbox: fan out new events, then send what is due."""
    with app.app_context():
        webhooks.dispatch(db.session, now=now)
        return webhooks.deliver_due(
            db.session, now=now, allow_local=app.config["WEBHOOKS_ALLOW_LOCAL"]
        )


def deliveries(client: FlaskClient, admin: dict[str, str], webhook_id: str) -> list[Any]:
    response = client.get(f"/v1/admin/webhooks/{webhook_id}/deliveries", headers=admin)
    assert response.status_code == 200, response.json
    return response.json["items"]


def outbox_types(app: Flask) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(sa.select(OutboxEvent.type).order_by(OutboxEvent.id)))


def delivery_count(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count(WebhookDelivery.id))) or 0


# --- registering ----------------------------------------------------------------------------


def test_registering_returns_201_with_the_signing_secret(client, admin):
    body = register(client, admin, "https://shop.example/hooks", ["tier.changed"])

    assert body["url"] == "https://shop.example/hooks"
    assert body["event_types"] == ["tier.changed"]
    assert body["secret"].startswith("whsec_")
    assert len(body["secret"]) > 20
    uuid.UUID(body["id"])


def test_the_secret_is_shown_only_once_not_in_the_list(client, admin):
    body = register(client, admin, "https://shop.example/hooks")

    listed = client.get("/v1/admin/webhooks", headers=admin).json["items"]

    assert [item["id"] for item in listed] == [body["id"]]
    assert "secret" not in listed[0]
    assert body["secret"] not in json.dumps(listed)


def test_each_endpoint_gets_its_own_secret(client, admin):
    first = register(client, admin, "https://a.example/hooks")
    second = register(client, admin, "https://b.example/hooks")

    assert first["secret"] != second["secret"]


@pytest.mark.parametrize(
    "url",
    [
        "https://shop.example/hooks",
        "http://localhost:8000/hooks",
        "http://127.0.0.1:8000/hooks",
    ],
)
def test_https_urls_and_plain_http_to_this_machine_are_accepted(client, admin, url):
    assert register(client, admin, url)["url"] == url


@pytest.mark.parametrize(
    "url",
    [
        "http://shop.example/hooks",
        "http://10.0.0.5/hooks",
        "http://localhost.attacker.example/hooks",
        "ftp://shop.example/hooks",
        "not a url",
    ],
)
def test_any_other_url_is_422(client, admin, url):
    response = client.post(
        "/v1/admin/webhooks", json={"url": url, "event_types": ["*"]}, headers=admin
    )

    assert "url" in problem(response, 422, "validation_error")["errors"]
    assert client.get("/v1/admin/webhooks", headers=admin).json["items"] == []


def test_an_unknown_event_type_is_422(client, admin):
    response = client.post(
        "/v1/admin/webhooks",
        json={"url": "https://shop.example/hooks", "event_types": ["points.earned", "points.won"]},
        headers=admin,
    )

    errors = problem(response, 422, "validation_error")["errors"]
    assert list(errors) == ["event_types.1"]  # the second one, "points.won"


def test_webhooks_are_managed_by_admins_only(client, checkout, app_key):
    for headers in (checkout, app_key):
        response = client.post(
            "/v1/admin/webhooks",
            json={"url": "https://shop.example/hooks", "event_types": ["*"]},
            headers=headers,
        )
        problem(response, 403, "forbidden")
        problem(client.get("/v1/admin/webhooks", headers=headers), 403, "forbidden")


# --- delivering -----------------------------------------------------------------------------


def test_an_enrolment_is_posted_to_the_endpoint_as_member_enrolled(
    app, client, admin, checkout, receiver
):
    hook = register(client, admin, receiver.url, ["member.enrolled"])
    enroll(client, checkout)

    run = run_worker(app)

    assert run.succeeded == 1
    [request] = receiver.received
    assert request.path == "/hooks/loyalty"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Loyalty-Event-Type"] == "member.enrolled"
    assert request.json["type"] == "member.enrolled"
    assert request.json["data"]["member_id"] == "c1"
    assert request.headers["Loyalty-Event-Id"] == request.json["id"]
    dt.datetime.fromisoformat(request.json["created_at"])
    [delivery] = deliveries(client, admin, hook["id"])
    assert request.headers["Loyalty-Delivery-Id"] == delivery["id"]
    assert delivery["event_id"] == request.json["id"]


@pytest.fixture
def signed(app, client, admin, checkout, receiver) -> tuple[dict[str, Any], Any]:
    """A registered endpoint and the one request the worker sent it (an enrolment)."""
    hook = register(client, admin, receiver.url)
    enroll(client, checkout)
    run_worker(app)
    [request] = receiver.received
    return hook, request


def test_the_signature_verifies_with_the_readme_verifier(signed):
    hook, request = signed
    assert request.headers["Loyalty-Signature"].startswith("t=")
    assert verify(hook["secret"], request.headers["Loyalty-Signature"], request.body)


def test_the_signature_fails_with_another_secret_or_a_changed_body(signed):
    hook, request = signed
    header = request.headers["Loyalty-Signature"]
    assert not verify("whsec_someone_else", header, request.body)
    assert not verify(hook["secret"], header, request.body.replace(b"c1", b"c2"))


def test_a_signature_older_than_the_tolerance_is_refused_by_the_verifier(signed):
    hook, request = signed
    fields = dict(part.split("=", 1) for part in request.headers["Loyalty-Signature"].split(","))
    replayed = webhooks.signature(hook["secret"], int(fields["t"]) - 301, request.body)

    assert not verify(hook["secret"], replayed, request.body)


def test_a_delivery_verifies_with_the_standard_webhooks_library(signed):
    hook, request = signed

    payload = standardwebhooks.Webhook(hook["secret"]).verify(request.body, request.headers)

    assert payload == request.json
    assert request.headers["webhook-id"] == request.headers["Loyalty-Event-Id"]


def test_the_standard_webhooks_library_refuses_another_secret_or_a_changed_body(signed):
    hook, request = signed
    someone_else = "whsec_" + base64.b64encode(b"not the endpoint's secret").decode()

    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(someone_else).verify(request.body, request.headers)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(hook["secret"]).verify(
            request.body.replace(b"c1", b"c2"), request.headers
        )


def test_a_secret_from_before_secrets_were_standard_base64_verifies_too():
    """Endpoints registered earlier have URL-safe secrets (with - and _)."""
    secret, body, moment = "whsec_" + "ab-_cd" * 6, b'{"id": "e1"}', int(time.time())
    headers = {
        "webhook-id": "e1",
        "webhook-timestamp": str(moment),
        "webhook-signature": webhooks.standard_signature(secret, "e1", moment, body),
    }

    standardwebhooks.Webhook(secret).verify(body, headers)


def test_a_delivered_event_is_not_sent_again_by_the_next_pass(
    app, client, admin, checkout, receiver
):
    register(client, admin, receiver.url)
    enroll(client, checkout)
    run_worker(app)

    run = run_worker(app, now=utcnow() + 7 * HOUR)

    assert run.succeeded == run.failed_attempts == 0
    assert len(receiver.received) == 1


def test_a_failed_delivery_is_retried_only_after_the_backoff(
    app, client, admin, checkout, receiver
):
    register(client, admin, receiver.url)
    enroll(client, checkout)
    receiver.answer(500)
    start = utcnow()

    first = run_worker(app, now=start)
    too_soon = run_worker(app, now=start + 29 * SECOND)
    after_backoff = run_worker(app, now=start + 31 * SECOND)

    assert (first.succeeded, first.failed_attempts) == (0, 1)
    assert (too_soon.succeeded, too_soon.failed_attempts) == (0, 0)
    assert (after_backoff.succeeded, after_backoff.failed_attempts) == (1, 0)
    assert len(receiver.received) == 2
    assert receiver.received[0].body == receiver.received[1].body
    assert (
        receiver.received[0].headers["Loyalty-Event-Id"]
        == (receiver.received[1].headers["Loyalty-Event-Id"])
    )


def test_every_attempt_is_listed_with_its_delivery(app, client, admin, checkout, receiver):
    hook = register(client, admin, receiver.url)
    enroll(client, checkout)
    receiver.answer(500)
    start = utcnow()
    run_worker(app, now=start)
    run_worker(app, now=start + 31 * SECOND)

    [delivery] = deliveries(client, admin, hook["id"])

    assert delivery["event_type"] == "member.enrolled"
    assert delivery["status"] == "succeeded"
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 200]
    assert [a["error"] for a in delivery["attempts"]] == [None, None]
    assert delivery["next_attempt_at"] is None
    assert delivery["delivered_at"] == delivery["attempts"][-1]["attempted_at"]


def test_a_failing_delivery_waits_twice_as_long_after_each_failure(
    app, client, admin, checkout, receiver
):
    hook = register(client, admin, receiver.url)
    enroll(client, checkout)
    receiver.default = 503
    start = utcnow()
    run_worker(app, now=start)
    run_worker(app, now=start + 31 * SECOND)

    [delivery] = deliveries(client, admin, hook["id"])

    assert delivery["status"] == "pending"
    last = dt.datetime.fromisoformat(delivery["attempts"][-1]["attempted_at"])
    assert dt.datetime.fromisoformat(delivery["next_attempt_at"]) - last == 60 * SECOND
    assert [webhooks.backoff(n).total_seconds() for n in range(1, 6)] == [30, 60, 120, 240, 480]
    assert webhooks.backoff(20) == 6 * HOUR


def test_a_receiver_that_cannot_be_reached_is_an_attempt_with_an_error(
    app, client, admin, checkout
):
    hook = register(client, admin, f"http://127.0.0.1:{free_port()}/hooks")
    enroll(client, checkout)

    run = run_worker(app)

    assert (run.succeeded, run.failed_attempts) == (0, 1)
    [delivery] = deliveries(client, admin, hook["id"])
    [attempt] = delivery["attempts"]
    assert attempt["status_code"] is None
    # Not "connection refused": the log must not tell what listens where.
    assert attempt["error"] == "connection failed"
    assert delivery["status"] == "pending"


def fail_every_attempt(app: Flask, receiver: Receiver) -> dt.datetime:
    """The receiver answers 500 to each of the worker's MAX_ATTEMPTS passes; returns the
    moment after the last one."""
    receiver.default = 500
    moment = utcnow()
    for _ in range(webhooks.MAX_ATTEMPTS):
        run_worker(app, now=moment)
        moment += 7 * HOUR  # past the longest backoff
    return moment


def test_the_worker_gives_up_after_max_attempts(app, client, admin, checkout, receiver):
    hook = register(client, admin, receiver.url)
    enroll(client, checkout)
    moment = fail_every_attempt(app, receiver)
    run_worker(app, now=moment + 30 * HOUR)

    assert len(receiver.received) == webhooks.MAX_ATTEMPTS == 8
    [delivery] = deliveries(client, admin, hook["id"])
    assert delivery["status"] == "failed"
    assert len(delivery["attempts"]) == webhooks.MAX_ATTEMPTS
    assert delivery["next_attempt_at"] is None


def test_redeliver_sends_a_delivered_event_again(app, client, admin, checkout, receiver):
    hook = register(client, admin, receiver.url)
    enroll(client, checkout)
    run_worker(app)
    [delivery] = deliveries(client, admin, hook["id"])

    response = client.post(
        f"/v1/admin/webhooks/{hook['id']}/deliveries/{delivery['id']}/redeliver", headers=admin
    )
    run = run_worker(app)

    assert response.status_code == 200, response.json
    assert response.json["status"] == "pending"
    assert run.succeeded == 1
    assert [r.headers["Loyalty-Delivery-Id"] for r in receiver.received] == [delivery["id"]] * 2
    assert receiver.received[0].body == receiver.received[1].body
    assert verify(
        hook["secret"], receiver.received[1].headers["Loyalty-Signature"], receiver.received[1].body
    )
    [again] = deliveries(client, admin, hook["id"])
    assert [a["status_code"] for a in again["attempts"]] == [200, 200]


def test_redeliver_revives_a_delivery_that_gave_up(app, client, admin, checkout, receiver):
    hook = register(client, admin, receiver.url)
    enroll(client, checkout)
    fail_every_attempt(app, receiver)
    [delivery] = deliveries(client, admin, hook["id"])
    receiver.default = 200

    client.post(
        f"/v1/admin/webhooks/{hook['id']}/deliveries/{delivery['id']}/redeliver", headers=admin
    )
    run = run_worker(app)

    assert run.succeeded == 1
    assert deliveries(client, admin, hook["id"])[0]["status"] == "succeeded"


def test_redelivering_an_unknown_delivery_is_404(client, admin, receiver):
    hook = register(client, admin, receiver.url)

    response = client.post(
        f"/v1/admin/webhooks/{hook['id']}/deliveries/{uuid.uuid4()}/redeliver", headers=admin
    )

    problem(response, 404, "not_found")


def test_deliveries_are_listed_newest_first_a_page_at_a_time(
    app, client, admin, checkout, receiver
):
    hook = register(client, admin, receiver.url, ["member.enrolled"])
    for n in range(3):
        enroll(client, checkout, f"c{n}")
    run_worker(app)

    first = client.get(f"/v1/admin/webhooks/{hook['id']}/deliveries?limit=2", headers=admin).json
    rest = client.get(
        f"/v1/admin/webhooks/{hook['id']}/deliveries",
        query_string={"limit": 2, "cursor": first["next_cursor"]},
        headers=admin,
    ).json

    sent = [r.headers["Loyalty-Delivery-Id"] for r in receiver.received]
    assert [d["id"] for d in first["items"] + rest["items"]] == sent[::-1]
    assert rest["next_cursor"] is None


# --- deleting -------------------------------------------------------------------------------


def test_deleting_an_endpoint_stops_its_pending_deliveries(app, client, admin, checkout, receiver):
    hook = register(client, admin, receiver.url)
    enroll(client, checkout)
    with app.app_context():
        webhooks.dispatch(db.session)

    response = client.delete(f"/v1/admin/webhooks/{hook['id']}", headers=admin)
    run = run_worker(app)

    assert response.status_code == 204
    assert (run.succeeded, run.failed_attempts) == (0, 0)
    assert receiver.received == []


def test_a_deleted_endpoint_gets_no_new_events_and_leaves_the_list(
    app, client, admin, checkout, receiver
):
    hook = register(client, admin, receiver.url)
    client.delete(f"/v1/admin/webhooks/{hook['id']}", headers=admin)

    enroll(client, checkout)
    run_worker(app)

    assert receiver.received == []
    assert delivery_count(app) == 0
    assert client.get("/v1/admin/webhooks", headers=admin).json["items"] == []
    problem(client.delete(f"/v1/admin/webhooks/{hook['id']}", headers=admin), 404, "not_found")


def test_deleting_an_unknown_endpoint_is_404(client, admin):
    problem(client.delete(f"/v1/admin/webhooks/{uuid.uuid4()}", headers=admin), 404, "not_found")


# --- subscriptions --------------------------------------------------------------------------


def test_events_go_only_to_endpoints_subscribed_to_their_type(
    app, client, admin, checkout, receiver
):
    register(client, admin, receiver.url + "/tiers", ["tier.changed"])
    register(client, admin, receiver.url + "/enrolments", ["member.enrolled", "tier.changed"])
    register(client, admin, receiver.url + "/everything", ["*"])
    enroll(client, checkout)
    created(
        client.post(
            "/v1/admin/members/c1/adjustments",
            json={"points": 50, "reason": "welcome"},
            headers=admin,
        )
    )

    run_worker(app)

    got = sorted((r.path, r.json["type"]) for r in receiver.received)
    assert got == [
        ("/hooks/loyalty/enrolments", "member.enrolled"),
        ("/hooks/loyalty/everything", "member.enrolled"),
        ("/hooks/loyalty/everything", "points.adjusted"),
    ]


def test_an_endpoint_registered_later_gets_only_later_events(
    app, client, admin, checkout, receiver
):
    enroll(client, checkout, "early")
    run_worker(app)
    register(client, admin, receiver.url)

    enroll(client, checkout, "late")
    run_worker(app)

    assert [r.json["data"]["member_id"] for r in receiver.received] == ["late"]


def test_every_documented_event_type_can_be_subscribed_to(client, admin):
    body = register(client, admin, "https://shop.example/hooks", list(EVENT_TYPES))

    assert sorted(body["event_types"]) == sorted(EVENT_TYPES)


# --- a change that rolled back sends nothing ------------------------------------------------


def test_an_enrolment_that_fails_after_writing_its_event_sends_nothing(
    app, client, admin, receiver, monkeypatch
):
    register(client, admin, receiver.url)

    def fail_after_the_member_and_its_event_were_written(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the database went away mid-enrolment")

    monkeypatch.setattr(events, "grant_signup", fail_after_the_member_and_its_event_were_written)
    with app.app_context(), pytest.raises(RuntimeError, match="went away"):
        members.enroll(db.session, members.EnrollMember(**{"external_id": "c1"}))

    run = run_worker(app)

    assert outbox_types(app) == []
    assert delivery_count(app) == 0
    assert (run.succeeded, run.failed_attempts) == (0, 0)
    assert receiver.received == []
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Member.id))) == 0


def fifty_points_expired(app, client, admin, checkout, receiver) -> dt.datetime:
    """An endpoint for points.expired; c1 given 50 points now. Returns a moment 400 days on,
    when they have expired (once something settles the member)."""
    register(client, admin, receiver.url, ["points.expired"])
    enroll(client, checkout)
    start = utcnow()
    with app.app_context():
        adjustments.adjust(db.session, "c1", 50, "welcome", "ops", now=start)
    return start + dt.timedelta(days=400)


def test_an_order_refused_inside_the_service_sends_nothing_of_what_it_settled(
    app, client, admin, checkout, receiver
):
    """Placing an order first settles the member (here: 50 points expire, a points.expired
    event); the order is then refused, so the expiry and its event roll back with it."""
    a_year_later = fifty_points_expired(app, client, admin, checkout, receiver)

    with app.app_context(), pytest.raises(ValidationFailed) as refused:
        orders.place_order(
            db.session,
            order_command(
                OrderFactory.build(worth=20, uncategorised=True, redemption_id=uuid.uuid4())
            ),
            now=a_year_later,
        )
    run = run_worker(app, now=a_year_later)

    assert "redemption_id" in refused.value.extra["errors"]
    assert "points.expired" not in outbox_types(app)
    assert (run.succeeded, run.failed_attempts) == (0, 0)
    assert receiver.received == []


def test_the_same_expiry_committed_later_is_sent_once(app, client, admin, checkout, receiver):
    """The counterpart of the test above: once the expiry commits, its event is delivered."""
    a_year_later = fifty_points_expired(app, client, admin, checkout, receiver)

    with app.app_context():
        members.card(db.session, "c1", now=a_year_later)
    run_worker(app, now=a_year_later)
    run_worker(app, now=a_year_later + 7 * HOUR)

    [request] = receiver.received
    assert request.json["data"] == {"member_id": "c1", "points": 50}


# --- draining: one pass sends everything due, within its time budget ------------------------


def emit_enrolments(app: Flask, count: int) -> None:
    with app.app_context(), transaction(db.session):
        for n in range(count):
            outbox.emit(db.session, "member.enrolled", {"member_id": f"c{n}"})


def deliveries_per(column: Any) -> list[int]:
    """How many deliveries there are for each value of `column` (an endpoint, an event)."""
    return list(
        db.session.scalars(
            sa.select(sa.func.count()).select_from(WebhookDelivery).group_by(column)
        ).all()
    )


def test_a_pass_fans_out_in_batches_one_delivery_per_subscribed_endpoint(
    app, client, admin, receiver
):
    register(client, admin, receiver.url)
    register(client, admin, receiver.url, ["member.enrolled"])
    register(client, admin, receiver.url, ["points.earned"])
    emit_enrolments(app, 7)

    with app.app_context():
        dispatched = webhooks.dispatch(db.session, batch_size=3)
        again = webhooks.dispatch(db.session, batch_size=3)
        per_endpoint = deliveries_per(WebhookDelivery.endpoint_id)
        undispatched = db.session.scalar(
            sa.select(sa.func.count()).where(OutboxEvent.dispatched_at.is_(None))
        )

    assert (dispatched, again, undispatched) == (7, 0, 0)
    # "*" and member.enrolled each get every event; points.earned none.
    assert sorted(per_endpoint) == [7, 7]


@pytest.mark.postgresql_only
def test_events_emitted_in_the_database_are_born_dispatched_to_their_subscribers(
    app, client, admin, receiver
):
    """emit_selected (a refresh's segment changes, an automation's firings) fans out in
    the same statement: the worker's dispatch finds nothing left to do."""
    register(client, admin, receiver.url)
    register(client, admin, receiver.url, ["member.enrolled"])
    register(client, admin, receiver.url, ["points.earned"])
    now = utcnow()
    rows = sa.select(sa.func.concat("c", sa.func.generate_series(1, 5)).label("member_id"))

    with app.app_context():
        emitted = outbox.emit_selected(db.session, "member.enrolled", rows, now)
        dispatched = webhooks.dispatch(db.session)
        per_endpoint = deliveries_per(WebhookDelivery.endpoint_id)
        events = db.session.execute(sa.select(OutboxEvent.dispatched_at, OutboxEvent.payload)).all()
        run = webhooks.deliver_due(db.session, allow_local=True)

    assert (emitted, dispatched) == (5, 0)
    assert sorted(per_endpoint) == [5, 5]
    assert {at for at, _ in events} == {now}
    assert sorted(payload["member_id"] for _, payload in events) == [f"c{n}" for n in range(1, 6)]
    assert (run.succeeded, run.failed_attempts) == (10, 0)


@pytest.mark.committed  # threads, each on its own connection
@pytest.mark.postgresql_only
def test_two_workers_dispatching_at_once_fan_each_event_out_once(app, client, admin, receiver):
    register(client, admin, receiver.url)
    emit_enrolments(app, 400)

    results = race(app, 2, lambda _: webhooks.dispatch(db.session, batch_size=7))

    assert raised(results) == []
    assert sum(results) == 400
    with app.app_context():
        per_event = deliveries_per(WebhookDelivery.event_id)
    assert sorted(set(per_event)) == [1]
    assert len(per_event) == 400


def test_a_worker_slower_than_its_lease_does_not_send_what_another_took_over(
    app, client, admin, receiver, monkeypatch
):
    """Worker A's first send takes longer than its lease: worker B claims the whole batch
    meanwhile and sends it. The delivery A had in flight reaches the receiver twice (at least
    once: A could not know B would take it), and A sends none of the rest."""
    register(client, admin, receiver.url)
    emit_enrolments(app, 5)
    send = webhooks.targets.post
    lease = dt.timedelta(seconds=60)

    def first_send_outlives_the_lease(*args, **kwargs):
        monkeypatch.setattr(webhooks.targets, "post", send)
        later = utcnow() + lease + dt.timedelta(seconds=1)
        taken_over.append(webhooks.deliver_due(db.session, now=later, allow_local=True))
        return send(*args, **kwargs)

    taken_over: list[webhooks.DeliveryRun] = []
    monkeypatch.setattr(webhooks.targets, "post", first_send_outlives_the_lease)
    with app.app_context():
        webhooks.dispatch(db.session)
        worker_a = webhooks.deliver_due(db.session, lease=lease, allow_local=True)

    [worker_b] = taken_over
    assert (worker_b.succeeded, worker_a.succeeded) == (5, 1)
    sent = [r.headers["webhook-id"] for r in receiver.received]
    assert len(set(sent)) == 5
    assert sorted(sent.count(event) for event in set(sent)) == [1, 1, 1, 1, 2]


class TickingClock:
    """A monotonic clock that moves one second each time it is read."""

    def __init__(self) -> None:
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return float(self.reads)


def test_one_pass_delivers_everything_due_batch_after_batch(app, client, admin, receiver):
    register(client, admin, receiver.url)
    emit_enrolments(app, 25)

    with app.app_context():
        webhooks.dispatch(db.session)
        run = webhooks.deliver_due(db.session, batch_size=10, allow_local=True)

    assert (run.succeeded, run.failed_attempts) == (25, 0)
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 25


def test_a_pass_stops_when_its_time_budget_is_spent_and_the_next_resumes(
    app, client, admin, receiver
):
    register(client, admin, receiver.url)
    emit_enrolments(app, 25)

    with app.app_context():
        webhooks.dispatch(db.session)
        # Read at the start (1), before the first batch (2 < 3) and before the second (3).
        first = webhooks.deliver_due(
            db.session, batch_size=10, allow_local=True, budget_seconds=2, clock=TickingClock()
        )
        rest = webhooks.deliver_due(db.session, batch_size=10, allow_local=True)

    assert first.succeeded == 10
    assert rest.succeeded == 15
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 25


def test_a_pass_tries_each_failing_delivery_once_even_when_it_is_due_again(
    app, client, admin, receiver
):
    """A `now` ahead of the real time makes a failed delivery due again at once; the pass
    still tries it only once."""
    register(client, admin, receiver.url)
    emit_enrolments(app, 25)
    receiver.default = 500

    with app.app_context():
        webhooks.dispatch(db.session)
        run = webhooks.deliver_due(
            db.session, now=utcnow() + 7 * HOUR, batch_size=10, allow_local=True
        )

    assert (run.succeeded, run.failed_attempts) == (0, 25)
    assert len(receiver.received) == 25


# --- the worker command ---------------------------------------------------------------------


def test_jobs_run_delivers_the_webhooks(app, client, admin, checkout, receiver):
    hook = register(client, admin, receiver.url, ["member.enrolled"])
    enroll(client, checkout)

    result = app.test_cli_runner().invoke(args=["jobs", "run"])

    assert result.exit_code == 0, result.output
    assert "1 events dispatched, 1 webhooks delivered, 0 failed" in result.stdout
    [request] = receiver.received
    assert verify(hook["secret"], request.headers["Loyalty-Signature"], request.body)


@pytest.mark.committed  # the worker is another process, on its own connections
def test_a_looping_worker_serves_its_own_figures_on_its_metrics_port(app, client, admin, receiver):
    """/metrics of the app never sees a worker process's counters: the worker serves its own."""
    register(client, admin, receiver.url)
    emit_enrolments(app, 31)
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "LOYALTY_WEBHOOKS_ALLOW_LOCAL": "1",
        "LOYALTY_LOG_LEVEL": "WARNING",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    command = [str(Path(sys.executable).with_name("loyalty")), "jobs", "run", "--loop", "0.1"]
    worker = subprocess.Popen(  # noqa: S603 - our own command
        [*command, "--metrics-bind", f"127.0.0.1:{port}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        figures = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and worker.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as got:
                    figures = got.read().decode()
            except OSError:
                figures = ""  # not listening yet
            if 'loyalty_webhook_deliveries_total{outcome="succeeded"} 31.0' in figures:
                break
            time.sleep(0.1)  # polling the worker's progress, not waiting for the clock
    finally:
        worker.terminate()
        _, errors = worker.communicate(timeout=30)

    assert 'loyalty_webhook_deliveries_total{outcome="succeeded"} 31.0' in figures, errors
    assert "loyalty_webhook_events_dispatched_total 31.0" in figures
    assert "loyalty_jobs_pass_duration_seconds_count" in figures
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 31
