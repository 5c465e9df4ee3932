"""/v1/admin/experiments: create a draft, list (paginated, by status), get, change, start,
stop, results, promote an arm; every write audited; every refusal as problem+json with its
code."""

from __future__ import annotations

import datetime as dt
import inspect
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from loyalty.automations import services as automations
from loyalty.automations.models import Automation
from loyalty.conclusions.results import experiment_results
from loyalty.db import utcnow
from loyalty.experiments import statistics
from loyalty.experiments.statistics import Estimate
from loyalty.rules.models import EarningRule
from loyalty.schemas.automations import AutomationInSchema
from loyalty.schemas.experiments import CONFIDENCE, TESTS
from tests.experiments import concluded
from tests.factories import RuleFactory
from tests.helpers import created, iso, ok, problem, services
from tests.integration.test_automations import WEBHOOK

URL = "/v1/admin/experiments"
RULE_A = "6f1c7a52-8d1e-4c35-9a8b-2f3e4d5c6b7a"
RULE_B = "0b9e8d7c-6f5a-4b3c-8d2e-1f0a9b8c7d6e"
AUTOMATION = "9a1d2c3b-4e5f-4a6b-8c7d-0e1f2a3b4c5d"
DAY = dt.timedelta(days=1)
# Starting is refused once the window has ended, so the window is around the real now.
NOW = utcnow()
ARMS = [
    {"key": "control", "weight": 1, "control": True, "rule_ids": [RULE_A]},
    {"key": "double", "weight": 1, "rule_ids": [RULE_A, RULE_B]},
]


@pytest.fixture(autouse=True)
def targets(app: Flask) -> None:
    """The program's rules A and B and the automation the experiments name, under the fixed
    ids the expectations read (experiments refuse a target the program does not have)."""
    with services(app) as session:
        for public_id in (RULE_A, RULE_B):
            rule = RuleFactory()
            session.execute(
                sa.update(EarningRule)
                .where(EarningRule.public_id == rule.public_id)
                .values(public_id=uuid.UUID(public_id))
            )
        welcome = automations.create_automation(
            session,
            AutomationInSchema().load(
                {
                    "name": "Win back",
                    "trigger": {"kind": "enrolled", "delay_days": 0},
                    "actions": [WEBHOOK],
                }
            ),
            "test",
        )
        session.execute(
            sa.update(Automation)
            .where(Automation.public_id == welcome.public_id)
            .values(public_id=uuid.UUID(AUTOMATION))
        )
        session.commit()


def body(**fields: Any) -> dict[str, Any]:
    """A double-points experiment on two rules: control gets rule A, treated both."""
    return {
        "key": "double-points",
        "name": "Double points",
        "hypothesis": "Double points on apparel lift conversion for more than they cost.",
        "target": {"kind": "rules", "rule_ids": [RULE_A, RULE_B]},
        "arms": ARMS,
        "starts_at": iso(NOW - DAY),
        "ends_at": iso(NOW + 27 * DAY),
        "margin": "0.35",
    } | fields


def create(client: Any, admin: dict[str, str], **fields: Any) -> dict[str, Any]:
    return created(client.post(URL, json=body(**fields), headers=admin))


def start(client: Any, admin: dict[str, str], experiment_id: str) -> dict[str, Any]:
    return ok(client.post(f"{URL}/{experiment_id}/start", headers=admin))


def running(client: Any, admin: dict[str, str], **fields: Any) -> dict[str, Any]:
    return start(client, admin, create(client, admin, **fields)["id"])


# Creating and reading


def test_an_experiment_is_created_as_a_draft(client, admin):
    found = create(client, admin)

    assert uuid.UUID(found["id"])
    assert (found["key"], found["status"]) == ("double-points", "draft")
    assert found["target"] == {"kind": "rules", "rule_ids": [RULE_A, RULE_B]}
    assert found["arms"] == [
        {"key": "control", "weight": 1, "control": True, "rule_ids": [RULE_A], "applies": None},
        {
            "key": "double",
            "weight": 1,
            "control": False,
            "rule_ids": [RULE_A, RULE_B],
            "applies": None,
        },
    ]
    assert found["eligibility"] == {"segments": [], "tiers": [], "new_members_only": False}
    assert found["margin"] == "0.35"
    assert (found["started_at"], found["stopped_at"]) == (None, None)
    assert ok(client.get(f"{URL}/{found['id']}", headers=admin)) == found


