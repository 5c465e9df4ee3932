"""Settle every member whose state is due, so balances, reports and notices are current even
for members nobody reads. Reads never depend on this: they settle lazily themselves.

Several workers may run at once: on PostgreSQL each claims members with
``FOR UPDATE SKIP LOCKED``, so no member is settled twice and nobody waits on a checkout.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from loyalty import metrics
from loyalty.db import in_claimed_batches, transaction, utcnow
from loyalty.events import services as events
from loyalty.ledger.models import LotState, MemberBalance, PointLot
from loyalty.members import birthdays
from loyalty.members.models import Member, MemberStatus
from loyalty.program import config
from loyalty.settlement import services as settlement
from loyalty.webhooks import outbox


@dataclass
class RunSummary:
    members_settled: int = 0
    transactions_written: int = 0
    batches: int = 0


def due_count(session: Session, now: dt.datetime | None = None) -> int:
    """How many members are due for settling now (for a progress bar)."""
    now = now or utcnow()
    count = session.scalar(
        sa.select(sa.func.count())
        .select_from(MemberBalance)
        .where(MemberBalance.next_due_at <= now)
    )
    return int(count or 0)


def settle_due(
    session: Session,
    now: dt.datetime | None = None,
    batch_size: int = 500,
    progress: Callable[[int], None] | None = None,
    workers: int = 1,
) -> RunSummary:
    """Settle (mature lots, expire lots, release timed-out holds) every member due by `now`.

    Each batch is one transaction, so an interrupted run keeps what it finished and the
    next run resumes with what is left; running it again changes nothing. With `workers`
    above one, that many threads settle at once, each on a session and connection of its
    own (on PostgreSQL, sharing the members through ``FOR UPDATE SKIP LOCKED``); while
    one thread's batch is in the database, another's is planned in Python, so a worker
    keeps two cores busy. Returns what was done; `progress` is told the number of members
    settled after each batch.
    """
    now = now or utcnow()
    engine = session.get_bind()
    # Threads need connections of their own: not on SQLite (one writer at a time), nor for
    # a session joined to its caller's connection and transaction.
    if workers <= 1 or not isinstance(engine, Engine) or engine.dialect.name != "postgresql":
        return _settle_batches(session, now, batch_size, progress)
    reporting = threading.Lock()

    def report(settled: int) -> None:
        if progress:
            with reporting:
                progress(settled)

    def settle_in_thread(_: int) -> RunSummary:
        with Session(engine) as own:
            return _settle_batches(own, now, batch_size, report)

    with ThreadPoolExecutor(workers, thread_name_prefix="settle") as pool:
        summaries = list(pool.map(settle_in_thread, range(workers)))
    return RunSummary(
        members_settled=sum(s.members_settled for s in summaries),
        transactions_written=sum(s.transactions_written for s in summaries),
        batches=sum(s.batches for s in summaries),
    )


def _settle_batches(
    session: Session,
    now: dt.datetime,
    batch_size: int,
    progress: Callable[[int], None] | None,
) -> RunSummary:
    summary = RunSummary()
    while True:
        with transaction(session):
            batch = settlement.settle_due_batch(session, now, batch_size)
            summary.transactions_written += sum(done.posted for done in batch)
        if not batch:
            return summary
        summary.batches += 1
        summary.members_settled += len(batch)
        metrics.JOBS.inc(len(batch))
        if progress:
            progress(len(batch))


def notify_expiring(
    session: Session, now: dt.datetime | None = None, within_days: int = 14, batch_size: int = 500
) -> int:
    """Emit one points.expiring event per member whose points expire within `within_days`,
    once per lot and once per member in a run (a member's lots are never split across two
    batches). Returns the number of members notified."""
    now = now or utcnow()
    horizon = now + dt.timedelta(days=within_days)
    due = sa.and_(
        PointLot.state == LotState.AVAILABLE.value,
        PointLot.remaining > 0,
        PointLot.expires_at > now,
        PointLot.expires_at <= horizon,
        PointLot.expiry_notified_at.is_(None),
    )

    def notify(claimed: list[PointLot]) -> int:
        # The batch may end in the middle of a member's lots: take the rest of theirs too.
        rest = session.execute(
            sa.select(PointLot)
            .where(
                due,
                PointLot.member_id.in_({lot.member_id for lot in claimed}),
                PointLot.id.not_in([lot.id for lot in claimed]),
            )
            .with_for_update()
        ).scalars()
        lots = [*claimed, *rest]
        by_member: dict[int, list[PointLot]] = {}
        for lot in lots:
            by_member.setdefault(lot.member_id, []).append(lot)
            lot.expiry_notified_at = now
        externals = dict(
            session.execute(
                sa.select(Member.id, Member.external_id).where(Member.id.in_(list(by_member)))
            ).all()
        )
        for member_id, member_lots in by_member.items():
            outbox.emit(
                session,
                "points.expiring",
                {
                    "member_id": externals[member_id],
                    "points": sum(lot.remaining for lot in member_lots),
                    "expires_at": min(
                        lot.expires_at for lot in member_lots if lot.expires_at
                    ).isoformat(),
                },
                now,
            )
        return len(by_member)

    unnotified = sa.select(PointLot).where(due).order_by(PointLot.member_id, PointLot.expires_at)
    notified = in_claimed_batches(session, unnotified, batch_size, notify)
    metrics.EXPIRY_NOTICES.inc(notified)
    return notified


def grant_birthdays(session: Session, now: dt.datetime | None = None) -> int:
    """Record today's birthday event for every active member born on this day (Feb 29
    birthdays on Feb 28 in other years); exactly once per member and year. Returns how many
    events were recorded."""
    now = now or utcnow()
    today, midnight = birthdays.program_day(now, config.current(session).settings.zone)
    candidates = session.scalars(
        sa.select(Member.external_id).where(
            birthdays.born_on(today), Member.status == MemberStatus.ACTIVE.value
        )
    ).all()
    # The same body on every run today (dated at the day's start), so a rerun is a replay,
    # not a conflict.
    recorded = 0
    for external_id in candidates:
        _, created = events.record_event(
            session,
            events.RecordEvent(
                event_id=f"birthday:{external_id}:{today.year}",
                external_id=external_id,
                type="birthday",
                occurred_at=midnight,
            ),
            now=now,
        )
        recorded += created
    metrics.BIRTHDAYS.inc(recorded)
    return recorded
