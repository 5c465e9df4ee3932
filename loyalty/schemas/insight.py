from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from loyalty.insight.queries import MemberFilters
from loyalty.insight.segments import Segment
from loyalty.members.models import MemberStatus
from loyalty.schemas.common import StrictSchema, UTCDateTime, page_schema
from loyalty.schemas.tiers import TierRefSchema

SEGMENTS = [s.value for s in Segment]
SCORE = validate.Range(min=1, max=5)
MINOR = "minor units of the program's currency"


class InsightFiguresSchema(ma.Schema):
    """A member's row of the latest refresh (see README, Member insight)."""

    class Meta:
        ordered = True

    as_of = UTCDateTime(required=True, metadata={"description": "The moment the row describes."})
    segment = fields.String(required=True, allow_none=True, validate=validate.OneOf(SEGMENTS))
    recency_score = fields.Integer(required=True, allow_none=True, validate=SCORE)
    frequency_score = fields.Integer(required=True, allow_none=True, validate=SCORE)
    monetary_score = fields.Integer(required=True, allow_none=True, validate=SCORE)
    first_order_at = UTCDateTime(required=True, allow_none=True)
    last_order_at = UTCDateTime(required=True, allow_none=True)
    days_since_last_order = fields.Integer(required=True, allow_none=True)
    orders = fields.Integer(required=True)
    purchase_days = fields.Integer(required=True)
    net_revenue = fields.Integer(required=True, metadata={"description": MINOR})
    average_order_value = fields.Integer(
        required=True, allow_none=True, metadata={"description": MINOR}
    )
    currency = fields.String(required=True, metadata={"example": "USD"})
    points_earned = fields.Integer(required=True)
    points_redeemed = fields.Integer(required=True)
    frequency = fields.Integer(
        required=True, allow_none=True, metadata={"description": "Repeat purchase days."}
    )
    recency_days = fields.Integer(required=True, allow_none=True)
    t_days = fields.Integer(required=True, allow_none=True)
    monetary_value = fields.Integer(
        required=True,
        allow_none=True,
        metadata={"description": f"Mean net value of a repeat purchase day, {MINOR}."},
    )
    probability_alive = fields.Float(
        required=True, allow_none=True, metadata={"description": "0 to 1 (a probability)."}
    )
    expected_purchases = fields.Float(
        required=True,
        allow_none=True,
        metadata={"description": "Purchase days expected over the model's horizon."},
    )
    predicted_value = fields.Integer(
        required=True,
        allow_none=True,
        metadata={"description": f"Discounted value over the model's horizon, {MINOR}."},
    )


class MemberInsightSchema(InsightFiguresSchema):
    external_id = fields.String(required=True)
    refreshed_at = UTCDateTime(
        required=True, metadata={"description": "When the refresh that wrote the row finished."}
    )


class RefreshSchema(ma.Schema):
    class Meta:
        ordered = True

    as_of = UTCDateTime(required=True)
    finished_at = UTCDateTime(required=True)
    members = fields.Integer(required=True)
    buyers = fields.Integer(required=True)
    currency = fields.String(required=True, metadata={"example": "USD"})


class SegmentShareSchema(ma.Schema):
    class Meta:
        ordered = True

    segment = fields.String(required=True, validate=validate.OneOf(SEGMENTS))
    label = fields.String(required=True, metadata={"example": "Champions"})
    members = fields.Integer(required=True)
    revenue = fields.Integer(required=True, metadata={"description": f"Net revenue, {MINOR}."})
    members_share_bp = fields.Integer(
        required=True, metadata={"description": "Share of the buyers, in basis points."}
    )
    revenue_share_bp = fields.Integer(
        required=True,
        metadata={"description": "Share of the buyers' net revenue, in basis points."},
    )


class GridCellSchema(ma.Schema):
    class Meta:
        ordered = True

    recency_score = fields.Integer(required=True, validate=SCORE)
    fm_score = fields.Integer(required=True, validate=SCORE)
    segment = fields.String(required=True, validate=validate.OneOf(SEGMENTS))
    members = fields.Integer(required=True)
    revenue = fields.Integer(required=True, metadata={"description": MINOR})


