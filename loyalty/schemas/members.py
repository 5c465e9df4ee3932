from __future__ import annotations

import datetime as dt
from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from loyalty.members.models import MemberStatus
from loyalty.members.referral_codes import PATTERN
from loyalty.membership.services import EnrollMember, MemberChanges
from loyalty.schemas.common import EXTERNAL_ID, JSONBoolean, StrictSchema, UTCDateTime
from loyalty.schemas.tiers import TierProgressSchema, TierRefSchema


def _not_in_future(value: dt.date) -> None:
    if value > dt.datetime.now(dt.UTC).date():
        raise ma.ValidationError("Must not be in the future.")


def _small_metadata(value: dict[str, Any]) -> None:
    if len(value) > 50:
        raise ma.ValidationError("At most 50 keys.")
    for key, item in value.items():
        if len(key) > 40:
            raise ma.ValidationError("Keys are at most 40 characters.")
        if item is not None and not isinstance(item, str | int | bool):
            raise ma.ValidationError("Values are strings, integers, booleans or null.")
        if isinstance(item, str) and len(item) > 500:
            raise ma.ValidationError("String values are at most 500 characters.")


class ConsentInSchema(StrictSchema):
    marketing_email = JSONBoolean(
        metadata={"description": "May the shop send the member marketing by email."}
    )
    marketing_sms = JSONBoolean(
        metadata={"description": "May the shop send the member marketing by SMS."}
    )


def _consent(data: dict[str, Any]) -> dict[str, Any]:
    """The body's `consent` object as the command's channel fields."""
    channels = data.pop("consent", {})
    return {**data, **channels}


CONSENT_DESCRIPTION = (
    "Marketing consent per channel; a channel left out is unchanged (never asked: false)."
)


class EnrollSchema(StrictSchema):
    external_id = fields.String(
        required=True,
        validate=EXTERNAL_ID,
        metadata={"description": "The shop's own customer id.", "example": "cust_1001"},
    )
    email = fields.Email(load_default=None, allow_none=True, validate=validate.Length(max=320))
    name = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=200))
    birthday = fields.Date(load_default=None, allow_none=True, validate=_not_in_future)
    referral_code = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Regexp(PATTERN, error="A referral code: 4 to 32 letters or digits."),
        metadata={
            "description": "The referral code of the member who referred this one (any case).",
            "example": "K7QX2M9A",
        },
    )
    referred_by = fields.String(
        load_default=None,
        allow_none=True,
        validate=EXTERNAL_ID,
        metadata={
            "description": "Deprecated: use referral_code. external_id of the member who "
            "referred this one (linked and rewarded the same way).",
            "deprecated": True,
        },
    )
    metadata = fields.Dict(
        keys=fields.String(),
        load_default=dict,
        validate=_small_metadata,
        metadata={"description": "Free-form string/integer/boolean attributes."},
    )
    consent = fields.Nested(ConsentInSchema, metadata={"description": CONSENT_DESCRIPTION})

    @ma.validates_schema
    def _one_referrer(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("referral_code") and data.get("referred_by"):
            raise ma.ValidationError("Name the referrer once: referral_code or referred_by.")

    @ma.post_load
    def _command(self, data: dict[str, Any], **_: Any) -> EnrollMember:
        return EnrollMember(**_consent(data))


class MemberUpdateSchema(StrictSchema):
    status = fields.String(validate=validate.OneOf([s.value for s in MemberStatus]))
    email = fields.Email(allow_none=True, validate=validate.Length(max=320))
    name = fields.String(allow_none=True, validate=validate.Length(max=200))
    birthday = fields.Date(allow_none=True, validate=_not_in_future)
    metadata = fields.Dict(keys=fields.String(), validate=_small_metadata)
    consent = fields.Nested(ConsentInSchema, metadata={"description": CONSENT_DESCRIPTION})

    @ma.validates_schema
    def _not_empty(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ma.ValidationError("Name at least one field to change.", "_schema")

    @ma.post_load
    def _command(self, data: dict[str, Any], **_: Any) -> MemberChanges:
        if "status" in data:
            data["status"] = MemberStatus(data["status"])
        return MemberChanges(**_consent(data))


class ExpiringLotSchema(ma.Schema):
    points = fields.Integer(required=True)
    expires_at = UTCDateTime(required=True)


class BalanceSchema(ma.Schema):
    class Meta:
        ordered = True

    available = fields.Integer(
        required=True,
        metadata={"description": "Spendable now. Negative only after a refund reversal."},
    )
    pending = fields.Integer(
        required=True, metadata={"description": "Earned, still inside the return window."}
    )
    held = fields.Integer(required=True, metadata={"description": "Reserved by redemption holds."})
    expiring_soon = fields.List(
        fields.Nested(ExpiringLotSchema),
        required=True,
        metadata={"description": "Available points expiring within 30 days, soonest first."},
    )


class MemberSchema(ma.Schema):
    class Meta:
        ordered = True

    external_id = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf([s.value for s in MemberStatus]))
    email = fields.String(required=True, allow_none=True)
    name = fields.String(required=True, allow_none=True)
    birthday = fields.Date(required=True, allow_none=True)
    metadata = fields.Dict(required=True, attribute="metadata_")
    enrolled_at = UTCDateTime(required=True)


class ChannelConsentSchema(ma.Schema):
    class Meta:
        ordered = True

    granted = fields.Boolean(required=True)
    changed_at = UTCDateTime(
        required=True,
        allow_none=True,
        metadata={"description": "When it was last given or withdrawn; null: never asked."},
    )


class ConsentSchema(ma.Schema):
    class Meta:
        ordered = True

    marketing_email = fields.Nested(ChannelConsentSchema, required=True)
    marketing_sms = fields.Nested(ChannelConsentSchema, required=True)


class MemberCardSchema(MemberSchema):
    referral_code = fields.String(
        required=True,
        metadata={
            "description": "The member's own code for friends to enrol with "
            "(`referral_code` in POST /members).",
            "example": "K7QX2M9A",
        },
    )
    consent = fields.Nested(ConsentSchema, required=True)
    tier = fields.Nested(TierRefSchema, required=True, allow_none=True)
    tier_progress = fields.Nested(TierProgressSchema, required=True)
    balance = fields.Nested(BalanceSchema, required=True)
