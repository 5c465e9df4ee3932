"""The Idempotency-Key header: a retried POST gets the first answer and the work is done once."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from loyalty.auth.services import authenticate
from loyalty.extensions import db
from loyalty.idempotency import services as idempotency
from loyalty.idempotency.models import IdempotencyRecord
from loyalty.ledger import queries
from loyalty.ledger.models import LedgerTransaction
from loyalty.members.models import Member
from loyalty.membership import adjustments
from tests.concurrency import race_requests, raised

ADJUST = "/v1/admin/members/m1/adjustments"
GOODWILL = {"points": 500, "reason": "goodwill"}


@pytest.fixture(autouse=True)
def member(client: FlaskClient, checkout: dict[str, str]) -> None:
    assert (
        client.post("/v1/members", json={"external_id": "m1"}, headers=checkout).status_code == 201
    )


def with_key(headers: dict[str, str], key: str) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key}


def post(client: FlaskClient, path: str, body: Any, headers: dict[str, str]) -> TestResponse:
    """POST exactly these bytes, so a test can fingerprint the same request."""
    return client.post(
        path, data=json.dumps(body), content_type="application/json", headers=headers
    )


def adjusted_points(app: Flask) -> list[int]:
    """The member's adjustments in the ledger, as their point changes."""
    with app.app_context():
        txns = db.session.execute(
            sa.select(LedgerTransaction)
            .join(Member, Member.id == LedgerTransaction.member_id)
            .where(Member.external_id == "m1", LedgerTransaction.kind == "adjust")
            .order_by(LedgerTransaction.id)
        ).scalars()
        return [queries.member_points_delta(txn) for txn in txns]


def key_id(app: Flask, headers: dict[str, str]) -> int:
    with app.app_context():
        caller = authenticate(db.session, headers["Authorization"].removeprefix("Bearer "))
        assert caller is not None
        return caller.key_id


def leftover_claim(app: Flask, headers: dict[str, str], key: str, path: str, body: Any) -> None:
    """A claim without an answer, as earlier versions committed before doing the work (and
    left behind when the request died)."""
    fingerprint = idempotency.request_fingerprint("POST", f"{path}?", json.dumps(body).encode())
    with app.app_context():
        db.session.add(
            IdempotencyRecord(api_key_id=key_id(app, headers), key=key, request_hash=fingerprint)
        )
        db.session.commit()


def test_a_retry_replays_the_first_response_without_redoing_the_work(app, client, admin):
    first = post(client, ADJUST, GOODWILL, with_key(admin, "k1"))
    retry = post(client, ADJUST, GOODWILL, with_key(admin, "k1"))

    assert first.status_code == retry.status_code == 201
    assert retry.get_data() == first.get_data()
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert adjusted_points(app) == [500]


def test_the_first_response_is_not_marked_as_replayed(client, admin):
    response = post(client, ADJUST, GOODWILL, with_key(admin, "k1"))

    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response.headers


def test_without_a_key_every_post_does_the_work(app, client, admin):
    post(client, ADJUST, GOODWILL, admin)
    post(client, ADJUST, GOODWILL, admin)

    assert adjusted_points(app) == [500, 500]


def test_the_same_key_with_a_different_body_is_a_422_idempotency_key_reused(app, client, admin):
    post(client, ADJUST, GOODWILL, with_key(admin, "k1"))

    response = post(client, ADJUST, {"points": 900, "reason": "goodwill"}, with_key(admin, "k1"))

    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert response.json["code"] == "idempotency_key_reused"
    assert adjusted_points(app) == [500]


def test_the_same_key_for_another_endpoint_is_reused_too(client, admin):
    post(client, ADJUST, GOODWILL, with_key(admin, "k1"))

    response = post(client, "/v1/members", {"external_id": "m2"}, with_key(admin, "k1"))

    assert response.status_code == 422
    assert response.json["code"] == "idempotency_key_reused"
    assert client.get("/v1/members/m2", headers=admin).status_code == 404


def test_a_refusal_is_replayed_even_after_the_reason_for_it_is_gone(app, client, admin):
    spend = {"points": -300, "reason": "correction"}
    first = post(client, ADJUST, spend, with_key(admin, "k1"))
    assert first.status_code == 422
    assert first.json["code"] == "insufficient_points"
    post(client, ADJUST, GOODWILL, admin)

    retry = post(client, ADJUST, spend, with_key(admin, "k1"))

    assert retry.status_code == 422
    assert retry.mimetype == "application/problem+json"
    assert retry.get_data() == first.get_data()
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert adjusted_points(app) == [500]


def test_a_validation_error_is_replayed(client, admin):
    first = post(client, ADJUST, {"points": 5}, with_key(admin, "k1"))
    retry = post(client, ADJUST, {"points": 5}, with_key(admin, "k1"))

    assert first.status_code == retry.status_code == 422
    assert retry.get_data() == first.get_data()
    assert retry.headers["Idempotent-Replayed"] == "true"


