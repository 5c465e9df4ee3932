"""Rate limits: per API key by scope, per address without a valid key, failing open to
per-process limits when the store (Redis) is down.

The suite's app runs the limiter with limits it never reaches (tests/helpers.py build_app);
these tests install a limiter with small limits of their own on the test's app (``limit``),
or build an app from such a configuration. Time is the test's: ``clock`` stands in for the
clock of the limits library's memory storage and strategies and of loyalty.api.limits.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import limits.storage.memory
import limits.strategies
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import SlidingWindowCounterRateLimiter
from prometheus_client.parser import text_string_to_metric_families

from loyalty import config
from loyalty.api import limits as rate_limits
from loyalty.api.limits import EXTENSION, Limits, RateLimiter
from tests.factories import ApiKeyFactory, auth
from tests.helpers import app_built, created, ok, problem

REDIS_URL = "redis://127.0.0.1:6379/0"
CLOSED_PORT = "redis://127.0.0.1:1"
GENEROUS = dict.fromkeys(config.RATE_LIMIT_DEFAULTS, "1000/minute")
# A moment 40 s into a minute-long window ([999_960, 1_000_020) in epoch seconds).
START = 1_000_000.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock(START)
    fake = SimpleNamespace(time=clock.time)
    for module in (limits.storage.memory, limits.strategies, rate_limits):
        monkeypatch.setattr(module, "time", fake)
    return clock


@pytest.fixture
def limit(app: Flask, monkeypatch: pytest.MonkeyPatch) -> Callable[..., RateLimiter]:
    """limit(checkout="3/minute", storage=...) -> the test app's limiter, now with these
    limits (the others generous) on that storage (default: memory)."""

    def install(storage: str = "memory://", prefix: str = "test", **settings: str) -> RateLimiter:
        limiter = RateLimiter(storage, prefix, Limits.from_settings({**GENEROUS, **settings}))
        monkeypatch.setitem(app.extensions, EXTENSION, limiter)
        return limiter

    return install


def storage_errors(client: FlaskClient) -> float:
    text = client.get("/metrics").get_data(as_text=True)
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "loyalty_rate_limit_storage_errors_total"
    )


def card(client: FlaskClient, headers: dict[str, str]) -> int:
    """GET a member card (the member need not exist: a 404 counts like any answer)."""
    return client.get("/v1/members/c1", headers=headers).status_code


def refused(client: FlaskClient, headers: dict[str, str]) -> dict[str, object]:
    response = client.get("/v1/members/c1", headers=headers)
    body = problem(response, 429, "rate_limited")
    assert response.headers["Retry-After"] == str(body["retry_after"])
    return body


# --- per key ---------------------------------------------------------------------------------


def test_a_key_over_its_limit_gets_429_problem_json_with_retry_after(
    client, limit, checkout, clock
):
    limit(checkout="3/minute")
    assert [card(client, checkout) for _ in range(3)] == [404, 404, 404]

    response = client.get("/v1/members/c1", headers=checkout)

    body = problem(response, 429, "rate_limited")
    assert body["type"] == "urn:problem:loyalty:rate_limited"
    assert body["title"] == "Too many requests"
    assert "3 per 1 minute" in body["detail"]
    # The window ends 20 s from now; a request 21 s from now finds a slot free.
    assert response.headers["Retry-After"] == "21"
    assert body["retry_after"] == 21
    assert response.headers["X-RateLimit-Limit"] == "3"
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert response.headers["X-RateLimit-Reset"] == str(int(START) + 20)


def test_one_budget_per_key_over_every_route(client, limit, checkout, clock):
    limit(checkout="3/minute")
    created(client.post("/v1/members", json={"external_id": "c1"}, headers=checkout))
    ok(client.get("/v1/members/c1", headers=checkout))
    ok(client.get("/v1/members/c1/transactions", headers=checkout))

    response = client.post(
        "/v1/orders/quote",
        json={"member_id": "c1", "currency": "USD", "lines": []},
        headers=checkout,
    )

    problem(response, 429, "rate_limited")


def test_another_key_is_still_served(client, limit, headers_for, clock):
    limit(checkout="2/minute")
    first, second = headers_for("checkout"), headers_for("checkout")
    card(client, first), card(client, first)
    refused(client, first)

    assert card(client, second) == 404


def test_each_member_token_has_its_own_budget_apart_from_its_keys(
    client, limit, app_key, member, clock
):
    limit(member="2/minute", app="3/minute")
    minted = [
        created(client.post("/v1/members/c1/tokens", json={}, headers=app_key)) for _ in range(2)
    ]
    first, second = (auth(body["token"]) for body in minted)
    assert [card(client, first) for _ in range(2)] == [200, 200]

    body = refused(client, first)

    assert body["detail"].startswith("This member token went over its rate limit of 2 per")
    assert card(client, second) == 200
    assert card(client, app_key) == 200  # the key spent 2 of its 3 on minting


def test_a_refused_request_does_no_work_and_claims_no_idempotency_key(
    client, limit, checkout, admin, clock
):
    limit(checkout="1/minute")
    card(client, checkout)
    enrol = {"json": {"external_id": "c9"}, "headers": {**checkout, "Idempotency-Key": "e-1"}}

    problem(client.post("/v1/members", **enrol), 429, "rate_limited")
    problem(client.get("/v1/members/c9", headers=admin), 404, "not_found")

    clock.advance(120)
    response = client.post("/v1/members", **enrol)
    created(response)
    assert "Idempotent-Replayed" not in response.headers


# --- scopes and configuration ----------------------------------------------------------------


def test_each_scope_has_its_own_limit(client, limit, checkout, app_key, clock):
    limit(checkout="4/minute", app="2/minute")
    card(client, app_key), card(client, app_key)
    refused(client, app_key)

    assert [card(client, checkout) for _ in range(4)] == [404] * 4
    refused(client, checkout)


def test_a_key_with_several_scopes_gets_the_most_generous_of_their_limits(
    client, limit, headers_for, clock
):
    limit(checkout="1/second", app="30/minute")
    both = headers_for("app", "checkout")  # 1 per second is more than 30 per minute

    assert card(client, both) == 404
    refused(client, both)
    clock.advance(2)
    assert card(client, both) == 404


def test_the_defaults_per_scope_and_their_settings(monkeypatch):
    for name in config.RATE_LIMIT_DEFAULTS:
        monkeypatch.delenv(f"LOYALTY_RATE_LIMIT_{name.upper()}", raising=False)
    assert config.rate_limits() == {
        "checkout": "6000/minute",
        "app": "3000/minute",
        "admin": "1200/minute",
        "member": "120/minute",
        "unauthenticated": "60/minute",
    }

    monkeypatch.setenv("LOYALTY_RATE_LIMIT_CHECKOUT", "50 per second")
    monkeypatch.setenv("LOYALTY_RATE_LIMIT_STORAGE", REDIS_URL)

    assert config.rate_limits()["checkout"] == "50 per second"
    assert config.from_environment()["RATE_LIMIT_STORAGE"] == REDIS_URL
    assert Limits.from_settings(config.rate_limits()).by_scope["checkout"] == parse("50/second")


@pytest.mark.parametrize("value", ["lots", "", "10/minute;1/second"])
def test_a_malformed_limit_stops_the_app_from_starting(value):
    with pytest.raises(ValueError, match="LOYALTY_RATE_LIMIT_APP"):
        Limits.from_settings({**GENEROUS, "app": value})


@pytest.mark.committed
def test_the_configured_limits_are_the_apps(app, database_url, clock):
    """Not through ``limit``: an app built from its configuration limits as configured. On the
    test's clock: on the wall's, a minute turning between the requests let the third through."""
    with app_built(database_url, RATE_LIMITS={**GENEROUS, "checkout": "2/minute"}) as built:
        with built.app_context():
            checkout = auth(ApiKeyFactory(scopes=("checkout",)))
        client = built.test_client()

        assert [card(client, checkout) for _ in range(2)] == [404, 404]
        refused(client, checkout)


# --- the window --------------------------------------------------------------------------------


def test_retry_after_is_when_the_next_request_is_accepted(client, limit, checkout, clock):
    limit(checkout="3/minute")
    for _ in range(3):
        card(client, checkout)
    retry_after = refused(client, checkout)["retry_after"]
    assert isinstance(retry_after, int)

    clock.advance(retry_after - 1)
    refused(client, checkout)
    clock.advance(1)
    assert card(client, checkout) == 404
    refused(client, checkout)  # one slot freed, not the whole window


def test_the_whole_limit_is_back_two_windows_later(client, limit, checkout, clock):
    limit(checkout="3/minute")
    for _ in range(3):
        card(client, checkout)
    refused(client, checkout)

    clock.advance(120)

    assert [card(client, checkout) for _ in range(3)] == [404] * 3


# --- without a valid key ---------------------------------------------------------------------


def test_requests_without_a_valid_key_are_limited_per_address(client, limit, checkout, clock):
    limit(unauthenticated="2/minute")
    bad = auth("lk_not-a-key")
    problem(client.get("/v1/members/c1", headers=bad), 401, "unauthorized")
    problem(client.get("/v1/members/c1"), 401, "unauthorized")

    response = client.get("/v1/members/c1", headers=bad)

    problem(response, 429, "rate_limited")
    assert response.headers["Retry-After"] == "21"
    # Another address still gets its 401; a valid key from this address is served.
    elsewhere = client.get("/v1/members/c1", headers=bad, environ_base={"REMOTE_ADDR": "192.0.2.7"})
    problem(elsewhere, 401, "unauthorized")
    assert card(client, checkout) == 404


@pytest.mark.committed
@pytest.mark.parametrize("proxies", [0, 1])
def test_behind_a_trusted_proxy_the_address_is_the_clients(database_url, proxies):
    """With LOYALTY_PROXIES=1 (deploy/'s nginx) the address is X-Forwarded-For's; without it
    a client cannot choose its address by sending that header."""
    limits_ = {**GENEROUS, "unauthenticated": "2/minute"}
    with app_built(database_url, RATE_LIMITS=limits_, PROXIES=proxies) as built:
        client = built.test_client()

        def from_(address: str) -> int:
            headers = {**auth("lk_not-a-key"), "X-Forwarded-For": address}
            return client.get("/v1/members/c1", headers=headers).status_code

        statuses = [from_("198.51.100.1"), from_("198.51.100.1"), from_("198.51.100.2")]

    assert statuses == ([401, 401, 401] if proxies else [401, 401, 429])


def test_service_endpoints_are_not_limited(client, limit, clock):
    limit(**dict.fromkeys(config.RATE_LIMIT_DEFAULTS, "1/minute"))
    for path in ("/healthz", "/metrics", "/openapi.json", "/docs"):
        for _ in range(3):
            assert client.get(path).status_code == 200, path


# --- the store down ----------------------------------------------------------------------------


def test_with_the_store_down_requests_are_served_and_the_failure_counted(
    client, limit, checkout, clock
):
    limiter = limit(storage=CLOSED_PORT)
    before = storage_errors(client)

    assert [card(client, checkout) for _ in range(5)] == [404] * 5

    # One failed attempt; then the process counts in memory for a second before trying again.
    assert storage_errors(client) == before + 1
    assert limiter.store_down_until == START + 1
    clock.advance(1.5)
    assert card(client, checkout) == 404
    assert storage_errors(client) == before + 2
    assert limiter.store_down_until == START + 1.5 + 2


def test_with_the_store_down_each_process_still_limits_in_memory(client, limit, checkout, clock):
    limit(storage=CLOSED_PORT, checkout="2/minute")
    card(client, checkout), card(client, checkout)

    refused(client, checkout)


def test_the_limiter_uses_the_store_again_once_it_answers(client, limit, checkout, clock):
    limiter = limit(storage=CLOSED_PORT, checkout="3/minute")
    card(client, checkout)
    assert limiter.store_down_until

    limiter.shared = SlidingWindowCounterRateLimiter(MemoryStorage())  # the store is back
    clock.advance(1.5)
    card(client, checkout)

    assert limiter.store_down_until == 0
    assert limiter.backoff == 0


# --- real Redis --------------------------------------------------------------------------------


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test's own on the Redis at 127.0.0.1:6379 (skipped if it is not
    running, except with CI=true); its keys are deleted afterwards."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as error:
        client.close()
        message = f"Redis unreachable at {REDIS_URL}: {error}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    prefix = f"test-{uuid.uuid4().hex}"
    yield prefix
    for key in client.scan_iter(match=f"*{prefix}*"):
        client.delete(key)
    client.close()


def test_redis_limits_per_key_and_shares_counts_between_processes(
    client, limit, headers_for, redis_prefix, app, monkeypatch
):
    limit(storage=REDIS_URL, prefix=redis_prefix, checkout="3/minute")
    first, second = headers_for("checkout"), headers_for("checkout")
    assert [card(client, first) for _ in range(2)] == [404, 404]

    # Another worker process: its own limiter object, the same Redis and prefix.
    other_worker = RateLimiter(
        REDIS_URL, redis_prefix, Limits.from_settings({**GENEROUS, "checkout": "3/minute"})
    )
    monkeypatch.setitem(app.extensions, EXTENSION, other_worker)
    assert card(client, first) == 404
    body = refused(client, first)

    assert 1 <= int(str(body["retry_after"])) <= 61
    assert card(client, second) == 404
    assert other_worker.store_down_until == 0
