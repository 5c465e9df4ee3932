"""Two workers running one bulk grant at once grant each member once: batches of a job
queue on its row, and each finds only what is still pending. A worker killed (SIGKILL)
mid-batch leaves the batches it committed, whole, and nothing of the batch it was in; the
next run grants the rest, once."""

from __future__ import annotations

import datetime as dt
import signal
import threading

import pytest
import sqlalchemy as sa

from loyalty.db import utcnow
from loyalty.extensions import db
from loyalty.grants import services as grants
from loyalty.grants.models import BulkGrantTarget, JobState, Outcome
from loyalty.grants.services import NewBulkGrant
from loyalty.ledger.models import MemberBalance
from loyalty.members.models import Member
from loyalty.webhooks.models import OutboxEvent
from tests.concurrency import kill_worker_waiting_on, race, raised
from tests.factories import MemberFactory

pytestmark = [pytest.mark.committed, pytest.mark.postgresql_only]

T0 = dt.datetime(2031, 3, 12, 12, tzinfo=dt.UTC)
# The bulk grants step of `jobs run`, in a process of its own, in batches of argv[1].
WORKER = """
import sys
from loyalty import create_app
from loyalty.extensions import db
from loyalty.grants import services as grants
with create_app().app_context():
    print(grants.run_due(db.session(), batch_size=int(sys.argv[1])).granted)
"""


def queue(app, members: int, now: dt.datetime) -> None:
    """Members m000.. and a job giving each of them 10 points."""
    with app.app_context():
        ids = tuple(f"m{n:03d}" for n in range(members))
        for external_id in ids:
            MemberFactory(external_id=external_id, now=now)
        grants.create_job(
            db.session, NewBulkGrant(reason="Thanks", points=10, member_ids=ids), "ann", now
        )


def granted(app) -> list[str]:
    """The members granted, having checked that each has exactly its 10 points, its one
    granted target and its one points.adjusted event, and that no one else has any."""
    with app.app_context():
        targets = (
            db.session.execute(
                sa.select(BulkGrantTarget.external_id).where(
                    BulkGrantTarget.outcome == Outcome.GRANTED
                )
            )
            .scalars()
            .all()
        )
        events = db.session.scalars(
            sa.select(OutboxEvent.payload).where(OutboxEvent.type == "points.adjusted")
        ).all()
        balances = dict(
            db.session.execute(
                sa.select(Member.external_id, MemberBalance.available).join(
                    MemberBalance, MemberBalance.member_id == Member.id
                )
            ).all()
        )
    done = sorted(targets)
    assert sorted(event["member_id"] for event in events) == done
    assert {m for m, available in balances.items() if available} == set(done)
    assert {balances[m] for m in done} <= {10}
    return done


def test_two_workers_on_one_job_grant_every_member_once(app):
    queue(app, 60, T0)

    results = race(app, 2, lambda _: grants.run_due(db.session, now=T0, batch_size=7))

    assert raised(results) == []
    assert sum(summary.granted for summary in results) == 60
    assert granted(app) == [f"m{n:03d}" for n in range(60)]
    with app.app_context():
        [job], _ = grants.list_jobs(db.session, limit=10)
    assert (job.state, job.done, job.granted, job.points_granted) == (JobState.DONE, 60, 60, 600)


def test_a_worker_killed_mid_batch_loses_and_duplicates_nothing(app, migrated_app):
    """Batches of 5 in the job's order: the test holds m011's balance row, so the worker
    commits m000-m009 and waits inside the batch of m010-m014 (m010 granted, not committed)
    until it is killed."""
    now = utcnow()
    queue(app, 20, now - dt.timedelta(hours=1))
    code, waited, stderr = kill_worker_waiting_on(
        app, migrated_app.config["SQLALCHEMY_DATABASE_URI"], WORKER, ["5"], "m011"
    )

    assert waited == 1, stderr
    assert code == -signal.SIGKILL
    assert granted(app) == [f"m{n:03d}" for n in range(10)]
    with app.app_context():
        [job], _ = grants.list_jobs(db.session, limit=10)
    assert (job.state, job.done, job.granted) == (JobState.RUNNING, 10, 10)

    with app.app_context():
        again = grants.run_due(db.session, batch_size=5)

    assert again.granted == 10
    assert granted(app) == [f"m{n:03d}" for n in range(20)]


def test_two_creates_under_one_grant_id_at_once_make_one_job(app, monkeypatch):
    """Both find no job under the grant_id (each waits at a barrier after looking) and
    insert; the second insert waits on the unique grant_id until the first commits, then
    fails in its savepoint and answers with the first's job."""
    with app.app_context():
        MemberFactory(external_id="m000", now=T0)
    command = NewBulkGrant(reason="Thanks", points=10, member_ids=("m000",), grant_id="g-1")
    looked = threading.Barrier(2, timeout=30)
    first_looks: list[object] = []
    look = grants._existing

    def look_then_wait(*args):
        found = look(*args)
        # Only the two first looks wait: the loser's second look, after its failed insert,
        # reads the winner's job.
        if len(first_looks) < 2:
            first_looks.append(found)
            looked.wait()
        return found

    monkeypatch.setattr(grants, "_existing", look_then_wait)

    results = race(app, 2, lambda _: grants.create_job(db.session, command, "ann", T0))

    assert raised(results) == []
    assert sorted(created for _, created in results) == [False, True]
    assert results[0][0] == results[1][0]
    with app.app_context():
        jobs, _ = grants.list_jobs(db.session, limit=10)
    assert [job.id for job in jobs] == [results[0][0].id]