def test_a_server_error_is_not_stored_so_a_retry_does_the_work(app, client, admin, monkeypatch):
    real_adjust = adjustments.adjust

    def fail_once(*args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(adjustments, "adjust", real_adjust)
        raise RuntimeError("crashed mid-request")

    monkeypatch.setattr(adjustments, "adjust", fail_once)

    assert post(client, ADJUST, GOODWILL, with_key(admin, "k1")).status_code == 500
    retry = post(client, ADJUST, GOODWILL, with_key(admin, "k1"))

    assert retry.status_code == 201
    assert "Idempotent-Replayed" not in retry.headers
    assert adjusted_points(app) == [500]


def test_keys_are_scoped_per_api_key(app, client, headers_for):
    one, other = headers_for("admin"), headers_for("admin")

    first = post(client, ADJUST, GOODWILL, with_key(one, "shared"))
    second = post(client, ADJUST, GOODWILL, with_key(other, "shared"))

    assert first.status_code == second.status_code == 201
    assert "Idempotent-Replayed" not in second.headers
    assert first.json["id"] != second.json["id"]
    assert adjusted_points(app) == [500, 500]


def test_a_claim_left_without_an_answer_is_taken_over_by_the_retry(app, client, admin):
    leftover_claim(app, admin, "k1", ADJUST, GOODWILL)

    response = post(client, ADJUST, GOODWILL, with_key(admin, "k1"))
    again = post(client, ADJUST, GOODWILL, with_key(admin, "k1"))

    assert response.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_data() == response.get_data()
    assert adjusted_points(app) == [500]


def test_a_claim_left_for_another_body_is_still_reused(app, client, admin):
    leftover_claim(app, admin, "k1", ADJUST, {"points": 1, "reason": "x"})

    response = post(client, ADJUST, GOODWILL, with_key(admin, "k1"))

    assert response.status_code == 422
    assert response.json["code"] == "idempotency_key_reused"
    assert adjusted_points(app) == []


def test_a_failed_request_leaves_no_claim_behind(app, client, admin, monkeypatch):
    def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("crashed mid-request")

    monkeypatch.setattr(adjustments, "adjust", crash)
    assert post(client, ADJUST, GOODWILL, with_key(admin, "k1")).status_code == 500

    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(IdempotencyRecord.id))) == 0


@pytest.mark.committed  # threads or processes, each on its own connection
def test_a_retry_while_the_first_request_runs_waits_for_it_and_replays_its_answer(app, admin):
    """No 409 to retry on: the duplicate's claim waits for the first request's transaction."""
    first_started, let_first_finish = threading.Event(), threading.Event()
    real_adjust = adjustments.adjust
    responses: dict[str, TestResponse] = {}

    def slow_adjust(*args: Any, **kwargs: Any) -> Any:
        first_started.set()
        assert let_first_finish.wait(timeout=10)
        return real_adjust(*args, **kwargs)

    def send(name: str) -> None:
        responses[name] = post(app.test_client(), ADJUST, GOODWILL, with_key(admin, "k1"))

    adjustments.adjust = slow_adjust
    try:
        first = threading.Thread(target=send, args=("first",))
        first.start()
        assert first_started.wait(timeout=10)
        adjustments.adjust = real_adjust
        retry = threading.Thread(target=send, args=("retry",))
        retry.start()
        retry.join(timeout=0.5)
        assert retry.is_alive(), "the retry answered while the first request still ran"
        let_first_finish.set()
        first.join(timeout=30)
        retry.join(timeout=30)
    finally:
        adjustments.adjust = real_adjust
        let_first_finish.set()

    assert responses["first"].status_code == responses["retry"].status_code == 201
    assert responses["retry"].headers["Idempotent-Replayed"] == "true"
    assert responses["retry"].get_data() == responses["first"].get_data()
    assert adjusted_points(app) == [500]


@pytest.mark.parametrize("length", [0, 256])
def test_an_idempotency_key_must_be_1_to_255_characters(app, client, admin, length):
    response = post(client, ADJUST, GOODWILL, with_key(admin, "k" * length))

    assert response.status_code == 422
    assert response.json["code"] == "validation_error"
    assert list(response.json["errors"]) == ["Idempotency-Key"]
    assert adjusted_points(app) == []


def test_an_enrolment_retry_replays_the_201(client, checkout):
    body = {"external_id": "m2", "email": "m2@example.com"}

    first = post(client, "/v1/members", body, with_key(checkout, "enrol-m2"))
    retry = post(client, "/v1/members", body, with_key(checkout, "enrol-m2"))
    plain = post(client, "/v1/members", body, checkout)

    assert first.status_code == retry.status_code == 201
    assert retry.get_data() == first.get_data()
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert plain.status_code == 200
    assert plain.json["external_id"] == "m2"


@pytest.mark.committed  # threads or processes, each on its own connection
@pytest.mark.parametrize("attempt", range(5))
def test_two_simultaneous_retries_do_the_work_once(app, admin, attempt):
    responses = race_requests(
        app, 2, lambda client: post(client, ADJUST, GOODWILL, with_key(admin, "race"))
    )

    assert raised(responses) == []
    assert adjusted_points(app) == [500]
    assert [response.status_code for response in responses] == [201, 201]
    assert responses[0].get_data() == responses[1].get_data()
    assert sorted(r.headers.get("Idempotent-Replayed", "") for r in responses) == ["", "true"]
