"""Bulk grants: create a job naming its members (a list of external ids, or a saved
segment's members at that moment), then ``run_due`` grants them in batches.

Each batch is one transaction: it locks the job's row, claims the next pending targets, and
grants each member exactly as an admin's single grant does (``adjust_member`` for points,
``grant_to_member`` for a benefit: same ledger transaction, audit entry and webhook), marking
the target granted or refused in the same transaction. A worker killed mid-batch leaves
the batch's targets pending and nothing of its grants; a second worker on the same job waits
for the job's row, then finds only what is still pending. The job's row lock is also what
keeps its budget: batches of one job never run at once, so the sum of points granted is
read and charged under the lock (jobs run side by side).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from loyalty.audit import services as audit
from loyalty.db import transaction, utcnow
from loyalty.errors import ValidationFailed
from loyalty.grants.exceptions import BulkGrantNotFound, GrantIdReused
from loyalty.grants.models import (
    BulkGrant,
    BulkGrantTarget,
    GrantKind,
    JobState,
    Outcome,
    Refusal,
)
from loyalty.idempotency.services import body_fingerprint
from loyalty.ledger.exceptions import MemberInactive
from loyalty.members.models import Member, MemberStatus
from loyalty.members.segments import SavedSegment, SegmentMember
from loyalty.membership.adjustments import adjust_member
from loyalty.tiers.benefits import GrantBenefit, grant_to_member

log = logging.getLogger(__name__)

# A list travels in one request body and one INSERT: bigger lists are a segment's job.
MAX_MEMBER_IDS = 50_000


@dataclass(frozen=True, slots=True)
class BenefitToGrant:
    code: str
    params: dict[str, Any] = field(default_factory=dict)
    days: int | None = None  # None: for good


@dataclass(frozen=True, slots=True)
class NewBulkGrant:
    """What to grant (points, or a benefit), why, and to whom: `member_ids` (external ids)
    or every member of the saved segment `segment`. `budget_points` caps the points the job
    may give in all; `grant_id` is the client's id for the job."""

    reason: str
    points: int | None = None
    benefit: BenefitToGrant | None = None
    member_ids: tuple[str, ...] = ()
    segment: str | None = None
    budget_points: int | None = None
    grant_id: str | None = None

    def fingerprint(self) -> str:
        fields = {
            "reason": self.reason,
            "points": self.points,
            "benefit": None if self.benefit is None else _benefit_fields(self.benefit),
            "member_ids": list(self.member_ids),
            "segment": self.segment,
            "budget_points": self.budget_points,
        }
        return body_fingerprint(fields)


def _benefit_fields(benefit: BenefitToGrant) -> dict[str, Any]:
    return {"code": benefit.code, "params": benefit.params, "days": benefit.days}


@dataclass(frozen=True, slots=True)
class JobView:
    """A bulk grant and its progress: `done` of `total` targets, `granted` and `refused`."""

    id: uuid.UUID
    grant_id: str | None
    state: JobState
    kind: GrantKind
    points: int | None
    benefit: dict[str, Any] | None
    reason: str
    segment: str | None
    budget_points: int | None
    total: int
    done: int
    granted: int
    refused: int
    points_granted: int
    error: str | None
    actor: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class TargetView:
    """One member's line in a job's report."""

    member_id: str  # the external id, as the job named it
    outcome: Outcome
    refusal: Refusal | None
    points: int
    transaction_id: uuid.UUID | None
    processed_at: dt.datetime | None


