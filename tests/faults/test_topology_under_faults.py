"""The scaled-out topology under load and faults: deploy/cluster (nginx, two app nodes,
PgBouncer in transaction pooling, a primary with a streaming replica, two jobs workers) takes
the checkout mix through nginx while, one after another, an app node is killed (SIGKILL, its
master and workers), PgBouncer restarts, replay on the replica is paused until it lags past
the allowed lag and then resumed, and a jobs worker is killed mid-pass.

The client is a shop's checkout: every write carries its own ids (order_id, event_id,
refund_id) or an Idempotency-Key, and is sent again verbatim on no answer or a 5xx until it
has a final one. Afterwards `loyalty ledger verify` passes, the database holds exactly the
orders, events, holds and refunds the client was told were made (none lost, none doubled),
every outbox event reached the webhook receiver exactly once, and the reads that went to the
replica, and those that fell back while it lagged, are listed.

It never touches the shared PostgreSQL on 5432: the cluster builds its own.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tests.factories import RuleFactory
from tests.faults import Answer, order_body
from tests.faults.cluster import Cluster, WebhookReceiver, call, started_cluster, until_final

MEMBERS = [f"m{n}" for n in range(12)]
CLIENTS = 6
MAX_LAG_SECONDS = 1


@dataclass
class Checkout:
    """The client's record: each write's ids and its final answer."""

    port: int
    checkout: dict[str, str]
    admin: dict[str, str]
    stop: threading.Event = field(default_factory=threading.Event)
    orders: dict[str, Answer] = field(default_factory=dict)
    events: dict[str, Answer] = field(default_factory=dict)
    holds: dict[str, Answer] = field(default_factory=dict)
    captures: dict[str, Answer] = field(default_factory=dict)
    refunds: dict[str, Answer] = field(default_factory=dict)
    reads: list[Answer] = field(default_factory=list)

    def write(self, path: str, body: Any, key: str | None = None) -> Answer:
        headers = dict(self.checkout)
        if key:
            headers["Idempotency-Key"] = key
        return until_final(self.port, "POST", path, body, headers)

    def read(self, path: str, headers: dict[str, str]) -> Answer:
        answer = until_final(self.port, "GET", path, None, headers)
        self.reads.append(answer)
        return answer

    def shop(self, client: int) -> None:
        """One client's checkouts, one after another, until told to stop."""
        n = 0
        while not self.stop.is_set():
            tag, member = f"c{client}-{n}", MEMBERS[(client * 5 + n) % len(MEMBERS)]
            self.read(f"/v1/members/{member}", self.checkout)
            cart = order_body(f"ord-{tag}", member, 1 + n % 3)
            self.write("/v1/orders/quote", {k: v for k, v in cart.items() if k != "order_id"})
            hold = {"member_id": member, "points": 500, "order_id": f"pay-{tag}"}
            held = self.holds[f"hold-{tag}"] = self.write("/v1/redemptions", hold, f"hold-{tag}")
            redemption = (held.body or {}).get("redemption_id")
            self.orders[f"ord-{tag}"] = self.write(
                "/v1/orders", {**cart, "redemption_id": redemption}, f"order-{tag}"
            )
            if redemption:
                self.captures[redemption] = self.write(
                    f"/v1/redemptions/{redemption}/capture", None
                )
            event = {"event_id": f"ev-{tag}", "member_id": member, "type": "review"}
            self.events[f"ev-{tag}"] = self.write("/v1/events", event)
            if n % 3 == 0:
                self.refunds[f"ref-{tag}"] = self.write(
                    f"/v1/orders/ord-{tag}/refunds", {"refund_id": f"ref-{tag}", "amount": 2500}
                )
            # Reads that may lag: the replica's, unless it is behind (or down).
            self.read("/v1/admin/audit-log", self.admin)
            self.read("/v1/admin/segments", self.admin)
            n += 1


