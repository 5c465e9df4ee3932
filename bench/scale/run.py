"""The scale test (issue 6): a ledger of 1,000,000 members and 10,000,000 entries, then the
hot paths, the reports, the worker and `ledger verify` measured on it, in one run.

    .venv/bin/python bench/scale/run.py [--members 1000000] [--entries 10000000] [--keep]
                                        [--admin-url postgresql://postgres@127.0.0.1:5432/test]

1. Creates a throwaway database next to --admin-url and migrates it with `loyalty db upgrade`;
   creates a checkout and an admin key (`loyalty keys create`); through the API, sets the
   return window to 0 days and the hold TTL to an hour and adds one spend rule (1 point per
   100), as bench/run.py does.
2. Builds the ledger in SQL (bench/scale/ledger.sql: generate_series and INSERT ... SELECT),
   a valid ledger under loyalty's invariants: two years of earns, maturings, refunds,
   redemptions and expiries, a member with 10 entries (`scale-light`), one with about 10,000
   (`scale-heavy`), and --due-lots lots due for settlement. Secondary indexes and foreign keys
   are dropped during the load and put back afterwards (the migration's own definitions),
   then the tables are vacuumed and analyzed.
3. Measures, through loyalty's code: the member card and a quote for both members (Flask's
   test client in this process, median and p95), `loyalty jobs run` settling the due lots,
   `loyalty insight refresh` over every member (issue 13: under 3 minutes), the liability
   report and a day's activity report (through the API), `loyalty ledger verify` on
   everything, the card again once the program has the demo's three tiers, and (issue 14:
   under 2 minutes a pass) two passes of the automations step over a set of automations of
   every trigger kind, with the dispatch of the events they emitted.
4. Prints the table and exits 1 if a target is missed or verify fails. The database is dropped
   at the end (unless --keep), also on failure or Ctrl-C. See bench/scale/README.md.
"""

# A command-line tool: it prints, runs the loyalty CLI and builds SQL from trusted names.
# ruff: noqa: T201, S311, S603, S608

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import importlib.util
import json
import math
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
LEDGER_SQL = HERE / "ledger.sql"


