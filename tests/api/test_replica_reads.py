"""Reads that may lag go to the replica (loyalty.api.replica); on SQLite and PostgreSQL.

The "replica" is a second connection pool on the test database, made as the app makes one
(loyalty.replica.replica_engine: every transaction read-only), so it reads what the primary
committed: these tests commit. Every statement is recorded with the engine that ran it. The
replica's health is the test's to set (a fake probe) and time is the test's clock.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import REGISTRY
from sqlalchemy import event
from sqlalchemy.engine import Engine

from loyalty import config
from loyalty.api.replica import WRITTEN, attach, detach
from loyalty.extensions import db
from loyalty.logs import JsonFormatter
from loyalty.replica import (
    DOWN_RETRY_SECONDS,
    PROBE_INTERVAL_SECONDS,
    ReplicaHealth,
    ReplicaRouter,
    replica_engine,
)
from tests.console import csrf_token, sign_in
from tests.factories import ApiKeyFactory, MemberFactory
from tests.helpers import created, ok, problem, services

pytestmark = pytest.mark.committed  # the replica reads what the primary committed

CAUGHT_UP = ReplicaHealth(0.0, 2**64 - 1)
AUDIT_LOG = "/v1/admin/audit-log"


@dataclass
class Replica:
    """The replica as the test sees it: what each engine ran, and the health it reports."""

    engine: Engine
    router: ReplicaRouter
    health: ReplicaHealth | None = CAUGHT_UP
    now: float = 0.0
    on_replica: list[str] = field(default_factory=list)
    on_primary: list[str] = field(default_factory=list)

    def forget(self) -> None:
        self.on_replica.clear()
        self.on_primary.clear()


def recorder(statements: list[str]) -> Any:
    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    return record


def database_of(app: Flask) -> str:
    with app.app_context():
        return db.engine.url.render_as_string(hide_password=False)


@pytest.fixture
def replica(app: Flask) -> Iterator[Replica]:
    url = database_of(app)
    engine = replica_engine(url, config.engine_options(url))
    fake = Replica(engine, ReplicaRouter(engine, lambda: fake.health, 5.0, lambda: fake.now))
    with app.app_context():
        primary = db.engine
    on_replica, on_primary = recorder(fake.on_replica), recorder(fake.on_primary)
    event.listen(engine, "before_cursor_execute", on_replica)
    event.listen(primary, "before_cursor_execute", on_primary)
    attach(app, fake.router)
    try:
        yield fake
    finally:
        detach(app)
        event.remove(primary, "before_cursor_execute", on_primary)
        engine.dispose()


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("loyalty.request")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(level)


def served_by(stream: io.StringIO) -> list[tuple[str, str | None]]:
    """(path, "db") of every request logged so far."""
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [(line["path"], line.get("db")) for line in lines if line["message"] == "request"]


def counted(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def touches(statements: list[str], table: str) -> bool:
    return any(table in statement for statement in statements)


# --- which server ---------------------------------------------------------------------------


def test_a_marked_read_is_served_by_the_replica_and_logged_so(
    client: FlaskClient, admin: dict[str, str], replica: Replica, log_lines: io.StringIO
) -> None:
    ok(client.patch("/v1/admin/program", json={"currency": "EUR"}, headers=admin))
    replica.forget()
    before = counted("loyalty_db_reads_total", target="replica")

    page = ok(client.get(AUDIT_LOG, headers=admin))

    assert page["items"][0]["action"] == "program.update"
    assert touches(replica.on_replica, "audit_log")
    assert not touches(replica.on_primary, "audit_log")
    # authentication stays on the primary: it runs before the view
    assert touches(replica.on_primary, "api_keys")
    assert served_by(log_lines)[-1] == (AUDIT_LOG, "replica")
    assert counted("loyalty_db_reads_total", target="replica") == before + 1


def test_a_members_own_card_history_and_lots_are_read_from_the_primary(
    client: FlaskClient, checkout: dict[str, str], replica: Replica, log_lines: io.StringIO
) -> None:
    created(client.post("/v1/members", json={"external_id": "c1"}, headers=checkout))
    replica.forget()

    for path in ("/v1/members/c1", "/v1/members/c1/transactions", "/v1/members/c1/lots"):
        ok(client.get(path, headers=checkout))

    assert replica.on_replica == []
    assert touches(replica.on_primary, "member_balances")
    assert [db_ for _, db_ in served_by(log_lines)[-3:]] == [None, None, None]


def test_a_lagging_replica_is_not_read_until_it_catches_up(
    client: FlaskClient, admin: dict[str, str], replica: Replica, log_lines: io.StringIO
) -> None:
    replica.health = ReplicaHealth(5.5, 0)  # more than the allowed 5 seconds
    before = counted("loyalty_replica_fallbacks_total", reason="lagging")

    ok(client.get(AUDIT_LOG, headers=admin))
    replica.health = ReplicaHealth(0.2, 0)
    replica.now += PROBE_INTERVAL_SECONDS / 2
    ok(client.get(AUDIT_LOG, headers=admin))  # the lag probed last is still believed
    replica.now += PROBE_INTERVAL_SECONDS / 2
    ok(client.get(AUDIT_LOG, headers=admin))

    assert [db_ for _, db_ in served_by(log_lines)] == ["primary", "primary", "replica"]
    assert counted("loyalty_replica_fallbacks_total", reason="lagging") == before + 2
    assert counted("loyalty_replica_lag_seconds") == 0.2


def test_a_replica_that_is_down_is_tried_again_after_a_while(
    client: FlaskClient, admin: dict[str, str], replica: Replica, log_lines: io.StringIO
) -> None:
    replica.health = None
    before = counted("loyalty_replica_fallbacks_total", reason="down")

    ok(client.get(AUDIT_LOG, headers=admin))
    replica.health = CAUGHT_UP
    replica.now += DOWN_RETRY_SECONDS - 0.1
    ok(client.get(AUDIT_LOG, headers=admin))
    replica.now += 0.1
    ok(client.get(AUDIT_LOG, headers=admin))

    assert [db_ for _, db_ in served_by(log_lines)] == ["primary", "primary", "replica"]
    assert counted("loyalty_replica_fallbacks_total", reason="down") == before + 2


def unreachable_url(app: Flask) -> str:
    """A replica URL that refuses connections: a port nothing listens on, or a file in a
    directory that does not exist."""
    if database_of(app).startswith("sqlite"):
        return "sqlite:////nonexistent/replica.db"
    return "postgresql+psycopg://postgres@127.0.0.1:9/replica"


def test_a_replica_lost_during_a_request_fails_it_with_503_and_the_next_reads_the_primary(
    app: Flask, client: FlaskClient, admin: dict[str, str], log_lines: io.StringIO
) -> None:
    url = unreachable_url(app)
    engine = replica_engine(url, config.engine_options(url))
    # It answered the probe, then went away before the request's first statement.
    attach(app, ReplicaRouter(engine, lambda: CAUGHT_UP, 5.0, lambda: 0.0))
    try:
        failed = client.get(AUDIT_LOG, headers=admin)
        after = client.get(AUDIT_LOG, headers=admin)
    finally:
        detach(app)
        engine.dispose()

    problem(failed, 503, "service_unavailable")
    assert failed.headers["Retry-After"] == "1"
    ok(after)
    assert [db_ for _, db_ in served_by(log_lines)] == ["replica", "primary"]


# --- the console reads its own writes -------------------------------------------------------


@pytest.fixture
def console(app: Flask, client: FlaskClient) -> FlaskClient:
    with services(app):
        key: str = ApiKeyFactory(name="ops-admin", scopes=("admin",))
        MemberFactory(c1=True)
    sign_in(client, key)
    return client


def adjust(console: FlaskClient) -> None:
    token = csrf_token(console, "/admin/members/c1")
    form = {"points": "25", "reason": "Goodwill", "csrf_token": token}
    assert console.post("/admin/members/c1/adjust", data=form).status_code == 302


@pytest.mark.postgresql_only  # WAL positions: SQLite has no replicas
def test_after_a_console_write_its_pages_wait_for_the_replica_to_replay_it(
    console: FlaskClient, replica: Replica, log_lines: io.StringIO
) -> None:
    adjust(console)
    with console.session_transaction("/admin/") as cookie:
        written = cookie[WRITTEN]
    replica.health = ReplicaHealth(0.0, written - 1)  # caught up with all but that write
    before = counted("loyalty_replica_fallbacks_total", reason="read_your_writes")

    stale = console.get("/admin/audit")
    replica.health = ReplicaHealth(0.0, written)  # probed again at once, not after a second
    fresh = console.get("/admin/audit")

    assert "points.adjust" in stale.text
    assert "points.adjust" in fresh.text
    assert [db_ for path, db_ in served_by(log_lines) if path == "/admin/audit"] == [
        "primary",
        "replica",
    ]
    assert counted("loyalty_replica_fallbacks_total", reason="read_your_writes") == before + 1


def test_the_api_never_reads_the_consoles_cookie(
    client: FlaskClient, admin: dict[str, str], replica: Replica
) -> None:
    response = client.get(AUDIT_LOG, headers=admin)

    assert "Cookie" not in response.headers.get("Vary", "")