class ValueDecileSchema(ma.Schema):
    class Meta:
        ordered = True

    decile = fields.Integer(required=True, validate=validate.Range(min=1, max=10))
    members = fields.Integer(required=True)
    min = fields.Integer(required=True, metadata={"description": MINOR})
    max = fields.Integer(required=True, metadata={"description": MINOR})
    total = fields.Integer(required=True, metadata={"description": MINOR})


class ModelSchema(ma.Schema):
    class Meta:
        ordered = True

    status = fields.String(required=True, validate=validate.OneOf(["fitted", "not_fitted"]))
    detail = fields.String(
        required=True,
        allow_none=True,
        metadata={
            "description": "Why there is no model; for a fitted one, what the history did not "
            "identify and which limit of the model stands in (or null)."
        },
    )
    fitted_at = UTCDateTime(required=True, allow_none=True)
    time_unit = fields.String(required=True, metadata={"example": "days"})
    horizon_days = fields.Integer(required=True, allow_none=True)
    customers = fields.Integer(required=True)
    log_likelihood = fields.Float(required=True, allow_none=True)
    params = fields.Dict(
        required=True,
        allow_none=True,
        metadata={
            "description": "bg_nbd (r, alpha in days, a, b; or r, alpha, dropout when "
            "bg_nbd_limit is true: the limit a, b -> infinity, one dropout probability for "
            "every buyer, 0 for none), bg_nbd_limit, gamma_gamma (p, q, v), "
            "gamma_gamma_customers, gamma_gamma_log_likelihood, annual_discount_rate."
        },
    )


class InsightSummarySchema(ma.Schema):
    class Meta:
        ordered = True

    refresh = fields.Nested(RefreshSchema, required=True)
    revenue = fields.Integer(
        required=True, metadata={"description": f"The buyers' net revenue, {MINOR}."}
    )
    segments = fields.List(fields.Nested(SegmentShareSchema), required=True)
    rfm_grid = fields.List(
        fields.Nested(GridCellSchema),
        required=True,
        metadata={"description": "25 cells, R 5 to 1, FM 1 to 5 within each."},
    )
    predicted_value = fields.List(
        fields.Nested(ValueDecileSchema),
        required=True,
        metadata={"description": "Deciles of the buyers the model predicted; empty without."},
    )
    predicted_total = fields.Integer(required=True, metadata={"description": MINOR})
    model = fields.Nested(ModelSchema, required=True, allow_none=True)


# --- the member list ------------------------------------------------------------------------


