"""Benchmark loyalty's checkout operations against a bare-stack ceiling, in one run.

    .venv/bin/python bench/run.py [--duration 20] [--connections 16] [--database postgresql]
    .venv/bin/python bench/run.py --smoke      # CI: a few seconds per operation, exits 1 on errors

Creates a throwaway database, migrates it with `loyalty db upgrade`, imports members with
opening balances (CSV, `loyalty import members|balances`), creates a checkout and an admin
key, sets the return window to 0 days and adds one spend rule (1 point per 100). Then it
serves loyalty and bench/bare_app.py with gunicorn (the same `gunicorn.conf.py` and workers,
different ports) and drives each operation, for a fixed time at a fixed concurrency, with
wrk and the Lua scripts in bench/: first against loyalty, then against the bare app. It
prints requests/s and p50/p95/p99 per operation for both and loyalty's throughput as a
ratio of the bare app's. Everything is torn down at the end (gunicorn process groups, the
database, the temporary directory), also on failure or Ctrl-C. See bench/README.md.
"""

# A command-line tool: it prints, runs wrk, gunicorn and the loyalty CLI, and calls the
# servers it started on loopback.
# ruff: noqa: T201, S603, S310

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openloop import OpenLoopResult, Requests, open_loop, open_loop_report

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
BIN = Path(sys.executable).parent
GUNICORN_CONF = ROOT / "gunicorn.conf.py"

# Run order: writes first (refunds need this run's orders, captures its holds), reads last,
# so the cards and quotes read members who have some history.
RUN_ORDER = ["order", "refund", "event", "hold", "capture", "card", "quote"]
SHOW_ORDER = ["card", "quote", "order", "hold", "capture", "refund", "event"]
WRITES = {"order", "refund", "event", "hold", "capture"}
# Issue 6: loyalty's throughput as a share of the bare app's, and p99 for every operation.
RATIO_TARGETS = {"card": 0.8, "order": 0.5, "hold": 0.5, "capture": 0.5}
P99_TARGET_MS = 50.0
# Issue 18: p99 in ms with requests arriving at 50% of the bare app's maximum.
OPEN_LOOP_TARGETS = {"card": 25.0, "quote": 25.0, **{op: 50.0 for op in WRITES}}
# Beyond this share of the CPUs used by other programs during a run, its figures are suspect
# (a quiet machine shows a few percent: kernel networking, PostgreSQL's WAL writer).
BUSY_SHARE = 0.10
APPS = ("loyalty", "bare")
STARTED = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Result:
    op: str
    app: str
    requests: int
    seconds: float
    p50: float
    p95: float
    p99: float
    non2xx: dict[str, int]
    socket_errors: dict[str, int]
    samples: dict[str, str]
    reused: int
    app_cpu: float = 0.0  # CPU seconds of the gunicorn master and workers during the run
    db_cpu: float = 0.0  # CPU seconds of the PostgreSQL backends serving them
    # CPU seconds the rest of the machine used meanwhile (other programs, PostgreSQL's own
    # background processes): a run that shares the CPUs with something else is not valid.
    other_cpu: float = 0.0
    # From pg_stat_database over the run: transactions committed or rolled back, and the
    # seconds backends spent inside transactions (active plus idle in transaction), which is
    # how long a transaction-pooling PgBouncer keeps a server connection per request.
    xacts: int = 0
    in_xact: float = 0.0
    backends: int = 0  # server connections open to the database at the end of the run

    @property
    def other_share(self) -> float:
        """The rest of the machine's CPU use, as a share of all CPUs over the run."""
        return self.other_cpu / (self.seconds * (os.cpu_count() or 1)) if self.seconds else 0.0

    def cpu_ms(self, seconds: float) -> float:
        return seconds * 1000 / self.requests if self.requests else 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def problems(self) -> list[str]:
        found = []
        if self.requests == 0:
            found.append("no requests completed")
        if self.non2xx:
            found.append(
                "non-2xx: " + ", ".join(f"{n}x{s}" for s, n in sorted(self.non2xx.items()))
            )
        errors = {k: v for k, v in self.socket_errors.items() if v and k != "status"}
        if errors:
            found.append("socket errors: " + ", ".join(f"{k} {v}" for k, v in errors.items()))
        if self.reused:
            found.append(f"pool exhausted: {self.reused} requests reused an id")
        return found