def seed(cluster: Cluster, receiver: WebhookReceiver) -> Checkout:
    keys = {}
    for scope in ("checkout", "admin"):
        made = cluster.loyalty("keys", "create", f"fault-{scope}", "--scope", scope)
        assert made.returncode == 0, made.stderr
        keys[scope] = {"Authorization": f"Bearer {made.stdout.strip().splitlines()[-1]}"}
    shop = Checkout(cluster.public, keys["checkout"], keys["admin"])
    for method, path, body in (
        ("PATCH", "/v1/admin/program", {"pending_days": 0, "hold_ttl_seconds": 3600}),
        ("POST", "/v1/admin/rules", RuleFactory.build()),
        ("POST", "/v1/admin/rules", RuleFactory.build(review=True)),
        (
            "POST",
            "/v1/admin/webhooks",
            {"url": f"http://127.0.0.1:{receiver.port}/hook", "event_types": ["*"]},
        ),
    ):
        answer = call(cluster.public, method, path, body, shop.admin)
        assert answer.status in (200, 201), answer
    for member in MEMBERS:
        enrolled = shop.write("/v1/members", {"external_id": member})
        assert enrolled.status == 201, enrolled
        given = until_final(
            cluster.public,
            "POST",
            f"/v1/admin/members/{member}/adjustments",
            {"points": 1_000_000, "reason": "seed"},
            shop.admin,
        )
        assert given.status == 201, given
    return shop


def lag_seconds(cluster: Cluster) -> float:
    rows = cluster.sql(
        cluster.replica_port,
        "SELECT coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0)",
    )
    return float(rows[0][0])


