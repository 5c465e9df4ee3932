"""Running work in threads that start together, for the concurrency tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from loyalty.extensions import db
from loyalty.ledger.models import MemberBalance
from loyalty.members.models import Member


def _at_once(
    racers: int, work: Callable[[int], Any], context: Callable[[], AbstractContextManager[Any]]
) -> list[Any]:
    barrier = threading.Barrier(racers, timeout=30)
    results: list[Any] = [None] * racers

    def run(number: int) -> None:
        with context():
            barrier.wait()
            try:
                results[number] = work(number)
            except Exception as error:
                results[number] = error

    threads = [threading.Thread(target=run, args=(n,)) for n in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a racer hung"
    return results


def race(app: Flask, racers: int, work: Callable[[int], Any]) -> list[Any]:
    """Run work(0..racers-1) at once, each in its own thread and app context. Returns each
    racer's result, or the exception it raised."""
    return _at_once(racers, work, app.app_context)


def race_requests(app: Flask, racers: int, send: Callable[[FlaskClient], Any]) -> list[Any]:
    """Call send(client) from `racers` threads at once, each with a test client of its own
    and no app context pushed, so each request gets its own, as in production. Returns each
    racer's response, or the exception it raised."""
    return _at_once(racers, lambda _: send(app.test_client()), nullcontext)


def raised(results: list[Any]) -> list[BaseException]:
    """The exceptions among the racers' results."""
    return [result for result in results if isinstance(result, BaseException)]


def waiting_on_locks(app: Flask) -> int:
    """How many connections to the test database (PostgreSQL) are waiting for a lock."""
    with app.app_context(), db.engine.connect() as connection:
        return int(
            connection.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).scalar_one()
        )


def kill_worker_waiting_on(
    app: Flask, database_url: str, script: str, args: list[str], external_id: str
) -> tuple[int, int, str]:
    """Run `script` (Python, with `args`) in a process of its own on `database_url` while
    this test holds `external_id`'s balance row locked; SIGKILL it once it waits on that lock
    (mid-batch: what it did before is committed, what it did in the batch is not). Returns
    its exit code, how many connections waited on a lock when it was killed, its stderr."""
    env = {**os.environ, "DATABASE_URL": database_url, "LOYALTY_LOG_LEVEL": "WARNING"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with app.app_context(), db.engine.connect() as gate:
        gate.execute(
            sa.select(MemberBalance.member_id)
            .join(Member, Member.id == MemberBalance.member_id)
            .where(Member.external_id == external_id)
            .with_for_update(of=MemberBalance)
        )
        worker = subprocess.Popen(  # noqa: S603 - our own interpreter and code
            [sys.executable, "-c", script, *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while waiting_on_locks(app) < 1 and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.05)
        waited = waiting_on_locks(app)
        os.kill(worker.pid, signal.SIGKILL)
        _, stderr = worker.communicate(timeout=30)
        gate.rollback()
    return worker.returncode, waited, stderr
