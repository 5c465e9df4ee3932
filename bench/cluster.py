"""Throughput through nginx of deploy/cluster with one app node and with more.

    .venv/bin/python bench/cluster.py [--nodes 1,2] [--duration 15] [--connections 16]

Starts deploy/cluster once (its own PostgreSQL primary and replica, PgBouncer, no jobs
workers, on free ports in a temporary runtime directory), imports members with opening
balances, and for each node count restarts the app tier with that many nodes (each
`--workers` sync workers) and drives the checkout operations of bench/ (order, hold, card,
quote) through nginx with wrk and the same Lua scripts as bench/run.py. Prints requests/s
and p50/p99 per operation and node count, then destroys the cluster. See bench/README.md.
"""

# A command-line tool: it prints, and runs wrk, deploy/cluster and the loyalty CLI.
# ruff: noqa: T201, S603, S310

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from run import free_port

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
BIN = Path(sys.executable).parent
OPS = ("order", "hold", "card", "quote")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="1,2")
    parser.add_argument("--workers", type=int, default=2, help="sync workers per node")
    parser.add_argument("--duration", type=int, default=15, help="seconds per operation")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--members", type=int, default=2000)
    args = parser.parse_args()
    runtime = Path(tempfile.mkdtemp(prefix="loyalty-bench-cluster-"))
    app_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOYALTY_", "PROMETHEUS_"))}
    env.update(
        PATH=f"/usr/sbin:{env.get('PATH', '')}",
        LOYALTY_RUNTIME_DIR=str(runtime),
        LOYALTY_PUBLIC_BIND=f"127.0.0.1:{free_port()}",
        LOYALTY_APP_PORT=str(app_port),
        LOYALTY_WORKERS=str(args.workers),
        LOYALTY_JOBS_WORKERS="0",
        LOYALTY_PGBOUNCER_PORT=str(free_port()),
        LOYALTY_PRIMARY_PORT=str(free_port()),
        LOYALTY_REPLICA_PORT=str(free_port()),
        LOYALTY_COMMAND=str(BIN / "loyalty"),
        LOYALTY_SECRET_KEY="bench-only",
        LOYALTY_LOG_LEVEL="WARNING",
        LOYALTY_RATE_LIMIT_CHECKOUT="100000000/minute",
        LOYALTY_RATE_LIMIT_ADMIN="100000000/minute",
    )
    public = "http://" + env["LOYALTY_PUBLIC_BIND"]
    cluster = str(ROOT / "deploy" / "cluster")
    results: dict[tuple[int, str], dict[str, float]] = {}
    try:
        counts = [int(n) for n in args.nodes.split(",")]
        for index, nodes in enumerate(counts):
            env["LOYALTY_APP_NODES"] = str(nodes)
            if index:
                subprocess.run([cluster, "stop"], env=env, check=True)
            subprocess.run([cluster, "start"], env=env, check=True)
            if index == 0:
                key = seed(env, runtime, public, args.members)
            for op in OPS:
                results[nodes, op] = wrk(op, public, key, args, f"n{nodes}{op[0]}")
    finally:
        subprocess.run([cluster, "destroy"], env=env, check=False)
        shutil.rmtree(runtime, ignore_errors=True)
    print(f"\nthrough nginx, {args.workers} sync workers per node, {args.connections} connections")
    print(f"{'operation':10}" + "".join(f"{f'{n} node(s) req/s  p50  p99':>30}" for n in counts))
    for op in OPS:
        cells = "".join(
            f"{results[n, op]['rps']:>17.0f} {results[n, op]['p50']:>5.1f} "
            f"{results[n, op]['p99']:>6.1f}"
            for n in counts
        )
        print(f"{op:10}{cells}   {results[counts[0], op]['errors']:.0f} non-2xx")
    return 0


def loyalty(env: dict[str, str], primary: str, *args: str) -> str:
    done = subprocess.run(
        [str(BIN / "loyalty"), *args],
        cwd=ROOT,
        env={**env, "DATABASE_URL": primary},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def seed(env: dict[str, str], runtime: Path, public: str, members: int) -> str:
    """Members m000001.. with 1,000,000 points each, pending_days 0, 1 point per 1.00;
    returns a key with the checkout and admin scopes."""
    primary = f"postgresql://loyalty@127.0.0.1:{env['LOYALTY_PRIMARY_PORT']}/loyalty"
    people, balances = runtime / "members.csv", runtime / "balances.csv"
    people.write_text(
        "external_id,email,name\n"
        + "".join(f"m{i:06d},m{i:06d}@bench.example,Member {i}\n" for i in range(1, members + 1))
    )
    balances.write_text(
        "external_id,points\n" + "".join(f"m{i:06d},1000000\n" for i in range(1, members + 1))
    )
    loyalty(env, primary, "import", "members", str(people))
    loyalty(env, primary, "import", "balances", str(balances))
    made = loyalty(env, primary, "keys", "create", "bench", "--scope", "checkout", "--scope", "admin")
    key = made.strip().splitlines()[-1]
    for method, path, body in (
        ("PATCH", "/v1/admin/program", {"pending_days": 0, "hold_ttl_seconds": 3600}),
        ("POST", "/v1/admin/rules", {"name": "Base", "kind": "spend", "points": 1, "per_amount": 100}),
    ):
        request = urllib.request.Request(
            public + path,
            data=json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=30).read()
    return key


def wrk(op: str, public: str, key: str, args: argparse.Namespace, tag: str) -> dict[str, float]:
    command = [
        "wrk", "-t2", f"-c{args.connections}", f"-d{args.duration}s", "--timeout", "10s",
        "-s", str(BENCH / f"{op}.lua"), public, "--",
        f"key={key}", f"members=1-{args.members}", f"run={tag}", "threads=2", "idem=1",
    ]  # fmt: skip
    done = subprocess.run(
        command, env={**os.environ, "LUA_PATH": f"{BENCH}/?.lua;;"}, capture_output=True,
        text=True, check=True,
    )  # fmt: skip
    line = next(x for x in done.stdout.splitlines() if x.startswith("BENCH_RESULT "))
    raw = json.loads(line.removeprefix("BENCH_RESULT "))
    return {
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50": raw["latency_us"]["p50"] / 1000,
        "p99": raw["latency_us"]["p99"] / 1000,
        "errors": sum(int(v) for v in (raw.get("non2xx") or {}).values()),
    }


if __name__ == "__main__":
    sys.exit(main())
