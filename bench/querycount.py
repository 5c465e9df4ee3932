"""SQL statements, commits, wall and CPU time per request, per checkout operation, and
optionally a cProfile (CPU time) of one operation: where loyalty's time goes, without the
noise of a load test.

    .venv/bin/python bench/querycount.py [--database postgresql|sqlite] [--requests 50]
                                         [--profile card|quote|order|hold|capture|refund|event]

Sets up a throwaway database exactly as bench/run.py does (migrate, import members and
balances, keys, return window 0, a spend rule and an event rule), then sends each
operation's requests through Flask's test client in this process (the same headers and
bodies as the wrk scripts) and counts what reaches the database. The database is dropped at the end.
"""

# A command-line tool: it prints; its random member picks are no secrets.
# ruff: noqa: T201, S311

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import random
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench_run  # bench/run.py, beside this file

OPS = ["card", "quote", "order", "hold", "capture", "refund", "event"]
LINES = [
    {"sku": "tee-black-m", "category": "apparel", "quantity": 2, "unit_price": 2500},
    {"sku": "mug-white", "category": "home", "quantity": 2, "unit_price": 1200},
    {"sku": "cap-navy", "category": "accessories", "quantity": 2, "unit_price": 1800},
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--profile", choices=OPS)
    parser.add_argument("--idempotency", choices=["writes", "none"], default="writes")
    parser.add_argument(
        "--statements", action="store_true", help="print the SQL of one request of each kind"
    )
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "LOYALTY_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    options = parser.parse_args()
    args = bench_run.parse_args(
        ["--database", options.database, "--members", "200", "--admin-url", options.admin_url]
    )
    bench = bench_run.Bench(args)
    try:
        bench.migrate()
        bench.seed()
        report(bench, options)
    finally:
        bench.teardown()
    return 0


def report(bench: bench_run.Bench, options: argparse.Namespace) -> None:
    os.environ["DATABASE_URL"] = bench.database_url
    os.environ.setdefault("LOYALTY_LOG_LEVEL", "WARNING")
    import sqlalchemy as sa

    from loyalty import create_app
    from loyalty.extensions import db

    app = create_app()
    client = app.test_client()
    admin = {"Authorization": f"Bearer {bench.admin_key}"}
    assert (
        client.patch(
            "/v1/admin/program", json={"pending_days": 0, "hold_ttl_seconds": 3600}, headers=admin
        ).status_code
        == 200
    )
    for rule in (
        {"name": "Base earning", "kind": "spend", "points": 1, "per_amount": 100},
        {"name": "Reviews", "kind": "event", "points": 10, "event_type": "review"},
    ):
        assert client.post("/v1/admin/rules", json=rule, headers=admin).status_code == 201

    statements: Counter[str] = Counter()
    commits = [0]
    trace: list[str] = []
    with app.app_context():
        engine = db.engine

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _count(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        statements[statement.split(None, 1)[0].upper()] += 1
        trace.append(" ".join(statement.split())[:150])

    @sa.event.listens_for(engine, "commit")
    def _commit(conn: Any) -> None:
        commits[0] += 1

    key = {"Authorization": f"Bearer {bench.checkout_key}"}
    orders: list[str] = []
    holds: list[str] = []
    n = options.requests

    def member() -> str:
        return f"m{random.randint(1, 100):06d}"

    def idem(value: str) -> dict[str, str]:
        return {"Idempotency-Key": value} if options.idempotency == "writes" else {}

    def call(op: str, i: int) -> Any:
        if op == "card":
            return client.get(f"/v1/members/{member()}", headers=key)
        if op == "quote":
            body = {"member_id": member(), "currency": "USD", "discount": 500, "lines": LINES}
            return client.post("/v1/orders/quote", json=body, headers=key)
        if op == "order":
            order_id = f"q-ord-{uuid.uuid4().hex[:12]}"
            orders.append(order_id)
            body = {
                "order_id": order_id,
                "member_id": member(),
                "currency": "USD",
                "discount": 500,
                "lines": LINES,
            }
            return client.post("/v1/orders", json=body, headers={**key, **idem(order_id)})
        if op == "hold":
            ref = f"q-hold-{uuid.uuid4().hex[:12]}"
            body = {"member_id": member(), "points": 100, "order_id": ref}
            response = client.post("/v1/redemptions", json=body, headers={**key, **idem(ref)})
            holds.append(response.get_json()["redemption_id"])
            return response
        if op == "capture":
            rid = holds[i]
            return client.post(
                f"/v1/redemptions/{rid}/capture", headers={**key, **idem(f"cap-{rid}")}
            )
        if op == "event":
            event_id = f"q-evt-{uuid.uuid4().hex[:12]}"
            body = {"event_id": event_id, "member_id": member(), "type": "review"}
            return client.post("/v1/events", json=body, headers={**key, **idem(event_id)})
        refund_id = f"q-ref-{uuid.uuid4().hex[:12]}"
        body = {"refund_id": refund_id, "lines": [{"sku": LINES[i % 3]["sku"], "quantity": 1}]}
        return client.post(
            f"/v1/orders/{orders[i]}/refunds", json=body, headers={**key, **idem(refund_id)}
        )

    print(
        f"\nper request, averaged over {n} requests ({bench.args.database}, "
        f"Idempotency-Key on {options.idempotency}):"
    )
    print(f"{'operation':10} {'statements':>10} {'commits':>8} {'ms':>7} {'cpu ms':>7}  by kind")
    for op in OPS:
        call(op, 0)  # first request of a kind: imports, compiled-statement cache
        trace.clear()
        call(op, 1)  # one request whose statements --statements shows
        if options.statements:
            print(f"  one {op} request:")
            for sql in trace:
                print(f"    {sql}")
        statements.clear()
        commits[0] = 0
        # CPU time, so the profile shows this process's work and not the database's.
        profiler = cProfile.Profile(time.process_time) if op == options.profile else None
        started, cpu_started = time.perf_counter(), time.process_time()
        if profiler:
            profiler.enable()
        for i in range(2, n + 2):
            response = call(op, i)
            if response.status_code >= 300:
                raise SystemExit(f"{op}: {response.status_code} {response.get_data(as_text=True)}")
        if profiler:
            profiler.disable()
        elapsed = (time.perf_counter() - started) * 1000 / n
        cpu = (time.process_time() - cpu_started) * 1000 / n
        total = sum(statements.values())
        kinds = ", ".join(f"{k} {v / n:.1f}" for k, v in statements.most_common())
        print(f"{op:10} {total / n:10.1f} {commits[0] / n:8.1f} {elapsed:7.2f} {cpu:7.2f}  {kinds}")
        if profiler:
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out).sort_stats(
                os.environ.get("QC_SORT", "cumulative")
            )
            stats.print_stats(45)
            if os.environ.get("QC_CALLERS"):
                stats.print_callers(os.environ["QC_CALLERS"])
            profile_text = out.getvalue()
    if options.profile:
        print(f"\ncProfile (CPU time) of {n} {options.profile} requests, cumulative:")
        print(profile_text)


if __name__ == "__main__":
    sys.exit(main())
