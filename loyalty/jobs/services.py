"""Settle every member whose state is due, so balances, reports and notices are current even
for members nobody reads. Reads never depend on this: they settle lazily themselves.

Several workers may run at once: on PostgreSQL each claims members with
``FOR UPDATE SKIP LOCKED``, so no member is settled twice and nobody waits on a checkout.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty import metrics
from loyalty.db import transaction, utcnow
from loyalty.ledger import services as ledger
from loyalty.ledger.models import MemberBalance


@dataclass
class RunSummary:
    members_settled: int = 0
    transactions_written: int = 0
    batches: int = 0


def _claim_batch(session: Session, now: dt.datetime, size: int) -> list[MemberBalance]:
    stmt = (
        sa.select(MemberBalance)
        .where(MemberBalance.next_due_at <= now)
        .order_by(MemberBalance.next_due_at)
        .limit(size)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
    return list(session.execute(stmt).scalars())


def settle_due(
    session: Session,
    now: dt.datetime | None = None,
    batch_size: int = 500,
    progress: Callable[[int], None] | None = None,
) -> RunSummary:
    """Settle (mature lots, expire lots, release timed-out holds) every member due by `now`.

    Each batch is one transaction, so an interrupted run keeps what it finished and the
    next run resumes with what is left; running it again changes nothing. Returns what it
    did; `progress` is told the number of members settled after each batch.
    """
    now = now or utcnow()
    summary = RunSummary()
    while True:
        with transaction(session):
            batch = _claim_batch(session, now, batch_size)
            for balance in batch:
                summary.transactions_written += len(ledger.settle(session, balance, now))
        if not batch:
            return summary
        summary.batches += 1
        summary.members_settled += len(batch)
        metrics.JOBS.inc(len(batch))
        if progress:
            progress(len(batch))
