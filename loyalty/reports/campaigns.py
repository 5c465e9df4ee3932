"""Return on each campaign: what an earning rule or an automation reached and cost, and the
orders its members placed soon after (see the README's "Return on campaigns").

A campaign is a set of **touches**: one row per time it reached a member (an award of a rule
version; a firing of an automation version). Orders are attributed to touches by last touch
within a window of N days; the figures are sums over sets, computed by the database in a few
statements whatever the number of members (never a Python loop over rows).

This is correlation: members who were touched and then bought might have bought anyway. The
experiments issue adds holdout groups for causal uplift.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.errors import ValidationFailed
from loyalty.orders.models import Order
from loyalty.program.services import get_settings
from loyalty.rules.exceptions import RuleNotFound
from loyalty.rules.models import EarningRule, RuleAward, RuleVersion

MIN_WINDOW_DAYS = 1
MAX_WINDOW_DAYS = 365
DEFAULT_WINDOW_DAYS = 7
# The prefix of the rule_awards source of an award earned by an order (order:<order_id>).
ORDER_SOURCE = "order:"


class CampaignKind(enum.StrEnum):
    RULE = "rule"
    AUTOMATION = "automation"


def attribution_rule(kind: CampaignKind, window_days: int) -> str:
    """The attribution rule, in words, as the report states it."""
    touch = (
        "the rule awarded the member points"
        if kind is CampaignKind.RULE
        else "the automation fired for the member"
    )
    own = (
        " The order that earned an award is not counted as that award's return (it caused it)."
        if kind is CampaignKind.RULE
        else ""
    )
    return (
        f"A touch is each time {touch}. An order counts for a touch when the touched member "
        f"placed it after the touch and at most {window_days} days ({window_days * 24} hours) "
        "after it; each order counts once for this campaign, for the latest touch before it "
        f"(last touch).{own} Revenue is the order's total (lines less discount) less its "
        "refunds to date; a fully refunded order counts for nothing. This is correlation, "
        "not causal uplift."
    )


@dataclass(frozen=True, slots=True)
class Revenue:
    """Attributed orders in one currency: how many, their totals, refunds and what is left."""

    currency: str
    orders: int
    gross: int
    refunded: int

    @property
    def net(self) -> int:
        return self.gross - self.refunded


@dataclass(frozen=True, slots=True)
class Figures:
    """What a campaign (or one version of it) reached, cost and was followed by."""

    members_reached: int
    touches: int
    points_issued: int
    cost: int  # the points' value at the program's point value, minor units, rounded down
    orders_attributed: int
    revenue: tuple[Revenue, ...]  # one per currency, by currency


@dataclass(frozen=True, slots=True)
class VersionFigures:
    version: int
    name: str
    created_at: dt.datetime
    figures: Figures


@dataclass(frozen=True, slots=True)
class CampaignReport:
    """The return on one rule or automation, per version (newest first) and in total."""

    kind: CampaignKind
    campaign_id: uuid.UUID  # the rule's or automation's public id
    name: str  # at its current version
    window_days: int
    attribution: str
    currency: str  # of every cost
    point_value_points: int
    point_value_amount: int
    versions: tuple[VersionFigures, ...]
    total: Figures


@dataclass(frozen=True, slots=True)
class Touches:
    """A campaign's touches as a subquery with the columns member_id, touched_at, version
    and points, and source (the rule_awards source, so an order never counts for the award
    it earned) when `from_orders`."""

    rows: sa.Subquery
    from_orders: bool


def check_window(window_days: int) -> None:
    """Raises ValidationFailed for a window outside 1..365 days."""
    if not MIN_WINDOW_DAYS <= window_days <= MAX_WINDOW_DAYS:
        raise ValidationFailed(
            {"window_days": [f"Must be between {MIN_WINDOW_DAYS} and {MAX_WINDOW_DAYS}."]}
        )


def rule_report(session: Session, rule_id: uuid.UUID, window_days: int) -> CampaignReport:
    """The return on an earning rule, per version and in total: a touch is one award (of an
    order, an event or an automation's grant). Raises RuleNotFound, ValidationFailed for a
    window outside 1..365 days."""
    check_window(window_days)
    rule = session.execute(
        sa.select(EarningRule.id, RuleVersion.name)
        .join(
            RuleVersion,
            sa.and_(
                RuleVersion.rule_id == EarningRule.id,
                RuleVersion.version == EarningRule.current_version,
            ),
        )
        .where(EarningRule.public_id == rule_id)
    ).one_or_none()
    if rule is None:
        raise RuleNotFound(f"No rule with id {rule_id}.")
    versions = session.execute(
        sa.select(RuleVersion.version, RuleVersion.name, RuleVersion.created_at)
        .where(RuleVersion.rule_id == rule.id)
        .order_by(RuleVersion.version.desc())
    ).all()
    touches = (
        sa.select(
            RuleAward.member_id,
            RuleAward.awarded_at.label("touched_at"),
            RuleAward.rule_version.label("version"),
            RuleAward.points,
            RuleAward.source,
        )
        .where(RuleAward.rule_id == rule.id)
        .subquery("touches")
    )
    return campaign_report(
        session,
        kind=CampaignKind.RULE,
        campaign_id=rule_id,
        name=rule.name,
        versions=[(v.version, v.name, v.created_at) for v in versions],
        touches=Touches(touches, from_orders=True),
        window_days=window_days,
    )


def campaign_report(
    session: Session,
    *,
    kind: CampaignKind,
    campaign_id: uuid.UUID,
    name: str,
    versions: Sequence[tuple[int, str, dt.datetime]],
    touches: Touches,
    window_days: int,
) -> CampaignReport:
    """The report over `touches`, for every one of `versions` (version, name, created_at;
    newest first) and in total. Raises ValidationFailed for a window outside 1..365 days."""
    check_window(window_days)
    settings = get_settings(session)
    t = touches.rows

    reach: dict[int, tuple[int, int, int]] = {
        version: (int(members), int(count), int(points or 0))
        for version, members, count, points in session.execute(
            sa.select(
                t.c.version,
                sa.func.count(sa.distinct(t.c.member_id)),
                sa.func.count(),
                sa.func.sum(t.c.points),
            ).group_by(t.c.version)
        )
    }
    # Distinct over the whole campaign: a member touched by two versions is reached once.
    members_total = int(session.scalar(sa.select(sa.func.count(sa.distinct(t.c.member_id)))) or 0)

    revenue: dict[int, list[Revenue]] = defaultdict(list)
    for version, currency, orders, gross, refunded in session.execute(
        _attributed(session, touches, window_days)
    ):
        revenue[version].append(Revenue(currency, int(orders), int(gross), int(refunded)))

    def figures(members: int, count: int, points: int, found: Sequence[Revenue]) -> Figures:
        return Figures(
            members_reached=members,
            touches=count,
            points_issued=points,
            cost=settings.points_value(points),
            orders_attributed=sum(r.orders for r in found),
            revenue=tuple(sorted(found, key=lambda r: r.currency)),
        )

    by_version = tuple(
        VersionFigures(
            version=version,
            name=version_name,
            created_at=created_at,
            figures=figures(*reach.get(version, (0, 0, 0)), revenue.get(version, [])),
        )
        for version, version_name, created_at in versions
    )
    totals: dict[str, Revenue] = {}
    for found in revenue.values():
        for r in found:
            seen = totals.get(r.currency, Revenue(r.currency, 0, 0, 0))
            totals[r.currency] = Revenue(
                r.currency, seen.orders + r.orders, seen.gross + r.gross, seen.refunded + r.refunded
            )
    total = figures(
        members_total,
        sum(count for _, count, _ in reach.values()),
        sum(points for _, _, points in reach.values()),
        list(totals.values()),
    )
    return CampaignReport(
        kind=kind,
        campaign_id=campaign_id,
        name=name,
        window_days=window_days,
        attribution=attribution_rule(kind, window_days),
        currency=settings.currency,
        point_value_points=settings.point_value_points,
        point_value_amount=settings.point_value_amount,
        versions=by_version,
        total=total,
    )


def _attributed(session: Session, touches: Touches, window_days: int) -> sa.Select[Any]:
    """Orders attributed per (version, currency): each order of a touched member placed in
    (touch, touch + window] is paired with every such touch, and only its latest touch keeps
    it. Looking for touches inside the window only is the same as taking the latest touch
    before the order and checking it is within the window: an earlier one is further away."""
    t = touches.rows
    order = Order.__table__.c
    conditions = [
        order.member_id == t.c.member_id,
        order.placed_at > t.c.touched_at,
        order.placed_at <= _plus_days(session, t.c.touched_at, window_days),
    ]
    kept = [order.total > order.refunded_amount]
    if touches.from_orders:
        kept.append(
            sa.or_(t.c.source.is_(None), t.c.source != sa.literal(ORDER_SOURCE) + order.order_id)
        )
    pairs = (
        sa.select(
            t.c.version,
            order.currency,
            order.total,
            order.refunded_amount,
            sa.func.row_number()
            .over(partition_by=order.id, order_by=(t.c.touched_at.desc(), t.c.version.desc()))
            .label("rank"),
        )
        .select_from(t.join(Order.__table__, sa.and_(*conditions)))
        .where(*kept)
        .subquery("pairs")
    )
    return (
        sa.select(
            pairs.c.version,
            pairs.c.currency,
            sa.func.count(),
            sa.func.sum(pairs.c.total),
            sa.func.sum(pairs.c.refunded_amount),
        )
        .where(pairs.c.rank == 1)
        .group_by(pairs.c.version, pairs.c.currency)
    )


def _plus_days(
    session: Session, moment: sa.ColumnElement[dt.datetime], days: int
) -> sa.ColumnElement[dt.datetime]:
    """`moment` plus `days` whole days of 24 hours, in SQL.

    PostgreSQL: an interval in hours, so no session time zone's daylight saving shortens a
    day. SQLite stores UTC moments as 'YYYY-MM-DD HH:MM:SS.ffffff' text: the date arithmetic
    keeps the seconds and the microseconds are put back, so the result compares as text with
    the stored moments exactly (an order at exactly N days is in)."""
    hours = int(days) * 24
    if session.get_bind().dialect.name == "postgresql":
        return moment + sa.literal_column(f"INTERVAL '{hours} hours'")
    shifted = sa.func.strftime("%Y-%m-%d %H:%M:%S", moment, f"+{hours} hours")
    return shifted.op("||")(sa.func.substr(moment, 20))
