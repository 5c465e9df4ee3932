"""Member tokens: the shop's backend mints and revokes them; the customer app uses them."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from flask import Flask, current_app
from flask.views import MethodView

from loyalty.api.auth import current_caller, requires
from loyalty.api.base import Blueprint
from loyalty.auth import member_tokens
from loyalty.extensions import db
from loyalty.schemas.member_tokens import (
    MemberTokenInSchema,
    MemberTokenSchema,
    RevokedTokensSchema,
)

blp = Blueprint(
    "member_tokens",
    __name__,
    url_prefix="/v1",
    description="Member tokens: the customer app calls one member's routes directly.",
)


@blp.route("/members/<string:external_id>/tokens")
class MemberTokens(MethodView):
    @requires("app")
    @blp.arguments(MemberTokenInSchema, example={"ttl_seconds": 900})
    @blp.response(201, MemberTokenSchema)
    @blp.alt_response(404, description="No such member.")
    @blp.alt_response(409, description="member_closed: the member is closed.")
    def post(self, fields: dict[str, Any], external_id: str) -> dict[str, Any]:
        """Mint a short-lived token for one member's customer app

        The token admits the member's card, history, benefits, the rewards catalog and reward
        redemption, for this member only, until `expires_at` or until revoked; every other
        route refuses it. Call this from the shop's backend, never from the app: the API key
        must stay on the server.
        """
        seconds = fields["ttl_seconds"] or current_app.config["MEMBER_TOKEN_TTL_SECONDS"]
        minted = member_tokens.mint(
            db.session(), external_id, current_caller().key_id, dt.timedelta(seconds=seconds)
        )
        return {
            "id": minted.public_id,
            "member_id": minted.external_id,
            "token": minted.token,
            "expires_at": minted.expires_at,
        }

    @requires("app")
    @blp.response(200, RevokedTokensSchema)
    @blp.alt_response(404, description="No such member.")
    def delete(self, external_id: str) -> dict[str, Any]:
        """Revoke every token of the member (sign the member out of every device)"""
        return {"revoked": member_tokens.revoke_all(db.session(), external_id)}


@blp.route("/members/<string:external_id>/tokens/<uuid:token_id>")
class MemberToken(MethodView):
    @requires("app")
    @blp.response(204)
    @blp.alt_response(404, description="No such member, or no such token of theirs.")
    def delete(self, external_id: str, token_id: uuid.UUID) -> None:
        """Revoke one token of the member; it admits nothing from this moment"""
        member_tokens.revoke(db.session(), external_id, token_id)


def init_app(app: Flask) -> None:
    """Check the default lifetime of member tokens. Raises ValueError for one out of bounds,
    so a bad setting stops the start."""
    seconds = app.config["MEMBER_TOKEN_TTL_SECONDS"]
    if not member_tokens.MIN_TTL <= dt.timedelta(seconds=seconds) <= member_tokens.MAX_TTL:
        raise ValueError(
            f"LOYALTY_MEMBER_TOKEN_TTL_SECONDS={seconds}: a member token lives "
            f"{member_tokens.MIN_TTL.seconds} to {member_tokens.MAX_TTL.seconds} seconds"
        )
