from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from loyalty.reports.campaigns import (
    DEFAULT_WINDOW_DAYS,
    MAX_WINDOW_DAYS,
    MIN_WINDOW_DAYS,
    CampaignReport,
    Figures,
)
from loyalty.schemas.common import StrictSchema, UTCDateTime
from loyalty.schemas.orders import MoneySchema
from loyalty.schemas.program import PointValueSchema


class LiabilitySchema(ma.Schema):
    class Meta:
        ordered = True

    available = fields.Integer(required=True)
    pending = fields.Integer(required=True)
    held = fields.Integer(required=True)
    outstanding = fields.Integer(
        required=True,
        metadata={"description": "From the program accounts; equals the sum over members."},
    )
    value = fields.Nested(
        MoneySchema, required=True, metadata={"description": "Money value of outstanding."}
    )
    program_accounts = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    consistent = fields.Boolean(
        required=True,
        metadata={"description": "Program accounts agree with the members' balances."},
    )


class ActivityQuerySchema(StrictSchema):
    from_ = fields.Date(data_key="from", required=True, metadata={"example": "2026-11-01"})
    to = fields.Date(required=True, metadata={"example": "2026-11-30"})

    @ma.validates_schema
    def _ordered(self, data: dict[str, Any], **_: Any) -> None:
        if data["to"] < data["from_"]:
            raise ma.ValidationError("Must not be before from.", "to")


class ActivityDaySchema(ma.Schema):
    class Meta:
        ordered = True

    date = fields.Date(required=True)
    earned = fields.Integer(required=True)
    redeemed = fields.Integer(required=True)
    restored = fields.Integer(required=True)
    expired = fields.Integer(required=True)
    adjusted = fields.Integer(required=True)
    reversed = fields.Integer(required=True)
    new_members = fields.Integer(required=True)


class ActivitySchema(ma.Schema):
    class Meta:
        ordered = True

    days = fields.List(fields.Nested(ActivityDaySchema), required=True)
    members_by_tier = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)


class CampaignReportQuerySchema(StrictSchema):
    window_days = fields.Integer(
        load_default=DEFAULT_WINDOW_DAYS,
        validate=validate.Range(min=MIN_WINDOW_DAYS, max=MAX_WINDOW_DAYS),
        metadata={
            "description": "Days after each touch in which an order counts for it (whole "
            "days of 24 hours, the end included).",
            "example": DEFAULT_WINDOW_DAYS,
        },
    )


class RevenueSchema(ma.Schema):
    class Meta:
        ordered = True

    currency = fields.String(required=True, metadata={"example": "USD"})
    orders = fields.Integer(
        required=True, metadata={"description": "Attributed orders in this currency."}
    )
    gross = fields.Integer(
        required=True, metadata={"description": "Their totals (lines less discount), minor units."}
    )
    refunded = fields.Integer(
        required=True, metadata={"description": "Refunded of them to date, minor units."}
    )
    net = fields.Integer(required=True, metadata={"description": "gross - refunded."})


class CampaignFiguresSchema(ma.Schema):
    class Meta:
        ordered = True

    members_reached = fields.Integer(
        required=True,
        metadata={
            "description": "Distinct members touched: awarded points by the rule, or fired for "
            "by the automation. In the total a member touched by two versions counts once."
        },
    )
    touches = fields.Integer(
        required=True, metadata={"description": "Awards of the rule; firings of the automation."}
    )
    points_issued = fields.Integer(
        required=True,
        metadata={"description": "Points awarded (an automation's: granted), as awarded."},
    )
    cost = fields.Nested(
        MoneySchema,
        required=True,
        metadata={
            "description": "points_issued at the program's current point_value, rounded down, "
            "in the program's currency."
        },
    )
    orders_attributed = fields.Integer(
        required=True, metadata={"description": "Orders attributed (see `attribution`)."}
    )
    revenue_attributed = fields.List(
        fields.Nested(RevenueSchema),
        required=True,
        metadata={"description": "Per currency (orders keep the currency they were placed in)."},
    )


class CampaignVersionSchema(CampaignFiguresSchema):
    version = fields.Integer(required=True)
    name = fields.String(required=True)
    created_at = UTCDateTime(required=True)


class CampaignReportSchema(ma.Schema):
    class Meta:
        ordered = True

    id = fields.UUID(required=True, metadata={"description": "The rule's or automation's id."})
    name = fields.String(required=True, metadata={"description": "At its current version."})
    window_days = fields.Integer(required=True)
    attribution = fields.String(
        required=True, metadata={"description": "The attribution rule, in words."}
    )
    point_value = fields.Nested(
        PointValueSchema, required=True, metadata={"description": "What cost is computed at."}
    )
    versions = fields.List(
        fields.Nested(CampaignVersionSchema),
        required=True,
        metadata={"description": "Every version, newest first (those that touched no one too)."},
    )
    total = fields.Nested(CampaignFiguresSchema, required=True)


def campaign_report_body(report: CampaignReport) -> dict[str, Any]:
    """A campaign report as CampaignReportSchema dumps it."""

    def figures(found: Figures) -> dict[str, Any]:
        return {
            "members_reached": found.members_reached,
            "touches": found.touches,
            "points_issued": found.points_issued,
            "cost": {"amount": found.cost, "currency": report.currency},
            "orders_attributed": found.orders_attributed,
            "revenue_attributed": [
                {
                    "currency": r.currency,
                    "orders": r.orders,
                    "gross": r.gross,
                    "refunded": r.refunded,
                    "net": r.net,
                }
                for r in found.revenue
            ],
        }

    return {
        "id": report.campaign_id,
        "name": report.name,
        "window_days": report.window_days,
        "attribution": report.attribution,
        "point_value": {
            "points": report.point_value_points,
            "amount": report.point_value_amount,
        },
        "versions": [
            {
                "version": v.version,
                "name": v.name,
                "created_at": v.created_at,
                **figures(v.figures),
            }
            for v in report.versions
        ],
        "total": figures(report.total),
    }
