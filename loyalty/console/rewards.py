"""Console pages for the rewards catalog: the list, and the forms for a new reward and a
reward's changes (cost, kind, value, stock, coupon codes added to its pool, window, lowest
tier, segments, per-member limit, active or not). Every write goes through the API's schemas
and services under the signed-in key's name, so it is audited as through the API (a reward
made inactive as reward.deactivate, as by the API's deactivate)."""

from __future__ import annotations

import uuid

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext
from werkzeug.wrappers import Response

from loyalty.console import blp, security
from loyalty.console.catalog_forms import RewardForm, submit
from loyalty.extensions import db
from loyalty.rewards import definitions
from loyalty.schemas.rewards import RewardInSchema, RewardUpdateSchema
from loyalty.tiers.definitions import list_tiers

# The API's PATCH loads a change of any of the fields; the form sends them all.
UPDATE = RewardUpdateSchema(partial=tuple(RewardUpdateSchema().fields))


@blp.get("/rewards")
def reward_list() -> str:
    found = definitions.list_rewards(db.session())
    return render_template("console/rewards.html", rewards=found)


@blp.route("/rewards/new", methods=["GET", "POST"])
def reward_new() -> Response | str | tuple[str, int]:
    session = db.session()
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        form = RewardForm()
        form.offer_tiers(list_tiers(session))
        reward, errors = submit(
            form,
            lambda body: definitions.create_reward(
                session, RewardInSchema().load(body), security.actor()
            ),
        )
        if reward is not None:
            flash(gettext("Reward %(name)s created.", name=repr(reward.name)), "ok")
            return redirect(url_for("console.reward_list"))
    else:
        form = RewardForm(formdata=None, data={"kind": "coupon", "active": True})
        form.offer_tiers(list_tiers(session))
    return render_template(
        "console/reward_form.html", form=form, errors=errors, reward=None, codes_left=None
    ), 422 if errors else 200


@blp.route("/rewards/<uuid:reward_id>/edit", methods=["GET", "POST"])
def reward_edit(reward_id: uuid.UUID) -> Response | str | tuple[str, int]:
    session = db.session()
    row = definitions.find(session, reward_id)
    reward, codes_left = definitions.view(session, row), definitions.codes_left(session, row.id)
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        form = RewardForm()
        form.offer_tiers(list_tiers(session))
        changed, errors = submit(
            form,
            lambda body: definitions.update_reward(
                session, reward_id, UPDATE.load(body), security.actor()
            ),
        )
        if changed is not None:
            flash(gettext("Reward %(name)s saved.", name=repr(changed.name)), "ok")
            return redirect(url_for("console.reward_list"))
    else:
        form = RewardForm.of(reward)
        form.offer_tiers(list_tiers(session))
    return render_template(
        "console/reward_form.html",
        form=form,
        errors=errors,
        reward=reward,
        codes_left=codes_left,
    ), 422 if errors else 200
