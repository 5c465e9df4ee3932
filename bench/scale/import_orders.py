"""Issue 13's import target: 1,000,000 past orders in under 2 minutes on PostgreSQL.

    .venv/bin/python bench/scale/import_orders.py [--orders 1000000] [--members 100000]
        [--admin-url postgresql://postgres@127.0.0.1:5432/test] [--keep]

1. Creates `loyalty_orders_<pid>` next to --admin-url and migrates it (`loyalty db upgrade`).
2. Writes a CSV of --members members and imports it (`loyalty import members`, not timed).
3. Writes a CSV of --orders orders (`external_id,order_id,placed_at,amount,currency`) spread
   over the members and the last five years, in random order, and times `loyalty import
   orders` on it: the whole command, as a shop would run it (start-up, reading and checking
   every row, COPY into the staging table, the checks in SQL, the INSERT ... SELECT, the
   commit).
4. Times the same file again (a re-run: everything skipped), counts the orders, runs
   `loyalty ledger verify`, and drops the database (unless --keep), also on failure.

Exits 1 if the import takes 120 s or more, or the counts are wrong.
"""

# A command-line tool: it prints and runs the loyalty CLI.
# ruff: noqa: T201, S311, S603

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
LOYALTY = ROOT / ".venv" / "bin" / "loyalty"
TARGET_S = 120.0


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(env: dict[str, str], *args: str) -> tuple[float, str]:
    """Run `loyalty ARGS`; its wall time and its output. Raises on a non-zero exit."""
    started = time.perf_counter()
    done = subprocess.run(
        [str(LOYALTY), *args], env=env, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"loyalty {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return elapsed, done.stdout.strip()


def write_files(directory: Path, members: int, orders: int, seed: int) -> tuple[Path, Path]:
    draw = random.Random(seed)
    members_csv = directory / "members.csv"
    with members_csv.open("w", encoding="utf-8") as out:
        out.write("external_id\n")
        out.writelines(f"m{n:07d}\n" for n in range(members))
    orders_csv = directory / "orders.csv"
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    span = 5 * 365 * 86400
    with orders_csv.open("w", encoding="utf-8") as out:
        out.write("external_id,order_id,placed_at,amount,currency\n")
        for n in range(orders):
            placed_at = now - dt.timedelta(seconds=draw.randrange(3600, span))
            out.write(
                f"m{draw.randrange(members):07d},hist-{n:08d},{placed_at.isoformat()},"
                f"{draw.randrange(100, 50000)},USD\n"
            )
    return members_csv, orders_csv


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "LOYALTY_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args()

    import psycopg

    name = f"loyalty_orders_{os.getpid()}"
    with psycopg.connect(args.admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{args.admin_url.rsplit('/', 1)[0]}/{name}"
    env = {**os.environ, "DATABASE_URL": url, "LOYALTY_LOG_LEVEL": "WARNING"}
    ok = False
    try:
        with tempfile.TemporaryDirectory() as tmp:
            run(env, "db", "upgrade")
            started = time.perf_counter()
            members_csv, orders_csv = write_files(Path(tmp), args.members, args.orders, args.seed)
            size = orders_csv.stat().st_size / 2**20
            wrote = time.perf_counter() - started
            log(f"wrote {args.orders:,} orders ({size:.0f} MB) in {wrote:.1f}s")
            took, said = run(env, "import", "members", str(members_csv))
            log(f"members: {said} in {took:.1f}s")
            took, said = run(env, "import", "orders", str(orders_csv))
            log(f"orders: {said} in {took:.1f}s")
            again, said_again = run(env, "import", "orders", str(orders_csv))
            log(f"orders again: {said_again} in {again:.1f}s")
            with psycopg.connect(url) as conn:
                count = conn.execute("SELECT count(*) FROM orders").fetchone()[0]  # type: ignore[index]
                size_db = conn.execute(
                    "SELECT pg_size_pretty(pg_total_relation_size('orders'))"
                ).fetchone()[0]  # type: ignore[index]
            verified, verdict = run(env, "ledger", "verify")
            log(f"ledger verify: {verdict.splitlines()[-1]} in {verified:.1f}s")
        ok = count == args.orders and took < TARGET_S
        print(
            f"import orders  {args.orders:,} rows over {args.members:,} members  "
            f"{took:.1f}s = {args.orders / took:,.0f} rows/s  "
            f"(target < {TARGET_S:.0f}s: {'ok' if took < TARGET_S else 'MISSED'}); "
            f"re-run {again:.1f}s; orders table {size_db}; {count:,} orders"
        )
    finally:
        if not args.keep:
            with psycopg.connect(args.admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
