from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from loyalty import days
from loyalty.ledger.policy import MAX_POINTS
from loyalty.program.models import ExpiryPolicy
from loyalty.program.services import UNKNOWN_ZONE, SettingsChanges
from loyalty.schemas.common import StrictSchema, UTCDateTime


class PointValueSchema(StrictSchema):
    points = fields.Integer(
        required=True, strict=True, validate=validate.Range(min=1, max=MAX_POINTS)
    )
    amount = fields.Integer(
        required=True,
        strict=True,
        validate=validate.Range(min=1, max=MAX_POINTS),
        metadata={"description": "What `points` points are worth, in minor units."},
    )


class ExpirySchema(StrictSchema):
    policy = fields.String(required=True, validate=validate.OneOf([p.value for p in ExpiryPolicy]))
    months = fields.Integer(
        strict=True,
        allow_none=True,
        validate=validate.Range(min=1, max=120),
        metadata={"description": "Required unless the policy is never."},
    )

    @ma.validates_schema
    def _months_when_needed(self, data: dict[str, Any], **_: Any) -> None:
        if data["policy"] != ExpiryPolicy.NEVER and data.get("months") is None:
            raise ma.ValidationError("Required for this policy.", "months")


class ReferralSettingsSchema(StrictSchema):
    class Meta:
        ordered = True

    referrer_points = fields.Integer(
        required=True,
        strict=True,
        validate=validate.Range(min=0, max=MAX_POINTS),
        metadata={"description": "Points for the member whose code was used; 0: none."},
    )
    friend_points = fields.Integer(
        required=True,
        strict=True,
        validate=validate.Range(min=0, max=MAX_POINTS),
        metadata={"description": "Points for the friend who enrolled with it; 0: none."},
    )
    max_per_period = fields.Integer(
        required=True,
        strict=True,
        allow_none=True,
        validate=validate.Range(min=0, max=1_000_000),
        metadata={
            "description": "Most referrals a member may have rewarded per period, counted "
            "when friends enrol (later ones are linked as over_limit); null: no limit."
        },
    )
    period_days = fields.Integer(
        required=True,
        strict=True,
        validate=validate.Range(min=1, max=3660),
        metadata={"description": "The rolling period the limit counts over."},
    )


def _known_zone(name: str) -> None:
    if not days.is_zone(name):
        raise ma.ValidationError(UNKNOWN_ZONE)


def _int(low: int, high: int, description: str, **kwargs: Any) -> fields.Integer:
    return fields.Integer(
        strict=True,
        validate=validate.Range(min=low, max=high),
        metadata={"description": description},
        **kwargs,
    )


class ProgramSchema(StrictSchema):
    currency = fields.String(
        validate=validate.Regexp(r"^[A-Z]{3}$", error="An ISO 4217 code such as USD."),
        metadata={"example": "USD"},
    )
    point_value = fields.Nested(PointValueSchema)
    pending_days = _int(0, 365, "Return window in days; 0 makes earned points available at once.")
    expiry = fields.Nested(ExpirySchema)
    hold_ttl_seconds = _int(1, 7 * 86400, "How long a redemption hold lives uncaptured.")
    max_redemption_percent = _int(0, 100, "Share of an order payable in points.")
    min_redemption_points = _int(0, MAX_POINTS, "Fewest points a redemption may use.")
    tier_window_months = _int(1, 120, "Rolling window over which tier points count.")
    time_zone = fields.String(
        validate=_known_zone,
        metadata={
            "description": "The IANA time zone whose days, weeks and months the program "
            "speaks of (birthdays, daily reports, budget periods, caps and windows in days, "
            "expiry and tier months, dates in the console). Stored times stay UTC.",
            "example": "Asia/Shanghai",
        },
    )
    referral = fields.Nested(
        ReferralSettingsSchema,
        metadata={
            "description": "Referral rewards, paid once the friend's first order is past the "
            "return window (a PATCH replaces the object whole)."
        },
    )

    @ma.validates_schema
    def _not_empty(self, data: dict[str, Any], partial: bool = False, **_: Any) -> None:
        if partial and not data:
            raise ma.ValidationError("Name at least one setting to change.", "_schema")


class ProgramOutSchema(ProgramSchema):
    class Meta:
        ordered = True

    updated_at = UTCDateTime(required=True)


def settings_to_dict(settings: Any) -> dict[str, Any]:
    """The API's answer for the settings (a SettingsView; or the row, which has the same
    names)."""
    return {
        "currency": settings.currency,
        "point_value": {
            "points": settings.point_value_points,
            "amount": settings.point_value_amount,
        },
        "pending_days": settings.pending_days,
        "expiry": {"policy": settings.expiry_policy, "months": settings.expiry_months},
        "hold_ttl_seconds": settings.hold_ttl_seconds,
        "max_redemption_percent": settings.max_redemption_percent,
        "min_redemption_points": settings.min_redemption_points,
        "tier_window_months": settings.tier_window_months,
        "referral": {
            "referrer_points": settings.referral_referrer_points,
            "friend_points": settings.referral_friend_points,
            "max_per_period": settings.referral_max_per_period,
            "period_days": settings.referral_period_days,
        },
        "time_zone": settings.time_zone,
        "updated_at": settings.updated_at,
    }


def settings_changes(data: dict[str, Any]) -> SettingsChanges:
    """A validated PATCH body (or the console's whole form) as the change it makes."""
    columns = changes_to_columns(data)
    if "expiry_policy" in columns:
        columns["expiry_policy"] = ExpiryPolicy(columns["expiry_policy"])
    return SettingsChanges(**columns)


def changes_to_columns(data: dict[str, Any]) -> dict[str, Any]:
    """A validated PATCH body as the settings columns it changes (plain values)."""
    columns = {k: v for k, v in data.items() if k not in ("point_value", "expiry", "referral")}
    if "point_value" in data:
        columns["point_value_points"] = data["point_value"]["points"]
        columns["point_value_amount"] = data["point_value"]["amount"]
    if "expiry" in data:
        columns["expiry_policy"] = data["expiry"]["policy"]
        columns["expiry_months"] = data["expiry"].get("months")
    if "referral" in data:
        for name, value in data["referral"].items():
            columns[f"referral_{name}"] = value
    return columns