class CommaList(fields.List):  # type: ignore[type-arg]
    """A repeated query parameter, each value possibly a comma-separated list."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, list):
            value = [value]
        parts = [
            part.strip()
            for item in value
            for part in (item.split(",") if isinstance(item, str) else [item])
        ]
        return super()._deserialize(parts, attr, data, **kwargs)


class MemberFilterSchema(StrictSchema):
    segment = CommaList(
        fields.String(validate=validate.OneOf(SEGMENTS)),
        load_default=list,
        validate=validate.Length(max=len(SEGMENTS)),
        metadata={"description": "Segment codes: repeat the parameter or separate by commas."},
    )
    recency_score = fields.Integer(load_default=None, validate=SCORE)
    frequency_score = fields.Integer(load_default=None, validate=SCORE)
    monetary_score = fields.Integer(load_default=None, validate=SCORE)
    tier = fields.String(
        load_default=None, validate=validate.Length(min=1, max=32), metadata={"example": "gold"}
    )
    status = fields.String(
        load_default=None, validate=validate.OneOf([s.value for s in MemberStatus])
    )
    predicted_value_min = fields.Integer(
        load_default=None,
        validate=validate.Range(min=0, max=2**62),
        metadata={"description": MINOR},
    )
    predicted_value_max = fields.Integer(
        load_default=None,
        validate=validate.Range(min=0, max=2**62),
        metadata={"description": MINOR},
    )
    days_since_last_order_min = fields.Integer(
        load_default=None, validate=validate.Range(min=0, max=1_000_000)
    )
    days_since_last_order_max = fields.Integer(
        load_default=None, validate=validate.Range(min=0, max=1_000_000)
    )
    q = fields.String(
        load_default=None,
        validate=validate.Length(min=1, max=200),
        metadata={"description": "Case-insensitive substring of external_id, email or name."},
    )

    @ma.validates_schema
    def _ranges(self, data: dict[str, Any], **_: Any) -> None:
        for name in ("predicted_value", "days_since_last_order"):
            low, high = data.get(f"{name}_min"), data.get(f"{name}_max")
            if low is not None and high is not None and high < low:
                raise ma.ValidationError(f"Must not be below {name}_min.", f"{name}_max")


def member_filters(query: dict[str, Any]) -> MemberFilters:
    """A loaded MemberFilterSchema as the member list's filters."""
    return MemberFilters(
        segments=tuple(Segment(s) for s in query["segment"]),
        recency_score=query["recency_score"],
        frequency_score=query["frequency_score"],
        monetary_score=query["monetary_score"],
        tier=query["tier"],
        status=MemberStatus(query["status"]) if query["status"] else None,
        predicted_value_min=query["predicted_value_min"],
        predicted_value_max=query["predicted_value_max"],
        days_since_last_order_min=query["days_since_last_order_min"],
        days_since_last_order_max=query["days_since_last_order_max"],
        q=query["q"],
    )


class MemberListQuerySchema(MemberFilterSchema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = fields.String(load_default=None, validate=validate.Length(max=100))


class MemberListItemSchema(ma.Schema):
    class Meta:
        ordered = True

    external_id = fields.String(required=True)
    email = fields.String(required=True, allow_none=True)
    name = fields.String(required=True, allow_none=True)
    status = fields.String(required=True, validate=validate.OneOf([s.value for s in MemberStatus]))
    tier = fields.Nested(TierRefSchema, required=True, allow_none=True)
    enrolled_at = UTCDateTime(required=True)
    insight = fields.Nested(
        InsightFiguresSchema,
        required=True,
        allow_none=True,
        metadata={"description": "null for a member enrolled after the latest refresh."},
    )


MemberListPageSchema = page_schema(MemberListItemSchema, "AdminMemberPage")


# --- the model's evaluation -----------------------------------------------------------------


class EvaluationQuerySchema(StrictSchema):
    split = UTCDateTime(
        required=True,
        metadata={
            "description": "Fit on the history up to this moment, compare after it.",
            "example": "2026-06-01T00:00:00Z",
        },
    )


class EvaluationBucketSchema(ma.Schema):
    class Meta:
        ordered = True

    frequency = fields.String(
        required=True,
        validate=validate.OneOf(["0", "1", "2", "3", "4", "5", "6", "7+"]),
        metadata={"description": "Repeat purchase days before the split."},
    )
    customers = fields.Integer(required=True)
    predicted = fields.Float(required=True, metadata={"description": "Repeat purchase days."})
    actual = fields.Integer(required=True)


class EvaluationSchema(ma.Schema):
    class Meta:
        ordered = True

    split = UTCDateTime(required=True)
    end = UTCDateTime(
        required=True, metadata={"description": "The latest refresh's as_of, or now."}
    )
    holdout_days = fields.Integer(required=True)
    customers = fields.Integer(
        required=True, metadata={"description": "Buyers before the split: the model's fit."}
    )
    predicted_total = fields.Float(required=True)
    actual_total = fields.Integer(required=True)
    by_frequency = fields.List(fields.Nested(EvaluationBucketSchema), required=True)
    log_likelihood = fields.Float(required=True)
    params = fields.Dict(
        required=True,
        metadata={
            "description": "bg_nbd: r, alpha (days), a, b; or r, alpha, dropout when "
            "bg_nbd_limit is true (the limit a, b -> infinity)."
        },
    )
