"""Issue 14's campaign reports at scale: a rule's and an automation's return on PostgreSQL
with a million members, before and after migration 0023's indexes.

    .venv/bin/python bench/scale/campaign_report.py [--members 1000000] [--orders 3000000]
        [--awards 300000] [--firings 300000] [--other-awards 2000000] [--small-awards 2000]
        [--admin-url postgresql://postgres@127.0.0.1:5432/test] [--keep]

1. Creates `loyalty_campaigns_<pid>` next to --admin-url and migrates it to 0020 (before
   the report's indexes).
2. Fills it in SQL (generate_series): --members members; --orders orders over the last year
   (a tenth partly refunded); one spend rule of two versions with --awards awards and one
   other rule with --other-awards (the noise the report must not read); one automation of
   two versions with --firings firings; a small bonus rule with --small-awards awards; then
   VACUUM ANALYZE.
3. Times each report (window 7 and 30 days; best of three, through loyalty's services),
   migrates to head (0023), VACUUM ANALYZEs and times them again.
4. Drops the database (unless --keep), also on failure.
"""

# A command-line tool: it prints and runs the loyalty CLI.
# ruff: noqa: T201, S603

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent.parent
LOYALTY = ROOT / ".venv" / "bin" / "loyalty"

FILL = """
INSERT INTO members (id, external_id, metadata, status, enrolled_at, updated_at)
SELECT i, 'm' || i, '{}', 'active', now() - interval '2 years', now()
FROM generate_series(1, :members) AS i;

INSERT INTO orders (order_id, member_id, currency, subtotal, discount, total, redeemed_points,
    redeemed_value, points_earned, breakdown, lines, request_hash, placed_at, created_at,
    refunded_amount, points_reversed, points_restored)
SELECT 'o' || i, 1 + (hashint(i) % :members), 'USD', 1000 + i % 9000, 0, 1000 + i % 9000, 0, 0,
    0, '[]', '[]', '', now() - (hashint(i * 7) % 31536000) * interval '1 second', now(),
    CASE WHEN i % 10 = 0 THEN (1000 + i % 9000) / 2 ELSE 0 END, 0, 0
FROM generate_series(1, :orders) AS i;

INSERT INTO earning_rules (id, public_id, kind, current_version, active, created_at, updated_at)
VALUES (1, gen_random_uuid(), 'spend', 2, true, now(), now()),
       (2, gen_random_uuid(), 'spend', 1, true, now(), now());
INSERT INTO earning_rule_versions (rule_id, version, name, active, priority, config,
    conditions, caps, created_at)
VALUES (1, 1, 'Spend', true, 10, '{}', '{}', '{}', now()),
       (1, 2, 'Spend v2', true, 10, '{}', '{}', '{}', now()),
       (2, 1, 'Other', true, 10, '{}', '{}', '{}', now());

INSERT INTO rule_awards (member_id, rule_id, rule_version, points, source, awarded_at)
SELECT 1 + (hashint(i * 3) % (:members / 5)), 1, 1 + i % 2, 10 + i % 90,
    CASE WHEN i % 2 = 0 THEN 'order:o' || i ELSE 'event:e' || i END,
    now() - (hashint(i * 11) % 31536000) * interval '1 second'
FROM generate_series(1, :awards) AS i;
INSERT INTO rule_awards (member_id, rule_id, rule_version, points, source, awarded_at)
SELECT 1 + (hashint(i * 5) % :members), 2, 1, 10, 'order:x' || i,
    now() - (hashint(i * 13) % 31536000) * interval '1 second'
FROM generate_series(1, :other_awards) AS i;

INSERT INTO earning_rules (id, public_id, kind, current_version, active, created_at, updated_at)
VALUES (3, gen_random_uuid(), 'bonus', 1, true, now(), now());
INSERT INTO earning_rule_versions (rule_id, version, name, active, priority, config,
    conditions, caps, created_at)
VALUES (3, 1, 'Small', true, 10, '{}', '{}', '{}', now());
INSERT INTO rule_awards (member_id, rule_id, rule_version, points, source, awarded_at)
SELECT 1 + (hashint(i * 23) % :members), 3, 1, 10, 'event:s' || i,
    now() - (hashint(i * 29) % 31536000) * interval '1 second'
FROM generate_series(1, :small_awards) AS i;

INSERT INTO automations (id, public_id, current_version, active, created_at, updated_at)
VALUES (1, gen_random_uuid(), 2, true, now(), now());
INSERT INTO automation_versions (automation_id, version, name, active, trigger, conditions,
    actions, created_at)
VALUES (1, 1, 'Win-back', true, '{"kind": "inactive", "days": 60}', '{}', '[]', now()),
       (1, 2, 'Win-back v2', true, '{"kind": "inactive", "days": 60}', '{}', '[]', now());
INSERT INTO automation_firings (public_id, automation_id, version, member_id, window_start,
    fired_at, details, points_granted)
SELECT gen_random_uuid(), 1, 1 + i % 2, 1 + (hashint(i * 17) % :members), t, t, '{}', 0
FROM (SELECT i, now() - (hashint(i * 19) % 31536000) * interval '1 second' AS t
      FROM generate_series(1, :firings) AS i) AS s
ON CONFLICT DO NOTHING;
"""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def migrate(url: str, revision: str) -> None:
    subprocess.run(
        [str(LOYALTY), "db", "upgrade", revision],
        check=True,
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
    )


