"""An experiment (``experiments``), its ordered arms (``experiment_arms``) and who was exposed
to which arm (``experiment_assignments``).

An assignment is recorded at a member's first exposure; its unique key (experiment, member)
is what makes the first exposure win when two requests expose the same member at once: the
second insert conflicts and the first one's arm, time and source stand. The arm itself is a pure
function of the experiment's key and the member (``assignment``), so both would have agreed.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from loyalty.db import Base, BigIntPK, StrEnumType, utcnow


class ExperimentStatus(enum.StrEnum):
    DRAFT = "draft"
    RUNNING = "running"
    STOPPED = "stopped"


class EndReason(enum.StrEnum):
    """Why a running experiment stopped, as its experiment.ended event says."""

    STOPPED = "stopped"  # by an admin
    WINDOW_ENDED = "window_ended"  # its ends_at passed (the jobs end it)


class ExposureSource(enum.StrEnum):
    """Where a member first met the experiment, where it mattered."""

    QUOTE = "quote"
    ORDER = "order"
    EVENT = "event"
    AUTOMATION = "automation"


class Experiment(Base):
    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    public_id: Mapped[uuid.UUID] = mapped_column(unique=True, default=uuid.uuid4)
    key: Mapped[str] = mapped_column(sa.String(64), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    hypothesis: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[ExperimentStatus] = mapped_column(StrEnumType(ExperimentStatus), index=True)
    # {"kind": "rules", "rule_ids": [...]} | {"kind": "automation", "automation_id": ...}
    # | {"kind": "benefit", "code": ...}
    target: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    # {"segments": [...], "tiers": [...], "new_members_only": bool}
    eligibility: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    starts_at: Mapped[dt.datetime]
    ends_at: Mapped[dt.datetime]
    # A decimal string in [0, 1]: see definitions' docstring for why not a number.
    margin: Mapped[str] = mapped_column(sa.String(16))
    started_at: Mapped[dt.datetime | None]
    stopped_at: Mapped[dt.datetime | None]
    # When its exposures were found not to fit its weights (a sample-ratio mismatch): once.
    flagged_at: Mapped[dt.datetime | None]
    # The arm (its key) whose treatment became everyone's after it stopped, and when.
    promoted_arm: Mapped[str | None] = mapped_column(sa.String(32))
    promoted_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    arms: Mapped[list[ExperimentArm]] = relationship(
        order_by="ExperimentArm.position", cascade="all, delete-orphan", lazy="selectin"
    )


class ExperimentArm(Base):
    __tablename__ = "experiment_arms"
    __table_args__ = (sa.UniqueConstraint("experiment_id", "key"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(sa.ForeignKey("experiments.id"))
    # The arms' order is part of the assignment (see ``assignment``): kept, never implied.
    position: Mapped[int]
    key: Mapped[str] = mapped_column(sa.String(32))
    weight: Mapped[int]
    control: Mapped[bool]
    # A rules target: the target's rules that apply to the arm's members. Otherwise None.
    rule_ids: Mapped[list[str] | None] = mapped_column(sa.JSON)
    # An automation or benefit target: whether it applies to the arm's members. Otherwise None.
    applies: Mapped[bool | None]


class ExperimentAssignment(Base):
    """A member's arm in an experiment, recorded at the first exposure."""

    __tablename__ = "experiment_assignments"
    # The first exposure wins: see the module's docstring.
    __table_args__ = (sa.UniqueConstraint("experiment_id", "member_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(sa.ForeignKey("experiments.id"))
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id"))
    arm_id: Mapped[int] = mapped_column(sa.ForeignKey("experiment_arms.id"))
    first_exposed_at: Mapped[dt.datetime]
    exposure_source: Mapped[ExposureSource] = mapped_column(StrEnumType(ExposureSource))
