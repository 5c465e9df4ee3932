"""Reads that may lag go to the replica (loyalty.api.replica); on SQLite and PostgreSQL.

The "replica" is a second connection pool on the test database, made as the app makes one
(loyalty.replica.replica_engine: every transaction read-only), so it reads what the primary
committed: these tests commit. Every statement is recorded with the engine that ran it. The
replica's health is the test's to set (a fake probe) and time is the test's clock.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import REGISTRY
from sqlalchemy import event
from sqlalchemy.engine import Engine

from loyalty import config
from loyalty.api.replica import EXTENSION, WRITTEN, attach, detach, is_marked
from loyalty.automations import services as automations
from loyalty.extensions import db
from loyalty.ledger.models import MemberBalance
from loyalty.replica import (
    DOWN_RETRY_SECONDS,
    PROBE_INTERVAL_SECONDS,
    Fallback,
    ReplicaHealth,
    ReplicaRouter,
    Target,
    postgres_probe,
    primary_written,
    replica_engine,
    same_database_probe,
)
from loyalty.schemas.automations import AutomationInSchema
from tests.api.test_insight_api import AS_OF as INSIGHT_AS_OF
from tests.api.test_insight_api import DAY
from tests.api.test_insight_api import build as build_insight
from tests.console import csrf_token, sign_in
from tests.factories import ApiKeyFactory, MemberFactory, RuleFactory, auth
from tests.helpers import app_built, created, ok, problem, services

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


@pytest.mark.postgresql_only  # a server process to terminate
def test_a_replica_connection_cut_mid_request_fails_it_with_503_and_the_next_reads_the_primary(
    app: Flask,
    client: FlaskClient,
    admin: dict[str, str],
    replica: Replica,
    log_lines: io.StringIO,
) -> None:
    """The replica's server process ends (a restart, a failover) between the request's first
    statement on it and the next."""
    with app.app_context():
        primary = db.engine

    def cut(connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "audit_log" in statement:
            pid = connection.connection.dbapi_connection.info.backend_pid
            with primary.connect() as other:
                other.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")

    event.listen(replica.engine, "before_cursor_execute", cut)
    try:
        failed = client.get(AUDIT_LOG, headers=admin)
    finally:
        event.remove(replica.engine, "before_cursor_execute", cut)
    after = client.get(AUDIT_LOG, headers=admin)

    problem(failed, 503, "service_unavailable")
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


# --- every marked view, on a read-only replica -------------------------------------------------


@dataclass(frozen=True)
class World:
    rule: str
    automation: str
    segment: str


def build_world(app: Flask, client: FlaskClient, admin: dict[str, str]) -> World:
    """Members with orders and a refreshed insight (tests/api/test_insight_api.py's), a rule,
    an automation and a segment: something for every marked view to read."""
    build_insight(app)
    with services(app) as session:
        rule = RuleFactory()
        automation = automations.create_automation(
            session,
            AutomationInSchema().load(
                {
                    "name": "Welcome",
                    "trigger": {"kind": "enrolled", "delay_days": 0},
                    "actions": [{"type": "webhook"}],
                }
            ),
            "test",
        )
    segment = {"key": "buyers", "name": "Buyers", "filter": {"orders": {"min": 1}}}
    created(client.post("/v1/admin/segments", json=segment, headers=admin))
    return World(str(rule.public_id), str(automation.public_id), "buyers")


def marked_paths(world: World) -> dict[str, str]:
    """Each route marked reads_from_replica, and a request to it in `world`."""
    split = (INSIGHT_AS_OF - 15 * DAY).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "/v1/admin/reports/liability": "/v1/admin/reports/liability",
        "/v1/admin/reports/activity": "/v1/admin/reports/activity?from=2026-03-01&to=2026-04-30",
        "/v1/admin/rules/<uuid:rule_id>/report": f"/v1/admin/rules/{world.rule}/report",
        "/v1/admin/automations/<uuid:automation_id>/report": (
            f"/v1/admin/automations/{world.automation}/report"
        ),
        "/v1/admin/members": "/v1/admin/members?q=a&recency_score=3",
        "/v1/admin/members.csv": "/v1/admin/members.csv",
        "/v1/admin/members/<string:external_id>/insight": "/v1/admin/members/ada/insight",
        "/v1/admin/insight": "/v1/admin/insight",
        "/v1/admin/insight/evaluation": f"/v1/admin/insight/evaluation?split={split}",
        "/v1/admin/segments": "/v1/admin/segments",
        "/v1/admin/segments/<string:segment_key>": f"/v1/admin/segments/{world.segment}",
        "/v1/admin/audit-log": AUDIT_LOG,
        "/admin/": "/admin/",
        "/admin/audit": "/admin/audit",
        "/admin/insight": "/admin/insight",
        "/admin/members": "/admin/members?q=a",
        "/admin/members.csv": "/admin/members.csv",
        "/admin/rules/<uuid:rule_id>/report": f"/admin/rules/{world.rule}/report",
        "/admin/automations/<uuid:automation_id>/report": (
            f"/admin/automations/{world.automation}/report"
        ),
    }


# The reports count what settling the members due would post, without writing (they used to
# settle them inside the GET, which a read-only replica refuses).
REPORTS = {"/v1/admin/reports/liability", "/v1/admin/reports/activity", "/admin/"}


def marked_routes(app: Flask) -> set[str]:
    """The routes whose GET is marked reads_from_replica; each must answer nothing else."""
    found = set()
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        view_class = getattr(view, "view_class", None)
        handlers = (
            {m: getattr(view_class, m.lower(), None) for m in rule.methods or ()}
            if view_class
            else dict.fromkeys(rule.methods or (), view)
        )
        marked = {method for method, handler in handlers.items() if is_marked(handler)}
        if marked:
            assert marked <= {"GET", "HEAD", "OPTIONS"}, (rule.rule, marked)
            found.add(rule.rule)
    return found


def read_on_the_replica(client: FlaskClient, replica: Replica, path: str, **kwargs: Any) -> int:
    replica.forget()
    response = client.get(path, **kwargs)
    response.get_data()  # a streamed CSV reads as it is sent
    assert replica.on_replica, path
    return response.status_code


def test_the_marked_views_are_the_reads_that_may_lag(app: Flask) -> None:
    world = World("r", "a", "s")
    assert marked_routes(app) == set(marked_paths(world))


def test_every_marked_view_answers_from_a_read_only_replica(
    app: Flask, console: FlaskClient, admin: dict[str, str], replica: Replica
) -> None:
    world = build_world(app, console, admin)
    answers = {
        route: read_on_the_replica(
            console, replica, path, headers=admin if path.startswith("/v1") else {}
        )
        for route, path in marked_paths(world).items()
    }

    # A write on the replica is a server error: its transactions are read-only.
    assert {route: status for route, status in answers.items() if status != 200} == {
        "/v1/admin/insight/evaluation": 422  # evaluation_not_possible on this small history
    }


@pytest.mark.parametrize("route", sorted(REPORTS))
def test_reports_answer_from_a_read_only_replica_with_members_due(
    app: Flask, console: FlaskClient, admin: dict[str, str], replica: Replica, route: str
) -> None:
    world = build_world(app, console, admin)
    with services(app) as session:
        session.execute(sa.update(MemberBalance).values(next_due_at=INSIGHT_AS_OF))
        session.commit()
    path = marked_paths(world)[route]

    status = read_on_the_replica(
        console, replica, path, headers=admin if path.startswith("/v1") else {}
    )

    assert status == 200


# --- the app's own replica, from its configuration ---------------------------------------------


def test_an_app_configured_with_a_replica_probes_it_and_reads_from_it(
    app: Flask, log_lines: io.StringIO
) -> None:
    url = database_of(app)
    with app_built(
        url,
        REPLICA_DATABASE_URI=url,
        REPLICA_ENGINE_OPTIONS=config.replica_engine_options(url),
        REPLICA_MAX_LAG_SECONDS=5.0,
    ) as configured:
        with services(configured):
            key: str = ApiKeyFactory(scopes=("admin",))
        ok(configured.test_client().get(AUDIT_LOG, headers=auth(key)))
        router = configured.extensions[EXTENSION]
        router.engine.dispose()

    assert served_by(log_lines) == [(AUDIT_LOG, "replica")]
    # This "replica" is the primary itself, so never behind it.
    assert counted("loyalty_replica_lag_seconds") == 0.0


@pytest.mark.postgresql_only  # the probe's queries are PostgreSQL's
def test_the_postgresql_probe_reads_the_replicas_position(app: Flask, replica: Replica) -> None:
    with app.app_context():
        probe = postgres_probe(replica.engine, lambda: db.engine)
        health = probe()
        assert health is not None
        after = primary_written(db.engine)

    assert health.lag_seconds == 0.0
    assert after is not None
    assert 0 < health.replayed <= after


def test_a_replica_that_refuses_connections_is_down(app: Flask) -> None:
    url = unreachable_url(app)
    engine = replica_engine(url, config.replica_engine_options(url))
    with app.app_context():
        probe = (
            postgres_probe(engine, lambda: db.engine)
            if "postgresql" in url
            else same_database_probe(engine)
        )
        router = ReplicaRouter(engine, probe, 5.0)
        assert router.choose() == (Target.PRIMARY, Fallback.DOWN)
    engine.dispose()

    assert math.isnan(counted("loyalty_replica_lag_seconds"))
