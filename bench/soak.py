"""Resident memory of each gunicorn worker over a long run.

    .venv/bin/python bench/soak.py [--requests 100000] [--segment 10] [--worker-class sync]

Sets up like bench/run.py (same database, members, keys, program, gunicorn.conf.py) and
drives loyalty with wrk in segments of `--segment` seconds, cycling through order, event,
hold, card and quote (16 connections), until `--requests` requests were answered. After each
segment it reads every worker's VmRSS from /proc and prints one line; at the end, each
worker's growth from its first reading past 10% of the requests to its last. Exits 1 on any
failed request. Other run.py options (--workers, --worker-threads, --database...) apply.
"""

# ruff: noqa: T201

from __future__ import annotations

import os
import sys
import time

from run import Bench, BenchError, log, parse_args, worker_rss

CYCLE = ["order", "event", "hold", "card", "quote"]


def main(argv: list[str]) -> int:
    target = 100_000
    segment = 10.0
    rest = []
    items = iter(argv)
    for arg in items:
        if arg == "--requests":
            target = int(next(items))
        elif arg == "--segment":
            segment = float(next(items))
        else:
            rest.append(arg)
    args = parse_args(rest)
    bench = Bench(args)
    samples: list[tuple[int, float, dict[int, int]]] = []
    failed = False
    try:
        bench.migrate()
        bench.serve()
        bench.seed()
        bench.configure()
        bench.warm_up()
        pid = bench.servers["loyalty"].process.pid
        done, started, i = 0, time.monotonic(), 0
        samples.append((0, os.getloadavg()[0], worker_rss(pid)))
        while done < target:
            op = CYCLE[i % len(CYCLE)]
            result = bench.wrk(op, "loyalty", segment, bench.tag("loyalty", f"s{i}"))
            i += 1
            done += result.requests
            rss = worker_rss(pid)
            samples.append((done, os.getloadavg()[0], rss))
            log(
                f"{done:7d} requests  {op:6} {result.rps:6.0f} req/s  load "
                f"{samples[-1][1]:4.1f}  RSS MB "
                + " ".join(f"{kb / 1024:6.1f}" for _, kb in sorted(rss.items()))
                + ("  PROBLEMS: " + "; ".join(result.problems) if result.problems else "")
            )
            failed = failed or bool(result.problems)
        elapsed = time.monotonic() - started
    except BenchError as error:
        print(f"soak failed: {error}", file=sys.stderr)
        return 1
    finally:
        bench.teardown()
    print(report(samples, target, elapsed, args))
    return 1 if failed else 0


def report(
    samples: list[tuple[int, float, dict[int, int]]], target: int, elapsed: float, args: object
) -> str:
    first_pids = set(samples[0][2])
    last = samples[-1]
    replaced = len(set().union(*(set(s[2]) for s in samples)) - set(last[2]))
    baseline = next((s for s in samples if s[0] >= target // 10), samples[0])
    lines = [
        f"soak: {last[0]} requests to loyalty in {elapsed:.0f}s, "
        f"{len(first_pids)} {getattr(args, 'worker_class', '')} workers, "
        f"load average {min(s[1] for s in samples):.1f}-{max(s[1] for s in samples):.1f}; "
        f"workers replaced: {replaced}",
        f"{'worker':>8} | {'MB at 0':>8} {'at ' + str(baseline[0]):>10} {'at ' + str(last[0]):>10}"
        f" | growth after the first 10%",
    ]
    for pid, kb in sorted(last[2].items()):
        start = samples[0][2].get(pid)
        base = baseline[2].get(pid)
        lines.append(
            f"{pid:8d} | {(start or 0) / 1024:8.1f} {(base or 0) / 1024:10.1f} {kb / 1024:10.1f}"
            f" | {((kb - base) / 1024 if base else float('nan')):+.1f} MB"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
