"""Console pages for experiments: the list, and an experiment's definition, arms and what each
arm gets, its results against control with an uplift chart per measure, the sample-ratio
verdict, and buttons to start, stop and promote an arm. The results are the API's answer
(``results_body``), so the page shows what the API says. Every write goes through the same
services as the API, under the signed-in key's name (so it is audited as through the API)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import marshmallow as ma
from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext, lazy_gettext
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from loyalty.automations import services as automations
from loyalty.conclusions import targets
from loyalty.conclusions.promotion import promote_arm
from loyalty.conclusions.results import experiment_results
from loyalty.console import blp, charts, security
from loyalty.errors import LoyaltyError, NotFound, ValidationFailed
from loyalty.experiments import services as experiments
from loyalty.experiments.definitions import ArmDefinition, TargetKind
from loyalty.experiments.exceptions import ExperimentStatusConflict, ExperimentTargetTaken
from loyalty.extensions import db
from loyalty.rules import services as rules
from loyalty.schemas.experiments import PromoteSchema, results_body

# The measures charted, each drawn from the comparison's estimate of that name.
CHARTED = (
    ("conversion_uplift", lazy_gettext("Conversion uplift")),
    ("net_value_per_member_uplift", lazy_gettext("Net value per member uplift")),
)


@blp.get("/experiments")
def experiment_list() -> str:
    found, _ = experiments.list_experiments(db.session(), status=None, limit=200, after=None)
    return render_template("console/experiments.html", experiments=found)


def _target_names(session: Session, target: Mapping[str, Any]) -> dict[str, str]:
    """The names of the rules or automation a target names, by id; an id that names nothing
    (references are checked by shape only, see definitions) is shown as it is."""
    if target["kind"] == TargetKind.RULES:
        ids = list(target["rule_ids"])
        read: Any = rules.get_rule
    elif target["kind"] == TargetKind.AUTOMATION:
        ids = [target["automation_id"]]
        read = automations.get_automation
    else:
        return {}
    names = {}
    for each in ids:
        try:
            names[each] = read(session, uuid.UUID(each)).current.name
        except NotFound:
            names[each] = each
    return names


def arm_gets(arm: ArmDefinition, target: Mapping[str, Any], names: Mapping[str, str]) -> str:
    """What an arm's members get of the target, in words."""
    if arm.rule_ids is not None:
        return ", ".join(names.get(rule_id, rule_id) for rule_id in arm.rule_ids) or gettext(
            "no rule"
        )
    if not arm.applies:
        return str(gettext("nothing (holdout)"))
    if target["kind"] == TargetKind.AUTOMATION:
        automation = target["automation_id"]
        return str(gettext("the automation %(name)s", name=names.get(automation, automation)))
    return str(gettext("the benefit %(code)s", code=target["code"]))


def uplift_charts(results: Mapping[str, Any] | None) -> dict[str, charts.IntervalChart]:
    """Per charted measure, each treated arm's estimate and interval against control."""
    if results is None:
        return {}
    treated = [arm for arm in results["arms"] if arm["comparison"] is not None]
    return {
        measure: charts.interval_chart(
            [
                (
                    arm["key"],
                    arm["comparison"][measure]["value"],
                    arm["comparison"][measure]["low"],
                    arm["comparison"][measure]["high"],
                )
                for arm in treated
            ]
        )
        for measure, _ in CHARTED
    }


@blp.get("/experiments/<uuid:experiment_id>")
def experiment_page(experiment_id: uuid.UUID) -> str:
    session = db.session()
    report = experiment_results(session, experiment_id)
    experiment = report.experiment
    body = results_body(report)
    target = experiment.definition.target
    names = _target_names(session, target)
    gets = {arm.key: arm_gets(arm, target, names) for arm in experiment.definition.arms}
    results = body["results"]
    return render_template(
        "console/experiment.html",
        experiment=experiment,
        names=names,
        gets=gets,
        report=body,
        results={arm["key"]: arm for arm in results["arms"]} if results else {},
        charts=uplift_charts(results),
        charted=CHARTED,
    )


@blp.post("/experiments/<uuid:experiment_id>/start")
def start_experiment(experiment_id: uuid.UUID) -> Response:
    try:
        targets.start_experiment(db.session(), experiment_id, security.actor())
    except (ExperimentStatusConflict, ExperimentTargetTaken) as error:
        flash(gettext("Not started:") + f" {error.detail}", "error")
    except ValidationFailed as error:  # its target is gone or switched off since the draft
        problems = " ".join(m for messages in error.extra["errors"].values() for m in messages)
        flash(gettext("Not started:") + f" {error.detail} {problems}", "error")
    else:
        flash(gettext("Started: its arms are fixed from now on."), "ok")
    return redirect(url_for("console.experiment_page", experiment_id=experiment_id))


@blp.post("/experiments/<uuid:experiment_id>/stop")
def stop_experiment(experiment_id: uuid.UUID) -> Response:
    try:
        experiments.stop_experiment(db.session(), experiment_id, security.actor())
    except ExperimentStatusConflict as error:
        flash(gettext("Not stopped:") + f" {error.detail}", "error")
    else:
        flash(gettext("Stopped: it exposes no one more; its results stay."), "ok")
    return redirect(url_for("console.experiment_page", experiment_id=experiment_id))


@blp.post("/experiments/<uuid:experiment_id>/promote")
def promote(experiment_id: uuid.UUID) -> Response:
    try:
        arm = PromoteSchema().load({"arm": request.form.get("arm", "")})["arm"]
        promote_arm(db.session(), experiment_id, arm, security.actor())
    except ma.ValidationError:
        flash(gettext("Not promoted: choose an arm."), "error")
    except LoyaltyError as error:  # not stopped, promoted already, its target gone since
        flash(gettext("Not promoted:") + f" {error.detail}", "error")
    else:
        flash(gettext("Promoted %(arm)s: its treatment is the program's now.", arm=arm), "ok")
    return redirect(url_for("console.experiment_page", experiment_id=experiment_id))
