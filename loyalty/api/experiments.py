"""Admin: A/B experiments on earning rules, automations and benefits: create a draft,
change it, start and stop it, read its results and promote an arm. Every write is audited
by the services."""

from __future__ import annotations

import uuid
from typing import Any

from flask.views import MethodView

from loyalty.api.auth import current_caller, requires
from loyalty.api.base import Blueprint
from loyalty.conclusions import targets
from loyalty.conclusions.promotion import promote_arm
from loyalty.conclusions.results import experiment_results
from loyalty.experiments import services as experiments
from loyalty.experiments.definitions import ExperimentChanges, ExperimentDefinition
from loyalty.experiments.models import ExperimentStatus
from loyalty.experiments.stored import ExperimentView
from loyalty.extensions import db
from loyalty.pagination import cursor_to, position_of
from loyalty.schemas.experiments import (
    ExperimentInSchema,
    ExperimentListQuerySchema,
    ExperimentPageSchema,
    ExperimentResultsSchema,
    ExperimentSchema,
    PromoteSchema,
    results_body,
    update_schema,
)

blp = Blueprint(
    "experiments",
    __name__,
    url_prefix="/v1/admin",
    description="Admin: A/B experiments on earning rules, automations and benefits.",
)

FREE_SHIPPING_EXAMPLE = {
    "key": "free-shipping",
    "name": "Free shipping for silver",
    "hypothesis": "Silver members with free shipping order more often, enough to pay for it.",
    "target": {"kind": "benefit", "code": "free_shipping"},
    "arms": [
        {"key": "holdout", "weight": 1, "control": True, "applies": False},
        {"key": "ships-free", "weight": 1, "applies": True},
    ],
    "eligibility": {"tiers": ["silver"]},
    "starts_at": "2031-03-01T00:00:00Z",
    "ends_at": "2031-03-29T00:00:00Z",
    "margin": "0.35",
}
INVALID = (
    "validation_error: an invalid definition, each message under its field's path "
    '("arms.1.rule_ids"), or a target the program does not have (`target.rule_ids`, '
    "`target.automation_id`: no such rule or automation; `target.code`: no tier grants the "
    "benefit); unknown_segment: an `eligibility.segments` key that is no live "
    "saved segment's."
)
NOT_FOUND = "not_found: no such experiment."
RESULTS_DESCRIPTION = (
    "Over the window (its starts_at to the earliest of its ends_at, its stop and now), per "
    "member exposed from their first exposure: whether they ordered, their revenue net of "
    "refunds and the cost of the points issued to them. Per arm: members exposed and "
    "converted, the conversion rate and means per member; per treated arm against control: "
    "absolute and relative conversion uplift and the uplift of revenue and net value per "
    "member, each with its interval at `confidence` and the p-value of no difference "
    "(`tests` names the method of each); and the sample-ratio check of exposures against "
    "the weights. `results` is null, with `exposed`, until every arm has two members."
)
STATUS_CONFLICT = "experiment_status_conflict: the experiment's status does not allow it."


def experiment_body(view: ExperimentView) -> dict[str, Any]:
    definition = view.definition
    return {
        "id": view.public_id,
        "key": definition.key,
        "name": definition.name,
        "hypothesis": definition.hypothesis,
        "status": view.status.value,
        "target": definition.target,
        "arms": [arm.as_fields() for arm in definition.arms],
        "eligibility": definition.eligibility.as_fields(),
        "starts_at": definition.starts_at,
        "ends_at": definition.ends_at,
        "margin": definition.margin,
        "started_at": view.started_at,
        "stopped_at": view.stopped_at,
        "flagged_at": view.flagged_at,
        "promoted_arm": view.promoted_arm,
        "promoted_at": view.promoted_at,
        "created_at": view.created_at,
    }


@blp.route("/experiments")
class Experiments(MethodView):
    @requires("admin")
    @blp.arguments(ExperimentListQuerySchema, location="query")
    @blp.response(200, ExperimentPageSchema)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """List experiments, newest first"""
        status = query["status"]
        found, next_position = experiments.list_experiments(
            db.session(),
            status=ExperimentStatus(status) if status is not None else None,
            limit=query["limit"],
            after=position_of(query["cursor"]),
        )
        return {
            "items": [experiment_body(view) for view in found],
            "next_cursor": cursor_to(next_position),
        }

    @requires("admin")
    @blp.arguments(ExperimentInSchema, example=FREE_SHIPPING_EXAMPLE)
    @blp.response(201, ExperimentSchema)
    @blp.alt_response(409, description="experiment_exists: the key is another experiment's.")
    @blp.alt_response(422, description=INVALID)
    def post(self, definition: ExperimentDefinition) -> dict[str, Any]:
        """Create an experiment as a draft"""
        return experiment_body(
            targets.create_experiment(db.session(), definition, current_caller().name)
        )


