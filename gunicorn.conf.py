"""gunicorn settings for `loyalty serve` (and `gunicorn -c gunicorn.conf.py wsgi:app`).

Sync workers: each request holds one worker and one database connection, which measured
steadier than threads on this kind of 2-core machine. Override any value with
GUNICORN_CMD_ARGS, e.g. GUNICORN_CMD_ARGS="--workers 8".
"""

import multiprocessing
import os

bind = os.environ.get("LOYALTY_BIND", "127.0.0.1:8000")
worker_class = "sync"
workers = int(os.environ.get("LOYALTY_WORKERS", multiprocessing.cpu_count() * 2 + 1))
# A request stuck longer than this is killed; its Idempotency-Key lease lets a retry take over.
timeout = 30
graceful_timeout = 20
keepalive = 5
# Recycle workers now and then so a slow leak never becomes an outage.
max_requests = 10000
max_requests_jitter = 1000
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOYALTY_LOG_LEVEL", "info").lower()
