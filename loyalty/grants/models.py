"""A bulk grant is a job (``bulk_grants``) and one target row per member it names
(``bulk_grant_targets``). The target's unique key (job, external id) and its outcome, set in
the same transaction as the member's grant, are what make each member granted at most once,
whichever worker runs the batch and however often it is retried."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from loyalty.db import Base, BigIntPK, StrEnumType, utcnow


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class GrantKind(enum.StrEnum):
    POINTS = "points"
    BENEFIT = "benefit"


class Outcome(enum.StrEnum):
    PENDING = "pending"
    GRANTED = "granted"
    REFUSED = "refused"


class Refusal(enum.StrEnum):
    """Why a target was given nothing."""

    UNKNOWN_MEMBER = "unknown_member"  # no member has the external id
    CLOSED_MEMBER = "closed_member"
    OVER_BUDGET = "over_budget"  # the job's budget had less left than the grant


class BulkGrant(Base):
    __tablename__ = "bulk_grants"
    # The worker asks "which jobs have work left": state first.
    __table_args__ = (sa.Index("ix_bulk_grants_state_id", "state", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    public_id: Mapped[uuid.UUID] = mapped_column(unique=True, default=uuid.uuid4)
    # The client's own id for the job: a retry under it returns the same job.
    grant_id: Mapped[str | None] = mapped_column(sa.String(100), unique=True)
    # A hash of the validated request, to tell a retry from another job reusing grant_id.
    fingerprint: Mapped[str] = mapped_column(sa.String(64))
    state: Mapped[JobState] = mapped_column(StrEnumType(JobState))
    kind: Mapped[GrantKind] = mapped_column(StrEnumType(GrantKind))
    points: Mapped[int | None] = mapped_column(sa.BigInteger)
    # {"code", "params", "days"} for a benefit grant.
    benefit: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    reason: Mapped[str] = mapped_column(sa.String(500))
    segment_key: Mapped[str | None] = mapped_column(sa.String(64))
    # The most points the job may give in all (None: no limit).
    budget_points: Mapped[int | None] = mapped_column(sa.BigInteger)
    total: Mapped[int] = mapped_column(sa.Integer)
    done: Mapped[int] = mapped_column(sa.Integer, default=0)
    granted: Mapped[int] = mapped_column(sa.Integer, default=0)
    refused: Mapped[int] = mapped_column(sa.Integer, default=0)
    points_granted: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    error: Mapped[str | None] = mapped_column(sa.String(500))
    actor: Mapped[str | None] = mapped_column(sa.String(100))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]


class BulkGrantTarget(Base):
    """One member a job names, in the order the job named them, and what it gave them."""

    __tablename__ = "bulk_grant_targets"
    __table_args__ = (
        sa.UniqueConstraint("job_id", "external_id"),
        # A batch claims a job's pending targets in order: job, outcome, then position.
        sa.Index("ix_bulk_grant_targets_job_id_outcome_id", "job_id", "outcome", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    job_id: Mapped[int] = mapped_column(sa.ForeignKey("bulk_grants.id"))
    external_id: Mapped[str] = mapped_column(sa.String(128))
    member_id: Mapped[int | None] = mapped_column(sa.ForeignKey("members.id"))
    outcome: Mapped[Outcome] = mapped_column(StrEnumType(Outcome), default=Outcome.PENDING)
    refusal: Mapped[Refusal | None] = mapped_column(StrEnumType(Refusal))
    points: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    # The grant's ledger transaction (points) as the member's history names it.
    transaction_id: Mapped[uuid.UUID | None]
    processed_at: Mapped[dt.datetime | None]