@blp.route("/experiments/<uuid:experiment_id>")
class Experiment(MethodView):
    @requires("admin")
    @blp.response(200, ExperimentSchema)
    @blp.alt_response(404, description=NOT_FOUND)
    def get(self, experiment_id: uuid.UUID) -> dict[str, Any]:
        """An experiment"""
        return experiment_body(experiments.get_experiment(db.session(), experiment_id))

    @requires("admin")
    @blp.arguments(update_schema(), example={"name": "Win-back bonus, 28 days"})
    @blp.response(200, ExperimentSchema)
    @blp.alt_response(404, description=NOT_FOUND)
    @blp.alt_response(
        409,
        description="experiment_arms_locked: the arms or weights of a running or stopped "
        "experiment (a change would move members between arms); experiment_locked: its "
        "target, eligibility, window or margin (only name and hypothesis change once started).",
    )
    @blp.alt_response(422, description=INVALID)
    def patch(self, changes: ExperimentChanges, experiment_id: uuid.UUID) -> dict[str, Any]:
        """Change an experiment: a draft anything but its key, a started one its name and
        hypothesis"""
        return experiment_body(
            targets.change_experiment(db.session(), experiment_id, changes, current_caller().name)
        )


@blp.route("/experiments/<uuid:experiment_id>/start")
class StartExperiment(MethodView):
    @requires("admin")
    @blp.response(200, ExperimentSchema)
    @blp.alt_response(404, description=NOT_FOUND)
    @blp.alt_response(
        409,
        description=f"{STATUS_CONFLICT} Only a draft starts, and not once its window ended. "
        "experiment_target_taken: a live experiment (running, or stopped with no arm promoted) "
        "tests the same rule, automation or benefit.",
    )
    @blp.alt_response(
        422,
        description="validation_error: the target is gone, or its rules or automation are "
        "inactive (the experiment decides who gets them: they must be active), each message "
        "under its field's path (`target.rule_ids`, `target.automation_id`, `target.code`).",
    )
    def post(self, experiment_id: uuid.UUID) -> dict[str, Any]:
        """Start a draft: its arms are fixed from now on; members are exposed within its
        window"""
        return experiment_body(
            targets.start_experiment(db.session(), experiment_id, current_caller().name)
        )


@blp.route("/experiments/<uuid:experiment_id>/stop")
class StopExperiment(MethodView):
    @requires("admin")
    @blp.response(200, ExperimentSchema)
    @blp.alt_response(404, description=NOT_FOUND)
    @blp.alt_response(409, description=f"{STATUS_CONFLICT} Only a running experiment stops.")
    def post(self, experiment_id: uuid.UUID) -> dict[str, Any]:
        """Stop a running experiment: it exposes no one from now on; its results stay"""
        return experiment_body(
            experiments.stop_experiment(db.session(), experiment_id, current_caller().name)
        )


@blp.route("/experiments/<uuid:experiment_id>/results")
class ExperimentResults(MethodView):
    @requires("admin")
    @blp.response(200, ExperimentResultsSchema)
    @blp.alt_response(404, description=NOT_FOUND)
    @blp.doc(description=RESULTS_DESCRIPTION)
    def get(self, experiment_id: uuid.UUID) -> dict[str, Any]:
        """The experiment's results: per arm, and each treated arm against control"""
        return results_body(experiment_results(db.session(), experiment_id))


@blp.route("/experiments/<uuid:experiment_id>/promote")
class PromoteArm(MethodView):
    @requires("admin")
    @blp.arguments(PromoteSchema, example={"arm": "bonus"})
    @blp.response(200, ExperimentSchema)
    @blp.alt_response(404, description=f"{NOT_FOUND} Or a rule or automation it targets.")
    @blp.alt_response(
        409,
        description=f"{STATUS_CONFLICT} Only a stopped experiment promotes an arm. "
        "experiment_promoted: it promoted one already.",
    )
    @blp.alt_response(
        422,
        description="unknown_arm: no arm of the experiment has that key; unknown_segment, "
        "rule_not_grantable: the automation to activate is no longer valid.",
    )
    def post(self, body: dict[str, Any], experiment_id: uuid.UUID) -> dict[str, Any]:
        """Promote an arm of a stopped experiment: its treatment becomes the program's"""
        return experiment_body(
            promote_arm(db.session(), experiment_id, body["arm"], current_caller().name)
        )
