"""Earning rules are versioned: a rule row points at its current version, every change adds a
version row, and the points a rule awarded record the version that awarded them."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from loyalty.db import Base, BigIntPK, StrEnumType, utcnow


class RuleKind(enum.StrEnum):
    SPEND = "spend"
    MULTIPLIER = "multiplier"
    BONUS = "bonus"
    EVENT = "event"


class EarningRule(Base):
    __tablename__ = "earning_rules"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    public_id: Mapped[uuid.UUID] = mapped_column(unique=True, default=uuid.uuid4)
    kind: Mapped[RuleKind] = mapped_column(StrEnumType(RuleKind))
    current_version: Mapped[int]
    active: Mapped[bool] = mapped_column(index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    current: Mapped[RuleVersion] = relationship(
        primaryjoin="and_(RuleVersion.rule_id == EarningRule.id, "
        "RuleVersion.version == EarningRule.current_version)",
        viewonly=True,
        lazy="joined",
    )


class RuleVersion(Base):
    __tablename__ = "earning_rule_versions"
    __table_args__ = (sa.UniqueConstraint("rule_id", "version"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    rule_id: Mapped[int] = mapped_column(sa.ForeignKey("earning_rules.id"))
    version: Mapped[int]
    name: Mapped[str] = mapped_column(sa.String(200))
    active: Mapped[bool]
    priority: Mapped[int]
    starts_at: Mapped[dt.datetime | None]
    ends_at: Mapped[dt.datetime | None]
    # Kind-specific settings: points, per_amount, factor ("1.5"), event_type.
    config: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    conditions: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    caps: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    # A total across all members per period: {"period", "points"} or {"period", "amount"}.
    budget: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    actor: Mapped[str | None] = mapped_column(sa.String(100))


class RuleAward(Base):
    """Points one rule version gave one member for one order or event: the source of
    breakdowns and of per-member period caps."""

    __tablename__ = "rule_awards"
    __table_args__ = (
        sa.Index(
            "ix_rule_awards_member_id_rule_id_awarded_at", "member_id", "rule_id", "awarded_at"
        ),
        # One rule's awards for its campaign report, read from the index alone on PostgreSQL.
        sa.Index(
            "ix_rule_awards_rule_id_member_id_awarded_at",
            "rule_id",
            "member_id",
            "awarded_at",
            postgresql_include=["rule_version", "points", "source"],
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id"))
    rule_id: Mapped[int] = mapped_column(sa.ForeignKey("earning_rules.id"))
    rule_version: Mapped[int]
    points: Mapped[int] = mapped_column(sa.BigInteger)
    source: Mapped[str] = mapped_column(sa.String(220))
    awarded_at: Mapped[dt.datetime]
    # The budget period these points were counted in (a refund gives them back to it).
    budget_usage_id: Mapped[int | None] = mapped_column(sa.ForeignKey("rule_budget_usage.id"))


class RuleBudgetUsage(Base):
    """How many points one rule awarded in one budget period: the counter every earn
    through a budgeted rule updates (under its row lock) in the earn's own transaction."""

    __tablename__ = "rule_budget_usage"
    __table_args__ = (
        sa.UniqueConstraint("rule_id", "period", "period_start"),
        sa.CheckConstraint("used >= 0", name="used"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    rule_id: Mapped[int] = mapped_column(sa.ForeignKey("earning_rules.id"))
    period: Mapped[str] = mapped_column(sa.String(16))  # a policy.BudgetPeriod value
    period_start: Mapped[dt.datetime]
    used: Mapped[int] = mapped_column(sa.BigInteger)
    # When an award used up the period's budget (and rule.budget_exhausted was emitted).
    exhausted_at: Mapped[dt.datetime | None]
