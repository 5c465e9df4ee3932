"""The app behind a real PgBouncer in transaction pooling mode, as deploy/cluster runs it.

In transaction pooling a client's consecutive transactions may run on different server
sessions, and one server session serves many clients in turn: nothing may rely on session
state across transactions. Here a PgBouncer 1.18 with a pool of three server connections
stands in front of the test database, and the checkout, racing holds and orders, `jobs run`
and an insight refresh (transaction-scoped advisory lock, SET LOCAL, a temporary table
dropped on commit) run through it. Its server sessions are set to another time zone than
UTC, so the app's sessions are UTC only if the app sees to it.

Locally these tests skip when PgBouncer is not installed; with CI=true its absence fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import psycopg
import pytest
import sqlalchemy as sa
from flask import Flask

from loyalty import config
from loyalty.extensions import db
from loyalty.insight import services as insight
from tests.api.checkout_calls import CART
from tests.concurrency import race_requests
from tests.factories import ApiKeyFactory, HoldFactory, OrderFactory, RuleFactory, auth
from tests.helpers import app_built, assert_ledger_verifies, created, free_port

pytestmark = [pytest.mark.committed, pytest.mark.postgresql_only]

SERVER_CONNECTIONS = 3
SERVER_TIME_ZONE = "Asia/Tokyo"
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Bouncer:
    port: int
    user: str

    def url(self, alias: str) -> str:
        """A URL of one of its pools: "app" for the app, "control" for a plain client."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{alias}"


def _pgbouncer() -> str:
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
    if found:
        return found
    message = "PgBouncer is not installed (apt-get install pgbouncer): its tests skipped"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def bouncer(migrated_app: Flask) -> Iterator[Bouncer]:
    """PgBouncer in front of the test database: two pools of its own (the app's, and a
    plain client's), each of SERVER_CONNECTIONS server sessions in SERVER_TIME_ZONE."""
    url = sa.engine.make_url(migrated_app.config["SQLALCHEMY_DATABASE_URI"])
    if url.get_backend_name() != "postgresql":
        pytest.skip("PgBouncer fronts PostgreSQL")
    binary = _pgbouncer()
    # Not pytest's tmp_path: PgBouncer refuses to run as root, so it runs as postgres.
    directory = Path(tempfile.mkdtemp(prefix="loyalty-pgbouncer-"))
    directory.chmod(0o777)
    port = free_port()
    target = (
        f"host={url.host or '127.0.0.1'} port={url.port or 5432} dbname={url.database} "
        f"user={url.username} timezone={SERVER_TIME_ZONE}"
        + (f" password={url.password}" if url.password else "")
    )
    (directory / "pgbouncer.ini").write_text(
        f"[databases]\napp = {target}\ncontrol = {target}\n"
        "[pgbouncer]\nlisten_addr = 127.0.0.1\n"
        f"listen_port = {port}\nunix_socket_dir =\nauth_type = any\npool_mode = transaction\n"
        f"default_pool_size = {SERVER_CONNECTIONS}\nmax_client_conn = 200\n"
        f"logfile = {directory}/pgbouncer.log\n"
    )
    command = [binary, "-q", str(directory / "pgbouncer.ini")]
    if os.getuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    process = subprocess.Popen(command, start_new_session=True)  # noqa: S603 - fixed arguments
    try:
        deadline = time.monotonic() + 30
        while True:  # polling for PgBouncer to listen, not for the clock
            try:
                psycopg.connect(f"postgresql://{url.username}@127.0.0.1:{port}/control").close()
                break
            except psycopg.OperationalError:
                assert process.poll() is None, "PgBouncer exited"
                assert time.monotonic() < deadline, "PgBouncer did not answer"
                time.sleep(0.1)
        yield Bouncer(port, url.username or "postgres")
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def bounced_options() -> dict[str, object]:
    with mock.patch.dict(os.environ, {"LOYALTY_DB_PGBOUNCER": "1"}):
        return config.engine_options("postgresql+psycopg://")


@pytest.fixture
def bounced(app: Flask, bouncer: Bouncer, bounced_options) -> Iterator[Flask]:
    """The app, configured for PgBouncer (LOYALTY_DB_PGBOUNCER=1), on the app's pool.
    (`app` empties the tables afterwards.)"""
    url = config.database_url(bouncer.url("app"))
    with app_built(url, SQLALCHEMY_ENGINE_OPTIONS=bounced_options) as built:
        yield built