def _load_bench_run() -> Any:
    """bench/run.py (its database, CLI and logging helpers), under another module name: this
    file is called run.py too."""
    # bench/run.py imports its sibling modules (openloop) as a script does.
    sys.path.insert(0, str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = module
    spec.loader.exec_module(module)
    return module


bench_run = _load_bench_run()
log = bench_run.log
BenchError = bench_run.BenchError

LIGHT, HEAVY = "scale-light", "scale-heavy"
PHASES = ("reads", "insight", "jobs", "reports", "verify", "tiers", "automations")
TIERS_LABEL = " (tiers)"
# Issue 6's targets.
READ_RATIO_TARGET = 1.2  # heavy member's median over the light member's, card and quote
REPORT_TARGET_S = 2.0  # liability report, one day's activity report
# Issue 13: `loyalty insight refresh` over every member, their orders and ledger entries.
INSIGHT_TARGET_S = 180.0
# Issue 14: a pass evaluating every active automation over every member.
AUTOMATIONS_TARGET_S = 120.0
# The return window the two years of history were written under (the program's default);
# the run then sets it to 0 days as bench/run.py does.
HISTORY_PENDING_DAYS = 14
# Average entries per lot of the model in ledger.sql (measured), to size the draw; the draw
# is then trimmed to --entries exactly.
ENTRIES_PER_LOT = 5.5
OVERDRAW = 1.2
# The tables the build writes: their secondary indexes and foreign keys are dropped during
# the load and put back after it.
# Issue 17: `jobs run` settles at least this many due lots per second.
SETTLE_TARGET = 5_000
LOADED_TABLES = [
    "members",
    "member_balances",
    "ledger_transactions",
    "ledger_entries",
    "point_lots",
    "orders",
    "refunds",
    "redemptions",
    "redemption_allocations",
]
# The cart of bench/cart.lua and bench/querycount.py.
LINES = [
    {"sku": "tee-black-m", "category": "apparel", "quantity": 2, "unit_price": 2500},
    {"sku": "mug-white", "category": "home", "quantity": 2, "unit_price": 1200},
    {"sku": "cap-navy", "category": "accessories", "quantity": 2, "unit_price": 1800},
]
# `loyalty jobs run`, through the same click entry point as the `loyalty` script, with a timer
# around each step of the pass (settle, notices, birthdays, webhooks).
# Issue 13: what an analyst does around a refresh: saved segments defined before it (so the
# refresh's saved_segments step has work), then after it the summary, the model's
# evaluation at a split, a filtered page of the member list and the CSV export of a segment.
INSIGHT_DRIVER = r"""
import datetime as dt, json, sys, time
from loyalty import create_app
from loyalty.extensions import db
from loyalty.insight import evaluation, export, queries, saved_segments, summary
from loyalty.insight.segment_filter import SegmentFilter
from loyalty.insight.segments import Segment
app = create_app()
spent = {}
with app.app_context():
    session = db.session()
    if sys.argv[1] == "segments":
        for key, body in (
            ("champions_and_loyal", {"rfm_segments": ["champions", "loyal"]}),
            ("valuable_at_risk", {"rfm_segments": ["at_risk", "cannot_lose_them"],
                                  "predicted_value": {"min": 5000}}),
            ("quiet_regulars", {"orders": {"min": 5}, "days_since_last_order": {"min": 90}}),
        ):
            definition = saved_segments.SegmentDefinition(
                key=key, name=key, filter=SegmentFilter.from_json(body))
            saved_segments.create_segment(session, definition, "bench")
        print(json.dumps({"segments": 3}))
        sys.exit(0)
    def timed(name, work):
        started = time.perf_counter()
        result = work()
        spent[name] = time.perf_counter() - started
        session.rollback()
        return result
    found = timed("summary", lambda: summary.summary(session))
    split = found.refresh.as_of - dt.timedelta(days=180)
    evaluated = timed("evaluation", lambda: evaluation.evaluate_at(session, split))
    filters = queries.MemberFilters(segments=(Segment.AT_RISK,), predicted_value_min=1000)
    timed("member_page", lambda: queries.list_members(session, filters, 50, None))
    # Text search matches a substring of id, email or name: a scan of every member.
    search = queries.MemberFilters(q="light")
    timed("member_search", lambda: queries.list_members(session, search, 50, None))
    exported = timed("export_lost", lambda: sum(1 for _ in export.csv_lines(
        queries.iter_members(session, queries.MemberFilters(segments=(Segment.LOST,))))) - 1)
    print(json.dumps({"seconds": spent, "exported": exported,
                      "evaluation": {"customers": evaluated.customers,
                                     "predicted": evaluated.predicted_total,
                                     "actual": evaluated.actual_total}}))
"""


# Issue 14: what a shop's retention program asks of the worker: every trigger kind that has
# data here (the tiers' reviews are in the future, segments just refreshed), webhook-only ones
# fired in one statement and a birthday bonus granted member by member. The reward is the one
# reward_affordable looks for.
SCALE_REWARD = {"name": "Tote bag", "kind": "product", "cost_points": 500}
SCALE_BONUS_RULE = {"name": "Birthday bonus", "kind": "bonus", "points": 100}
SCALE_AUTOMATIONS: list[dict[str, Any]] = [
    {"name": "Welcome", "trigger": {"kind": "enrolled", "delay_days": 0}},
    {"name": "Win back after 90 quiet days", "trigger": {"kind": "inactive", "days": 90}},
    {
        "name": "Valuable and quiet for 30 days",
        "trigger": {"kind": "inactive", "days": 30},
        "conditions": {"predicted_value": {"min": 5000}},
    },
    {
        "name": "Time to buy again",
        "trigger": {"kind": "repurchase_due", "default_gap_days": 45, "factor": "1.5"},
        "dedup_days": 30,
    },
    {
        "name": "Points expire within 30 days",
        "trigger": {"kind": "points_expiring", "within_days": 30},
    },
    {"name": "Tote bag within reach", "trigger": {"kind": "reward_affordable"}},
    {"name": "Gold at risk", "trigger": {"kind": "tier_at_risk", "within_days": 30}},
    {
        "name": "New champions",
        "trigger": {"kind": "segment_entered", "segment": "champions_and_loyal"},
    },
    {"name": "Happy birthday", "trigger": {"kind": "birthday"}},
]
# Two passes of the automations step of `jobs run` (loyalty.automations.firing.fire_due): the
# first fires what is due, the second finds every key taken (pure evaluation); then the
# dispatch of the events the first emitted. Each automation's share is timed.
AUTOMATIONS_DRIVER = r"""
import json, time
from loyalty import create_app
from loyalty.automations import firing
from loyalty.extensions import db
from loyalty.webhooks import services as webhooks
app = create_app()
inner = firing._fire
spent = {}
def timed_fire(session, automation, version, *args):
    started = time.perf_counter()
    try:
        return inner(session, automation, version, *args)
    finally:
        spent[version.name] = spent.get(version.name, 0.0) + time.perf_counter() - started
firing._fire = timed_fire
result = {}
with app.app_context():
    session = db.session()
    for name in ("first", "second"):
        spent = {}
        started = time.perf_counter()
        summary = firing.fire_due(session)
        result[name] = {"seconds": time.perf_counter() - started, "fired": summary.total,
                        "points_granted": summary.points_granted, "automations": spent}
    started = time.perf_counter()
    dispatched = webhooks.dispatch(session)
    result["dispatch"] = {"seconds": time.perf_counter() - started, "events": dispatched}
print(json.dumps(result))
"""


JOBS_DRIVER = r"""
import json, sys, time
from loyalty.jobs import services as jobs
from loyalty.webhooks import services as webhooks
spent = {}
def timed(module, name):
    inner = getattr(module, name, None)
    if inner is None:
        return
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - started
    setattr(module, name, wrapper)
from loyalty.insight import services as insight
for module, name in ((jobs, "settle_due"), (jobs, "notify_expiring"), (jobs, "grant_birthdays"),
                     (insight, "refresh_if_due"), (webhooks, "dispatch"),
                     (webhooks, "deliver_due")):
    timed(module, name)
from loyalty.cli import main
try:
    main.main(args=["jobs", "run"], prog_name="loyalty", standalone_mode=False)
finally:
    print("STEP-TIMES " + json.dumps(spent), file=sys.stderr, flush=True)
"""


@dataclass
class Timing:
    """Latencies of one kind of request, in ms."""

    samples: list[float] = field(default_factory=list)
    statements: list[int] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else 0.0

    @property
    def p95(self) -> float:
        if not self.samples:
            return 0.0
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


@dataclass
class Check:
    name: str
    figure: str
    target: str
    ok: bool | None  # None: reported, no target


class Scale(bench_run.Bench):  # type: ignore[misc]
    """bench/run.py's Bench (throwaway database, CLI, keys) with the scale data set."""

    def __init__(self, base: argparse.Namespace, args: argparse.Namespace) -> None:
        super().__init__(base)
        self.scale = args
        self.app: Any = None
        self.children: list[subprocess.Popen[str]] = []
        self.t0 = dt.datetime.now(dt.UTC).replace(microsecond=0)
        self.facts: dict[str, Any] = {}
        self.checks: list[Check] = []
        self.reads: dict[tuple[str, str], Timing] = {}

    # -- the database --------------------------------------------------------------------

    def create_database(self) -> None:
        import psycopg

        self.database_name = f"loyalty_scale_{os.getpid()}"
        with psycopg.connect(self.args.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database_name}"')
            conn.execute(f'CREATE DATABASE "{self.database_name}"')
        base = self.args.admin_url.rsplit("/", 1)[0]
        self.database_url = f"{base}/{self.database_name}"
        log(f"created database {self.database_name}")

    def connect(self) -> Any:
        import psycopg

        conn = psycopg.connect(self.database_url, autocommit=True)
        conn.execute("SET timezone = 'UTC'")
        return conn

    def stop_children(self) -> None:
        for process in self.children:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
            if process.poll() is None:
                process.kill()

    # -- set-up ---------------------------------------------------------------------------

    def configure(self) -> None:
        """Keys through the CLI; program settings and the spend rule through the API."""
        checkout = self.cli("keys", "create", "scale-checkout", "--scope", "checkout")
        admin = self.cli("keys", "create", "scale-admin", "--scope", "admin")
        self.children += [checkout, admin]
        self.checkout_key = self.done(checkout).strip().splitlines()[-1]
        self.admin_key = self.done(admin).strip().splitlines()[-1]
        self.children.clear()
        os.environ["DATABASE_URL"] = self.database_url
        os.environ.setdefault("LOYALTY_LOG_LEVEL", "WARNING")
        from loyalty import create_app

        self.app = create_app()
        client = self.app.test_client()
        for method, path, body in (
            ("PATCH", "/v1/admin/program", {"pending_days": 0, "hold_ttl_seconds": 3600}),
            (
                "POST",
                "/v1/admin/rules",
                {"name": "Base earning", "kind": "spend", "points": 1, "per_amount": 100},
            ),
        ):
            response = client.open(path, method=method, json=body, headers=self.admin)
            if response.status_code not in (200, 201):
                raise BenchError(f"{method} {path}: {response.status_code} {response.get_data()}")
        log("keys created; program: pending_days 0, hold TTL 1 h; rule: 1 point per 100 spent")

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}

    @property
    def checkout(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.checkout_key}"}

    # -- the build ------------------------------------------------------------------------

    def build(self) -> None:
        args = self.scale
        started = time.perf_counter()
        steps: list[tuple[str, float]] = []
        with self.connect() as conn:
            conn.execute("SET work_mem = '256MB'")
            conn.execute("SET maintenance_work_mem = '1GB'")
            conn.execute("SELECT setseed(%s)", (args.seed,))
            self.parameters(conn)
            restore: list[str] = []
            if not args.keep_indexes:
                restore = self.drop_secondary(conn)
            for table in LOADED_TABLES:
                conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
            for label, sql in self.steps():
                step_started = time.perf_counter()
                conn.execute(sql)
                steps.append((label, time.perf_counter() - step_started))
                log(f"  {label}: {steps[-1][1]:.1f}s")
            self.set_sequences(conn)
            if restore:
                step_started = time.perf_counter()
                for ddl in restore:
                    ddl_started = time.perf_counter()
                    conn.execute(ddl)
                    if args.verbose:
                        log(f"    {time.perf_counter() - ddl_started:5.1f}s {ddl[:110]}")
                steps.append(("indexes and foreign keys", time.perf_counter() - step_started))
                log(f"  indexes and foreign keys ({len(restore)} statements): {steps[-1][1]:.1f}s")
            self.facts["staging"] = self.staging_facts(conn)
            conn.execute("DROP SCHEMA scale_build CASCADE")
            step_started = time.perf_counter()
            for table in LOADED_TABLES:
                conn.execute(f"ALTER TABLE {table} RESET (autovacuum_enabled)")
                conn.execute(f"VACUUM (ANALYZE) {table}")
            steps.append(("vacuum analyze", time.perf_counter() - step_started))
            log(f"  vacuum analyze: {steps[-1][1]:.1f}s")
            self.facts["build_seconds"] = time.perf_counter() - started
            self.facts["build_steps"] = steps
            self.facts.update(self.data_facts(conn))
        log(
            f"built {self.facts['members']:,} members, {self.facts['transactions']:,} "
            f"transactions, {self.facts['entries']:,} entries, {self.facts['lots']:,} lots in "
            f"{self.facts['build_seconds']:.0f}s ({self.facts['database_size']})"
        )

    def parameters(self, conn: Any) -> None:
        args = self.scale
        ordinary = max(args.members - 2, 1)
        lots_per_member = (
            (args.entries - args.heavy_entries) / ENTRIES_PER_LOT / ordinary * OVERDRAW
        )
        heavy_lots = math.ceil(args.heavy_entries / ENTRIES_PER_LOT * 1.3)
        conn.execute("DROP SCHEMA IF EXISTS scale_build CASCADE")
        conn.execute("CREATE SCHEMA scale_build")
        conn.execute(
            """
            CREATE UNLOGGED TABLE scale_build.p (
                t0 timestamptz, start_at timestamptz, w timestamptz, pending interval,
                expiry interval, members bigint, entries bigint, due_lots bigint,
                heavy_entries bigint, heavy_lots int, lots_per_member float8, light_id text,
                heavy_id text, rule_id text, point_value_points int, point_value_amount int
            )
            """
        )
        conn.execute(
            """
            INSERT INTO scale_build.p
            SELECT %(t0)s::timestamptz,
                   %(t0)s::timestamptz - make_interval(days => %(days)s),
                   %(t0)s::timestamptz - make_interval(days => %(pause)s),
                   make_interval(days => %(pending)s),
                   make_interval(months => s.expiry_months),
                   %(members)s, %(entries)s, %(due)s, %(heavy_entries)s, %(heavy_lots)s,
                   %(per_member)s, %(light)s, %(heavy)s,
                   (SELECT public_id::text FROM earning_rules ORDER BY id LIMIT 1),
                   s.point_value_points, s.point_value_amount
            FROM program_settings s
            WHERE s.id = 1 AND s.expiry_policy = 'fixed' AND s.expiry_months IS NOT NULL
            """,
            {
                "t0": self.t0,
                "days": args.days,
                "pause": args.pause_days,
                "pending": HISTORY_PENDING_DAYS,
                "members": args.members,
                "entries": args.entries,
                "due": args.due_lots,
                "heavy_entries": args.heavy_entries,
                "heavy_lots": heavy_lots,
                "per_member": lots_per_member,
                "light": LIGHT,
                "heavy": HEAVY,
            },
        )
        if conn.execute("SELECT count(*) FROM scale_build.p").fetchone()[0] != 1:
            raise BenchError("the program's expiry policy is not 'fixed' with months set")

    def steps(self) -> list[tuple[str, str]]:
        """The members, then ledger.sql's steps (`-- step: <label>` starts one)."""
        members = """
            INSERT INTO members (id, external_id, email, name, birthday, metadata, status,
                                 enrolled_at, updated_at)
            SELECT i, CASE i WHEN 1 THEN p.light_id WHEN 2 THEN p.heavy_id
                             ELSE 'm' || lpad(i::text, 7, '0') END,
                   'm' || i || '@scale.example', 'Member ' || i, b, '{}', 'active', e, e
            FROM (SELECT i, CASE WHEN i <= 2 THEN p.start_at
                                 ELSE p.start_at + (p.t0 - p.start_at - interval '1 day')
                                                   * random() END AS e,
                         CASE WHEN i > 2 AND random() < 0.6
                              THEN date '1950-01-01' + floor(random() * 20000)::int END AS b
                  FROM scale_build.p p CROSS JOIN generate_series(1, p.members) AS i) AS s
            CROSS JOIN scale_build.p p
            ORDER BY i
        """
        steps = [("members", members)]
        text = LEDGER_SQL.read_text()
        for chunk in re.split(r"^-- step: ", text, flags=re.MULTILINE)[1:]:
            label, _, sql = chunk.partition("\n")
            steps.append((label.strip(), sql))
        return steps

    def drop_secondary(self, conn: Any) -> list[str]:
        """Drop every index, unique constraint and foreign key of the loaded tables but their
        primary keys (rows arrive in primary-key order); return the DDL that puts each back
        exactly as the migrations made it, indexes first."""
        constraints = conn.execute(
            """
            SELECT c.conrelid::regclass::text, quote_ident(c.conname), c.contype,
                   pg_get_constraintdef(c.oid)
            FROM pg_constraint c
            WHERE (c.conrelid = ANY(%s::regclass[]) AND c.contype IN ('u', 'f'))
               -- a table not loaded whose foreign key needs a loaded table's unique index
               -- (referrals -> orders.order_id)
               OR (c.confrelid = ANY(%s::regclass[]) AND c.contype = 'f')
            ORDER BY c.contype, c.conrelid::regclass::text, c.conname
            """,
            (LOADED_TABLES, LOADED_TABLES),
        ).fetchall()
        indexes = conn.execute(
            """
            SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
            FROM pg_index i
            WHERE i.indrelid = ANY(%s::regclass[])
              AND NOT EXISTS (SELECT 1 FROM pg_constraint c
                              WHERE c.conindid = i.indexrelid AND c.contype IN ('p', 'u', 'x'))
            ORDER BY 1
            """,
            (LOADED_TABLES,),
        ).fetchall()
        # Foreign keys ("f") go first, then the unique constraints ("u") they may need.
        for table, name, _, _ in constraints:
            conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
        for name, _ in indexes:
            conn.execute(f"DROP INDEX {name}")
        restore = [definition for _, definition in indexes]
        restore += [
            f"ALTER TABLE {t} ADD CONSTRAINT {n} {d}" for t, n, k, d in constraints if k == "u"
        ]
        restore += [
            f"ALTER TABLE {t} ADD CONSTRAINT {n} {d}" for t, n, k, d in constraints if k == "f"
        ]
        log(
            f"  dropped {len(indexes)} indexes, {len(restore) - len(indexes)} unique and foreign "
            "keys for the load"
        )
        return restore

    def set_sequences(self, conn: Any) -> None:
        for table in LOADED_TABLES:
            if table == "member_balances":
                continue
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"coalesce((SELECT max(id) FROM {table}), 1), "
                f"(SELECT count(*) > 0 FROM {table}))"
            )

    def staging_facts(self, conn: Any) -> dict[str, Any]:
        row = conn.execute(
            """
            SELECT (SELECT count(*) FROM scale_build.due),
                   (SELECT coalesce(sum(n), 0) FROM scale_build.due),
                   (SELECT count(*) FROM scale_build.draw),
                   (SELECT count(*) FROM scale_build.lot)
            """
        ).fetchone()
        return {"due_members": row[0], "due_lots": int(row[1]), "drawn": row[2], "kept": row[3]}

    def data_facts(self, conn: Any) -> dict[str, Any]:
        def one(sql: str, *params: Any) -> Any:
            return conn.execute(sql, params).fetchone()[0]

        probes = {
            external_id: one(
                "SELECT count(*) FROM ledger_entries e JOIN members m ON m.id = e.member_id "
                "WHERE m.external_id = %s",
                external_id,
            )
            for external_id in (LIGHT, HEAVY)
        }
        return {
            "members": one("SELECT count(*) FROM members"),
            "transactions": one("SELECT count(*) FROM ledger_transactions"),
            "entries": one("SELECT count(*) FROM ledger_entries"),
            "lots": one("SELECT count(*) FROM point_lots"),
            "orders": one("SELECT count(*) FROM orders"),
            "redemptions": one("SELECT count(*) FROM redemptions"),
            "probe_entries": probes,
            "database_size": one("SELECT pg_size_pretty(pg_database_size(current_database()))"),
            "first_effective": one("SELECT min(effective_at) FROM ledger_transactions"),
        }

    def due_now(self, at: dt.datetime | None = None) -> tuple[int, int]:
        """(members due, lots due) at `at` (default: now), by the definitions of
        jobs._claim_batch and ledger.settle: a member is due when next_due_at passed; a lot
        when it is pending past available_at, or live with points left past expires_at."""
        with self.connect() as conn:
            members, lots = conn.execute(
                """
                SELECT (SELECT count(*) FROM member_balances WHERE next_due_at <= %(at)s),
                       (SELECT count(*) FROM point_lots
                        WHERE (state = 'pending' AND available_at <= %(at)s)
                           OR (state IN ('pending', 'available') AND remaining > 0
                               AND expires_at <= %(at)s))
                """,
                {"at": at or dt.datetime.now(dt.UTC)},
            ).fetchone()
        return int(members), int(lots)

    # -- measurements ---------------------------------------------------------------------

    def measure_reads(self, ops: tuple[str, ...] = ("card", "quote"), label: str = "") -> None:
        """`ops` for the light and the heavy member, interleaved in random order so both see
        the same machine; statements per request counted on the app's engine. Stored under
        `op + label`."""
        import sqlalchemy as sa

        from loyalty.extensions import db

        client = self.app.test_client()
        with self.app.app_context():
            engine = db.engine
        counter = [0]

        def count(*_: Any) -> None:
            counter[0] += 1

        sa.event.listen(engine, "before_cursor_execute", count)
        try:
            calls = [(op, member) for op in ops for member in (LIGHT, HEAVY)]
            for op, member in calls:
                response = self.read(client, op, member)
                if response.status_code != 200:
                    raise BenchError(f"{op} {member}: {response.status_code} {response.get_data()}")
                body = response.get_json()
                if op == "card":
                    self.facts[f"expiring_soon {member}"] = len(body["balance"]["expiring_soon"])
                    self.facts[f"qualifying{label} {member}"] = body["tier_progress"][
                        "qualifying_points"
                    ]
            for _ in range(self.scale.warmup):
                for op, member in calls:
                    self.read(client, op, member)
            timings = {call: Timing() for call in calls}
            shuffler = random.Random(self.scale.seed)
            for _ in range(self.scale.requests):
                shuffler.shuffle(calls)
                for op, member in calls:
                    counter[0] = 0
                    started = time.perf_counter()
                    response = self.read(client, op, member)
                    elapsed = (time.perf_counter() - started) * 1000
                    if response.status_code != 200:
                        raise BenchError(f"{op} {member}: {response.status_code}")
                    timings[(op, member)].samples.append(elapsed)
                    timings[(op, member)].statements.append(counter[0])
        finally:
            sa.event.remove(engine, "before_cursor_execute", count)
        for (op, member), timing in timings.items():
            self.reads[(op + label, member)] = timing
        for op in ops:
            light, heavy = timings[(op, LIGHT)], timings[(op, HEAVY)]
            ratio = heavy.median / light.median if light.median else 0.0
            log(
                f"{op + label:12}: light median {light.median:.2f} ms, heavy median "
                f"{heavy.median:.2f} ms, ratio {ratio:.2f}"
            )

    def measure_tiers(self) -> None:
        """The card again once the program has the demo's three tiers: tier progress then
        sums the member's qualifying points over the rolling window."""
        from loyalty.demo.english import TIERS as DEMO_TIERS

        client = self.app.test_client()
        for tier in DEMO_TIERS:
            body = {**dataclasses.asdict(tier), "benefits": list(tier.benefits)}
            response = client.post("/v1/admin/tiers", json=body, headers=self.admin)
            if response.status_code != 201:
                raise BenchError(f"POST /v1/admin/tiers: {response.status_code}")
        log(f"tiers: {', '.join(t.code for t in DEMO_TIERS)}")
        self.measure_reads(("card",), TIERS_LABEL)

    def fire_automations(self) -> None:
        """Issue 14: the automations above created through the API (with the reward and the
        bonus rule they need), then AUTOMATIONS_DRIVER in a process of its own."""
        client = self.app.test_client()

        def create(path: str, body: dict[str, Any]) -> dict[str, Any]:
            response = client.post(path, json=body, headers=self.admin)
            if response.status_code != 201:
                raise BenchError(f"POST {path}: {response.status_code} {response.get_data()}")
            created: dict[str, Any] = response.get_json()
            return created

        create("/v1/admin/rewards", SCALE_REWARD)
        bonus = create("/v1/admin/rules", SCALE_BONUS_RULE)
        with self.connect() as conn:
            segments = {
                row[0]
                for row in conn.execute("SELECT key FROM saved_segments WHERE deleted_at IS NULL")
            }
        made = [
            {"actions": [{"type": "webhook"}], **body}
            for body in SCALE_AUTOMATIONS
            if body["trigger"].get("segment", "") in segments | {""}
        ]
        made.append(
            {
                "name": "Birthday bonus",
                "trigger": {"kind": "birthday"},
                "actions": [{"type": "webhook"}, {"type": "grant_points", "rule_id": bonus["id"]}],
            }
        )
        for body in made:
            create("/v1/admin/automations", body)
        log(f"automations: {len(made)} created; firing them twice")
        process = self.driver(AUTOMATIONS_DRIVER)
        stdout, stderr = process.communicate()
        self.children.remove(process)
        if process.returncode != 0:
            raise BenchError(f"the automations driver failed:\n{stdout}{stderr}")
        figures: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
        with self.connect() as conn:
            figures["fired"] = dict(
                conn.execute(
                    "SELECT v.name, count(*) FROM automation_firings f "
                    "JOIN automations a ON a.id = f.automation_id "
                    "JOIN automation_versions v ON v.automation_id = a.id "
                    "AND v.version = f.version GROUP BY v.name ORDER BY 2 DESC"
                ).fetchall()
            )
        self.facts["automations"] = figures
        for name in ("first", "second"):
            run = figures[name]
            log(
                f"automations, {name} pass: {run['seconds']:.1f}s, {run['fired']:,} fired, "
                f"{run['points_granted']:,} points granted ("
                + ", ".join(f"{k} {v:.1f}s" for k, v in run["automations"].items())
                + ")"
            )
        dispatch = figures["dispatch"]
        log(f"dispatch: {dispatch['events']:,} events in {dispatch['seconds']:.1f}s")

    def read(self, client: Any, op: str, member: str) -> Any:
        if op == "card":
            return client.get(f"/v1/members/{member}", headers=self.checkout)
        body = {"member_id": member, "currency": "USD", "discount": 500, "lines": LINES}
        return client.post("/v1/orders/quote", json=body, headers=self.checkout)

    def refresh_insight(self) -> None:
        """`loyalty insight refresh` (the real command, in a process of its own) over the whole
        data set, timed from start to exit; its summary and per-step times kept."""
        self.insight_driver("segments")
        log("running `loyalty insight refresh`")
        process = self.cli("insight", "refresh")
        self.children.append(process)
        started = time.perf_counter()
        stdout = self.done(process)
        seconds = time.perf_counter() - started
        self.children.remove(process)
        with self.connect() as conn:
            steps, members, buyers = conn.execute(
                "SELECT steps, members, buyers FROM insight_refreshes ORDER BY id DESC LIMIT 1"
            ).fetchone()
            segments = conn.execute(
                "SELECT segment, count(*) FROM member_insight WHERE segment IS NOT NULL "
                "GROUP BY segment ORDER BY 2 DESC"
            ).fetchall()
        self.facts["insight"] = {
            "seconds": seconds,
            "steps": steps,
            "members": members,
            "buyers": buyers,
            "segments": dict(segments),
            "output": stdout.strip().splitlines(),
        }
        log(
            f"insight refresh: {seconds:.1f}s for {members:,} members, {buyers:,} buyers ("
            + ", ".join(f"{k} {v:.1f}s" for k, v in steps.items())
            + ")"
        )
        reads = self.insight_driver("reads")
        self.facts["insight_reads"] = reads
        log(
            "insight reads: "
            + ", ".join(f"{k} {v:.2f}s" for k, v in reads["seconds"].items())
            + f" ({reads['exported']:,} members exported; evaluation over "
            f"{reads['evaluation']['customers']:,} buyers)"
        )

    def driver(self, code: str, *args: str) -> subprocess.Popen[str]:
        """Start `code` in a Python process of its own against the scale database (a child
        the teardown stops)."""
        process = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            cwd=ROOT,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.children.append(process)
        return process

    def insight_driver(self, what: str) -> dict[str, Any]:
        """Run INSIGHT_DRIVER's `segments` or `reads` in a process of its own; its figures."""
        process = self.driver(INSIGHT_DRIVER, what)
        stdout, stderr = process.communicate()
        self.children.remove(process)
        if process.returncode != 0:
            raise BenchError(f"the insight driver ({what}) failed:\n{stdout}{stderr}")
        result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
        return result

    def run_jobs(self) -> None:
        # What came due while the pass ran is the next pass's work: nothing due as of its
        # start may be left.
        start = dt.datetime.now(dt.UTC)
        members, lots = self.due_now(start)
        self.facts["due_before_jobs"] = (members, lots)
        log(f"due now: {lots:,} lots of {members:,} members; running `loyalty jobs run`")
        process = self.driver(JOBS_DRIVER)
        started = time.perf_counter()
        stdout, stderr = process.communicate()
        seconds = time.perf_counter() - started
        self.children.remove(process)
        if process.returncode != 0:
            raise BenchError(f"`loyalty jobs run` failed ({process.returncode}):\n{stdout}{stderr}")
        steps: dict[str, float] = {}
        for line in stderr.splitlines():
            if line.startswith("STEP-TIMES "):
                steps = json.loads(line.removeprefix("STEP-TIMES "))
        after = self.due_now(start)
        self.facts["jobs"] = {
            "seconds": seconds,
            "steps": steps,
            "summary": stdout.strip().splitlines()[-1] if stdout.strip() else "",
            "due_after": after,
        }
        log(f"jobs run: {seconds:.1f}s: {self.facts['jobs']['summary']}")
        log(f"  steps: {', '.join(f'{k} {v:.1f}s' for k, v in steps.items())}")
        log(f"  still due as of the start: {after[1]:,} lots of {after[0]:,} members")

    def measure_backlog_report(self) -> None:
        """The liability report once before the jobs run, with every due lot unsettled: it
        adds up what settling would post, writing nothing."""
        started = time.perf_counter()
        response = self.app.test_client().get("/v1/admin/reports/liability", headers=self.admin)
        seconds = time.perf_counter() - started
        if response.status_code != 200:
            raise BenchError(f"liability with a backlog: {response.status_code}")
        self.facts["backlog liability"] = (seconds, response.get_json())
        log(f"liability report with the backlog: {seconds:.2f}s")

    def measure_reports(self) -> None:
        client = self.app.test_client()
        day = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).date().isoformat()
        self.facts["activity_day"] = day
        for name, path in (
            ("liability", "/v1/admin/reports/liability"),
            ("activity", f"/v1/admin/reports/activity?from={day}&to={day}"),
        ):
            seconds = []
            body: Any = None
            for _ in range(1 + self.scale.report_runs):
                started = time.perf_counter()
                response = client.get(path, headers=self.admin)
                seconds.append(time.perf_counter() - started)
                if response.status_code != 200:
                    raise BenchError(f"{path}: {response.status_code} {response.get_data()}")
                body = response.get_json()
            self.facts[f"report {name}"] = seconds
            self.facts[f"report {name} body"] = body
            log(
                f"{name} report: first {seconds[0]:.2f}s, median of the next "
                f"{self.scale.report_runs} {statistics.median(seconds[1:]):.2f}s"
            )

    def verify(self) -> None:
        timeout = self.scale.verify_timeout
        log(f"running `loyalty ledger verify` (stopped after {timeout:.0f}s)")
        process = self.cli("ledger", "verify")
        self.children.append(process)
        started = time.perf_counter()
        try:
            stdout, stderr = process.communicate(timeout=timeout)
            finished = True
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
            self.cancel_queries()
            finished = False
        seconds = time.perf_counter() - started
        self.children.remove(process)
        self.facts["verify"] = {
            "seconds": seconds,
            "ok": finished and process.returncode == 0,
            "output": (stdout.strip().splitlines() or [""])[-1]
            if finished
            else f"did not finish in {timeout:.0f}s (stopped)",
            "breaches": [line for line in stderr.splitlines() if line.startswith("BREACH")][:10],
        }
        log(f"verify: {seconds:.1f}s: {self.facts['verify']['output']}")

    def cancel_queries(self) -> None:
        """Cancel what a killed CLI process left running on the server (a backend only
        notices its client is gone when it next sends a row)."""
        with self.connect() as conn:
            conn.execute(
                "SELECT pg_cancel_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND state = 'active'"
            )

    def explain(self) -> None:
        """EXPLAIN (ANALYZE, BUFFERS) of every SELECT one heavy card, one heavy quote and each
        report send, as they send them (captured from the app's engine)."""
        import sqlalchemy as sa

        from loyalty.extensions import db

        client = self.app.test_client()
        with self.app.app_context():
            engine = db.engine
        captured: list[tuple[str, Any]] = []

        def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
            captured.append((statement, parameters))

        day = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).date().isoformat()
        requests = [
            ("card heavy", lambda: self.read(client, "card", HEAVY)),
            ("quote heavy", lambda: self.read(client, "quote", HEAVY)),
        ]
        # The reports settle every due member first: only once the backlog was settled (what
        # came due since is a handful of members).
        if self.due_now()[0] < 1000:
            requests += [
                (
                    "liability",
                    lambda: client.get("/v1/admin/reports/liability", headers=self.admin),
                ),
                (
                    "activity",
                    lambda: client.get(
                        f"/v1/admin/reports/activity?from={day}&to={day}", headers=self.admin
                    ),
                ),
            ]
        else:
            print("(members are due: the reports, which settle them first, are not explained)")
        print("\nEXPLAIN (ANALYZE, BUFFERS) of each SELECT, as the app sends it:")
        with self.connect() as conn:
            for label, call in requests:
                captured.clear()
                sa.event.listen(engine, "before_cursor_execute", capture)
                try:
                    call()
                finally:
                    sa.event.remove(engine, "before_cursor_execute", capture)
                print(f"\n== {label}: {len(captured)} statements")
                for statement, parameters in captured:
                    if not statement.lstrip().upper().startswith("SELECT"):
                        continue
                    conn.execute("BEGIN")
                    try:
                        plan = conn.execute(
                            "EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters or None
                        ).fetchall()
                    finally:
                        conn.execute("ROLLBACK")
                    print("-- " + " ".join(statement.split())[:300])
                    for (line,) in plan:
                        print("   " + line)

    # -- the report -----------------------------------------------------------------------

    def report(self) -> bool:
        facts, args = self.facts, self.scale
        staging = facts["staging"]
        lines = [
            "",
            f"loyalty at scale: {facts['members']:,} members, {facts['transactions']:,} "
            f"transactions, {facts['entries']:,} entries, {facts['lots']:,} lots, "
            f"{facts['orders']:,} orders, {facts['redemptions']:,} redemptions "
            f"(database {facts['database_size']})",
            f"build: {facts['build_seconds']:.0f}s ("
            + ", ".join(f"{label} {s:.0f}s" for label, s in facts["build_steps"])
            + ")",
            f"built due: {staging['due_lots']:,} lots of {staging['due_members']:,} members "
            f"(untouched since the worker stopped {args.pause_days} days ago)",
            f"members: {LIGHT} {facts['probe_entries'][LIGHT]} entries, {HEAVY} "
            f"{facts['probe_entries'][HEAVY]:,} entries",
        ]
        checks: list[Check] = []
        if self.reads:
            lines += [
                f"expiring soon on the card: {facts.get(f'expiring_soon {LIGHT}')} lot(s) for "
                f"{LIGHT}, {facts.get(f'expiring_soon {HEAVY}')} for {HEAVY}",
                "",
                f"{'request':30} {'median ms':>9} {'p95 ms':>8} {'statements':>10}",
            ]
            kinds = [k for k in ("card", "quote", "card" + TIERS_LABEL) if (k, LIGHT) in self.reads]
            for kind in kinds:
                for member in (LIGHT, HEAVY):
                    timing = self.reads[(kind, member)]
                    lines.append(
                        f"{kind + ' ' + member:30} {timing.median:9.2f} {timing.p95:8.2f} "
                        f"{statistics.mean(timing.statements):10.1f}"
                    )
            lines.append(
                f"({args.requests} requests of each after {args.warmup} warm-up, interleaved, "
                "Flask test client in-process)"
            )
            if "card" + TIERS_LABEL in kinds:
                lines.append(
                    f"with tiers, qualifying points on the card: {LIGHT} "
                    f"{facts.get(f'qualifying{TIERS_LABEL} {LIGHT}')}, {HEAVY} "
                    f"{facts.get(f'qualifying{TIERS_LABEL} {HEAVY}')}"
                )
            for kind in kinds:
                light, heavy = self.reads[(kind, LIGHT)], self.reads[(kind, HEAVY)]
                ratio = heavy.median / light.median if light.median else float("inf")
                p95_ratio = heavy.p95 / light.p95 if light.p95 else float("inf")
                checks.append(
                    Check(
                        f"{kind}: heavy / light median",
                        f"{ratio:.2f} (p95 {p95_ratio:.2f})",
                        f"<= {READ_RATIO_TARGET}",
                        ratio <= READ_RATIO_TARGET,
                    )
                )
        for name in ("liability", "activity"):
            seconds = facts.get(f"report {name}")
            if not seconds:
                continue
            median = statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0]
            label = (
                "liability report"
                if name == "liability"
                else f"activity report, {facts['activity_day']}"
            )
            checks.append(
                Check(
                    label,
                    f"{median:.2f}s median (first {seconds[0]:.2f}s, max {max(seconds):.2f}s)",
                    f"< {REPORT_TARGET_S:.0f}s",
                    median < REPORT_TARGET_S,
                )
            )
        liability = facts.get("report liability body")
        backlog = facts.get("backlog liability")
        if backlog is not None and liability is not None and "due_before_jobs" in facts:
            seconds, before = backlog
            # Lots keep falling due while the run goes on: the two may differ by those.
            drift = {
                key: liability[key] - before[key]
                for key in ("available", "pending", "held", "outstanding")
                if liability[key] != before[key]
            }
            checks.append(
                Check(
                    "liability report, backlog",
                    f"{seconds:.2f}s with {facts['due_before_jobs'][1]:,} lots unsettled; "
                    f"after jobs run: {drift or 'the same'}",
                    "as of now, no writes",
                    before.get("consistent") is True,
                )
            )
        if liability is not None:
            checks.append(
                Check(
                    "liability consistent",
                    f"outstanding {liability.get('outstanding'):,}: "
                    f"consistent {liability.get('consistent')}",
                    "program = members",
                    liability.get("consistent") is True,
                )
            )
        refreshed = facts.get("insight")
        if refreshed is not None:
            checks.append(
                Check(
                    "insight refresh",
                    f"{refreshed['seconds']:.1f}s for {refreshed['members']:,} members, "
                    f"{refreshed['buyers']:,} buyers, {facts['orders']:,} orders, "
                    f"{facts['entries']:,} entries ("
                    + ", ".join(f"{k} {v:.1f}s" for k, v in refreshed["steps"].items())
                    + ")",
                    f"< {INSIGHT_TARGET_S:.0f}s",
                    refreshed["seconds"] < INSIGHT_TARGET_S,
                )
            )
        reads = facts.get("insight_reads")
        if reads is not None:
            for name, seconds in reads["seconds"].items():
                # One request each, served by a sync worker that gunicorn kills at 30 s.
                checks.append(
                    Check(
                        f"insight {name}",
                        f"{seconds:.2f}s",
                        "< 30s (gunicorn's timeout)",
                        seconds < 30,
                    )
                )
        jobs = facts.get("jobs")
        if jobs is not None:
            members_due, lots_due = facts["due_before_jobs"]
            settle = jobs["steps"].get("settle_due") or jobs["seconds"]
            checks.append(
                Check(
                    "jobs run",
                    f"{jobs['seconds']:.1f}s for {lots_due:,} due lots of {members_due:,} "
                    f"members = {lots_due / jobs['seconds']:,.0f} lots/s; its settling "
                    f"{settle:.1f}s = {lots_due / settle:,.0f} lots/s, "
                    f"{members_due / settle:,.0f} members/s",
                    f">= {SETTLE_TARGET:,} lots/s settling; nothing left due",
                    jobs["due_after"][1] == 0 and lots_due / settle >= SETTLE_TARGET,
                )
            )
        automations = facts.get("automations")
        if automations is not None:
            # The target is the evaluation: a pass over every automation and member. The first
            # pass also writes a firing and an event for each of (here) 1.5 million members at
            # once, a one-off bounded by the database's writes; it is reported as a rate.
            first, second = automations["first"], automations["second"]
            checks.append(
                Check(
                    "automations, first pass",
                    f"{first['seconds']:.1f}s, {first['fired']:,} fired = "
                    f"{first['fired'] / first['seconds']:,.0f} firings/s",
                    "time",
                    None,
                )
            )
            checks.append(
                Check(
                    "automations, evaluation pass",
                    f"{second['seconds']:.1f}s over {facts['members']:,} members "
                    f"({second['fired']:,} fired)",
                    f"< {AUTOMATIONS_TARGET_S:.0f}s",
                    second["seconds"] < AUTOMATIONS_TARGET_S,
                )
            )
            dispatch = automations["dispatch"]
            checks.append(
                Check(
                    "webhook dispatch of those",
                    f"{dispatch['seconds']:.1f}s for {dispatch['events']:,} events",
                    "time",
                    None,
                )
            )
        verify = facts.get("verify")
        if verify is not None:
            checks.append(
                Check(
                    "ledger verify",
                    f"{verify['seconds']:.1f}s: {verify['output']}",
                    "time; passes",
                    verify["ok"],
                )
            )
        lines += ["", f"{'check':34} {'target':>24}  {'verdict':7} figure"]
        for check in checks:
            verdict = "-" if check.ok is None else ("ok" if check.ok else "MISSED")
            lines.append(f"{check.name:34} {check.target:>24}  {verdict:7} {check.figure}")
        if jobs is not None:
            lines.append(
                "jobs run steps: "
                + ", ".join(f"{k} {v:.1f}s" for k, v in jobs["steps"].items())
                + f"; `{jobs['summary']}`"
            )
        if verify is not None:
            lines += verify["breaches"]
        ok = all(check.ok is not False for check in checks)
        lines.append("all targets met" if ok else "TARGETS MISSED (see above)")
        print("\n".join(lines), flush=True)
        self.checks = checks
        if args.output:
            Path(args.output).write_text(
                json.dumps(
                    {
                        "settings": {
                            k: sorted(v) if isinstance(v, set) else v
                            for k, v in vars(args).items()
                            if k != "admin_url"
                        },
                        "facts": facts,
                        "reads": {
                            f"{op} {member}": {"median": t.median, "p95": t.p95, "ms": t.samples}
                            for (op, member), t in self.reads.items()
                        },
                        "checks": [vars(c) for c in checks],
                    },
                    indent=2,
                    default=str,
                )
            )
        return ok

    def teardown(self) -> None:
        try:
            self.stop_children()
            if self.app is not None:
                from loyalty.extensions import db

                with self.app.app_context():
                    db.engine.dispose()
        finally:
            super().teardown()

    def drop_database(self) -> None:
        """Drop the database, retrying for a minute while the server is unreachable (a
        restart by someone else's test, say); say so if it could not be dropped."""
        import psycopg

        deadline = time.monotonic() + 60
        while True:
            try:
                super().drop_database()
                return
            except psycopg.OperationalError as error:
                if time.monotonic() > deadline:
                    print(
                        f"could not drop database {self.database_name}: {error}; drop it with "
                        f'DROP DATABASE "{self.database_name}" WITH (FORCE)',
                        file=sys.stderr,
                    )
                    return
                time.sleep(2)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--entries", type=int, default=10_000_000, help="ledger entries in all")
    parser.add_argument("--due-lots", type=int, default=100_000, help="lots due for settling")
    parser.add_argument("--heavy-entries", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=730, help="history spread over these days")
    parser.add_argument(
        "--pause-days", type=int, default=30, help="the worker stopped this many days ago"
    )
    parser.add_argument("--requests", type=int, default=300, help="timed reads of each kind")
    parser.add_argument("--warmup", type=int, default=30, help="untimed reads of each kind first")
    parser.add_argument("--report-runs", type=int, default=5, help="timed runs of each report")
    parser.add_argument("--seed", type=float, default=0.42, help="for random() (-1 .. 1)")
    parser.add_argument(
        "--keep-indexes",
        action="store_true",
        help="load with every index and foreign key in place (slower; for comparison)",
    )
    parser.add_argument(
        "--phases",
        type=lambda text: {p.strip() for p in text.split(",") if p.strip()},
        default=set(PHASES),
        help=f"which measurements to run, comma-separated (default: {','.join(PHASES)})",
    )
    parser.add_argument(
        "--verify-timeout",
        type=float,
        default=300.0,
        help="stop `ledger verify` after this many seconds (it then counts as failed)",
    )
    parser.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE the reads")
    parser.add_argument(
        "--verify-first", action="store_true", help="also verify right after the build"
    )
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "LOYALTY_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
        help="PostgreSQL URL to create and drop the scale database through",
    )
    parser.add_argument("--output", help="also write the figures as JSON to this file")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--verbose", action="store_true", help="time every index build")
    args = parser.parse_args(argv)
    if args.phases - set(PHASES):
        parser.error(f"--phases: choose from {', '.join(PHASES)}")
    if args.members < 3:
        parser.error("--members: at least 3")
    if args.pause_days < HISTORY_PENDING_DAYS:
        parser.error(f"--pause-days: at least {HISTORY_PENDING_DAYS} (the return window)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    log(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    base = bench_run.parse_args(["--admin-url", args.admin_url, "--members", "2"])
    base.keep = args.keep
    scale = Scale(base, args)
    try:
        scale.migrate()
        scale.configure()
        scale.build()
        if args.verify_first:
            scale.verify()
        if "reads" in args.phases:
            scale.measure_reads()
        # Before the jobs: `jobs run` then finds today's refresh done and does not refresh again.
        if "insight" in args.phases:
            scale.refresh_insight()
        if "jobs" in args.phases and "reports" in args.phases:
            scale.measure_backlog_report()
        if "jobs" in args.phases:
            scale.run_jobs()
        if "reports" in args.phases:
            scale.measure_reports()
        if "verify" in args.phases:
            scale.verify()
        if "tiers" in args.phases:
            scale.measure_tiers()
        # Last: with the tiers (tier_at_risk) and the refresh's segments (segment_entered).
        if "automations" in args.phases:
            scale.fire_automations()
        if args.explain:
            scale.explain()
        ok = scale.report()
    except BenchError as error:
        print(f"scale test failed: {error}", file=sys.stderr)
        return 1
    finally:
        scale.teardown()
    log("done")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
