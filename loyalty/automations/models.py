"""Automations are versioned like earning rules: an ``automations`` row points at its current
version, every change adds an ``automation_versions`` row. ``automation_firings`` records
each time one fired for a member; its unique key (automation, member, window start) is what
makes a firing happen once, whoever evaluates it and however often."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from loyalty.db import Base, BigIntPK, utcnow


class TriggerKind(enum.StrEnum):
    ENROLLED = "enrolled"
    INACTIVE = "inactive"
    POINTS_EXPIRING = "points_expiring"
    BIRTHDAY = "birthday"
    REPURCHASE_DUE = "repurchase_due"
    SEGMENT_ENTERED = "segment_entered"
    SEGMENT_LEFT = "segment_left"
    REWARD_AFFORDABLE = "reward_affordable"
    TIER_AT_RISK = "tier_at_risk"
    CART_ABANDONED = "cart_abandoned"


class ActionType(enum.StrEnum):
    WEBHOOK = "webhook"
    GRANT_POINTS = "grant_points"
    GRANT_COUPON = "grant_coupon"
    GRANT_BENEFIT = "grant_benefit"


class Withheld(enum.StrEnum):
    """Why a firing's grant gave the member nothing (in automation.fired's `withheld`)."""

    AUTOMATION_BUDGET = "automation_budget"  # the automation's budget has too little left
    RULE_UNAVAILABLE = "rule_unavailable"  # grant_points: its rule is no longer active
    RULE_LIMIT = "rule_limit"  # grant_points: the rule's conditions, caps or budget
    REWARD_UNAVAILABLE = "reward_unavailable"  # grant_coupon: inactive, or outside its window
    OUT_OF_STOCK = "out_of_stock"  # grant_coupon: no unit of stock or code left


class Automation(Base):
    __tablename__ = "automations"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    public_id: Mapped[uuid.UUID] = mapped_column(unique=True, default=uuid.uuid4)
    current_version: Mapped[int]
    active: Mapped[bool] = mapped_column(index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    current: Mapped[AutomationVersion] = relationship(
        primaryjoin="and_(AutomationVersion.automation_id == Automation.id, "
        "AutomationVersion.version == Automation.current_version)",
        viewonly=True,
        lazy="joined",
    )


class AutomationVersion(Base):
    __tablename__ = "automation_versions"
    __table_args__ = (sa.UniqueConstraint("automation_id", "version"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    automation_id: Mapped[int] = mapped_column(sa.ForeignKey("automations.id"))
    version: Mapped[int]
    name: Mapped[str] = mapped_column(sa.String(200))
    active: Mapped[bool]
    # {"kind": a TriggerKind value, ...its parameters}
    trigger: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    # {"tiers": [...], "segments": [...], "predicted_value": {"min", "max"}, "metadata": {}}
    conditions: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    # [{"type": "webhook"}, {"type": "grant_points", "rule_id": "...", "points": N | null},
    #  {"type": "grant_coupon", "reward_id": "...", "expires_in_days": N},
    #  {"type": "grant_benefit", "code": "...", "params": {}, "days": N | null}]
    actions: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON)
    # What its grants may give across all members per period, in points (coupons at their
    # reward's cost): {"period", "points"} or {"period", "amount"}, as a rule's budget.
    budget: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    # At most one firing per member within this many days, whatever the dedup key (None: no
    # limit beyond the key).
    dedup_days: Mapped[int | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    actor: Mapped[str | None] = mapped_column(sa.String(100))


class AutomationFiring(Base):
    """One automation fired for one member: the dedup key is (automation, member,
    window_start), see the README's "Automations" for each trigger's window start."""

    __tablename__ = "automation_firings"
    __table_args__ = (
        sa.UniqueConstraint("automation_id", "member_id", "window_start"),
        # The dedup window asks "did it fire for this member since": member second.
        sa.Index(
            "ix_automation_firings_automation_id_member_id_fired_at",
            "automation_id",
            "member_id",
            "fired_at",
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    public_id: Mapped[uuid.UUID] = mapped_column(unique=True, default=uuid.uuid4)
    automation_id: Mapped[int] = mapped_column(sa.ForeignKey("automations.id"))
    version: Mapped[int]
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id"))
    window_start: Mapped[dt.datetime]
    fired_at: Mapped[dt.datetime]
    # The trigger's specifics (days inactive, points expiring and when, ...), as sent.
    details: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    points_granted: Mapped[int] = mapped_column(sa.BigInteger, default=0)


class AutomationBudgetUsage(Base):
    """How many points one automation's grants gave in one budget period (coupons counted at
    their reward's cost): the counter each batch of its firings updates under the row's lock,
    in the batch's transaction (``rules.budgets`` keeps the rules' alike)."""

    __tablename__ = "automation_budget_usage"
    __table_args__ = (
        sa.UniqueConstraint("automation_id", "period", "period_start"),
        sa.CheckConstraint("used >= 0", name="used"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    automation_id: Mapped[int] = mapped_column(sa.ForeignKey("automations.id"))
    period: Mapped[str] = mapped_column(sa.String(16))  # a policy.BudgetPeriod value
    period_start: Mapped[dt.datetime]
    used: Mapped[int] = mapped_column(sa.BigInteger)
    # When the period's budget ran out (and automation.budget_exhausted was emitted).
    exhausted_at: Mapped[dt.datetime | None]