def server_sessions(bouncer: Bouncer, alias: str) -> list[tuple[int, int]]:
    """(backend pid, prepared statements) of every server session of a pool: as many plain
    clients as the pool has server connections each hold a transaction open at once, so
    each sits on a server session of its own."""
    found: list[tuple[int, int]] = []
    everyone_in = threading.Barrier(SERVER_CONNECTIONS, timeout=30)

    def look() -> None:
        with psycopg.connect(bouncer.url(alias), prepare_threshold=None) as connection:
            row = connection.execute(
                "SELECT pg_backend_pid(), (SELECT count(*) FROM pg_prepared_statements)"
            ).fetchone()
            assert row is not None
            found.append((row[0], row[1]))
            everyone_in.wait()

    threads = [threading.Thread(target=look) for _ in range(SERVER_CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len({pid for pid, _ in found}) == SERVER_CONNECTIONS, found
    return found


def checkout_key(app: Flask, *scopes: str) -> dict[str, str]:
    with app.app_context():
        return auth(ApiKeyFactory(scopes=scopes))


def test_the_checkout_runs_through_pgbouncer(bounced, bouncer):
    checkout, admin = checkout_key(bounced, "checkout"), checkout_key(bounced, "admin")
    client = bounced.test_client()
    created(client.post("/v1/admin/rules", json=RuleFactory.build(), headers=admin))
    # Far more than psycopg's prepare_threshold (5) runs of each statement of the flow.
    for n in range(12):
        member = f"c{n}"
        created(client.post("/v1/members", json={"external_id": member}, headers=checkout))
        given = client.post(
            f"/v1/admin/members/{member}/adjustments",
            json={"points": 2000, "reason": "test"},
            headers=admin,
        )
        assert given.status_code == 201, given.json
        cart = {**CART, "member_id": member}
        quote = client.post("/v1/orders/quote", json=cart, headers=checkout)
        assert quote.status_code == 200, quote.json
        held = created(
            client.post(
                "/v1/redemptions",
                json=HoldFactory.build(member_id=member, points=2000),
                headers=checkout,
            )
        )
        order = OrderFactory.build(
            order_id=f"o{n}", member_id=member, redemption_id=held["redemption_id"]
        )
        assert client.post("/v1/orders", json=order, headers=checkout).status_code == 201
        captured = client.post(f"/v1/redemptions/{held['redemption_id']}/capture", headers=checkout)
        assert captured.json["status"] == "captured", captured.json
        refunded = client.post(
            f"/v1/orders/o{n}/refunds",
            json={"refund_id": f"r{n}", "amount": 6200},
            headers=checkout,
        )
        assert refunded.status_code == 201, refunded.json
    cards = [client.get(f"/v1/members/c{n}", headers=checkout).json for n in range(12)]

    assert {card["balance"]["available"] for card in cards} == {2000}
    assert [prepared for _, prepared in server_sessions(bouncer, "app")] == [0] * 3
    assert_ledger_verifies(bounced)


def test_a_statement_the_app_runs_many_times_is_never_prepared_on_a_server(bounced, bouncer):
    """As a jobs worker's batches do: one statement, each run in a transaction of its own
    that commits (psycopg forgets its counts on a rollback, which most requests end with)."""
    with bounced.app_context():
        for n in range(10):
            with db.engine.begin() as connection:
                connection.execute(sa.select(sa.func.count()).where(sa.literal(n) >= 0))

    assert [prepared for _, prepared in server_sessions(bouncer, "app")] == [0] * 3


def test_psycopgs_own_default_would_prepare_on_a_pooled_server(bouncer):
    """The check above can fail: with psycopg's default, the 6th run of a statement is
    prepared on whichever server session runs it, where the next transaction may not be."""
    with psycopg.connect(bouncer.url("control")) as connection:
        for _ in range(10):
            with connection.transaction():
                connection.execute("SELECT count(*) FROM members WHERE id > %s", (0,))

    assert sum(prepared for _, prepared in server_sessions(bouncer, "control")) >= 1


def test_sessions_are_utc_whichever_server_session_runs_them(bounced, bouncer):
    plain = psycopg.connect(bouncer.url("app"), autocommit=True)
    try:
        seen = []
        with bounced.app_context():
            for _ in range(10):
                with db.engine.connect() as connection:
                    seen.append(connection.scalar(sa.text("SHOW TimeZone")))
                # A client of the same pool that set nothing, on the same server sessions.
                seen.append(plain.execute("SHOW TimeZone").fetchone()[0])  # type: ignore[index]
    finally:
        plain.close()

    assert seen == ["UTC", SERVER_TIME_ZONE] * 10


def test_racing_holds_and_orders_through_pgbouncer_take_each_point_once(bounced):
    checkout, admin = checkout_key(bounced, "checkout"), checkout_key(bounced, "admin")
    client = bounced.test_client()
    created(client.post("/v1/admin/rules", json=RuleFactory.build(), headers=admin))
    created(client.post("/v1/members", json={"external_id": "c1"}, headers=checkout))
    given = client.post(
        "/v1/admin/members/c1/adjustments", json={"points": 1000, "reason": "t"}, headers=admin
    )
    assert given.status_code == 201
    racers = 8
    sequence = iter(range(racers))
    lock = threading.Lock()

    def send(racer_client):
        with lock:
            n = next(sequence)
        if n % 2:
            return racer_client.post(
                "/v1/orders", json=OrderFactory.build(order_id="same"), headers=checkout
            )
        return racer_client.post(
            "/v1/redemptions", json=HoldFactory.build(points=400), headers=checkout
        )

    answers = race_requests(bounced, racers, send)

    holds = sorted(a.status_code for a in answers if a.request.path == "/v1/redemptions")
    orders = [a for a in answers if a.request.path == "/v1/orders"]
    assert holds == [201, 201, 422, 422], [a.json for a in answers]
    assert {a.status_code for a in orders} == {201}
    assert all(a.json == orders[0].json for a in orders)
    card = client.get("/v1/members/c1", headers=checkout).json["balance"]
    assert (card["available"], card["held"], card["pending"]) == (200, 800, 62)
    assert_ledger_verifies(bounced)


def test_jobs_run_and_an_insight_refresh_work_through_pgbouncer(bounced, bouncer):
    checkout = checkout_key(bounced, "checkout")
    client = bounced.test_client()
    for n in range(3):
        created(client.post("/v1/members", json={"external_id": f"c{n}"}, headers=checkout))
        order = OrderFactory.build(order_id=f"o{n}", member_id=f"c{n}")
        assert client.post("/v1/orders", json=order, headers=checkout).status_code == 201

    env = {
        **os.environ,
        "DATABASE_URL": bouncer.url("app"),
        "LOYALTY_DB_PGBOUNCER": "1",
        "LOYALTY_LOG_LEVEL": "WARNING",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    ran = subprocess.run(  # noqa: S603 - our own CLI
        [str(Path(sys.executable).parent / "loyalty"), "jobs", "run"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    with bounced.app_context():
        summary = insight.refresh(db.session)
    assert summary.members == 3
    assert_ledger_verifies(bounced)
