"""Member insight tables, written only by ``loyalty.insight.services.refresh``.

- ``insight_refreshes``: one row per refresh that committed: the moment it describes
  (``as_of``), when it ran, how many members and buyers it saw, where the time went.
- ``insight_models``: one row per refresh, the lifetime-value model step's outcome: fitted
  (its parameters, customers, log-likelihood) or not, and why.
- ``member_insight``: one row per member, replaced by every refresh: the figures as of the
  refresh's ``as_of``, the RFM scores and segment (buyers only), the lifetime-value model's
  inputs and its predictions (NULL until a model is fitted).

Money is in minor units of the program's currency (integers); the model's outputs are floats
by nature, except the predicted value, stored in minor units too.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from loyalty.db import Base, BigIntPK, StrEnumType, utcnow
from loyalty.insight.segments import Segment


class ModelStatus(enum.StrEnum):
    FITTED = "fitted"
    NOT_FITTED = "not_fitted"


class InsightRefresh(Base):
    __tablename__ = "insight_refreshes"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    # The moment the figures describe: orders placed and refunds and points booked until then.
    as_of: Mapped[dt.datetime] = mapped_column(index=True)
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime]
    members: Mapped[int] = mapped_column(sa.BigInteger)
    buyers: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    # Seconds per step: {"figures": 1.2, "scores": 0.4, "model": 0.0, "segments": 0.2}.
    steps: Mapped[dict[str, float]] = mapped_column(sa.JSON, default=dict)


class InsightModel(Base):
    """The lifetime-value model of one refresh: BG/NBD (purchases, probability alive) and
    Gamma-Gamma (value per purchase), fitted on the refresh's buyers."""

    __tablename__ = "insight_models"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    refresh_id: Mapped[int] = mapped_column(sa.ForeignKey("insight_refreshes.id"), unique=True)
    as_of: Mapped[dt.datetime]
    status: Mapped[ModelStatus] = mapped_column(StrEnumType(ModelStatus))
    # Why it was not fitted, or anything worth knowing about the fit.
    detail: Mapped[str | None] = mapped_column(sa.String(500))
    fitted_at: Mapped[dt.datetime | None]
    time_unit: Mapped[str] = mapped_column(sa.String(16), default="days")
    horizon_days: Mapped[int | None]
    # The buyers the model was fitted on.
    customers: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    log_likelihood: Mapped[float | None] = mapped_column(sa.Float)
    # {"bg_nbd": {"r": ..., "alpha": ..., "a": ..., "b": ...}, "gamma_gamma": {...}, ...}
    params: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)


class MemberInsight(Base):
    __tablename__ = "member_insight"

    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id"), primary_key=True)
    as_of: Mapped[dt.datetime]
    # Purchases: orders placed by as_of whose total net of the refunds made by as_of is above
    # zero (a fully refunded order is no purchase; a partly refunded one counts for the rest).
    first_order_at: Mapped[dt.datetime | None]
    last_order_at: Mapped[dt.datetime | None]
    orders: Mapped[int] = mapped_column(sa.Integer)
    # Distinct UTC days with a purchase: two orders on one day are one purchase day.
    purchase_days: Mapped[int] = mapped_column(sa.Integer)
    net_revenue: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    # net_revenue / orders, rounded half up; NULL without orders.
    average_order_value: Mapped[int | None] = mapped_column(sa.BigInteger)
    # UTC days from the last purchase's day to as_of's day.
    days_since_last_order: Mapped[int | None] = mapped_column(sa.Integer, index=True)
    # Earned from orders and events net of refund reversals; redeemed net of restorations.
    points_earned: Mapped[int] = mapped_column(sa.BigInteger)
    points_redeemed: Mapped[int] = mapped_column(sa.BigInteger)
    recency_score: Mapped[int | None] = mapped_column(sa.SmallInteger)
    frequency_score: Mapped[int | None] = mapped_column(sa.SmallInteger)
    monetary_score: Mapped[int | None] = mapped_column(sa.SmallInteger)
    # Indexed, as days_since_last_order and predicted_value: the admin member list filters on
    # them (migration 0016).
    segment: Mapped[Segment | None] = mapped_column(StrEnumType(Segment, 32), index=True)
    # The lifetime-value model's inputs, in days (buyers only): repeat purchase days
    # (purchase_days - 1), days from the first to the last purchase day, days from the first
    # purchase day to as_of's day, and the mean net value of a repeat purchase day (minor
    # units, rounded half up; NULL without repeat purchases).
    frequency: Mapped[int | None] = mapped_column(sa.Integer)
    recency_days: Mapped[int | None] = mapped_column(sa.Integer)
    t_days: Mapped[int | None] = mapped_column(sa.Integer)
    monetary_value: Mapped[int | None] = mapped_column(sa.BigInteger)
    # The model's predictions (NULL while no model is fitted): the probability the member is
    # still buying, purchases expected over the model's horizon, and their discounted value.
    probability_alive: Mapped[float | None] = mapped_column(sa.Float)
    expected_purchases: Mapped[float | None] = mapped_column(sa.Float)
    predicted_value: Mapped[int | None] = mapped_column(sa.BigInteger, index=True)