def _view(job: BulkGrant) -> JobView:
    return JobView(
        id=job.public_id,
        grant_id=job.grant_id,
        state=job.state,
        kind=job.kind,
        points=job.points,
        benefit=job.benefit,
        reason=job.reason,
        segment=job.segment_key,
        budget_points=job.budget_points,
        total=job.total,
        done=job.done,
        granted=job.granted,
        refused=job.refused,
        points_granted=job.points_granted,
        error=job.error,
        actor=job.actor,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


def _check(command: NewBulkGrant) -> None:
    errors: dict[str, list[str]] = {}
    if (command.points is None) == (command.benefit is None):
        errors["_schema"] = ["Give either points or a benefit."]
    if command.points is not None and command.points <= 0:
        errors["points"] = ["Must be at least 1."]
    if bool(command.member_ids) == (command.segment is not None):
        errors.setdefault("_schema", []).append("Name either member_ids (or csv) or a segment.")
    if len(command.member_ids) > MAX_MEMBER_IDS:
        errors["member_ids"] = [f"At most {MAX_MEMBER_IDS} ids; grant to a segment instead."]
    if command.budget_points is not None and command.benefit is not None:
        errors["budget"] = ["A budget limits points; a benefit grant has none."]
    if errors:
        raise ValidationFailed(errors)


def _segment_id(session: Session, key: str) -> int:
    segment_id = session.scalar(
        sa.select(SavedSegment.id).where(SavedSegment.key == key, SavedSegment.deleted_at.is_(None))
    )
    if segment_id is None:
        raise ValidationFailed({"segment": [f"No saved segment {key!r}."]})
    return segment_id


def _existing(session: Session, grant_id: str, fingerprint: str) -> JobView | None:
    job = session.scalar(sa.select(BulkGrant).where(BulkGrant.grant_id == grant_id))
    if job is None:
        return None
    if job.fingerprint != fingerprint:
        raise GrantIdReused(f"Bulk grant {grant_id!r} exists with a different request.")
    return _view(job)


def create_job(
    session: Session, command: NewBulkGrant, actor: str | None, now: dt.datetime | None = None
) -> tuple[JobView, bool]:
    """Queue a bulk grant for ``run_due``, its targets fixed now (a segment's members as of
    its last refresh; a list's ids once each, in their order). Returns (the job, whether
    this call created it): a `grant_id` already used by the same request returns that job.
    Raises ValidationFailed (nothing or both to grant, no members named, an unknown
    segment) and GrantIdReused (the grant_id names a different request)."""
    now = now or utcnow()
    _check(command)
    fingerprint = command.fingerprint()
    with transaction(session):
        if command.grant_id is not None:
            found = _existing(session, command.grant_id, fingerprint)
            if found is not None:
                return found, False
        segment_id = None if command.segment is None else _segment_id(session, command.segment)
        job = BulkGrant(
            grant_id=command.grant_id,
            fingerprint=fingerprint,
            state=JobState.QUEUED,
            kind=GrantKind.POINTS if command.points is not None else GrantKind.BENEFIT,
            points=command.points,
            benefit=None if command.benefit is None else _benefit_fields(command.benefit),
            reason=command.reason,
            segment_key=command.segment,
            budget_points=command.budget_points,
            total=0,
            done=0,
            granted=0,
            refused=0,
            points_granted=0,
            actor=actor,
            created_at=now,
        )
        try:
            # A savepoint: a concurrent create under the same grant_id, committed first,
            # fails this insert on the unique key; its job is then the answer.
            with transaction(session, savepoint=True):
                session.add(job)
                session.flush()
        except IntegrityError:
            assert command.grant_id is not None
            found = _existing(session, command.grant_id, fingerprint)
            assert found is not None
            return found, False
        job.total = _add_targets(session, job.id, command.member_ids, segment_id)
        session.flush()
        view = _view(job)
        audit.record(
            session,
            actor,
            "bulk_grant.create",
            "bulk_grant",
            str(job.public_id),
            None,
            {
                "grant_id": job.grant_id,
                "kind": job.kind.value,
                "points": job.points,
                "benefit": job.benefit,
                "reason": job.reason,
                "segment": job.segment_key,
                "budget_points": job.budget_points,
                "total": job.total,
            },
            now,
        )
    return view, True


def _add_targets(
    session: Session, job_id: int, member_ids: Sequence[str], segment_id: int | None
) -> int:
    """Insert the job's targets; returns how many."""
    table = BulkGrantTarget.__table__
    pending = {"outcome": Outcome.PENDING.value, "points": 0}
    if segment_id is None:
        unique = list(dict.fromkeys(member_ids))
        session.execute(
            sa.insert(table), [{"job_id": job_id, "external_id": e, **pending} for e in unique]
        )
        return len(unique)
    members = (
        sa.select(
            sa.literal(job_id, table.c.job_id.type),
            Member.external_id,
            sa.literal(Outcome.PENDING.value, sa.String),
            sa.literal(0, table.c.points.type),
        )
        .join(SegmentMember, SegmentMember.member_id == Member.id)
        .where(SegmentMember.segment_id == segment_id)
        .order_by(Member.id)
    )
    session.execute(
        sa.insert(table).from_select(["job_id", "external_id", "outcome", "points"], members)
    )
    return int(
        session.scalar(
            sa.select(sa.func.count()).select_from(table).where(table.c.job_id == job_id)
        )
        or 0
    )


def _job(session: Session, job_id: uuid.UUID) -> BulkGrant:
    job = session.scalar(sa.select(BulkGrant).where(BulkGrant.public_id == job_id))
    if job is None:
        raise BulkGrantNotFound(f"No bulk grant {job_id}.")
    return job


def get_job(session: Session, job_id: uuid.UUID) -> JobView:
    """The job and its progress. Raises BulkGrantNotFound."""
    return _view(_job(session, job_id))


def list_jobs(
    session: Session, limit: int, after: int | None = None
) -> tuple[list[JobView], int | None]:
    """Jobs newest first: (a page of `limit`, the position of the next page or None)."""
    query = sa.select(BulkGrant).order_by(BulkGrant.id.desc()).limit(limit + 1)
    if after is not None:
        query = query.where(BulkGrant.id < after)
    jobs = list(session.scalars(query))
    more = len(jobs) > limit
    jobs = jobs[:limit]
    return [_view(job) for job in jobs], jobs[-1].id if more else None


def report(
    session: Session,
    job_id: uuid.UUID,
    limit: int,
    after: int | None = None,
    outcome: Outcome | None = None,
) -> tuple[list[TargetView], int | None]:
    """The job's members in the order it named them, with what each was given or why not
    (`outcome`: only those): (a page of `limit`, the position of the next page or None).
    Raises BulkGrantNotFound."""
    job = _job(session, job_id)
    query = (
        sa.select(BulkGrantTarget)
        .where(BulkGrantTarget.job_id == job.id)
        .order_by(BulkGrantTarget.id)
        .limit(limit + 1)
    )
    if outcome is not None:
        query = query.where(BulkGrantTarget.outcome == outcome)
    if after is not None:
        query = query.where(BulkGrantTarget.id > after)
    targets = list(session.scalars(query))
    more = len(targets) > limit
    targets = targets[:limit]
    items = [
        TargetView(
            member_id=t.external_id,
            outcome=t.outcome,
            refusal=t.refusal,
            points=t.points,
            transaction_id=t.transaction_id,
            processed_at=t.processed_at,
        )
        for t in targets
    ]
    return items, targets[-1].id if more else None


@dataclass
class RunSummary:
    """What a pass did: jobs it worked on, members granted and refused, points given."""

    jobs: int = 0
    granted: int = 0
    refused: int = 0
    points: int = 0
    batches: int = 0


def run_due(session: Session, now: dt.datetime | None = None, batch_size: int = 500) -> RunSummary:
    """Work every queued or running job, oldest first, in batches of `batch_size` members
    until none is pending, then mark it done. A job whose grant fails for a reason a retry
    will not cure is marked failed (with the error) and the pass goes on; a database error
    propagates, leaving the job to the next pass. Returns what the pass did."""
    now = now or utcnow()
    summary = RunSummary()
    with transaction(session):
        due = list(
            session.scalars(
                sa.select(BulkGrant.id)
                .where(BulkGrant.state.in_([JobState.QUEUED, JobState.RUNNING]))
                .order_by(BulkGrant.id)
            )
        )
    for job_id in due:
        summary.jobs += 1
        try:
            while _run_batch(session, job_id, now, batch_size, summary):
                summary.batches += 1
        except DBAPIError:
            raise
        except Exception as error:
            log.exception("bulk grant %s failed", job_id)
            _fail(session, job_id, error, now)
    return summary


def _fail(session: Session, job_id: int, error: Exception, now: dt.datetime) -> None:
    with transaction(session):
        session.execute(
            sa.update(BulkGrant)
            .where(BulkGrant.id == job_id)
            .values(state=JobState.FAILED, error=str(error)[:500], finished_at=now)
        )


def _run_batch(
    session: Session, job_id: int, now: dt.datetime, size: int, summary: RunSummary
) -> bool:
    """Grant the job's next `size` pending targets in one transaction; when none is left,
    mark the job done. Returns whether there may be more."""
    with transaction(session):
        job = session.execute(
            sa.select(BulkGrant)
            .where(BulkGrant.id == job_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).scalar_one()
        if job.state in (JobState.DONE, JobState.FAILED):
            return False
        targets = list(
            session.scalars(
                sa.select(BulkGrantTarget)
                .where(BulkGrantTarget.job_id == job_id, BulkGrantTarget.outcome == Outcome.PENDING)
                .order_by(BulkGrantTarget.id)
                .limit(size)
                .with_for_update(skip_locked=True)
            )
        )
        if not targets:
            job.state, job.finished_at = JobState.DONE, now
            return False
        if job.state == JobState.QUEUED:
            job.state, job.started_at = JobState.RUNNING, now
        members = {
            member.external_id: member
            for member in session.scalars(
                sa.select(Member).where(Member.external_id.in_([t.external_id for t in targets]))
            )
        }
        # Balances are locked in member order, as every batch of every job takes them: two
        # jobs' batches never wait on each other in a cycle.
        ordered = sorted(
            targets, key=lambda t: members[t.external_id].id if t.external_id in members else 0
        )
        for target in ordered:
            _grant(session, job, target, members.get(target.external_id), now)
            target.processed_at = now
            if target.outcome == Outcome.GRANTED:
                job.granted += 1
                job.points_granted += target.points
                summary.granted += 1
                summary.points += target.points
            else:
                job.refused += 1
                summary.refused += 1
        job.done += len(targets)
        if len(targets) < size:
            # Batches of a job never overlap (its row is locked): nothing is pending.
            job.state, job.finished_at = JobState.DONE, now
            return False
        return True


def _grant(
    session: Session,
    job: BulkGrant,
    target: BulkGrantTarget,
    member: Member | None,
    now: dt.datetime,
) -> None:
    """Grant the job's points or benefit to one target's member, or record why not."""
    if member is None:
        target.outcome, target.refusal = Outcome.REFUSED, Refusal.UNKNOWN_MEMBER
        return
    target.member_id = member.id
    if member.status == MemberStatus.CLOSED:
        target.outcome, target.refusal = Outcome.REFUSED, Refusal.CLOSED_MEMBER
        return
    about = {"bulk_grant": str(job.public_id)}
    if job.kind == GrantKind.BENEFIT:
        assert job.benefit is not None
        days = job.benefit.get("days")
        command = GrantBenefit(
            code=job.benefit["code"],
            params=dict(job.benefit.get("params") or {}),
            reason=job.reason,
            starts_at=now,
            ends_at=now + dt.timedelta(days=days) if days else None,
        )
        grant_to_member(session, member, command, job.actor, now, about=about)
        target.outcome = Outcome.GRANTED
        return
    assert job.points is not None
    if job.budget_points is not None and job.points_granted + job.points > job.budget_points:
        target.outcome, target.refusal = Outcome.REFUSED, Refusal.OVER_BUDGET
        return
    try:
        txn = adjust_member(session, member, job.points, job.reason, job.actor, now, about=about)
    except MemberInactive:
        # Closed since the batch read it: seen under the balance's lock, nothing written.
        target.outcome, target.refusal = Outcome.REFUSED, Refusal.CLOSED_MEMBER
        return
    target.outcome, target.points, target.transaction_id = (
        Outcome.GRANTED,
        job.points,
        txn.public_id,
    )
