"""The production topology of deploy/: nginx in front of gunicorn, started by `deploy/start` and
stopped by `deploy/stop`, exactly as the README tells a shop to run it.

Bare sync gunicorn gives each connection a worker from its first byte to its last, so a few
clients that send slowly (or nothing) hold every worker. Here 200 such clients hold their
connections open against two gunicorn workers while orders and /healthz must keep answering
within a second. Every refusal made before the application runs (nginx's and gunicorn's
limits, gunicorn down) is problem+json like the application's own errors.

Locally these tests skip when nginx is not installed; with CI=true its absence fails the run.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.factories import ApiKeyFactory, OrderFactory
from tests.helpers import free_port

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
pytestmark = [pytest.mark.committed, pytest.mark.postgresql_only]
SLOW_CLIENTS = 200


def _require_nginx() -> None:
    if shutil.which("nginx") or Path("/usr/sbin/nginx").exists():
        return
    message = "nginx is not installed (apt-get install nginx): topology tests skipped"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@dataclass(frozen=True)
class Topology:
    public: tuple[str, int]
    upstream: tuple[str, int]
    runtime: Path


@contextlib.contextmanager
def started_topology(migrated_app: Flask) -> Iterator[Topology]:
    """deploy/start on free ports with two gunicorn workers; deploy/stop afterwards."""
    url = migrated_app.config["SQLALCHEMY_DATABASE_URI"]
    if not url.startswith("postgresql"):
        pytest.skip("the production topology runs on PostgreSQL")
    _require_nginx()
    # Not pytest's tmp_path: nginx's workers run as another user and must reach their files.
    runtime = Path(tempfile.mkdtemp(prefix="loyalty-topology-"))
    public, upstream = ("127.0.0.1", free_port()), ("127.0.0.1", free_port())
    env = {
        **os.environ,
        "PATH": f"/usr/sbin:{os.environ.get('PATH', '')}",
        "DATABASE_URL": url,
        "LOYALTY_RUNTIME_DIR": str(runtime),
        "LOYALTY_PUBLIC_BIND": f"{public[0]}:{public[1]}",
        "LOYALTY_BIND": f"{upstream[0]}:{upstream[1]}",
        "LOYALTY_WORKERS": "2",
        "LOYALTY_JOBS_WORKER": "0",
        "LOYALTY_LOG_LEVEL": "WARNING",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    started = subprocess.run(  # noqa: S603 - our own script
        [str(DEPLOY / "start")], env=env, capture_output=True, text=True, timeout=120
    )
    try:
        assert started.returncode == 0, started.stderr + _logs(runtime)
        yield Topology(public, upstream, runtime)
    finally:
        subprocess.run([str(DEPLOY / "stop")], env=env, timeout=120, check=False)  # noqa: S603
        shutil.rmtree(runtime, ignore_errors=True)


@pytest.fixture(scope="module")
def topology(migrated_app: Flask) -> Iterator[Topology]:
    """One topology for the module's tests (starting one takes seconds)."""
    with started_topology(migrated_app) as started:
        yield started


@pytest.fixture
def checkout(app: Flask) -> dict[str, str]:
    """A checkout key, made for each test: the tables are emptied after every test."""
    with app.app_context():
        return {"Authorization": f"Bearer {ApiKeyFactory(scopes=('checkout',))}"}


def _logs(runtime: Path) -> str:
    return "".join(
        f"\n--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
        for path in sorted(runtime.glob("*.log"))
    )


# --- clients --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def call(
    address: tuple[str, int],
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    """One request on a connection of its own, timed from connect to the last byte."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection(*address, timeout=10)
    try:
        payload = None if body is None else json.dumps(body).encode()
        sent = {"Content-Type": "application/json", **(headers or {})}
        connection.request(method, path, body=payload, headers=sent)
        response = connection.getresponse()
        data = response.read()
        return Answer(
            response.status, dict(response.getheaders()), data, time.perf_counter() - started
        )
    finally:
        connection.close()


def raw(address: tuple[str, int], request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are; the status, headers and body of the answer, read as far as
    its Content-Length (a refused request's connection may linger or be reset after it)."""
    with socket.create_connection(address, timeout=10) as connection:
        connection.sendall(request)
        received = b""
        with contextlib.suppress(ConnectionResetError):
            while b"\r\n\r\n" not in received and (chunk := connection.recv(65536)):
                received += chunk
            head, _, body = received.partition(b"\r\n\r\n")
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            headers = dict(line.split(": ", 1) for line in header_lines)
            while len(body) < int(headers["Content-Length"]) and (chunk := connection.recv(65536)):
                body += chunk
    return int(status_line.split()[1]), headers, body