def test_an_automation_experiment_says_whether_it_applies_per_arm(client, admin):
    found = create(
        client,
        admin,
        key="win-back",
        target={"kind": "automation", "automation_id": AUTOMATION},
        arms=[
            {"key": "holdout", "weight": 1, "control": True, "applies": False},
            {"key": "bonus", "weight": 3, "applies": True},
        ],
        eligibility={"tiers": ["gold"], "new_members_only": True},
    )

    assert found["target"] == {"kind": "automation", "automation_id": AUTOMATION}
    assert [(arm["key"], arm["applies"], arm["rule_ids"]) for arm in found["arms"]] == [
        ("holdout", False, None),
        ("bonus", True, None),
    ]
    assert found["eligibility"] == {"segments": [], "tiers": ["gold"], "new_members_only": True}


UNKNOWN = "3c2b1a09-8f7e-4d6c-9b5a-4e3d2c1b0a9f"


@pytest.mark.parametrize(
    ("target", "arms", "field"),
    [
        (
            {"kind": "rules", "rule_ids": [RULE_A, UNKNOWN]},
            [
                {"key": "control", "weight": 1, "control": True, "rule_ids": [RULE_A]},
                {"key": "new", "weight": 1, "rule_ids": [UNKNOWN]},
            ],
            "target.rule_ids",
        ),
        (
            {"kind": "automation", "automation_id": UNKNOWN},
            [
                {"key": "holdout", "weight": 1, "control": True, "applies": False},
                {"key": "fires", "weight": 1, "applies": True},
            ],
            "target.automation_id",
        ),
        (
            {"kind": "benefit", "code": "free_shipping"},
            [
                {"key": "holdout", "weight": 1, "control": True, "applies": False},
                {"key": "ships", "weight": 1, "applies": True},
            ],
            "target.code",
        ),
    ],
)
def test_a_target_the_program_does_not_have_is_422(client, admin, target, arms, field):
    response = client.post(URL, json=body(target=target, arms=arms), headers=admin)

    assert list(problem(response, 422, "validation_error")["errors"]) == [field]
    assert ok(client.get(URL, headers=admin))["items"] == []


def test_a_draft_cannot_change_to_a_target_the_program_does_not_have(client, admin):
    draft = create(client, admin)
    arms = [
        {"key": "control", "weight": 1, "control": True, "rule_ids": []},
        {"key": "new", "weight": 1, "rule_ids": [UNKNOWN]},
    ]

    response = client.patch(
        f"{URL}/{draft['id']}",
        json={"target": {"kind": "rules", "rule_ids": [UNKNOWN]}, "arms": arms},
        headers=admin,
    )

    assert list(problem(response, 422, "validation_error")["errors"]) == ["target.rule_ids"]


def test_an_experiment_on_an_inactive_rule_does_not_start(client, admin):
    draft = create(client, admin)
    ok(client.post(f"/v1/admin/rules/{RULE_B}/deactivate", headers=admin))

    response = client.post(f"{URL}/{draft['id']}/start", headers=admin)

    errors = problem(response, 422, "validation_error")["errors"]
    assert errors == {"target.rule_ids": [f"Inactive rules: {RULE_B}; activate them."]}
    assert ok(client.get(f"{URL}/{draft['id']}", headers=admin))["status"] == "draft"


def test_a_definition_that_makes_no_sense_is_422_under_its_fields_path(client, admin):
    arms = [
        {"key": "control", "weight": 1, "control": True, "rule_ids": [RULE_A]},
        {"key": "other", "weight": 1, "rule_ids": [AUTOMATION]},
    ]

    response = client.post(URL, json=body(arms=arms, ends_at=iso(NOW - 2 * DAY)), headers=admin)

    errors = problem(response, 422, "validation_error")["errors"]
    assert errors == {
        "arms.1.rule_ids": ["Only rules of the experiment's target."],
        "ends_at": ["After starts_at."],
    }


