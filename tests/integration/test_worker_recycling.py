"""gunicorn.conf.py recycles a worker for its memory only, and one worker at a time.

A real gunicorn with the shipped config serves a tiny WSGI app; a memory limit of 1 MB puts
every worker over it, and the spacing of an hour must let exactly one of them leave.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
APP = """
import os

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]
"""


def workers_of(master: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == master:
                found.add(int(entry.name))
    return found


def test_workers_over_their_memory_limit_leave_one_at_a_time(tmp_path):
    (tmp_path / "tinyapp.py").write_text(APP)
    (tmp_path / "metrics").mkdir()
    port = free_port()
    env = dict(
        os.environ,
        LOYALTY_WORKER_MAX_RSS_MB="1",
        LOYALTY_WORKER_RSS_CHECK_EVERY="1",
        LOYALTY_WORKER_RECYCLE_SPACING="3600",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
    )
    env.pop("GUNICORN_CMD_ARGS", None)
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as out:
        server = subprocess.Popen(  # noqa: S603 - our own gunicorn, on loopback
            [
                *(sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py")),
                *("--workers", "2", "--bind", f"127.0.0.1:{port}"),
                *("--pythonpath", str(tmp_path), "tinyapp:app"),
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        answers = []
        while len(answers) < 20:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    answers.append(int(response.read()))
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)  # polling for gunicorn to listen, not for the clock
        departures = [line for line in log.read_text().splitlines() if "leaves after" in line]
        assert len(departures) == 1, log.read_text()
        departed = int(departures[0].split("worker ")[1].split()[0])
        assert departed in answers
        while departed in workers_of(server.pid) or len(workers_of(server.pid)) < 2:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)  # polling for the replacement worker, not for the clock
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
