"""The refresh's figures step: every member's purchases, revenue, points and the
lifetime-value model's inputs as of a moment, in one set-based statement
(``figures_select``), inserted into ``member_insight`` by ``replace_rows`` (step 1 of
``loyalty.insight.services.refresh``) and read as of a split by the model's evaluation
(``loyalty.insight.evaluation``).

The same SQLAlchemy Core statement runs on PostgreSQL and SQLite; only the day of a
timestamp in the program's time zone is spelled per dialect (``loyalty.db.day_number``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from loyalty.days import EPOCH, UTC, today
from loyalty.db import day_number
from loyalty.insight.models import MemberInsight
from loyalty.ledger.models import Account, LedgerEntry, LedgerTransaction, TransactionKind
from loyalty.members.models import Member
from loyalty.orders.models import Order, Refund

# The member_insight columns the figures step fills, in the order of figures_select.
FIGURE_COLUMNS = (
    "member_id",
    "as_of",
    "first_order_at",
    "last_order_at",
    "orders",
    "purchase_days",
    "net_revenue",
    "currency",
    "average_order_value",
    "days_since_last_order",
    "points_earned",
    "points_redeemed",
    "frequency",
    "recency_days",
    "t_days",
    "monetary_value",
)


def _sum(value: Any) -> sa.Cast[int]:
    # sum() of a bigint is numeric on PostgreSQL: back to integers for integer division.
    return sa.cast(sa.func.sum(value), sa.BigInteger)


def _rounded_mean(total: Any, count: Any) -> Any:
    """total / count rounded half up, in integers (both non-negative, count above zero)."""
    return (2 * total + count) // (2 * count)


def figures_select(as_of: dt.datetime, currency: str, tz: dt.tzinfo = UTC) -> sa.Select[Any]:
    """Every member's figures as of `as_of`, one row per member, its columns labelled with
    the names of ``member_insight``'s (FIGURE_COLUMNS, in that order; no scores, segment or
    predictions), days counted in the program's zone `tz`. The refresh inserts it; the
    model's evaluation reads it as of a split."""
    as_of_day = (today(as_of, tz) - EPOCH).days
    refunded = (
        sa.select(Refund.order_pk, _sum(Refund.amount).label("amount"))
        .where(Refund.created_at <= as_of)
        .group_by(Refund.order_pk)
        .cte("refunded")
    )
    net = Order.total - sa.func.coalesce(refunded.c.amount, 0)
    purchases = (
        sa.select(
            Order.member_id,
            Order.placed_at,
            day_number(Order.placed_at, tz).label("day"),
            net.label("net"),
        )
        .select_from(Order)
        .outerjoin(refunded, refunded.c.order_pk == Order.id)
        .where(Order.placed_at <= as_of, Order.currency == currency, net > 0)
        .cte("purchases")
    )
    days = (
        sa.select(
            purchases.c.member_id,
            purchases.c.day,
            _sum(purchases.c.net).label("net"),
            sa.func.count().label("orders"),
            sa.func.min(purchases.c.placed_at).label("first_at"),
            sa.func.max(purchases.c.placed_at).label("last_at"),
            sa.func.row_number()
            .over(partition_by=purchases.c.member_id, order_by=purchases.c.day)
            .label("nth"),
        )
        .group_by(purchases.c.member_id, purchases.c.day)
        .cte("days")
    )
    buyers = (
        sa.select(
            days.c.member_id,
            sa.func.min(days.c.first_at).label("first_at"),
            sa.func.max(days.c.last_at).label("last_at"),
            _sum(days.c.orders).label("orders"),
            sa.func.count().label("days"),
            _sum(days.c.net).label("net"),
            _sum(sa.case((days.c.nth > 1, days.c.net), else_=0)).label("repeat_net"),
            sa.func.min(days.c.day).label("first_day"),
            sa.func.max(days.c.day).label("last_day"),
        )
        .group_by(days.c.member_id)
        .cte("buyers")
    )
    issued = sa.and_(
        LedgerEntry.account == Account.ISSUED.value,
        LedgerTransaction.kind.in_([TransactionKind.EARN.value, TransactionKind.REVERSE.value]),
    )
    points = (
        sa.select(
            LedgerEntry.member_id,
            _sum(sa.case((issued, -LedgerEntry.amount), else_=0)).label("earned"),
            _sum(
                sa.case(
                    (LedgerEntry.account == Account.REDEEMED.value, LedgerEntry.amount), else_=0
                )
            ).label("redeemed"),
        )
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(
            LedgerEntry.account.in_([Account.ISSUED.value, Account.REDEEMED.value]),
            LedgerTransaction.effective_at <= as_of,
        )
        .group_by(LedgerEntry.member_id)
        .cte("points")
    )
    bought = buyers.c.member_id.is_not(None)
    repeat_days = buyers.c.days - 1
    values = (
        Member.id,
        sa.literal(as_of, MemberInsight.as_of.type),
        buyers.c.first_at,
        buyers.c.last_at,
        sa.func.coalesce(buyers.c.orders, 0),
        sa.func.coalesce(buyers.c.days, 0),
        sa.func.coalesce(buyers.c.net, 0),
        sa.literal(currency, sa.String),
        sa.case((bought, _rounded_mean(buyers.c.net, buyers.c.orders))),
        sa.case((bought, as_of_day - buyers.c.last_day)),
        sa.func.coalesce(points.c.earned, 0),
        sa.func.coalesce(points.c.redeemed, 0),
        sa.case((bought, repeat_days)),
        sa.case((bought, buyers.c.last_day - buyers.c.first_day)),
        sa.case((bought, as_of_day - buyers.c.first_day)),
        sa.case((repeat_days > 0, _rounded_mean(buyers.c.repeat_net, repeat_days))),
    )
    labelled: list[Any] = [
        value.label(name) for value, name in zip(values, FIGURE_COLUMNS, strict=True)
    ]
    return (
        sa.select(*labelled)
        .select_from(Member)
        .outerjoin(buyers, buyers.c.member_id == Member.id)
        .outerjoin(points, points.c.member_id == Member.id)
    )


def replace_rows(session: Session, as_of: dt.datetime, currency: str, tz: dt.tzinfo = UTC) -> int:
    """Replace every member's row with their figures as of `as_of` (days of the zone `tz`);
    the number of rows."""
    session.execute(sa.delete(MemberInsight))
    session.execute(
        sa.insert(MemberInsight).from_select(
            list(FIGURE_COLUMNS), figures_select(as_of, currency, tz)
        )
    )
    # (pysqlite reports no rowcount for an INSERT that starts with its CTEs.)
    return int(session.scalar(sa.select(sa.func.count()).select_from(MemberInsight)) or 0)