def best_of(runs: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def measure(url: str, label: str) -> None:
    from loyalty import create_app
    from loyalty.automations.report import automation_report
    from loyalty.extensions import db
    from loyalty.reports import campaigns

    os.environ["DATABASE_URL"] = url
    app = create_app()
    with app.app_context():
        session = db.session()
        rule_id = session.scalar(sa.text("SELECT public_id FROM earning_rules WHERE id = 1"))
        automation_id = session.scalar(sa.text("SELECT public_id FROM automations WHERE id = 1"))
        small_id = session.scalar(sa.text("SELECT public_id FROM earning_rules WHERE id = 3"))
        small = best_of(3, lambda: campaigns.rule_report(session, small_id, 7))
        found = campaigns.rule_report(session, small_id, 7)
        log(
            f"{label} window 7: small rule report {small * 1000:.0f} ms "
            f"({found.total.touches:,} touches, {found.total.orders_attributed:,} orders)"
        )
        for days in (7, 30):
            rule = best_of(3, lambda days=days: campaigns.rule_report(session, rule_id, days))
            auto = best_of(3, lambda days=days: automation_report(session, automation_id, days))
            found = campaigns.rule_report(session, rule_id, days)
            fired = automation_report(session, automation_id, days)
            log(
                f"{label} window {days}: rule report {rule * 1000:.0f} ms "
                f"({found.total.touches:,} touches, {found.total.members_reached:,} members, "
                f"{found.total.orders_attributed:,} orders); automation report "
                f"{auto * 1000:.0f} ms ({fired.total.touches:,} firings, "
                f"{fired.total.orders_attributed:,} orders)"
            )
        session.rollback()
        db.engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--orders", type=int, default=3_000_000)
    parser.add_argument("--awards", type=int, default=300_000)
    parser.add_argument("--other-awards", type=int, default=2_000_000)
    parser.add_argument("--firings", type=int, default=300_000)
    parser.add_argument("--small-awards", type=int, default=2_000)
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    name = f"loyalty_campaigns_{os.getpid()}"
    admin = sa.create_engine(
        args.admin_url.replace("postgresql://", "postgresql+psycopg://", 1),
        isolation_level="AUTOCOMMIT",
    )
    base = args.admin_url.rsplit("/", 1)[0]
    url = f"{base}/{name}"
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        log(f"created {name}; migrating to 0020")
        migrate(url, "0020")
        engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
        started = time.perf_counter()
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "CREATE FUNCTION hashint(bigint) RETURNS bigint IMMUTABLE "
                    "LANGUAGE sql AS $$ SELECT abs(hashint8($1)::bigint) $$"
                )
            )
            for statement in filter(str.strip, FILL.split(";\n")):
                connection.execute(
                    sa.text(statement),
                    {
                        "members": args.members,
                        "orders": args.orders,
                        "awards": args.awards,
                        "other_awards": args.other_awards,
                        "firings": args.firings,
                        "small_awards": args.small_awards,
                    },
                )
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(sa.text("VACUUM ANALYZE"))
        log(f"filled in {time.perf_counter() - started:.0f} s")
        measure(url, "0020 (without the indexes)")
        started = time.perf_counter()
        migrate(url, "head")
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(sa.text("VACUUM ANALYZE"))
        log(f"migrated to head (0023) in {time.perf_counter() - started:.0f} s")
        measure(url, "0023 (with the indexes)")
        engine.dispose()
    finally:
        if not args.keep:
            with admin.connect() as connection:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            log(f"dropped {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
