"""PostgreSQL stopped and started again under load.

While the database is down every request is answered, with a 503 problem+json whose code is
`service_unavailable` (never a 500, never a stack trace), including a request that was in
the middle of its transaction when the server went away. Once PostgreSQL is back the workers
replace their dead pooled connections by themselves and answer 200/201 again within seconds,
without a restart. Orders the outage refused are retried with their same order_id and
Idempotency-Key and earn exactly once; nothing is half-written and the ledger verifies.

This test stops the machine's PostgreSQL cluster, which every other test run and server on
the machine shares: their connections are cut as well. So it runs only in CI (CI=true),
where the machine is the run's own, or when asked for with LOYALTY_FAULT_TESTS=1 on a machine
where nobody else is using PostgreSQL; otherwise it is skipped, saying so.
"""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from loyalty.extensions import db
from loyalty.ledger.models import MemberBalance
from loyalty.members.models import Member
from loyalty.orders.models import Order
from tests.faults import (
    SEED_POINTS,
    Answer,
    Server,
    balance_of,
    dangling_claims,
    earn_counts,
    gunicorn,
    ledger_verify_cli,
    order_body,
    seed_program,
)

IN_CI = os.environ.get("CI") == "true"

pytestmark = [
    pytest.mark.postgresql_only,
    pytest.mark.committed,  # a served app, processes and threads on their own connections
    pytest.mark.skipif(
        not IN_CI and os.environ.get("LOYALTY_FAULT_TESTS") != "1",
        reason=(
            "restarts the machine's shared PostgreSQL, cutting every other test run's "
            "connections: runs with CI=true, or set LOYALTY_FAULT_TESTS=1 to run it here"
        ),
    ),
]

MEMBERS = ["m0", "m1"]
SLOW = "m1"  # its row lock is held by the test, so its order is in flight at the stop
DOWN_FOR = 2.0  # seconds PostgreSQL stays down
RECOVER_WITHIN = 10.0  # seconds after pg_isready for the service to answer 200 again
PAUSE = 0.02  # between a load thread's requests: a light load


@dataclass(frozen=True)
class Sample:
    kind: str  # "card" or "order"
    sent: float  # time.monotonic()
    received: float
    answer: Answer
    order_id: str | None = None


class Cluster:
    """The local PostgreSQL cluster behind the test database, controlled as CI's script does."""

    def __init__(self, url: sa.engine.URL) -> None:
        self.host = url.host or "127.0.0.1"
        self.port = url.port or 5432
        versions = sorted(os.listdir("/etc/postgresql")) if Path("/etc/postgresql").is_dir() else []
        ctl, ready = shutil.which("pg_ctlcluster"), shutil.which("pg_isready")
        problem = None
        if self.host not in ("127.0.0.1", "localhost", "::1"):
            problem = f"the test database is on {self.host}, not this machine"
        elif not (versions and ctl and ready):
            problem = "no local PostgreSQL cluster to restart (pg_ctlcluster, /etc/postgresql)"
        if problem:
            if IN_CI:
                pytest.fail(problem)
            pytest.skip(problem)
        self.version = versions[0]
        self.ctl, self.ready = str(ctl), str(ready)

    def _run(self, action: str) -> None:
        done = subprocess.run(  # noqa: S603 - the system's pg_ctlcluster, fixed arguments
            [self.ctl, "--skip-systemctl-redirect", self.version, "main", action],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"pg_ctlcluster {action}: {done.stdout}{done.stderr}"

    def stop(self) -> None:
        self._run("stop")  # fast mode: active transactions roll back, clients are cut

    def start(self) -> None:
        self._run("start")

    def is_ready(self) -> bool:
        done = subprocess.run(  # noqa: S603 - the system's pg_isready, fixed arguments
            [self.ready, "-h", self.host, "-p", str(self.port), "-q"], timeout=30, check=False
        )
        return done.returncode == 0

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.is_ready():
            assert time.monotonic() < deadline, "PostgreSQL did not come back"
            time.sleep(0.1)


@contextmanager
def restored(cluster: Cluster) -> Iterator[None]:
    """Whatever happens in the block, PostgreSQL is up again after it."""
    try:
        yield
    finally:
        if not cluster.is_ready():
            with suppress(AssertionError):
                cluster.start()
            cluster.wait_ready()
        reconnect_test_engines()


def reconnect_test_engines() -> None:
    """The restart cut the test session's own connections too: the conftest's admin engine
    (which drops the test database at the end of the run) keeps a dead one in its pool and
    does not ping before use. Dispose of every engine in this process so each reconnects."""
    for engine in [obj for obj in gc.get_objects() if isinstance(obj, sa.engine.Engine)]:
        engine.dispose()


class Load:
    """Card reads and orders from two threads, each request on its own connection, until
    stopped. Each order has its own order_id and Idempotency-Key."""

    def __init__(self, server: Server, checkout: dict[str, str]) -> None:
        self.server, self.checkout = server, checkout
        self.samples: list[Sample] = []
        self.orders: dict[str, tuple[dict, dict[str, str]]] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [
            threading.Thread(target=self._cards, daemon=True),
            threading.Thread(target=self._orders, daemon=True),
        ]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in self.threads), "a load thread hung"

    def record(self, sample: Sample) -> None:
        with self.lock:
            self.samples.append(sample)

    def order(self, order_id: str, member: str) -> Sample:
        body = order_body(order_id, member, 2)
        headers = {**self.checkout, "Idempotency-Key": f"key-{order_id}"}
        with self.lock:
            self.orders[order_id] = (body, headers)
        sent = time.monotonic()
        answer = self.server.call("POST", "/v1/orders", body, headers, timeout=30)
        return Sample("order", sent, time.monotonic(), answer, order_id)

    def _cards(self) -> None:
        while not self.stopping.is_set():
            sent = time.monotonic()
            answer = self.server.call("GET", f"/v1/members/{MEMBERS[0]}", None, self.checkout)
            self.record(Sample("card", sent, time.monotonic(), answer))
            time.sleep(PAUSE)

    def _orders(self) -> None:
        serial = 0
        while not self.stopping.is_set():
            serial += 1
            self.record(self.order(f"load-{serial}", MEMBERS[0]))
            time.sleep(PAUSE)

    def between(self, start: float, end: float) -> list[Sample]:
        """Samples sent at or after `start` and answered at or before `end`."""
        with self.lock:
            return [s for s in self.samples if s.sent >= start and s.received <= end]


