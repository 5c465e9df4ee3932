"""Fault tests: the real server (gunicorn, sync workers) on the throwaway PostgreSQL test
database, driven over HTTP with the standard library while something breaks underneath it.

This package holds their shared harness: start gunicorn in its own process group (always
killed afterwards), find its workers, call it without any retry of our own, seed a program
through the services, and run `loyalty ledger verify` as an operator would.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask
from sqlalchemy.orm import Session

from loyalty.auth.services import create_key
from loyalty.extensions import db
from loyalty.idempotency.models import IdempotencyRecord
from loyalty.ledger.models import LedgerTransaction, MemberBalance, TransactionKind
from loyalty.members.models import Member
from loyalty.membership import adjustments
from loyalty.membership.services import EnrollMember, enroll
from loyalty.program.services import update_settings
from tests.commands import program_changes
from tests.factories import RuleFactory
from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the virtualenv's bin: gunicorn and loyalty live beside it
SEED_POINTS = 1_000_000


@dataclass(frozen=True)
class Answer:
    """What a client saw: a status and body, or no answer at all (`status` None)."""

    status: int | None
    content_type: str = ""
    raw: bytes = b""
    error: str = ""
    replayed: bool = False

    @property
    def body(self) -> Any:
        try:
            return json.loads(self.raw)
        except ValueError:
            return None

    @property
    def code(self) -> str | None:
        body = self.body
        return body.get("code") if isinstance(body, dict) else None

    def __repr__(self) -> str:
        if self.status is None:
            return f"<no answer: {self.error}>"
        return f"<{self.status} {self.content_type} {self.raw[:300]!r}>"


def call(
    port: int,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 15,
) -> Answer:
    """One HTTP request on a fresh connection; a reset, refusal or timeout is an Answer
    without a status, never an exception."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    sent = {"Content-Type": "application/json", **(headers or {})}
    try:
        connection.request(
            method, path, body=None if body is None else json.dumps(body), headers=sent
        )
        response = connection.getresponse()
        raw = response.read()
    except (OSError, http.client.HTTPException) as error:
        return Answer(None, error=repr(error))
    finally:
        connection.close()
    return Answer(
        response.status,
        response.headers.get("Content-Type", ""),
        raw,
        replayed=response.headers.get("Idempotent-Replayed") == "true",
    )


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float = 15,
    ) -> Answer:
        return call(self.port, method, path, body, headers, timeout)

    def workers(self) -> list[int]:
        """The master's children: its workers, as they are right now."""
        children: list[int] = []
        for task in Path(f"/proc/{self.process.pid}/task").glob("*"):
            try:
                children += [int(pid) for pid in (task / "children").read_text().split()]
            except OSError:
                continue
        return sorted(children)

    def log_tail(self, size: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-size:]


@contextmanager
def gunicorn(database_url: str, tmp_path: Path, workers: int = 2) -> Iterator[Server]:
    """gunicorn with gunicorn.conf.py and `workers` sync workers on a free port, serving
    `database_url`, in its own process group."""
    port = free_port()
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir(exist_ok=True)
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("GUNICORN_CMD_ARGS", "LOYALTY_WORKERS", "LOYALTY_BIND")
    }
    env.update(
        DATABASE_URL=database_url,
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        LOYALTY_SECRET_KEY="fault-tests-only",
        LOYALTY_LOG_LEVEL="WARNING",
    )
    command = [
        str(BIN / "gunicorn"),
        "-c",
        "gunicorn.conf.py",
        "--workers",
        str(workers),
        "--bind",
        f"127.0.0.1:{port}",
        "loyalty:create_app()",
    ]
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 - our own venv's gunicorn, fixed arguments
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(process, port, log)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, f"gunicorn exited:\n{server.log_tail()}"
            ready = server.call("GET", "/readyz", timeout=2).status == 200
            if ready and len(server.workers()) == workers:
                break
            assert time.monotonic() < deadline, f"gunicorn not ready:\n{server.log_tail()}"
            time.sleep(0.1)
        yield server
    finally:
        # The master first, so it cannot respawn; then whatever is left of its group.
        if process.poll() is None:
            process.terminate()
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout=15)
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)


def seed_program(app: Flask, members: list[str]) -> dict[str, str]:
    """Through the services, committed: points available at once (pending_days 0), a spend
    rule of 1 point per dollar, `members` with SEED_POINTS each. Returns checkout headers."""
    with app.app_context():
        session = db.session
        update_settings(session, program_changes({"pending_days": 0}), actor="fault-test")
        RuleFactory()  # 1 point per dollar
        for external_id in members:
            enroll(session, EnrollMember(external_id=external_id))
            adjustments.adjust(session, external_id, SEED_POINTS, "seed", "fault-test")
        _, raw = create_key(session, "fault-checkout", ("checkout",))
    return {"Authorization": f"Bearer {raw}"}


def order_body(order_id: str, member: str, quantity: int) -> dict[str, Any]:
    """An order of `quantity` tees at 25.00: 25 points each under the spend rule."""
    return {
        "order_id": order_id,
        "member_id": member,
        "currency": "USD",
        "lines": [{"sku": "tee", "category": "apparel", "quantity": quantity, "unit_price": 2500}],
    }


def earn_counts(app: Flask) -> dict[str, int]:
    """How many earn transactions each order reference has, as committed."""
    with app.app_context():
        rows = db.session.execute(
            sa.select(LedgerTransaction.reference, sa.func.count())
            .where(LedgerTransaction.kind == TransactionKind.EARN.value)
            .group_by(LedgerTransaction.reference)
        ).all()
        db.session.remove()
    return {str(reference): count for reference, count in rows}


def ledger_verify_cli(database_url: str) -> subprocess.CompletedProcess[str]:
    """`loyalty ledger verify` in its own process, as an operator runs it."""
    env = {**os.environ, "DATABASE_URL": database_url, "LOYALTY_SECRET_KEY": "fault-tests-only"}
    return subprocess.run(  # noqa: S603 - our own venv's CLI, fixed arguments
        [str(BIN / "loyalty"), "ledger", "verify"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def dangling_claims(session: Session) -> int:
    """Idempotency claims that never got their answer stored."""
    return session.scalar(
        sa.select(sa.func.count(IdempotencyRecord.id)).where(
            IdempotencyRecord.response_status.is_(None)
        )
    )


def balance_of(session: Session, external_id: str) -> MemberBalance:
    return session.execute(
        sa.select(MemberBalance)
        .join(Member, Member.id == MemberBalance.member_id)
        .where(Member.external_id == external_id)
    ).scalar_one()