@dataclass
class Bench:
    args: argparse.Namespace
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="loyalty-bench-")))
    database_url: str = ""
    database_name: str = ""
    servers: dict[str, Server] = field(default_factory=dict)
    checkout_key: str = ""
    admin_key: str = ""
    results: dict[tuple[str, str], Result] = field(default_factory=dict)
    run_tag: str = field(default_factory=lambda: "b" + uuid.uuid4().hex[:6])
    engine: Any = None
    top_ups: int = 0
    # (op, app, share of the bare app's closed-loop maximum) -> the open-loop run
    open_results: dict[tuple[str, str, float], OpenLoopResult] = field(default_factory=dict)
    # app -> {worker pid: resident kB last seen}; a pid that disappears was recycled
    worker_memory: dict[str, dict[int, int]] = field(default_factory=dict)

    # -- the database ------------------------------------------------------------------

    def create_database(self) -> None:
        if self.args.database == "sqlite":
            self.database_url = f"sqlite:///{self.workdir / 'bench.db'}"
            return
        import psycopg

        self.database_name = f"loyalty_bench_{os.getpid()}"
        with psycopg.connect(self.args.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database_name}"')
            conn.execute(f'CREATE DATABASE "{self.database_name}"')
        base = self.args.admin_url.rsplit("/", 1)[0]
        self.database_url = f"{base}/{self.database_name}"
        log(f"created database {self.database_name}")

    def drop_database(self) -> None:
        if self.engine is not None:
            self.engine.dispose()
        if not self.database_name:
            return
        import psycopg

        with psycopg.connect(self.args.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database_name}" WITH (FORCE)')
        log(f"dropped database {self.database_name}")

    def query(self, sql: str, **params: Any) -> list[Any]:
        import sqlalchemy as sa

        if self.engine is None:
            url = self.database_url.replace("postgresql://", "postgresql+psycopg://", 1)
            self.engine = sa.create_engine(url, poolclass=sa.NullPool)
        with self.engine.begin() as conn:
            return list(conn.execute(sa.text(sql), params))

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        # The limiter runs (its cost is part of what is measured) but never binds: one
        # checkout key drives hundreds of requests a second. It counts in each worker's
        # memory unless LOYALTY_RATE_LIMIT_STORAGE says otherwise (redis://... as in
        # production).
        for scope in ("CHECKOUT", "ADMIN"):
            env.setdefault(f"LOYALTY_RATE_LIMIT_{scope}", "100000000/minute")
        env.update({"DATABASE_URL": self.database_url, **extra})
        env.pop("GUNICORN_CMD_ARGS", None)
        return env

    def cli(self, *args: str) -> subprocess.Popen[str]:
        """Start `loyalty ARGS` against the benchmark database; finish it with `done()`."""
        return subprocess.Popen(
            [str(BIN / "loyalty"), *args],
            cwd=ROOT,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    @staticmethod
    def done(process: subprocess.Popen[str]) -> str:
        stdout, stderr = process.communicate()
        if process.returncode != 0:
            command = " ".join(str(a) for a in list(process.args)[1:])  # type: ignore[arg-type]
            raise BenchError(
                f"`loyalty {command}` failed ({process.returncode}):\n{stdout}{stderr}"
            )
        return stdout

    def migrate(self) -> None:
        self.create_database()
        self.done(self.cli("db", "upgrade"))
        log("migrated")

    def seed(self) -> None:
        """Import the members and their opening balances while the two keys are created
        (separate processes, so the app's import time overlaps)."""
        members = self.workdir / "members.csv"
        balances = self.workdir / "balances.csv"
        n = self.args.members
        with members.open("w") as out:
            out.write("external_id,email,name\n")
            for i in range(1, n + 1):
                out.write(f"m{i:06d},m{i:06d}@bench.example,Member {i}\n")
        with balances.open("w") as out:
            out.write("external_id,points\n")
            for i in range(1, n + 1):
                out.write(f"m{i:06d},{self.args.opening_points}\n")
        checkout = self.cli("keys", "create", "bench-checkout", "--scope", "checkout")
        admin = self.cli("keys", "create", "bench-admin", "--scope", "admin")
        log("  " + self.done(self.cli("import", "members", str(members))).strip())
        log("  " + self.done(self.cli("import", "balances", str(balances))).strip())
        # `keys create` prints the key alone on its last line.
        self.checkout_key = self.done(checkout).strip().splitlines()[-1]
        self.admin_key = self.done(admin).strip().splitlines()[-1]
        log(f"seeded {n} members with {self.args.opening_points} points each; keys created")

    # -- servers -------------------------------------------------------------------------

    def start(self, name: str, app_spec: str, extra: list[str]) -> Server:
        port = free_port()
        metrics_dir = self.workdir / f"metrics-{name}"
        metrics_dir.mkdir()
        # Each app's connections carry its name, so each run counts its own (backends()).
        database_url = self.database_url
        if self.database_name:
            database_url += f"?application_name=bench-{name}"
        log_path = self.workdir / f"{name}.log"
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "--config",
            str(GUNICORN_CONF),
            "--workers",
            str(self.args.workers),
            "--worker-class",
            self.args.worker_class,
            "--threads",
            str(self.args.worker_threads),
            "--bind",
            f"127.0.0.1:{port}",
            *extra,
            app_spec,
        ]
        with log_path.open("wb") as out:
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=self.env(PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), DATABASE_URL=database_url),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so teardown gets every worker
            )
        server = Server(name, port, process, log_path)
        self.servers[name] = server
        return server

    def wait_ready(self, server: Server, path: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise BenchError(
                    f"{server.name} exited ({server.process.returncode}):\n" + tail(server.log_path)
                )
            with contextlib.suppress(OSError):
                status, _ = http("GET", server.url + path)
                if status == 200:
                    return
            time.sleep(0.2)
        raise BenchError(f"{server.name} not ready after {timeout}s:\n" + tail(server.log_path))

    def stop_servers(self) -> None:
        for server in self.servers.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.process.pid, signal.SIGINT)  # gunicorn: quick shutdown
        for server in self.servers.values():
            try:
                server.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(server.process.pid, signal.SIGKILL)
                server.process.wait(timeout=10)
            # Workers left behind by a master that died first.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.process.pid, signal.SIGKILL)
        if self.servers:
            log("stopped gunicorn")

    def serve(self) -> None:
        self.start("loyalty", "loyalty:create_app()", [])
        self.start("bare", "bare_app:app", ["--pythonpath", str(BENCH)])

    def configure(self) -> None:
        loyalty, bare = self.servers["loyalty"], self.servers["bare"]
        self.wait_ready(loyalty, "/readyz")
        self.wait_ready(bare, "/healthz")
        log(
            f"serving loyalty on {loyalty.url}, bare on {bare.url} ({self.args.workers} "
            f"{self.args.worker_class} workers)"
        )
        admin = {"Authorization": f"Bearer {self.admin_key}"}
        for method, path, body in (
            ("PATCH", "/v1/admin/program", {"pending_days": 0, "hold_ttl_seconds": 3600}),
            (
                "POST",
                "/v1/admin/rules",
                {"name": "Base earning", "kind": "spend", "points": 1, "per_amount": 100},
            ),
            (
                "POST",
                "/v1/admin/rules",
                {"name": "Reviews", "kind": "event", "points": 10, "event_type": "review"},
            ),
        ):
            status, answer = http(method, loyalty.url + path, body, admin)
            if status not in (200, 201):
                raise BenchError(f"{method} {path}: {status} {answer}")
        log("program: pending_days 0, hold TTL 1 h; rules: 1 point per 100 spent, 10 a review")

    # -- load --------------------------------------------------------------------------

    def members_of(self, app: str) -> str:
        half = self.args.members // 2
        return f"1-{half}" if app == "loyalty" else f"{half + 1}-{self.args.members}"

    def tag(self, app: str, purpose: str = "") -> str:
        return f"{self.run_tag}{app[0]}{purpose}"

    def wrk(self, op: str, app: str, seconds: float, tag: str, pool: Path | None = None) -> Result:
        threads = max(1, min(self.args.threads, self.args.connections))
        idem = self.args.idempotency == "writes" and op in WRITES
        idem = idem or (self.args.idempotency == "hold" and op == "hold")
        script_args = [
            f"key={self.checkout_key}",
            f"members={self.members_of(app)}",
            f"run={tag}",
            f"threads={threads}",
            f"idem={int(idem)}",
        ]
        if pool is not None:
            script_args.append(f"pool={pool}")
        command = [
            self.args.wrk,
            f"-t{threads}",
            f"-c{self.args.connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(BENCH / f"{op}.lua"),
            self.servers[app].url,
            "--",
            *script_args,
        ]
        env = dict(os.environ, LUA_PATH=f"{BENCH}/?.lua;;")
        server = self.servers[app]
        stats_before = self.database_stats()
        app_before, db_before = group_cpu(server.process.pid), self.database_cpu()
        machine_before, wrk_before = machine_busy(), children_cpu()
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        machine, wrk_cpu = machine_busy() - machine_before, children_cpu() - wrk_before
        app_cpu = group_cpu(server.process.pid) - app_before
        db_cpu = cpu_delta(db_before, self.database_cpu())
        stats = [b - a for a, b in zip(stats_before, self.database_stats(), strict=True)]
        line = next(
            (x for x in done.stdout.splitlines() if x.startswith("BENCH_RESULT ")),
            None,
        )
        if done.returncode != 0 or line is None:
            raise BenchError(f"wrk {op} on {app} failed:\n{done.stdout}{done.stderr}")
        raw = json.loads(line.removeprefix("BENCH_RESULT "))
        latency = raw["latency_us"]
        return Result(
            op=op,
            app=app,
            requests=int(raw["requests"]),
            seconds=raw["duration_us"] / 1e6,
            p50=latency["p50"] / 1000,
            p95=latency["p95"] / 1000,
            p99=latency["p99"] / 1000,
            non2xx={k: int(v) for k, v in (raw.get("non2xx") or {}).items()},
            socket_errors={k: int(v) for k, v in raw["errors"].items()},
            samples=raw.get("samples") or {},
            reused=int(raw.get("reused") or 0),
            app_cpu=app_cpu,
            db_cpu=db_cpu,
            other_cpu=max(0.0, machine - app_cpu - db_cpu - wrk_cpu),
            xacts=int(stats[0]),
            in_xact=stats[1],
            backends=self.backends(app),
        )

    def database_stats(self) -> tuple[float, float]:
        """(transactions, seconds inside transactions) of the benchmark database so far.

        Backends report these when they go idle, at most once a second: wait that long so
        the figures include the run that just ended (the wait is outside the measured time).
        """
        if not self.database_name:
            return 0.0, 0.0
        time.sleep(1.2)
        row = self.query(
            "SELECT xact_commit + xact_rollback, active_time + idle_in_transaction_time"
            " FROM pg_stat_database WHERE datname = :name",
            name=self.database_name,
        )[0]
        return float(row[0]), float(row[1]) / 1000

    def backends(self, app: str) -> int:
        """Server connections `app`'s workers hold open (their pools) after a run."""
        if not self.database_name:
            return 0
        rows = self.query(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = :name"
            " AND application_name = :app",
            name=self.database_name,
            app=f"bench-{app}",
        )
        return int(rows[0][0])

    def database_cpu(self) -> dict[int, float]:
        """CPU seconds so far of each PostgreSQL backend serving the benchmark database."""
        if not self.database_name:
            return {}
        rows = self.query(
            "SELECT pid FROM pg_stat_activity WHERE datname = :name AND pid <> pg_backend_pid()",
            name=self.database_name,
        )
        return {row[0]: process_cpu(row[0])[0] for row in rows}

    def pool(self, op: str, app: str) -> Path:
        """This run's orders (for refunds) or open holds (for captures) of `app`, one id a
        line, from the database."""
        like = self.tag(app) + "%"  # the timed run's ids, the warm-up's and top-ups' too
        if op == "refund":
            rows = self.query(
                "SELECT order_id FROM orders WHERE order_id LIKE :like ORDER BY id", like=like
            )
            ids = [row[0] for row in rows]
        else:
            rows = self.query(
                "SELECT public_id FROM redemptions WHERE status = 'held' AND order_ref LIKE :like"
                " ORDER BY id",
                like=like,
            )
            ids = [str(uuid.UUID(str(row[0]))) for row in rows]
        path = self.workdir / f"pool-{op}-{app}.txt"
        path.write_text("".join(f"{i}\n" for i in ids))
        return path

    def pool_size(self, path: Path) -> int:
        return sum(1 for line in path.read_text().splitlines() if line)

    def ensure_pool(self, op: str, app: str) -> Path:
        """Make sure the pool outlasts the timed run: captures may run faster than the holds
        that fed them, so top the holds up (untimed) to three times the hold phase's count;
        each order takes six refunds, which is plenty."""
        feeder = "hold" if op == "capture" else "order"
        path = self.pool(op, app)
        have = self.pool_size(path)
        per_id = 1 if op == "capture" else 6
        fed = self.results.get((feeder, app))
        rate = fed.rps if fed and fed.rps else 0.0
        margin = 10 * self.args.threads  # each wrk thread walks its own slice
        needed = int(3.0 * rate * self.args.duration / per_id) + margin if rate else 0
        if have >= needed and have > 0:
            return path
        seconds = (needed - have) / rate if rate else self.args.duration
        seconds = min(max(1.0, seconds), 3 * self.args.duration)
        log(f"  topping up the {op} pool of {app}: {have} ids, running {feeder} {seconds:.0f}s")
        self.top_ups += 1
        extra = self.wrk(feeder, app, seconds, self.tag(app, f"u{self.top_ups}"))
        if extra.problems:
            raise BenchError(f"{feeder} top-up on {app}: {'; '.join(extra.problems)}")
        path = self.pool(op, app)
        return path

    def warm_up(self) -> None:
        seconds = 1 if self.args.smoke else 3
        for app in APPS:
            for op in ("card",) if self.args.smoke else ("card", "order"):
                result = self.wrk(op, app, seconds, self.tag(app, "w"))
                if result.problems:
                    raise BenchError(f"warm-up {op} on {app}: {'; '.join(result.problems)}")
        log("warmed up")

    def note_memory(self) -> None:
        for app, server in self.servers.items():
            seen = self.worker_memory.setdefault(app, {})
            seen.update(worker_rss(server.process.pid))

    def measure(self) -> None:
        for op in self.args.ops:
            for app in APPS:
                pool = self.ensure_pool(op, app) if op in ("refund", "capture") else None
                if pool is not None:
                    log(f"  {op} pool of {app}: {self.pool_size(pool)} ids")
                result = self.wrk(op, app, self.args.duration, self.tag(app), pool)
                self.results[(op, app)] = result
                log(
                    f"{op:8} {app:8} {result.rps:8.1f} req/s  p50 {result.p50:6.1f} ms  "
                    f"p99 {result.p99:6.1f} ms"
                    + ("  PROBLEMS: " + "; ".join(result.problems) if result.problems else "")
                )
                self.note_memory()

    def measure_open_loop(self) -> None:
        """Each operation at each share of the bare app's closed-loop maximum, on both apps,
        requests arriving at a constant rate (bench/openloop.py)."""
        for op in self.args.ops:
            bare_max = self.results[(op, "bare")].rps
            for app in APPS:
                for share in self.args.rates:
                    pool: list[str] = []
                    if op in ("refund", "capture"):
                        needed = int(share * bare_max * self.args.duration) + 10
                        pool = self.open_pool(op, app, needed)
                    idem = self.args.idempotency == "writes" and op in WRITES
                    idem = idem or (self.args.idempotency == "hold" and op == "hold")
                    requests = Requests(
                        op,
                        "127.0.0.1",
                        self.checkout_key,
                        members_range(self.members_of(app)),
                        self.tag(app, f"o{int(share * 100)}"),
                        idem,
                        pool,
                    )
                    result = open_loop(
                        self.servers[app].url, requests, share * bare_max, self.args.duration
                    )
                    self.open_results[(op, app, share)] = result
                    log(
                        f"{op:8} {app:8} open loop {share:.0%} of {bare_max:.0f}: "
                        f"{result.answered_rate:7.1f} req/s  p50 {result.percentile(50):6.1f} "
                        f"p99 {result.percentile(99):7.1f} p99.9 {result.percentile(99.9):7.1f} "
                        f"ms  send lag p99 {result.send_lag_p99:.1f} ms  load {result.load:.2f}"
                        + ("  PROBLEMS: " + "; ".join(result.problems) if result.problems else "")
                    )
                    self.note_memory()

    def open_pool(self, op: str, app: str, needed: int) -> list[str]:
        """Ids no request has touched yet (open holds, orders without a refund), topped up
        (untimed, with wrk) until there are `needed` of them; an order takes six refunds."""
        feeder = "hold" if op == "capture" else "order"
        per_id = 1 if op == "capture" else 6
        for attempt in range(4):
            if op == "capture":
                ids = [x for x in self.pool(op, app).read_text().splitlines() if x]
            else:
                rows = self.query(
                    "SELECT o.order_id FROM orders o WHERE o.order_id LIKE :like AND NOT EXISTS"
                    " (SELECT 1 FROM refunds r WHERE r.order_pk = o.id) ORDER BY o.id",
                    like=self.tag(app) + "%",
                )
                ids = [row[0] for row in rows]
            missing = needed / per_id - len(ids)
            if missing <= 0 or attempt == 3:
                return ids
            fed = self.results.get((feeder, app))
            rate = fed.rps if fed and fed.rps else 100.0
            seconds = min(max(1.0, 2 * missing / rate), 6 * self.args.duration)
            log(f"  topping up the {op} pool of {app}: {len(ids)} ids, {feeder} {seconds:.0f}s")
            self.top_ups += 1
            extra = self.wrk(feeder, app, seconds, self.tag(app, f"u{self.top_ups}"))
            if extra.problems:
                raise BenchError(f"{feeder} top-up on {app}: {'; '.join(extra.problems)}")
        return ids

    # -- report ------------------------------------------------------------------------

    def report(self) -> bool:
        header = (
            f"{'operation':10} | {'loyalty req/s':>13} {'p50':>6} {'p95':>6} {'p99':>6} | "
            f"{'bare req/s':>10} {'p50':>6} {'p95':>6} {'p99':>6} | {'ratio':>5} "
            f"{'target':>6} | verdict"
        )
        lines = [
            "",
            f"loyalty vs bare Flask+SQLAlchemy ceiling: {self.args.database}, "
            f"{self.args.connections} connections, {self.args.workers} {self.workers_label} each, "
            f"{self.args.duration:g}s per operation, {self.args.members} members, "
            f"Idempotency-Key on {self.args.idempotency}; latencies in ms; load average "
            + "/".join(f"{x:.2f}" for x in os.getloadavg())
            + f" (1/5/15 min) at the end on {os.cpu_count()} CPUs",
            header,
            "-" * len(header),
        ]
        ok = True
        for op in SHOW_ORDER:
            ours, bare = self.results.get((op, "loyalty")), self.results.get((op, "bare"))
            if ours is None or bare is None:
                continue
            ratio = ours.rps / bare.rps if bare.rps else 0.0
            target = RATIO_TARGETS.get(op)
            verdict = []
            if target is not None:
                verdict.append("ratio ok" if ratio >= target else "ratio MISSED")
            verdict.append("p99 ok" if ours.p99 < P99_TARGET_MS else "p99 MISSED")
            problems = [f"loyalty {p}" for p in ours.problems] + [
                f"bare {p}" for p in bare.problems
            ]
            if problems:
                ok = False
                verdict = ["ERRORS: " + "; ".join(problems)]
            lines.append(
                f"{op:10} | {ours.rps:13.1f} {ours.p50:6.1f} {ours.p95:6.1f} {ours.p99:6.1f} | "
                f"{bare.rps:10.1f} {bare.p50:6.1f} {bare.p95:6.1f} {bare.p99:6.1f} | "
                f"{ratio:5.2f} {('>=' + format(target, '.1f')) if target else '':>6} | "
                + ", ".join(verdict)
            )
        lines += [
            "",
            "CPU per request in ms (from /proc; unlike req/s, little moved by other load on the",
            "machine): the app's gunicorn processes and the PostgreSQL backends serving them;",
            "other CPU: what the rest of the machine used meanwhile, as a share of all CPUs",
            f"{'operation':10} | {'loyalty app':>11} {'db':>6} | {'bare app':>8} {'db':>6} | "
            f"{'app ratio':>9} | other CPU (loyalty, bare runs)",
        ]
        for op in SHOW_ORDER:
            ours, bare = self.results.get((op, "loyalty")), self.results.get((op, "bare"))
            if ours is None or bare is None:
                continue
            ours_app, bare_app = ours.cpu_ms(ours.app_cpu), bare.cpu_ms(bare.app_cpu)
            ours_db, bare_db = (
                (f"{ours.cpu_ms(ours.db_cpu):6.2f}", f"{bare.cpu_ms(bare.db_cpu):6.2f}")
                if self.database_name
                else ("     -", "     -")  # SQLite runs inside the app's processes
            )
            lines.append(
                f"{op:10} | {ours_app:11.2f} {ours_db} | {bare_app:8.2f} {bare_db} | "
                f"{(bare_app / ours_app if ours_app else 0):9.2f} | "
                f"{ours.other_share:5.0%} {bare.other_share:5.0%}"
            )
        if self.database_name:
            lines += [
                "",
                "PostgreSQL per request (pg_stat_database): transactions, and ms a server",
                "connection spent inside a transaction (what a transaction-pooling PgBouncer",
                "holds it for); conns: connections its workers held open after the run",
                f"{'operation':10} | {'loyalty xacts':>13} {'in-xact ms':>10} {'conns':>5} | "
                f"{'bare xacts':>10} {'in-xact ms':>10} {'conns':>5}",
            ]
            for op in SHOW_ORDER:
                ours, bare = self.results.get((op, "loyalty")), self.results.get((op, "bare"))
                if ours is None or bare is None:
                    continue
                lines.append(
                    f"{op:10} | {ours.xacts / max(ours.requests, 1):13.2f} "
                    f"{ours.cpu_ms(ours.in_xact):10.2f} {ours.backends:5d} | "
                    f"{bare.xacts / max(bare.requests, 1):10.2f} "
                    f"{bare.cpu_ms(bare.in_xact):10.2f} {bare.backends:5d}"
                )
        if self.open_results:
            capacity = {op: r.rps for (op, app), r in self.results.items() if app == "loyalty"}
            lines += open_loop_report(
                self.open_results, self.args.rates, OPEN_LOOP_TARGETS, capacity
            )
            ok = ok and not any(r.problems for r in self.open_results.values())
        lines += self.memory_report()
        lines.append("")
        for (op, app), result in sorted(self.results.items()):
            for status, body in sorted(result.samples.items()):
                lines.append(f"sample {status} from {app} {op}: {body}")
        for server in self.servers.values():
            errors = log_errors(server.log_path)
            if errors:
                lines.append(f"{server.name} log: {len(errors)} error lines, first: {errors[0]}")
        busy = sorted({op for (op, _), r in self.results.items() if r.other_share > BUSY_SHARE})
        if busy:
            lines.append(
                f"BUSY MACHINE: something else used more than {BUSY_SHARE:.0%} of the CPUs "
                f"while {', '.join(busy)} ran; rerun on a quiet machine before comparing"
            )
        if ok:
            lines.append("no errors: every response was 2xx, no socket errors")
        else:
            lines.append("THIS RUN HAD ERRORS (see above); its figures are not valid")
        print("\n".join(lines), flush=True)
        if self.args.output:
            Path(self.args.output).write_text(
                json.dumps(
                    {
                        "settings": {k: v for k, v in vars(self.args).items() if k != "admin_url"},
                        "results": [{**vars(r), "rps": r.rps} for r in self.results.values()],
                    },
                    indent=2,
                )
            )
        return ok

    @property
    def workers_label(self) -> str:
        if self.args.worker_class == "gthread":
            return f"gthread workers of {self.args.worker_threads} threads"
        return f"{self.args.worker_class} workers"

    def memory_report(self) -> list[str]:
        lines = [
            "",
            f"resident memory per worker at the end (MB), {self.args.worker_class} workers; "
            f"workers replaced during the run; load average {os.getloadavg()[0]:.2f}",
        ]
        for app, server in self.servers.items():
            live = worker_rss(server.process.pid)
            seen = self.worker_memory.get(app, {})
            replaced = len(set(seen) - set(live))
            lines.append(
                f"{app:8} "
                + " ".join(f"{kb / 1024:6.1f}" for _, kb in sorted(live.items()))
                + f"  | replaced {replaced}"
            )
        return lines

    def teardown(self) -> None:
        try:
            self.stop_servers()
        finally:
            try:
                if self.args.keep:
                    log(f"kept the database ({self.database_url}) and {self.workdir}")
                else:
                    self.drop_database()
            finally:
                if not self.args.keep:
                    shutil.rmtree(self.workdir, ignore_errors=True)


