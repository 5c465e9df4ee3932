"""Rate limits per API key, checked right after authentication, with the `limits` library.

Every authenticated /v1 request counts against its API key's limit: one budget per key over
all routes, sized by the key's scopes (the most generous of them, so a key that is both `app`
and `checkout` gets the larger of the two). A member token has a budget of its own, by the
`member` limit, apart from its key's. The check runs once the key is known and before
the request's transaction opens, so a refused request claims no Idempotency-Key and writes
nothing. Requests without a valid key are limited per client address instead, and only their
401s count: past that limit a bad key gets 429 instead of another 401, and an authenticated
request never pays for the check. /healthz, /readyz, /metrics, /docs, /openapi.json and the
console are not limited.

A refusal is a 429 problem+json, code `rate_limited`, with `Retry-After` (whole seconds until
a request is accepted again) and X-RateLimit-Limit/-Remaining/-Reset. Successful answers
carry no RateLimit headers: reading the window is a second round trip to the store, which
every request would pay.

**Why `limits` and not Flask-Limiter's request hooks.** `limits` is Flask-Limiter's engine
(same maintainer: the storages, the strategies, the Redis Lua scripts). Flask-Limiter's
per-request machinery (per-route, blueprint and meta limits, exemption scopes) cost about
0.2 ms of CPU per request on top of the store call, measured on this code (a card read costs
1.5-2 ms in all); this hook costs the store call and a few microseconds.

**Strategy: sliding window counter.** One round trip per request (one Lua script on Redis)
over two counters per key, like the fixed window, without the fixed window's burst of twice
the limit across a window's edge; the moving window keeps one timestamp per request (a
6,000-entry list per checkout key) and trims it on every hit.

**When the store fails, the limiter fails open, to per-process limits.** A checkout must
never fail because the limiter's store did. A failed call is logged and counted
(`loyalty_rate_limit_storage_errors_total`), and the process counts in its own memory
instead (each worker allows the full limit, so a runaway client is still slowed) for 1 s,
then 2, 4, ... at most 30 s between attempts at the store until one succeeds. Redis gets
short timeouts and no retries, so an unreachable store costs at most one short wait per
attempt, not one per request.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, current_app, g, request
from limits import RateLimitItem, parse_many
from limits.errors import StorageError
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter

from loyalty import metrics
from loyalty.api.auth import Unauthorized
from loyalty.api.errors import handle_loyalty_error, problem
from loyalty.auth.models import Scope
from loyalty.auth.services import Caller

log = logging.getLogger(__name__)

EXTENSION = "loyalty.rate_limiter"
UNAUTHENTICATED = "unauthenticated"
# Each limit's environment variable, for the error that names a bad one.
SETTINGS = {
    Scope.CHECKOUT.value: "LOYALTY_RATE_LIMIT_CHECKOUT",
    Scope.APP.value: "LOYALTY_RATE_LIMIT_APP",
    Scope.ADMIN.value: "LOYALTY_RATE_LIMIT_ADMIN",
    Scope.MEMBER.value: "LOYALTY_RATE_LIMIT_MEMBER",
    UNAUTHENTICATED: "LOYALTY_RATE_LIMIT_UNAUTHENTICATED",
}
# A limiter waiting on its store holds up the request it guards: Redis gets short connect and
# read timeouts and no retries, whatever the redis-py version defaults to.
REDIS_OPTIONS: dict[str, Any] = {
    "socket_connect_timeout": 0.25,
    "socket_timeout": 0.25,
    "retry_on_error": [],
    "retry": None,
}
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 30.0


def parse_limit(setting: str, value: str) -> RateLimitItem:
    """One limit such as "6000/minute" or "100 per second". Raises ValueError naming the
    setting for anything else (several limits would cost a round trip each)."""
    try:
        items = parse_many(value)
    except ValueError:
        items = []
    if len(items) != 1:
        raise ValueError(
            f"{setting}={value!r}: expected one rate limit, such as '6000/minute' or "
            "'100 per second'"
        )
    return items[0]


@dataclass(frozen=True)
class Limits:
    """The limits: per scope, and per address for requests without a valid key."""

    by_scope: dict[str, RateLimitItem]
    unauthenticated: RateLimitItem

    @classmethod
    def from_settings(cls, settings: dict[str, str]) -> Limits:
        """Raises ValueError for a missing or malformed limit."""
        parsed = {name: parse_limit(env, settings.get(name, "")) for name, env in SETTINGS.items()}
        unauthenticated = parsed.pop(UNAUTHENTICATED)
        return cls(parsed, unauthenticated)

    def for_scopes(self, scopes: frozenset[Scope]) -> RateLimitItem:
        """The most generous limit (in requests per second) among the key's scopes."""
        return max(
            (self.by_scope[scope.value] for scope in scopes),
            key=lambda item: item.amount / item.get_expiry(),
        )


def storage_options(uri: str) -> dict[str, Any]:
    return dict(REDIS_OPTIONS) if uri.startswith(("redis", "valkey")) else {}


