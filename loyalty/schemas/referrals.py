"""The referrals a member made, as the customer app shows them."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from loyalty.referrals.models import ReferralStatus
from loyalty.schemas.common import UTCDateTime, page_schema


class ReferralSchema(ma.Schema):
    """One friend who enrolled on the member's referral. The friend is not named: a member
    token may read this list, and one customer must not learn another's id (the shop's
    backend has it from the `referral.*` webhooks)."""

    class Meta:
        ordered = True

    id = fields.UUID(required=True)
    status = fields.String(
        required=True,
        validate=validate.OneOf([s.value for s in ReferralStatus]),
        metadata={
            "description": "linked: waiting for the friend's first order; qualifying: "
            "placed, rewarded once its return window passes; rewarded; cancelled: that order "
            "was refunded in the window; over_limit: past the referrer's limit, never rewarded."
        },
    )
    code = fields.String(
        required=True, allow_none=True, metadata={"description": "The code the friend used."}
    )
    linked_at = UTCDateTime(required=True)
    qualifies_at = UTCDateTime(
        required=True,
        allow_none=True,
        metadata={"description": "When the first order's return window ends."},
    )
    rewarded_at = UTCDateTime(required=True, allow_none=True)
    cancelled_at = UTCDateTime(required=True, allow_none=True)
    referrer_points = fields.Integer(
        required=True, metadata={"description": "Points the member was credited for it."}
    )


ReferralPageSchema = page_schema(ReferralSchema, "ReferralPage")