def http(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> tuple[float, float, int]:
    """(utime + stime, cutime + cstime, process group) of a process from /proc, in seconds;
    zeros when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0, 0.0, -1
    fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "
    own = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    reaped = (int(fields[13]) + int(fields[14])) / CLOCK_TICKS
    return own, reaped, int(fields[2])


def machine_busy() -> float:
    """CPU seconds all CPUs spent busy since boot (/proc/stat: all but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def children_cpu() -> float:
    """CPU seconds of this process's finished children (wrk, once it has been waited for)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def group_cpu(leader: int) -> float:
    """CPU seconds used by a process group: its live processes, plus the children its
    leader reaped (gunicorn workers recycled by max_requests)."""
    total = process_cpu(leader)[1]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            own, _, group = process_cpu(int(entry.name))
            if group == leader:
                total += own
    return total


def worker_rss(leader: int) -> dict[int, int]:
    """Resident kB (VmRSS) of each process of a gunicorn group but its master."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == leader:
            continue
        if process_cpu(int(entry.name))[2] != leader:
            continue
        with contextlib.suppress(OSError, ValueError):
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    found[int(entry.name)] = int(line.split()[1])
    return found


def members_range(spec: str) -> tuple[int, int]:
    low, high = spec.split("-")
    return int(low), int(high)


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU used between two snapshots (a backend that went away in between is left out)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def log_errors(path: Path) -> list[str]:
    found = []
    with contextlib.suppress(OSError), path.open(errors="replace") as stream:
        for line in stream:
            if (
                '"level": "error"' in line
                or "[ERROR]" in line
                or "[CRITICAL]" in line
                or "Traceback" in line
            ):
                found.append(line.strip()[:300])
    return found


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark loyalty against a bare Flask+SQLAlchemy ceiling with wrk."
    )
    parser.add_argument("--duration", type=float, default=None, help="seconds per operation")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections")
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--smoke", action="store_true", help="a short run for CI (< 60 s)")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers per app")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--worker-class", choices=["sync", "gthread", "gevent"], default="sync")
    parser.add_argument(
        "--worker-threads",
        type=int,
        default=1,
        help="gunicorn --threads (gthread: threads per worker; gevent: ignored)",
    )
    parser.add_argument(
        "--ops", default=",".join(RUN_ORDER), help="operations to run, comma separated"
    )
    parser.add_argument(
        "--open-loop",
        action="store_true",
        help="then run each operation at a constant arrival rate (bench/openloop.py)",
    )
    parser.add_argument(
        "--rates",
        default="0.5,0.8",
        help="open loop: arrival rates as shares of the bare app's closed-loop maximum",
    )
    parser.add_argument("--members", type=int, default=None, help="members seeded (half per app)")
    parser.add_argument("--opening-points", type=int, default=1_000_000)
    parser.add_argument(
        "--idempotency",
        choices=["writes", "hold", "none"],
        default="writes",
        help="which loyalty requests send an Idempotency-Key (default: every write, as the "
        "README asks of a checkout)",
    )
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "LOYALTY_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
        help="PostgreSQL URL to create and drop the benchmark database through",
    )
    parser.add_argument("--wrk", default=shutil.which("wrk") or "wrk")
    parser.add_argument("--output", help="also write the results as JSON to this file")
    parser.add_argument("--keep", action="store_true", help="keep the database and logs")
    args = parser.parse_args(argv)
    if args.duration is None:
        args.duration = 2.0 if args.smoke else 20.0
    if args.members is None:
        args.members = 200 if args.smoke else 2000
    args.ops = [op for op in RUN_ORDER if op in args.ops.split(",")]
    args.rates = [float(x) for x in args.rates.split(",")]
    if args.members < 2:
        parser.error("--members: at least 2 (half for each app)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which(args.wrk) is None:
        print("wrk not found: apt-get install -y wrk (or pass --wrk PATH)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    load = os.getloadavg()[0]
    log(
        f"load average {load:.2f} on {os.cpu_count()} CPUs"
        + ("  (busy machine!)" if load > 1 else "")
    )
    bench = Bench(args)
    try:
        bench.migrate()
        bench.serve()  # gunicorn boots while the members are imported
        bench.seed()
        bench.configure()
        bench.warm_up()
        bench.measure()
        if args.open_loop:
            bench.measure_open_loop()
        ok = bench.report()
    except BenchError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 1
    finally:
        bench.teardown()
    log("done")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
