"""Recycle a gunicorn worker when its memory says so, one worker at a time.

gunicorn's own ``max_requests`` restarts a worker after a number of requests. Under an even
load every worker reaches that number at about the same moment, so they all restart within
seconds of each other (issue 18 measured p99 of 40-357 ms and 10-15% fewer requests a second
in such a run), and a worker that does not leak is restarted all the same. bench/soak.py
measured no growth of resident memory over 100,000 requests (bench/README.md), so nothing is
restarted on a schedule; this is the safety net should a leak appear:

- every ``check_every`` requests a worker reads its resident memory (VmRSS);
- past its limit (the configured one plus up to ``jitter`` of it, drawn once per worker, so
  workers that grow alike do not cross it together) it asks to leave;
- it may leave only when no other worker of the server left in the last ``spacing``
  seconds: the time of the last departure is kept in a file the workers share, under an
  exclusive lock. A worker refused keeps serving and asks again later.
"""

from __future__ import annotations

import fcntl
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DEFAULT_LIMIT_MB = 512
DEFAULT_CHECK_EVERY = 200
DEFAULT_SPACING_SECONDS = 60.0
DEFAULT_JITTER = 0.1


def resident_kib(status: Path = Path("/proc/self/status")) -> int | None:
    """This process's resident memory in KiB (VmRSS), or None where /proc has no such line."""
    try:
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclass
class Recycler:
    limit_kib: int
    stamp: Path  # shared by the workers of one server: when one of them last left
    check_every: int = DEFAULT_CHECK_EVERY
    spacing: float = DEFAULT_SPACING_SECONDS
    measure: Callable[[], int | None] = resident_kib
    requests: int = 0
    last_rss_kib: int = 0

    @classmethod
    def from_environment(
        cls, stamp: Path, environ: dict[str, str] | None = None, rng: random.Random | None = None
    ) -> Recycler | None:
        """The recycler LOYALTY_WORKER_MAX_RSS_MB and friends ask for; None when the limit
        is 0 (no recycling at all)."""
        env = os.environ if environ is None else environ
        limit_mb = float(env.get("LOYALTY_WORKER_MAX_RSS_MB", DEFAULT_LIMIT_MB))
        if limit_mb <= 0:
            return None
        jitter = float(env.get("LOYALTY_WORKER_RSS_JITTER", DEFAULT_JITTER))
        draw = (rng or random.SystemRandom()).uniform(0, jitter)
        return cls(
            limit_kib=int(limit_mb * 1024 * (1 + draw)),
            stamp=stamp,
            check_every=int(env.get("LOYALTY_WORKER_RSS_CHECK_EVERY", DEFAULT_CHECK_EVERY)),
            spacing=float(env.get("LOYALTY_WORKER_RECYCLE_SPACING", DEFAULT_SPACING_SECONDS)),
        )

    def after_request(self, now: float) -> bool:
        """Count a request; True when this worker should finish it and leave. `now` is wall
        time (time.time()): the workers compare it across processes."""
        self.requests += 1
        if self.requests % self.check_every:
            return False
        rss = self.measure()
        if rss is None:
            return False
        self.last_rss_kib = rss
        return rss > self.limit_kib and self.claim_departure(now)

    def claim_departure(self, now: float) -> bool:
        """Record this worker's departure unless another one left less than `spacing`
        seconds ago."""
        with self.stamp.open("a+") as stream:
            fcntl.flock(stream, fcntl.LOCK_EX)  # released when the file is closed
            stream.seek(0)
            text = stream.read().strip()
            last = float(text) if text else None
            if last is not None and 0 <= now - last < self.spacing:
                return False
            stream.seek(0)
            stream.truncate()
            stream.write(repr(now))
            return True