def wait_for(condition, what: str, seconds: float = 60, detail=str) -> None:  # type: ignore[no-untyped-def]
    """Poll until `condition()` holds (the cluster's progress, not a clock under test)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {detail()}"
        time.sleep(0.2)


def test_the_checkout_through_the_cluster_survives_its_faults(capsys):
    receiver = WebhookReceiver()
    settings = {
        "LOYALTY_WEBHOOKS_ALLOW_LOCAL": "1",
        "LOYALTY_WEBHOOK_LEASE_SECONDS": "12",
        "LOYALTY_REPLICA_MAX_LAG_SECONDS": str(MAX_LAG_SECONDS),
        "LOYALTY_RATE_LIMIT_CHECKOUT": "1000000/minute",
        "LOYALTY_RATE_LIMIT_ADMIN": "1000000/minute",
    }
    try:
        with started_cluster(**settings) as cluster:
            shop = seed(cluster, receiver)
            faults: list[str] = []
            with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
                running = [pool.submit(shop.shop, n) for n in range(CLIENTS)]
                progress = lambda: len(shop.orders)  # noqa: E731
                wait_for(lambda: progress() >= 10, "the first orders")

                cluster.command("kill", "node1")
                faults.append(f"node1 killed after {progress()} orders")
                wait_for(lambda: progress() >= 25, "orders on the node left")

                cluster.command("restart", "pgbouncer")
                faults.append(f"PgBouncer restarted after {progress()} orders")
                wait_for(lambda: progress() >= 40, "orders after PgBouncer's restart")

                cluster.sql(cluster.replica_port, "SELECT pg_wal_replay_pause()")
                wait_for(lambda: lag_seconds(cluster) > MAX_LAG_SECONDS + 1, "the replica to lag")
                lag = lag_seconds(cluster)
                wait_for(lambda: fallbacks(cluster).get("lagging", 0) >= 1, "a lagging fallback")
                cluster.sql(cluster.replica_port, "SELECT pg_wal_replay_resume()")
                faults.append(f"replica replay paused until {lag:.1f} s behind, then resumed")
                wait_for(lambda: lag_seconds(cluster) < MAX_LAG_SECONDS, "the replica to catch up")

                wait_for(lambda: delivered_so_far(cluster) > 0, "a first webhook delivery")
                cluster.command("kill", "worker1")
                faults.append(f"worker1 killed mid-pass after {progress()} orders")
                at_kill = progress()
                wait_for(lambda: progress() >= at_kill + 15, "orders after the worker's death")
                cluster.command("restart", "worker1")
                shop.stop.set()
                for future in running:
                    future.result()

            wait_for(
                lambda: undelivered(cluster) == 0,
                "every webhook delivered",
                seconds=90,
                detail=lambda: delivery_state(cluster),
            )
            assert "worker1.pid: running" in cluster.command("status")
            assert "worker2.pid: running" in cluster.command("status")
            verified = cluster.loyalty("ledger", "verify")
            assert verified.returncode == 0, verified.stdout + verified.stderr
            check_nothing_lost_or_doubled(cluster, shop)
            events = {
                row[0]
                for row in cluster.sql(
                    cluster.primary_port, "SELECT public_id::text FROM outbox_events"
                )
            }
            assert events
            assert set(receiver.received) == events
            doubled = {k: v for k, v in receiver.received.items() if v != 1}
            assert not doubled, f"delivered more than once: {doubled}"
            report = replica_report(cluster, shop, faults, lag, len(events))
    finally:
        receiver.close()
    with capsys.disabled():
        sys.stdout.write(f"\n{report}\n")


def check_nothing_lost_or_doubled(cluster: Cluster, shop: Checkout) -> None:
    statuses = Counter(
        f"{kind} {a.status}"
        for kind, answers in (
            ("order", shop.orders),
            ("event", shop.events),
            ("hold", shop.holds),
            ("capture", shop.captures),
            ("refund", shop.refunds),
        )
        for a in answers.values()
    )
    assert set(statuses) == {"order 201", "event 201", "hold 201", "capture 200", "refund 201"}, (
        statuses
    )
    assert all(a.status == 200 for a in shop.reads), Counter(a.status for a in shop.reads)

    def column(sql: str) -> Counter[str]:
        return Counter(row[0] for row in cluster.sql(cluster.primary_port, sql))

    assert column("SELECT order_id FROM orders") == Counter(shop.orders.keys())
    assert column("SELECT event_id FROM member_events WHERE type = 'review'") == Counter(
        shop.events.keys()
    )
    assert column("SELECT refund_id FROM refunds") == Counter(shop.refunds.keys())
    held = {a.body["redemption_id"] for a in shop.holds.values()}
    assert column("SELECT public_id::text FROM redemptions") == Counter(held)
    assert column("SELECT status FROM redemptions") == {"captured": len(held)}
    earned = column(
        "SELECT reference FROM ledger_transactions WHERE kind = 'earn' AND reference LIKE 'order:%'"
    )
    assert earned == Counter(f"order:{order_id}" for order_id in shop.orders)


def fallbacks(cluster: Cluster) -> dict[str, float]:
    """loyalty_replica_fallbacks_total by reason on node2 (node1 is killed early)."""
    return {
        name.split('reason="')[1].split('"')[0]: value
        for name, value in cluster.metrics_of_node(2).items()
        if name.startswith("loyalty_replica_fallbacks_total{")
    }


def delivered_so_far(cluster: Cluster) -> int:
    rows = cluster.sql(
        cluster.primary_port, "SELECT count(*) FROM webhook_deliveries WHERE status = 'succeeded'"
    )
    return int(rows[0][0])


def undelivered(cluster: Cluster) -> int:
    rows = cluster.sql(
        cluster.primary_port,
        "SELECT (SELECT count(*) FROM outbox_events WHERE dispatched_at IS NULL) + "
        "(SELECT count(*) FROM webhook_deliveries WHERE status <> 'succeeded')",
    )
    return int(rows[0][0])


def delivery_state(cluster: Cluster) -> str:
    rows = cluster.sql(
        cluster.primary_port,
        "SELECT status, count(*), min(next_attempt_at)::text, max(attempts) "
        "FROM webhook_deliveries GROUP BY status",
    )
    workers = "".join(
        f"\n{log.name}: {log.read_text(errors='replace')[-600:]}"
        for log in sorted(cluster.runtime.glob("worker*.log"))
    )
    return f"{rows}{workers}"


def replica_report(
    cluster: Cluster, shop: Checkout, faults: list[str], lag: float, events: int
) -> str:
    """The reads that may lag, by node, path and the server that served them."""
    routed = Counter(
        (line["node"], line["path"].split("?")[0], line["db"])
        for line in cluster.node_logs()
        if "db" in line
    )
    lines = [
        f"topology under faults: {len(shop.orders)} orders, {len(shop.events)} events, "
        f"{len(shop.holds)} holds, {len(shop.refunds)} refunds, {len(shop.reads)} reads, "
        f"{events} webhooks each delivered once",
        *(f"  fault: {fault}" for fault in faults),
        f"  replica lag seen: {lag:.1f} s (allowed {MAX_LAG_SECONDS} s)",
        f"  fallbacks to the primary on node2: {fallbacks(cluster)}",
        "  reads that may lag, by node, path and server:",
        *(f"    {node} {path} {db}: {n}" for (node, path, db), n in sorted(routed.items())),
    ]
    assert any(db == "replica" for _, _, db in routed), "\n".join(lines)
    return "\n".join(lines)
