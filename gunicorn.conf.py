"""gunicorn settings for `loyalty serve` (and `gunicorn -c gunicorn.conf.py wsgi:app`).

Sync workers: each request holds one worker and one database connection, which measured
steadier than threads on this kind of 2-core machine; gthread and gevent did not win clearly
and hold four to five times the database connections (bench/README.md, "Memory and the
worker model"). Override any value with
GUNICORN_CMD_ARGS, e.g. GUNICORN_CMD_ARGS="--workers 8".
"""

import gc
import multiprocessing
import os
import shutil
import tempfile
import time
from pathlib import Path

from loyalty.recycling import Recycler
from loyalty.serving import answer_refusals_with_problems

bind = os.environ.get("LOYALTY_BIND", "127.0.0.1:8000")
worker_class = "sync"
workers = int(os.environ.get("LOYALTY_WORKERS", multiprocessing.cpu_count() * 2 + 1))
# A request stuck longer than this is killed; its transaction, Idempotency-Key claim
# included, rolls back, so a retry does the work.
timeout = 30
graceful_timeout = 20
keepalive = 5
# No recycling every N requests: under even load every worker hit N together and all
# restarted within seconds (issue 18), and a worker's memory does not grow (bench/soak.py,
# bench/README.md). A worker leaves only past LOYALTY_WORKER_MAX_RSS_MB of resident memory
# (512 by default, 0 for never), one worker a minute at most: loyalty/recycling.py.
max_requests = 0
# The app logs every request itself, as JSON with its request id; gunicorn logs its own events.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOYALTY_LOG_LEVEL", "info").lower()

# Limits on what a client may send before the application sees it (gunicorn's defaults,
# stated). Behind the nginx of deploy/, nginx enforces tighter ones first; either way the
# refusal is problem+json, not gunicorn's HTML page.
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190
answer_refusals_with_problems()

# Each worker is a process: Prometheus samples are shared through files in this directory.
if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="loyalty-metrics-")


# Where the workers of this server note when one of them last left for its memory.
RECYCLE_DIR = Path(tempfile.mkdtemp(prefix="loyalty-recycle-"))


def on_starting(server):
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, exist_ok=True)


def on_exit(server):
    shutil.rmtree(RECYCLE_DIR, ignore_errors=True)


def post_fork(server, worker):
    worker.recycler = Recycler.from_environment(RECYCLE_DIR / "last-departure")


def post_worker_init(worker):
    # The app, its modules and the ORM's mappings (about 226,000 objects) live as long as the
    # worker: out of the collector's reach, a full collection no longer walks them (one took
    # 0.1-0.5 s, a pause in whichever request triggered it).
    gc.freeze()


def post_request(worker, req, environ, resp):
    recycler = getattr(worker, "recycler", None)
    if recycler is not None and recycler.after_request(time.time()):
        worker.log.info(
            "worker %s leaves after this request: resident memory %d MiB, over its %d MiB",
            worker.pid,
            recycler.last_rss_kib // 1024,
            recycler.limit_kib // 1024,
        )
        worker.alive = False


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
