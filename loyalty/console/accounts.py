"""The member page's account actions: export everything held about the member (a JSON
download), erase their personal data, merge them into another member, sign their app out of
every device, and cancel a reward redemption whose code is unused. Each goes through the same
service as the admin API, audited under the signed-in key's name."""

from __future__ import annotations

import json
import uuid

from flask import current_app, flash, redirect, url_for
from flask_babel import gettext
from werkzeug.wrappers import Response

from loyalty.auth import member_tokens
from loyalty.console import blp, forms, security
from loyalty.console.views import _flash_form_errors, _flash_outcome
from loyalty.extensions import db
from loyalty.membership.merging import merge
from loyalty.privacy import erasure
from loyalty.privacy.export import export
from loyalty.rewards import codes
from loyalty.schemas.privacy import MemberExportSchema


@blp.get("/members/<external_id>/export.json")
def export_member(external_id: str) -> Response:
    document = MemberExportSchema().dump(export(db.session(), external_id, security.actor()))
    return Response(
        json.dumps(document, indent=2),
        mimetype="application/json",
        headers={"Content-Disposition": f'attachment; filename="{external_id}.json"'},
    )


@blp.post("/members/<external_id>/erase")
def erase_member(external_id: str) -> Response:
    form = forms.EraseForm()
    if not form.validate() or form.confirm.data != external_id:
        flash(gettext("Not erased: type the member's id to confirm."), "error")
        return redirect(url_for("console.member_page", external_id=external_id))
    done = erasure.erase(
        db.session(), external_id, current_app.config["SECRET_KEY"], security.actor()
    )
    flash(
        gettext(
            "Erased: the member is now %(pseudonym)s; their points were forfeited.",
            pseudonym=done.pseudonym,
        ),
        "ok",
    )
    return redirect(url_for("console.member_page", external_id=done.pseudonym))


@blp.post("/members/<external_id>/merge")
def merge_member(external_id: str) -> Response:
    form = forms.MergeForm()
    if not form.validate():
        _flash_form_errors(form)
        return redirect(url_for("console.member_page", external_id=external_id))
    into: str = form.into.data
    _flash_outcome(
        lambda: merge(db.session(), external_id, into, security.actor()),
        gettext(
            "Merged into %(into)s: points, lots, holds, orders and events moved there.", into=into
        ),
    )
    return redirect(url_for("console.member_page", external_id=external_id))


@blp.post("/members/<external_id>/tokens/revoke")
def revoke_tokens(external_id: str) -> Response:
    _flash_outcome(
        lambda: member_tokens.revoke_all(db.session(), external_id, admin=security.actor()),
        gettext("Signed out of every device: the app's tokens for this member are revoked."),
    )
    return redirect(url_for("console.member_page", external_id=external_id))


@blp.post("/members/<external_id>/reward-redemptions/<uuid:redemption_id>/cancel")
def cancel_reward_redemption(external_id: str, redemption_id: uuid.UUID) -> Response:
    _flash_outcome(
        lambda: codes.cancel(db.session(), external_id, redemption_id, security.actor()),
        gettext("Cancelled: the points, the unit of stock and a pooled code came back."),
    )
    return redirect(url_for("console.member_page", external_id=external_id))