def is_outage_answer(answer: Answer) -> bool:
    return (
        answer.status == 503
        and answer.content_type.startswith("application/problem+json")
        and answer.code == "service_unavailable"
        and b"Traceback" not in answer.raw
    )


def wait_for_lock_waiter(app) -> None:
    deadline = time.monotonic() + 30
    with app.app_context():
        while True:
            with db.engine.connect() as connection:
                waiting = connection.scalar(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                )
            if waiting:
                return
            assert time.monotonic() < deadline, "the slow order never reached the lock"
            time.sleep(0.05)


def test_a_database_restart_is_503_then_recovers_and_writes_everything_once(app, tmp_path):
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    cluster = Cluster(sa.engine.make_url(url))
    checkout = seed_program(app, MEMBERS)

    with gunicorn(url, tmp_path, workers=2) as server, restored(cluster):
        in_flight: list[Sample] = []
        with Load(server, checkout) as load:
            time.sleep(1.0)
            healthy_until = time.monotonic()

            # An order caught mid-transaction by the stop: it claimed its Idempotency-Key and
            # waits for the member's row lock, which the test holds.
            with app.app_context():
                blocker = db.engine.connect()
            blocker.execute(
                sa.select(MemberBalance.member_id)
                .join(Member, Member.id == MemberBalance.member_id)
                .where(Member.external_id == SLOW)
                .with_for_update()
            )
            slow = threading.Thread(
                target=lambda: in_flight.append(load.order("in-flight", SLOW)), daemon=True
            )
            slow.start()
            wait_for_lock_waiter(app)

            cluster.stop()
            down = time.monotonic()
            with suppress(sa.exc.DBAPIError):
                blocker.invalidate()
                blocker.close()
            slow.join(timeout=60)
            assert in_flight, "the in-flight order got no answer"

            # Explicit calls while it is down, besides the load's.
            probes = [
                server.call("GET", f"/v1/members/{MEMBERS[0]}", None, checkout),
                load.order("probe", MEMBERS[0]).answer,
            ]
            time.sleep(max(0.0, DOWN_FOR - (time.monotonic() - down)))

            starting = time.monotonic()
            cluster.start()
            cluster.wait_ready()
            ready = time.monotonic()
            while True:
                card = server.call("GET", f"/v1/members/{MEMBERS[0]}", None, checkout)
                if card.status == 200:
                    break
                assert is_outage_answer(card), card
                assert time.monotonic() - ready < RECOVER_WITHIN, "no recovery by itself"
                time.sleep(0.1)
            recovered = time.monotonic()
            time.sleep(1.5)
        reconnect_test_engines()
        samples = load.samples + in_flight

        # Every request was answered: 2xx, or a 503 problem+json saying the service is
        # unavailable. Never a 500, never a stack trace.
        for sample in samples:
            assert sample.answer.status in (200, 201) or is_outage_answer(sample.answer), sample
        assert is_outage_answer(in_flight[0].answer), in_flight[0]
        for probe in probes:
            assert is_outage_answer(probe), probe
        outage = load.between(down, starting)
        assert {s.kind for s in outage} == {"card", "order"}, outage  # the load saw it
        assert all(is_outage_answer(s.answer) for s in outage), outage
        assert all(s.answer.status in (200, 201) for s in load.between(0, healthy_until))
        after = [s for s in samples if s.sent >= recovered]
        assert after, "no load after the recovery"
        assert all(s.answer.status in (200, 201) for s in after), after
        assert recovered - ready < RECOVER_WITHIN

        # The checkout retries every order, with its same order_id and Idempotency-Key,
        # until it is recorded; then once more, and gets the same answer.
        deadline = time.monotonic() + 60
        final: dict[str, Answer] = {}
        for order_id, (body, headers) in load.orders.items():
            while True:
                answer = server.call("POST", "/v1/orders", body, headers)
                if answer.status == 201:
                    final[order_id] = answer
                    break
                # A request the outage cut left nothing behind, its claim included.
                assert is_outage_answer(answer), (order_id, answer)
                assert time.monotonic() < deadline, (order_id, answer)
                time.sleep(0.25)
        for order_id, (body, headers) in load.orders.items():
            again = server.call("POST", "/v1/orders", body, headers)
            assert (again.status, again.body, again.replayed) == (201, final[order_id].body, True)
            assert final[order_id].body["points_earned"] == 50

    # Each order earned exactly once; nothing else earned; nothing was left half-written.
    assert earn_counts(app) == {f"order:{order_id}": 1 for order_id in load.orders}
    with app.app_context():
        session = db.session
        assert session.scalar(sa.select(sa.func.count(Order.id))) == len(load.orders)
        assert dangling_claims(session) == 0
        for member in MEMBERS:
            available = balance_of(session, member).available
            earned = 50 * sum(1 for body, _ in load.orders.values() if body["member_id"] == member)
            assert available == SEED_POINTS + earned, member
        db.session.remove()
    verified = ledger_verify_cli(url)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.strip().endswith(": ok"), verified.stdout