class RateLimiter:
    """Counts hits in the shared store, or in this process's memory while the store is down."""

    def __init__(self, uri: str, prefix: str, limits: Limits) -> None:
        self.limits = limits
        self.prefix = prefix
        store = storage_from_string(uri, wrap_exceptions=True, **storage_options(uri))
        if not isinstance(store, Storage):
            raise ValueError(f"LOYALTY_RATE_LIMIT_STORAGE={uri!r}: an async storage")
        self.shared = SlidingWindowCounterRateLimiter(store)
        self.local = SlidingWindowCounterRateLimiter(MemoryStorage())
        self.store_down_until = 0.0
        self.backoff = 0.0

    def _strategy(self) -> SlidingWindowCounterRateLimiter:
        if self.store_down_until and time.time() < self.store_down_until:
            return self.local
        return self.shared

    def _store_failed(self, error: StorageError) -> None:
        metrics.RATE_LIMIT_STORAGE_ERRORS.inc()
        self.backoff = min(MAX_BACKOFF, self.backoff * 2 or FIRST_BACKOFF)
        self.store_down_until = time.time() + self.backoff
        log.warning(
            "rate limit storage failed, counting in memory for %.0f s: %s",
            self.backoff,
            error.storage_error,
        )

    def hit(self, item: RateLimitItem, *identifiers: str) -> bool:
        """Count one request; False when it is over `item`. Never raises for the store."""
        strategy = self._strategy()
        try:
            allowed = strategy.hit(item, self.prefix, *identifiers)
        except StorageError as error:
            self._store_failed(error)
            return self.local.hit(item, self.prefix, *identifiers)
        if strategy is self.shared and self.store_down_until:
            log.info("rate limit storage is back")
            self.store_down_until = self.backoff = 0.0
        return allowed

    def reset_at(self, item: RateLimitItem, *identifiers: str) -> float:
        """When the window of a refused request frees a slot (a whole window from now if the
        store cannot say)."""
        try:
            stats = self._strategy().get_window_stats(item, self.prefix, *identifiers)
        except StorageError:
            return time.time() + item.get_expiry()
        return stats.reset_time


def _limiter() -> RateLimiter:
    limiter: RateLimiter = current_app.extensions[EXTENSION]
    return limiter


def _retry_after(reset: float) -> int:
    """Whole seconds until just past `reset` (a window's edge still counts the old window), so
    a request sent that much later finds the slot free. The millisecond absorbs float error
    in the window arithmetic (19.9999999 s is 20 s, and the answer 21)."""
    return max(1, math.ceil(reset - time.time() + 0.001))


def _too_many(item: RateLimitItem, reset: float, who: str) -> Response:
    retry_after = _retry_after(reset)
    response = problem(
        429,
        "rate_limited",
        "Too many requests",
        f"{who} went over its rate limit of {item}; retry after {retry_after} seconds.",
        retry_after=retry_after,
    )
    response.headers["Retry-After"] = str(retry_after)
    response.headers["X-RateLimit-Limit"] = str(item.amount)
    response.headers["X-RateLimit-Remaining"] = "0"
    response.headers["X-RateLimit-Reset"] = str(math.ceil(reset))
    return response


def _check_key() -> Response | None:
    caller: Caller | None = g.get("caller")
    if caller is None:
        return None  # not an authenticated /v1 request: health, metrics, docs, the console
    limiter = _limiter()
    item = limiter.limits.for_scopes(caller.scopes)
    if caller.token_id is not None:
        # Each member token has its own budget: one customer's app must not spend the
        # budget of the key that minted it, which serves all of the shop's customers.
        identity, who = ("token", str(caller.token_id)), "This member token"
    else:
        identity, who = ("key", str(caller.key_id)), "This API key"
    if limiter.hit(item, *identity):
        return None
    return _too_many(item, limiter.reset_at(item, *identity), who)


def handle_unauthorized(error: Unauthorized) -> Response:
    """The 401, counted against the client's address; past the unauthenticated limit, 429."""
    limiter = _limiter()
    item = limiter.limits.unauthenticated
    identity = (UNAUTHENTICATED, request.remote_addr or "unknown")
    if limiter.hit(item, *identity):
        return handle_loyalty_error(error)
    return _too_many(item, limiter.reset_at(item, *identity), "This address, without a valid key,")


def init_app(app: Flask) -> None:
    """Limit authenticated /v1 requests per key. Call it after auth.init_app (the limit is the
    caller's) and before transaction.init_app (a refused request opens nothing).

    Raises ValueError for a malformed limit or storage URI, so a bad setting stops the start.
    """
    limits = Limits.from_settings(app.config["RATE_LIMITS"])
    app.extensions[EXTENSION] = RateLimiter(
        app.config["RATE_LIMIT_STORAGE"], app.config["RATE_LIMIT_KEY_PREFIX"], limits
    )
    app.before_request(_check_key)
    app.register_error_handler(Unauthorized, handle_unauthorized)
