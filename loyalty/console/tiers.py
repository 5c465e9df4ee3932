"""Console pages for tiers: the list, the forms for a new tier and a tier's changes (its
benefits as code and parameters), and deleting a tier nobody is in. Every write goes through
the API's schemas and services under the signed-in key's name, so it is audited as through
the API."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext
from werkzeug.wrappers import Response

from loyalty.console import blp, security
from loyalty.console.catalog_forms import TierForm, submit
from loyalty.errors import LoyaltyError
from loyalty.extensions import db
from loyalty.schemas.tiers import TierInSchema, TierUpdateSchema
from loyalty.tiers import definitions

# The API's PATCH loads a change of any of the fields; the form sends them all.
UPDATE = TierUpdateSchema(partial=tuple(TierUpdateSchema().fields))


@blp.get("/tiers")
def tier_list() -> str:
    return render_template("console/tiers.html", tiers=definitions.list_tiers(db.session()))


@blp.route("/tiers/new", methods=["GET", "POST"])
def tier_new() -> Response | str | tuple[str, int]:
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        form = TierForm()
        tier, errors = submit(
            form,
            lambda body: definitions.create_tier(
                db.session(), TierInSchema().load(body), security.actor()
            ),
        )
        if tier is not None:
            flash(gettext("Tier %(name)s created.", name=repr(tier.name)), "ok")
            return redirect(url_for("console.tier_list"))
    else:
        retention = TierInSchema().fields["retention_months"].load_default
        form = TierForm(formdata=None, data={"retention_months": retention})
    return render_template(
        "console/tier_form.html", form=form, errors=errors, tier=None
    ), 422 if errors else 200


@blp.route("/tiers/<tier_code>/edit", methods=["GET", "POST"])
def tier_edit(tier_code: str) -> Response | str | tuple[str, int]:
    session = db.session()
    tier = definitions.find_tier(session, tier_code)
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        form = TierForm()
        changed, errors = submit(
            form,
            lambda body: definitions.update_tier(
                session, tier_code, UPDATE.load(body), security.actor()
            ),
        )
        if changed is not None:
            flash(gettext("Tier %(name)s saved.", name=repr(changed.name)), "ok")
            return redirect(url_for("console.tier_list"))
    else:
        form = TierForm.of(tier)
    return render_template(
        "console/tier_form.html", form=form, errors=errors, tier=tier
    ), 422 if errors else 200


@blp.post("/tiers/<tier_code>/delete")
def tier_delete(tier_code: str) -> Response:
    try:
        definitions.delete_tier(db.session(), tier_code, security.actor())
    except LoyaltyError as error:  # members are in it, or it is gone already
        flash(gettext("Not deleted:") + f" {error.detail}", "error")
    else:
        flash(gettext("Tier %(code)s deleted.", code=repr(tier_code)), "ok")
    return redirect(url_for("console.tier_list"))