def test_two_controls_are_422(client, admin):
    arms = [{**arm, "control": True} for arm in ARMS]

    errors = problem(
        client.post(URL, json=body(arms=arms), headers=admin), 422, "validation_error"
    )["errors"]

    assert errors == {"arms": ["Exactly one arm must be the control."]}


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"key": "Not A Slug"}, "key"),
        ({"margin": "1.5"}, "margin"),
        ({"margin": 0.35}, "margin"),
        ({"target": {"kind": "coupon"}}, "target.kind"),
        ({"target": {"kind": "rules", "rule_ids": ["not-a-uuid"]}}, "target.rule_ids.0"),
        ({"arms": [{"key": "control", "weight": 0, "control": True}]}, "arms.0.weight"),
        ({"arms": [{"key": "control", "weight": True, "control": True}]}, "arms.0.weight"),
        ({"starts_at": "2031-03-01T00:00:00"}, "starts_at"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_a_malformed_field_is_422(client, admin, fields, path):
    response = client.post(URL, json=body(**fields), headers=admin)

    assert path in problem(response, 422, "validation_error")["errors"]


def test_an_eligibility_segment_must_be_a_live_saved_segment(client, admin):
    response = client.post(URL, json=body(eligibility={"segments": ["vips"]}), headers=admin)

    assert list(problem(response, 422, "unknown_segment")["errors"]) == ["eligibility.segments"]


def test_a_key_is_one_experiments(client, admin):
    create(client, admin)

    response = client.post(URL, json=body(name="Again"), headers=admin)

    problem(response, 409, "experiment_exists")


def test_an_unknown_experiment_is_404(client, admin):
    missing = f"{URL}/{uuid.uuid4()}"

    problem(client.get(missing, headers=admin), 404, "not_found")
    problem(client.patch(missing, json={"name": "x"}, headers=admin), 404, "not_found")
    problem(client.post(f"{missing}/start", headers=admin), 404, "not_found")
    problem(client.post(f"{missing}/stop", headers=admin), 404, "not_found")


def test_experiments_are_for_admins_only(client, checkout, app_key):
    for headers in (checkout, app_key):
        problem(client.get(URL, headers=headers), 403, "forbidden")
        problem(client.post(URL, json=body(), headers=headers), 403, "forbidden")


# Listing


def test_the_list_pages_newest_first_with_a_cursor(client, admin):
    ids = [create(client, admin, key=f"exp-{n}")["id"] for n in range(3)]

    first = ok(client.get(URL, query_string={"limit": 2}, headers=admin))
    second = ok(
        client.get(URL, query_string={"limit": 2, "cursor": first["next_cursor"]}, headers=admin)
    )

    assert [e["id"] for e in first["items"] + second["items"]] == ids[::-1]
    assert second["next_cursor"] is None


def test_the_list_filters_by_status(client, admin):
    draft = create(client, admin, key="still-a-draft")["id"]
    started = running(client, admin, key="started")["id"]

    def listed(status: str) -> list[str]:
        found = ok(client.get(URL, query_string={"status": status}, headers=admin))
        return [e["id"] for e in found["items"]]

    assert (listed("draft"), listed("running"), listed("stopped")) == ([draft], [started], [])


@pytest.mark.parametrize(
    "query", [{"status": "finished"}, {"cursor": "not-ours"}, {"limit": 201}, {"state": "draft"}]
)
def test_a_bad_list_query_is_422(client, admin, query):
    problem(client.get(URL, query_string=query, headers=admin), 422, "validation_error")


# Changing


def test_a_draft_changes_anything_but_its_key(client, admin):
    found = create(client, admin)
    arms = [{**ARMS[0], "weight": 3}, ARMS[1]]

    changed = ok(
        client.patch(f"{URL}/{found['id']}", json={"arms": arms, "margin": "0.4"}, headers=admin)
    )

    assert [arm["weight"] for arm in changed["arms"]] == [3, 1]
    assert (changed["margin"], changed["name"]) == ("0.4", "Double points")


@pytest.mark.parametrize(
    ("change", "field"), [({}, "_schema"), ({"key": "renamed"}, "key"), ({"name": None}, "name")]
)
def test_a_change_that_cannot_be_made_is_422(client, admin, change, field):
    found = create(client, admin)

    response = client.patch(f"{URL}/{found['id']}", json=change, headers=admin)

    assert field in problem(response, 422, "validation_error")["errors"]


def test_a_change_is_checked_as_a_whole_definition(client, admin):
    found = create(client, admin)

    response = client.patch(
        f"{URL}/{found['id']}", json={"ends_at": iso(NOW - 2 * DAY)}, headers=admin
    )

    assert problem(response, 422, "validation_error")["errors"] == {"ends_at": ["After starts_at."]}


def test_a_started_experiment_keeps_its_arms(client, admin):
    found = running(client, admin)
    arms = [{**ARMS[0], "weight": 2}, ARMS[1]]

    response = client.patch(f"{URL}/{found['id']}", json={"arms": arms}, headers=admin)

    problem(response, 409, "experiment_arms_locked")


def test_a_started_experiment_keeps_its_window_and_margin_but_may_be_renamed(client, admin):
    found = running(client, admin)

    refused = client.patch(
        f"{URL}/{found['id']}",
        json={"margin": "0.5", "ends_at": iso(NOW + 40 * DAY)},
        headers=admin,
    )
    renamed = ok(client.patch(f"{URL}/{found['id']}", json={"name": "2x"}, headers=admin))

    assert problem(refused, 409, "experiment_locked")["fields"] == ["ends_at", "margin"]
    assert (renamed["name"], renamed["margin"], renamed["status"]) == ("2x", "0.35", "running")


# Starting and stopping


def test_a_draft_starts_and_a_running_experiment_stops(client, admin):
    found = create(client, admin)

    started = start(client, admin, found["id"])
    stopped = ok(client.post(f"{URL}/{found['id']}/stop", headers=admin))

    assert started["status"] == "running"
    assert started["started_at"] is not None
    assert stopped["status"] == "stopped"
    assert stopped["stopped_at"] >= started["started_at"]


def test_only_a_draft_starts_and_only_a_running_experiment_stops(client, admin):
    found = create(client, admin)

    not_running = client.post(f"{URL}/{found['id']}/stop", headers=admin)
    start(client, admin, found["id"])
    started_again = client.post(f"{URL}/{found['id']}/start", headers=admin)

    assert problem(not_running, 409, "experiment_status_conflict")["status_now"] == "draft"
    assert problem(started_again, 409, "experiment_status_conflict")["status_now"] == "running"


def test_an_experiment_whose_window_has_ended_does_not_start(client, admin):
    found = create(client, admin, starts_at=iso(NOW - 30 * DAY), ends_at=iso(NOW - DAY))

    response = client.post(f"{URL}/{found['id']}/start", headers=admin)

    problem(response, 409, "experiment_status_conflict")


def test_an_experiment_does_not_start_on_a_target_a_running_one_tests(client, admin):
    running(client, admin, key="first")
    second = create(
        client,
        admin,
        key="second",
        target={"kind": "rules", "rule_ids": [RULE_B]},
        arms=[
            {"key": "control", "weight": 1, "control": True, "rule_ids": []},
            {"key": "b", "weight": 1, "rule_ids": [RULE_B]},
        ],
    )

    response = client.post(f"{URL}/{second['id']}/start", headers=admin)

    assert problem(response, 409, "experiment_target_taken")["experiments"] == ["first"]


# Audit


def test_every_write_is_audited_under_the_keys_name(client, admin):
    found = create(client, admin)
    client.patch(f"{URL}/{found['id']}", json={"name": "Double points, apparel"}, headers=admin)
    start(client, admin, found["id"])
    ok(client.post(f"{URL}/{found['id']}/stop", headers=admin))

    entries = ok(
        client.get(
            "/v1/admin/audit-log",
            query_string={"target_type": "experiment", "target_id": found["id"]},
            headers=admin,
        )
    )["items"]

    assert [e["action"] for e in entries] == [
        "experiment.stop",
        "experiment.start",
        "experiment.update",
        "experiment.create",
    ]
    assert entries[-1]["before"] is None
    assert [arm["key"] for arm in entries[-1]["after"]["arms"]] == ["control", "double"]
    assert (entries[0]["before"]["status"], entries[0]["after"]["status"]) == (
        "running",
        "stopped",
    )


# Results: an experiment whose window is in the past, members exposed as exposure recording
# does and orders placed through the service, all at moments the test sets.

T0 = NOW - 20 * DAY


def exposed(app: Flask, arms: dict[str, list[str]], dollars: dict[str, int]) -> str:
    """A win-back automation against a holdout run from T0, stopped ten days in (see
    ``concluded``); returns its id."""
    with services(app) as session:
        RuleFactory()
        return str(concluded(session, arms, dollars, T0).public_id)


def as_json(estimate: Estimate) -> dict[str, float]:
    return {
        "value": pytest.approx(estimate.value),
        "low": pytest.approx(estimate.low),
        "high": pytest.approx(estimate.high),
        "p_value": pytest.approx(estimate.p_value),
    }


def test_the_results_give_each_arms_figures_and_its_uplift_against_control(app, client, admin):
    experiment_id = exposed(
        app,
        {"holdout": ["h1", "h2", "h3"], "fires": ["f1", "f2", "f3"]},
        {"h1": 40, "f1": 10, "f2": 60},
    )

    found = ok(client.get(f"{URL}/{experiment_id}/results", headers=admin))

    assert (found["experiment_id"], found["status"]) == (experiment_id, "stopped")
    assert (found["window_start"], found["window_end"]) == (iso(T0), iso(T0 + 10 * DAY))
    assert (found["currency"], found["margin"], found["confidence"]) == ("USD", "0.35", 0.95)
    assert found["tests"] == TESTS
    assert found["exposed"] == {"holdout": 3, "fires": 3}
    results = found["results"]
    assert results["control"] == "holdout"
    holdout, fires = results["arms"]
    assert holdout["comparison"] is None
    assert (holdout["key"], holdout["control"], holdout["weight"]) == ("holdout", True, 1)
    assert (holdout["exposed"], holdout["converted"]) == (3, 1)
    assert holdout["conversion_rate"] == pytest.approx(1 / 3)
    assert holdout["revenue_per_member"] == pytest.approx(4000 / 3)
    assert (fires["key"], fires["control"], fires["converted"]) == ("fires", False, 2)
    assert fires["revenue_per_member"] == pytest.approx(7000 / 3)
    with services(app) as session:
        report = experiment_results(session, uuid.UUID(experiment_id))
    assert report.results is not None
    figures = report.results.arms[1]
    assert fires["points_cost_per_member"] == pytest.approx(figures.points_cost_per_member)
    assert fires["net_value_per_member"] == pytest.approx(figures.net_value_per_member)
    (comparison,) = report.results.comparisons
    assert fires["comparison"] == {
        "conversion_uplift": as_json(comparison.conversion_uplift),
        "conversion_relative_uplift": as_json(comparison.conversion_relative_uplift),
        "revenue_per_member_uplift": as_json(comparison.revenue_per_member_uplift),
        "net_value_per_member_uplift": as_json(comparison.net_value_per_member_uplift),
    }
    uplift = fires["comparison"]["conversion_uplift"]
    assert uplift["value"] == pytest.approx(1 / 3)
    assert uplift["low"] < uplift["value"] < uplift["high"]
    assert results["sample_ratio"] == {
        "observed": {"holdout": 3, "fires": 3},
        "expected": {"holdout": 3.0, "fires": 3.0},
        "p_value": 1.0,
        "mismatch": False,
    }


def test_the_confidence_said_is_the_one_the_intervals_are_computed_at():
    analyse = inspect.signature(statistics.analyse)

    assert analyse.parameters["confidence"].default == CONFIDENCE


def test_a_figure_the_statistics_cannot_define_is_null(app, client, admin):
    # No one in the holdout ordered: the ratio of rates divides by zero.
    experiment_id = exposed(app, {"holdout": ["h1", "h2"], "fires": ["f1", "f2"]}, {"f1": 10})

    found = ok(client.get(f"{URL}/{experiment_id}/results", headers=admin))

    relative = found["results"]["arms"][1]["comparison"]["conversion_relative_uplift"]
    assert (relative["value"], relative["low"], relative["high"]) == (None, None, None)
    assert relative["p_value"] == pytest.approx(
        found["results"]["arms"][1]["comparison"]["conversion_uplift"]["p_value"]
    )


def test_there_are_no_results_while_an_arm_has_fewer_than_two_members(app, client, admin):
    experiment_id = exposed(app, {"holdout": ["h1", "h2"], "fires": ["f1"]}, {"f1": 10})

    found = ok(client.get(f"{URL}/{experiment_id}/results", headers=admin))

    assert found["exposed"] == {"holdout": 2, "fires": 1}
    assert found["results"] is None


def test_a_draft_has_no_one_exposed(client, admin):
    draft = create(client, admin)

    found = ok(client.get(f"{URL}/{draft['id']}/results", headers=admin))

    assert (found["exposed"], found["results"]) == ({"control": 0, "double": 0}, None)


def test_an_unknown_experiment_has_no_results_and_promotes_nothing(client, admin):
    missing = f"{URL}/{uuid.uuid4()}"

    problem(client.get(f"{missing}/results", headers=admin), 404, "not_found")
    problem(
        client.post(f"{missing}/promote", json={"arm": "double"}, headers=admin), 404, "not_found"
    )


# Promotion: a rules experiment, so promoting changes which of its rules are active.


@pytest.fixture
def rules_experiment(client: Any, admin: dict[str, str]) -> dict[str, Any]:
    """A stopped experiment on two real rules: control gets the first, "double" both."""
    first, second = (
        created(client.post("/v1/admin/rules", json=RuleFactory.build(), headers=admin))["id"]
        for _ in range(2)
    )
    arms = [
        {"key": "control", "weight": 1, "control": True, "rule_ids": [first]},
        {"key": "double", "weight": 1, "rule_ids": [first, second]},
    ]
    found = running(client, admin, target={"kind": "rules", "rule_ids": [first, second]}, arms=arms)
    ok(client.post(f"{URL}/{found['id']}/stop", headers=admin))
    return {"id": found["id"], "rules": (first, second)}


def active(client: Any, admin: dict[str, str], rule_id: str) -> bool:
    return bool(ok(client.get(f"/v1/admin/rules/{rule_id}", headers=admin))["active"])


def test_promoting_an_arm_makes_its_rules_the_programs_and_is_audited(
    client, admin, rules_experiment
):
    experiment_id = rules_experiment["id"]
    first, second = rules_experiment["rules"]

    promoted = ok(
        client.post(f"{URL}/{experiment_id}/promote", json={"arm": "control"}, headers=admin)
    )

    assert (promoted["status"], promoted["promoted_arm"]) == ("stopped", "control")
    assert promoted["promoted_at"] is not None
    assert ok(client.get(f"{URL}/{experiment_id}", headers=admin)) == promoted
    assert (active(client, admin, first), active(client, admin, second)) == (True, False)
    entries = ok(
        client.get(
            "/v1/admin/audit-log",
            query_string={"target_type": "experiment", "target_id": experiment_id},
            headers=admin,
        )
    )["items"]
    assert entries[0]["action"] == "experiment.promote"
    assert (entries[0]["before"]["promoted_arm"], entries[0]["after"]["promoted_arm"]) == (
        None,
        "control",
    )


def test_an_experiment_promotes_one_arm_once(client, admin, rules_experiment):
    promote = f"{URL}/{rules_experiment['id']}/promote"
    ok(client.post(promote, json={"arm": "double"}, headers=admin))

    again = client.post(promote, json={"arm": "control"}, headers=admin)

    assert problem(again, 409, "experiment_promoted")["promoted_arm"] == "double"


def test_only_a_stopped_experiment_promotes_an_arm(client, admin):
    found = running(client, admin)

    response = client.post(f"{URL}/{found['id']}/promote", json={"arm": "double"}, headers=admin)

    assert problem(response, 409, "experiment_status_conflict")["status_now"] == "running"


def test_promoting_an_arm_the_experiment_has_not_is_422(client, admin, rules_experiment):
    promote = f"{URL}/{rules_experiment['id']}/promote"

    unknown = client.post(promote, json={"arm": "triple"}, headers=admin)
    missing = client.post(promote, json={}, headers=admin)

    assert problem(unknown, 422, "unknown_arm")["errors"] == {"arm": ["One of control, double."]}
    assert "arm" in problem(missing, 422, "validation_error")["errors"]
