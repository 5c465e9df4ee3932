from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from loyalty.auth.member_tokens import MAX_TTL, MIN_TTL
from loyalty.schemas.common import StrictSchema, UTCDateTime


class MemberTokenInSchema(StrictSchema):
    ttl_seconds = fields.Integer(
        load_default=None,
        strict=True,
        validate=validate.Range(min=int(MIN_TTL.total_seconds()), max=int(MAX_TTL.total_seconds())),
        metadata={
            "description": "How long the token lives. Default: the "
            "LOYALTY_MEMBER_TOKEN_TTL_SECONDS setting (15 minutes unless set)."
        },
    )


class MemberTokenSchema(ma.Schema):
    class Meta:
        ordered = True

    id = fields.UUID(required=True, metadata={"description": "Names the token to revoke it."})
    member_id = fields.String(required=True)
    token = fields.String(
        required=True,
        metadata={
            "description": "Send it as `Authorization: Bearer <token>` from the customer app. "
            "Shown once: only its hash is kept."
        },
    )
    expires_at = UTCDateTime(required=True)


class RevokedTokensSchema(ma.Schema):
    revoked = fields.Integer(
        required=True, metadata={"description": "How many live tokens were revoked."}
    )
