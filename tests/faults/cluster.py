"""The scaled-out topology of deploy/cluster, started for a test on free ports with its own
PostgreSQL primary and replica (never the shared server on 5432), a local webhook receiver,
and a client that calls it through nginx as a shop's checkout would.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.faults import BIN, ROOT, Answer, call
from tests.helpers import free_port

CLUSTER = ROOT / "deploy" / "cluster"
# The client's own patience for one request (a retry loop), not a clock the test controls.
RETRY_FOR_SECONDS = 30


def _require(*programs: str) -> None:
    missing = [p for p in programs if not (shutil.which(p) or shutil.which(p, path="/usr/sbin"))]
    if not missing:
        return
    message = f"not installed: {', '.join(missing)} (see .ci/run): topology tests skipped"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _two_free_ports() -> int:
    """A port whose next port is free too (the app nodes take consecutive ports)."""
    while True:
        first = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", first + 1))
            except OSError:
                continue
        return first


@dataclass
class Cluster:
    runtime: Path
    env: dict[str, str]
    public: int
    app_port: int
    primary_port: int
    replica_port: int

    def command(self, *args: str) -> str:
        done = subprocess.run(  # noqa: S603 - our own script
            [str(CLUSTER), *args], env=self.env, capture_output=True, text=True, timeout=180
        )
        assert done.returncode == 0, f"deploy/cluster {' '.join(args)}:\n{done.stderr}"
        return done.stdout

    def loyalty(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The `loyalty` command on the primary, directly, as an operator runs it."""
        env = {**self.env, "DATABASE_URL": self.primary_url}
        return subprocess.run(  # noqa: S603 - our own CLI
            [str(BIN / "loyalty"), *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    @property
    def primary_url(self) -> str:
        return f"postgresql://loyalty@127.0.0.1:{self.primary_port}/loyalty"

    def sql(self, port: int, statement: str) -> list[tuple[Any, ...]]:
        """One statement on the primary or the replica, directly (as postgres)."""
        with psycopg.connect(
            f"postgresql://postgres@127.0.0.1:{port}/loyalty", autocommit=True
        ) as connection:
            cursor = connection.execute(statement)
            return cursor.fetchall() if cursor.description else []

    def node_logs(self) -> list[dict[str, Any]]:
        """Every JSON line the app nodes logged."""
        lines = []
        for log in sorted(self.runtime.glob("node*/gunicorn.log")):
            for line in log.read_text(errors="replace").splitlines():
                if line.startswith("{"):
                    lines.append({**json.loads(line), "node": log.parent.name})
        return lines

    def metrics_of_node(self, n: int) -> dict[str, float]:
        """A node's Prometheus samples, by their full name with labels."""
        answer = call(self.app_port + n - 1, "GET", "/metrics")
        assert answer.status == 200, answer
        samples = {}
        for line in answer.raw.decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    def logs_tail(self) -> str:
        return "".join(
            f"\n--- {p.relative_to(self.runtime)}\n{p.read_text(errors='replace')[-2000:]}"
            for p in sorted(self.runtime.glob("**/*.log"))
        )


@contextmanager
def started_cluster(**settings: str) -> Iterator[Cluster]:
    """deploy/cluster start with 2 app nodes of 2 workers, 2 jobs workers passing every
    second, on free ports in a runtime directory of its own; destroyed afterwards."""
    _require("nginx", "pgbouncer", "curl")
    runtime = Path(tempfile.mkdtemp(prefix="loyalty-cluster-"))
    app_port = _two_free_ports()
    ports = {"public": free_port(), "primary": free_port(), "replica": free_port()}
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("LOYALTY_", "GUNICORN_", "PROMETHEUS_")) and key != "DATABASE_URL"
    }
    env.update(
        PATH=f"/usr/sbin:{env.get('PATH', '')}",
        LOYALTY_RUNTIME_DIR=str(runtime),
        LOYALTY_PUBLIC_BIND=f"127.0.0.1:{ports['public']}",
        LOYALTY_APP_NODES="2",
        LOYALTY_APP_PORT=str(app_port),
        LOYALTY_WORKERS="2",
        LOYALTY_JOBS_WORKERS="2",
        LOYALTY_JOBS_INTERVAL="1",
        LOYALTY_PGBOUNCER_PORT=str(free_port()),
        LOYALTY_PRIMARY_PORT=str(ports["primary"]),
        LOYALTY_REPLICA_PORT=str(ports["replica"]),
        LOYALTY_COMMAND=str(BIN / "loyalty"),
        LOYALTY_SECRET_KEY="topology-tests-only",
        LOYALTY_LOG_LEVEL="INFO",
        **settings,
    )
    cluster = Cluster(runtime, env, ports["public"], app_port, ports["primary"], ports["replica"])
    try:
        cluster.command("start")
        yield cluster
    finally:
        subprocess.run([str(CLUSTER), "destroy"], env=env, timeout=180, check=False)  # noqa: S603
        shutil.rmtree(runtime, ignore_errors=True)


def is_final(answer: Answer) -> bool:
    """What a checkout stops retrying on: an answer, and not a 5xx."""
    return answer.status is not None and answer.status < 500


def until_final(port: int, method: str, path: str, body: Any, headers: dict[str, str]) -> Answer:
    """Send the same request (same ids, same Idempotency-Key) until it has a final answer."""
    deadline = time.monotonic() + RETRY_FOR_SECONDS
    while True:
        answer = call(port, method, path, body, headers)
        if is_final(answer) or time.monotonic() > deadline:
            return answer
        time.sleep(0.2)  # the client's pause between retries


class WebhookReceiver:
    """A local endpoint that answers 200 and counts each delivery by its webhook-id."""

    def __init__(self) -> None:
        self.received: Counter[str] = Counter()
        lock = threading.Lock()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with lock:
                    received[self.headers["webhook-id"]] += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
