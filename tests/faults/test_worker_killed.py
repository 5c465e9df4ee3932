"""kill -9 of a gunicorn worker in the middle of a burst of orders and holds.

The shop's checkout retries every request that got no final answer, with the same order_id or
Idempotency-Key. Whatever the killed worker was doing when it died, once every request has
been retried to a final answer: each order earned exactly once, each hold was made exactly
once, and the ledger verifies.

So that the kill certainly lands mid-request, the test holds one member's balance row lock
(as a long checkout of that member would) until both workers wait on it: each has then
committed its Idempotency-Key claim and is inside the transaction of its work. The killed
worker's claim is left without an answer; the retry must take it over once its lease (2 s
here) has run out, and do the work exactly once.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa

from loyalty.extensions import db
from loyalty.ledger.models import LedgerTransaction, MemberBalance, Redemption, TransactionKind
from loyalty.members.models import Member
from loyalty.orders.models import Order
from tests.faults import (
    SEED_POINTS,
    Answer,
    Server,
    balance_of,
    dangling_claims,
    earn_counts,
    gunicorn,
    ledger_verify_cli,
    order_body,
    seed_program,
)

# Threads and processes commit and read each other's commits.
pytestmark = [pytest.mark.postgresql_only, pytest.mark.committed]

MEMBERS = ["m0", "m1", "m2", "m3"]
ORDERS = 80
HOLDS = 80
CLIENTS = 8
RETRY_FOR = 90  # seconds


@dataclass
class Call:
    """One checkout request, sent again verbatim (same id, same key) until it is answered."""

    kind: str  # "order" or "hold"
    ident: str  # the order_id, or the hold's Idempotency-Key
    member: str
    points: int  # what the order earns, or what the hold takes
    body: dict[str, Any]
    headers: dict[str, str]
    answers: list[Answer] = field(default_factory=list)

    @property
    def path(self) -> str:
        return "/v1/orders" if self.kind == "order" else "/v1/redemptions"

    def send(self, server: Server) -> Answer:
        answer = server.call("POST", self.path, self.body, self.headers, timeout=10)
        self.answers.append(answer)
        return answer


def is_final(answer: Answer) -> bool:
    """An answer the checkout would stop retrying on: not no answer, nor a gateway or
    availability error. (A request that died leaves no claim behind to wait for.)"""
    return answer.status is not None and answer.status not in (502, 503, 504)


def burst(checkout: dict[str, str]) -> list[Call]:
    calls = []
    for n in range(max(ORDERS, HOLDS)):
        member = MEMBERS[n % len(MEMBERS)]
        if n < ORDERS:
            quantity = 1 + n % 3
            headers = dict(checkout)
            if n % 2 == 0:  # half the orders also carry an Idempotency-Key
                headers["Idempotency-Key"] = f"order-key-{n}"
            calls.append(
                Call(
                    "order",
                    f"ord-{n}",
                    member,
                    25 * quantity,
                    order_body(f"ord-{n}", member, quantity),
                    headers,
                )
            )
        if n < HOLDS:
            key = f"hold-key-{n}"
            points = 100 + n
            calls.append(
                Call(
                    "hold",
                    key,
                    member,
                    points,
                    {"member_id": member, "points": points, "order_id": f"pay-{n}"},
                    {**checkout, "Idempotency-Key": key},
                )
            )
    return calls


def wait_for_lock_waiters(app, count: int) -> None:
    """Until `count` backends of the test database wait on a lock (our workers, blocked)."""
    deadline = time.monotonic() + 30
    with app.app_context():
        while True:
            with db.engine.connect() as connection:
                waiting = connection.scalar(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                )
            if waiting >= count:
                return
            assert time.monotonic() < deadline, f"{waiting} requests wait on the lock"
            time.sleep(0.05)


def test_killing_a_worker_mid_burst_loses_and_doubles_nothing(app, tmp_path):
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    checkout = seed_program(app, MEMBERS)
    calls = burst(checkout)

    with gunicorn(url, tmp_path, workers=2) as server:
        before = server.workers()
        victim = before[0]
        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            with app.app_context():
                blocker = db.engine.connect()
            try:
                blocker.execute(
                    sa.select(MemberBalance.member_id)
                    .join(Member, Member.id == MemberBalance.member_id)
                    .where(Member.external_id == MEMBERS[0])
                    .with_for_update()
                )
                futures = [pool.submit(call.send, server) for call in calls]
                wait_for_lock_waiters(app, 2)
                os.kill(victim, signal.SIGKILL)
                # The master replaces the dead worker by itself.
                deadline = time.monotonic() + 30
                while len(server.workers()) != 2 or victim in server.workers():
                    assert time.monotonic() < deadline, f"not replaced:\n{server.log_tail()}"
                    time.sleep(0.1)
            finally:
                blocker.rollback()
                blocker.close()
            wait(futures)
        first = [call.answers[0] for call in calls]
        lost = [answer for answer in first if answer.status is None]
        # The kill must have hit a request in flight, or this test proved nothing.
        assert lost, f"no request lost its answer to the kill: {Counter(a.status for a in first)}"
        assert not [a for a in first if a.status is not None and a.status >= 500], first
        assert victim not in server.workers()

        # The checkout's retry: every request again, as it was, until its answer is final.
        deadline = time.monotonic() + RETRY_FOR
        for call in calls:
            while not is_final(call.send(server)):
                assert time.monotonic() < deadline, (call.ident, call.answers[-3:])
                time.sleep(0.25)
        log = server.log_tail()

    for call in calls:
        final = call.answers[-1]
        assert final.status == 201, (call.ident, call.answers)
        if call.answers[0].status is None:
            # The killed worker's work rolled back with its connection: the retry did it
            # (after taking over the claim), it did not find it done.
            assert not any(answer.replayed for answer in call.answers), call.answers
        # An answer the first attempt got is the answer every retry gets.
        if first[calls.index(call)].status == 201:
            assert first[calls.index(call)].body == final.body, (call.ident, call.answers)
    orders = {call.ident: call for call in calls if call.kind == "order"}
    holds = {call.ident: call for call in calls if call.kind == "hold"}
    for call in orders.values():
        assert call.answers[-1].body["points_earned"] == call.points, call.answers
    answered_redemptions = {call.answers[-1].body["redemption_id"] for call in holds.values()}
    assert len(answered_redemptions) == HOLDS  # one redemption per key, none shared

    # Each order earned exactly once, and nothing else earned.
    assert earn_counts(app) == {f"order:{order_id}": 1 for order_id in orders}

    with app.app_context():
        session = db.session
        assert session.scalar(sa.select(sa.func.count(Order.id))) == ORDERS
        # Exactly one redemption per Idempotency-Key (each hold carries its own reference),
        # and it is the one the key's answer names.
        redemptions = session.execute(
            sa.select(
                Redemption.order_ref, Redemption.public_id, Redemption.points, Redemption.status
            )
        ).all()
        assert Counter(ref for ref, *_ in redemptions) == {
            call.body["order_id"]: 1 for call in holds.values()
        }
        by_ref = {
            ref: (str(public_id), points, status) for ref, public_id, points, status in redemptions
        }
        for call in holds.values():
            answered = call.answers[-1].body
            assert by_ref[call.body["order_id"]] == (answered["redemption_id"], call.points, "held")
        hold_txns = session.scalar(
            sa.select(sa.func.count(LedgerTransaction.id)).where(
                LedgerTransaction.kind == TransactionKind.HOLD.value
            )
        )
        assert hold_txns == HOLDS
        # Every claim ended with a stored answer: none is left dangling.
        assert dangling_claims(session) == 0

        # Balances: held is the sum of the member's holds, available the seed plus what the
        # orders earned less what is held.
        for member in MEMBERS:
            balance = balance_of(session, member)
            held = sum(c.points for c in holds.values() if c.member == member)
            earned = sum(c.points for c in orders.values() if c.member == member)
            assert (balance.available, balance.pending, balance.held) == (
                SEED_POINTS + earned - held,
                0,
                held,
            ), member
        db.session.remove()

    verified = ledger_verify_cli(url)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.strip().endswith(": ok"), verified.stdout
    assert "Traceback" not in log, log