class SlowClients:
    """Connections that never finish their request: a third send nothing, a third send a
    header line at a time, a third send whole headers and then their body a few bytes at a
    time. `drip` is called from a thread, so they keep sending while the test runs."""

    def __init__(self, address: tuple[str, int], count: int) -> None:
        self.sockets: list[socket.socket] = []
        self.dripping: list[tuple[socket.socket, bytes]] = []
        for n in range(count):
            connection = socket.create_connection(address, timeout=5)
            self.sockets.append(connection)
            if n % 3 == 1:
                connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: loyalty\r\n")
                self.dripping.append((connection, b"X-Slow: 1\r\n"))
            elif n % 3 == 2:
                connection.sendall(
                    b"POST /v1/orders HTTP/1.1\r\nHost: loyalty\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
                )
                self.dripping.append((connection, b"          "))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drip, daemon=True)
        self._thread.start()

    def _drip(self) -> None:
        while not self._stop.wait(0.5):  # a slow client's pace, not the test's clock
            for connection, chunk in self.dripping:
                with contextlib.suppress(OSError):  # dropped: still_open counts it
                    connection.send(chunk)

    def still_open(self) -> int:
        """How many connections the server has neither answered nor closed."""
        open_ = 0
        for connection in self.sockets:
            connection.setblocking(False)  # a socket with a timeout would wait for data
            try:
                connection.recv(1, socket.MSG_PEEK)
            except BlockingIOError:
                open_ += 1
            except OSError:
                pass
        return open_

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for connection in self.sockets:
            connection.close()


# --- slow clients ---------------------------------------------------------------------------


def test_orders_and_health_answer_within_a_second_while_200_slow_clients_hold_on(
    app, topology, checkout
):
    enrolled = call(topology.public, "POST", "/v1/members", {"external_id": "c1"}, checkout)
    assert enrolled.status == 201, enrolled.body
    slow = SlowClients(topology.public, SLOW_CLIENTS)
    try:
        answers = []
        for n in range(15):
            answers.append(call(topology.public, "GET", "/healthz"))
            order = OrderFactory.build(order_id=f"o{n}")
            keyed = {**checkout, "Idempotency-Key": str(uuid.uuid4())}
            answers.append(call(topology.public, "POST", "/v1/orders", order, keyed))
        held = slow.still_open()
    finally:
        slow.close()

    assert [a.status for a in answers] == [200, 201] * 15, [a.body for a in answers]
    slowest = max(a.seconds for a in answers)
    assert slowest < 1.0, f"slowest answer took {slowest:.2f} s"
    # The slow clients were really holding their connections while the orders went through.
    assert held >= SLOW_CLIENTS * 0.95, f"only {held} of {SLOW_CLIENTS} still open"


# --- refusals before the application --------------------------------------------------------


def assert_problem(status: int, headers: dict[str, str], body: bytes, expected: int, code: str):
    assert status == expected, body
    assert headers["Content-Type"] == "application/problem+json"
    problem = json.loads(body)
    assert (problem["status"], problem["code"]) == (expected, code)
    assert problem["type"] == f"urn:problem:loyalty:{code}"


LONG = "a" * 5000


@pytest.mark.parametrize("door", ["nginx", "gunicorn"])
def test_a_request_line_over_the_limit_is_a_414_problem(topology, door):
    address = topology.public if door == "nginx" else topology.upstream
    status, headers, body = raw(
        address,
        f"GET /v1/members/{LONG} HTTP/1.1\r\nHost: loyalty\r\nConnection: close\r\n\r\n".encode(),
    )

    assert_problem(status, headers, body, 414, "uri_too_long")


@pytest.mark.parametrize("door", ["nginx", "gunicorn"])
@pytest.mark.parametrize("headers_sent", ["one long header", "too many headers"])
def test_headers_over_the_limits_are_a_431_problem(topology, door, headers_sent):
    address = topology.public if door == "nginx" else topology.upstream
    if headers_sent == "one long header":
        lines = f"X-Long: {'a' * 9000}\r\n"
    else:  # gunicorn counts lines (100 at most), nginx bytes (16 KiB): 200 of 100 bytes
        lines = "".join(f"X-Many-{n:03d}: {'a' * 86}\r\n" for n in range(200))
    status, headers, body = raw(
        address,
        f"GET /healthz HTTP/1.1\r\nHost: loyalty\r\nConnection: close\r\n{lines}\r\n".encode(),
    )

    assert_problem(status, headers, body, 431, "request_header_fields_too_large")


@pytest.mark.parametrize("door", ["nginx", "gunicorn"])
def test_a_request_that_is_not_http_is_a_400_problem(topology, door):
    address = topology.public if door == "nginx" else topology.upstream
    status, headers, body = raw(address, b"GARBAGE\r\n\r\n")

    assert_problem(status, headers, body, 400, "bad_request")


def test_a_body_over_a_mebibyte_is_a_413_problem_from_nginx(topology):
    status, headers, body = raw(
        topology.public,
        b"POST /v1/orders HTTP/1.1\r\nHost: loyalty\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2000000\r\nConnection: close\r\n\r\n",
    )

    assert_problem(status, headers, body, 413, "payload_too_large")


def test_gunicorn_down_is_a_503_problem_with_retry_after(app, migrated_app):
    with started_topology(migrated_app) as topology:
        stop_gunicorn(topology)
        answer = call(topology.public, "GET", "/healthz")

    assert_problem(answer.status, answer.headers, answer.body, 503, "service_unavailable")
    assert answer.headers["Retry-After"] == "1"


def stop_gunicorn(topology: Topology) -> None:
    pid = int((topology.runtime / "gunicorn.pid").read_text())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # polling for gunicorn's exit, not for the clock
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
