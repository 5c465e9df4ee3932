"""The console's experiment pages through the Flask test client: the list, an experiment's
definition and what each arm gets, its results (figures, uplifts with their intervals, the
charts, the sample-ratio verdict), starting, stopping and promoting it (audited under the
signed-in key's name, as through the API), refusals flashed, CSRF and sign-in.

No app context stays pushed across the client's requests (see test_console_security.py).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from loyalty.audit.models import AuditEntry
from loyalty.db import utcnow
from loyalty.experiments import services as experiments
from loyalty.experiments.definitions import ArmDefinition, ExperimentDefinition
from loyalty.experiments.models import ExperimentStatus
from loyalty.experiments.statistics import SampleRatio
from loyalty.experiments.verdicts import flag_experiment
from loyalty.rules import services as rules
from tests.console import csrf_token, sign_in
from tests.experiments import concluded
from tests.factories import ApiKeyFactory, RuleFactory
from tests.helpers import services

DAY = dt.timedelta(days=1)


@pytest.fixture
def admin(app: Flask) -> str:
    """The raw admin key of "ops-admin"."""
    with services(app):
        key: str = ApiKeyFactory(name="ops-admin", scopes=("admin",))
    return key


@pytest.fixture
def double_points(app: Flask) -> str:
    """A draft experiment on two rules, "Base earning" and "Apparel x2": control gets the
    first, "double" both."""
    now = utcnow()
    with services(app) as session:
        base = str(RuleFactory(name="Base earning").public_id)
        apparel = str(RuleFactory(name="Apparel x2").public_id)
        definition = ExperimentDefinition(
            key="double-points",
            name="Double points on apparel",
            hypothesis="Double points on apparel lift conversion for more than they cost.",
            target={"kind": "rules", "rule_ids": [base, apparel]},
            arms=(
                ArmDefinition("control", 1, control=True, rule_ids=(base,)),
                ArmDefinition("double", 1, rule_ids=(base, apparel)),
            ),
            starts_at=now - DAY,
            ends_at=now + 27 * DAY,
            margin="0.35",
        )
        return str(experiments.create_experiment(session, definition, "seed").public_id)


def page_of(experiment_id: str) -> str:
    return f"/admin/experiments/{experiment_id}"


def status_of(app: Flask, experiment_id: str) -> ExperimentStatus:
    with services(app) as session:
        return experiments.get_experiment(session, uuid.UUID(experiment_id)).status


def audited(app: Flask) -> list[tuple[str, str]]:
    with services(app) as session:
        entries = session.scalars(
            sa.select(AuditEntry)
            .where(AuditEntry.target_type == "experiment")
            .order_by(AuditEntry.id)
        )
        return [(e.actor, e.action) for e in entries]


def post(client: FlaskClient, experiment_id: str, action: str, **data: str) -> Any:
    token = csrf_token(client, page_of(experiment_id))
    return client.post(f"{page_of(experiment_id)}/{action}", data={**data, "csrf_token": token})


def flashed(response: Any) -> str:
    return html.unescape(response.text.split('<p class="flash', 1)[1].split("</p>", 1)[0])


def test_the_list_shows_each_experiments_key_name_status_and_target(client, admin, double_points):
    sign_in(client, admin)

    page = client.get("/admin/experiments")

    assert page.status_code == 200
    row = page.text.split('<table id="experiments"', 1)[1]
    assert f'href="{page_of(double_points)}"><code>double-points</code>' in row
    assert "Double points on apparel" in row
    assert '<span class="pill">draft</span>' in row
    assert "2 earning rules" in row
    assert 'href="/admin/experiments">Experiments</a>' in page.text


def test_the_page_shows_the_definition_and_what_each_arm_gets(client, admin, double_points):
    sign_in(client, admin)

    page = client.get(page_of(double_points))

    assert page.status_code == 200
    assert "Double points on apparel lift conversion" in page.text
    assert "2 earning rules: Base earning, Apparel x2" in page.text
    arms = page.text.split('<table id="arms"', 1)[1]
    assert '<td data-label="Gets">Base earning</td>' in arms
    assert '<td data-label="Gets">Base earning, Apparel x2</td>' in arms
    assert ">Start</button>" in page.text
    assert ">Stop</button>" not in page.text


def test_an_admin_starts_then_stops_an_experiment_and_both_are_audited(
    app, client, admin, double_points
):
    sign_in(client, admin)

    started = post(client, double_points, "start")
    assert started.status_code == 302
    assert status_of(app, double_points) == ExperimentStatus.RUNNING
    shown = client.get(started.location)
    assert "Started: its arms are fixed" in flashed(shown)
    assert ">Stop</button>" in shown.text

    stopped = post(client, double_points, "stop")
    assert status_of(app, double_points) == ExperimentStatus.STOPPED
    assert "Stopped" in flashed(client.get(stopped.location))
    assert audited(app) == [
        ("seed", "experiment.create"),
        ("ops-admin", "experiment.start"),
        ("ops-admin", "experiment.stop"),
    ]


def test_a_transition_the_status_refuses_is_flashed_and_changes_nothing(
    app, client, admin, double_points
):
    sign_in(client, admin)

    response = post(client, double_points, "stop")

    assert "Not stopped: Only a running experiment can become stopped" in flashed(
        client.get(response.location)
    )
    assert status_of(app, double_points) == ExperimentStatus.DRAFT
    assert audited(app) == [("seed", "experiment.create")]


def test_an_experiment_on_a_target_a_running_one_tests_is_not_started(
    app, client, admin, double_points
):
    with services(app) as session:
        draft = experiments.get_experiment(session, uuid.UUID(double_points)).definition
        rival = experiments.create_experiment(
            session, dataclasses.replace(draft, key="rival"), "seed"
        )
        experiments.start_experiment(session, rival.public_id, "seed")
    sign_in(client, admin)

    response = post(client, double_points, "start")

    assert "Not started: The experiment(s) rival already test" in flashed(
        client.get(response.location)
    )
    assert status_of(app, double_points) == ExperimentStatus.DRAFT


def test_an_experiment_whose_rule_was_switched_off_is_not_started(
    app, client, admin, double_points
):
    with services(app) as session:
        target = experiments.get_experiment(session, uuid.UUID(double_points)).definition.target
        apparel = uuid.UUID(target["rule_ids"][1])
        rules.deactivate_rule(session, apparel, "seed")
    sign_in(client, admin)

    response = post(client, double_points, "start")

    assert f"Inactive rules: {apparel}; activate them." in flashed(client.get(response.location))
    assert status_of(app, double_points) == ExperimentStatus.DRAFT


# Results


START = utcnow() - 20 * DAY
HOLDOUT = [f"h{n}" for n in range(6)]
FIRES = [f"f{n}" for n in range(6)]


@pytest.fixture
def win_back(app: Flask) -> str:
    """A stopped free-shipping experiment, six members an arm: two of the holdout ordered
    20.00 each, four of those given free shipping 30.00 each."""
    with services(app) as session:
        RuleFactory()
        experiment = concluded(
            session,
            {"holdout": HOLDOUT, "fires": FIRES},
            {"h0": 20, "h1": 20, "f0": 30, "f1": 30, "f2": 30, "f3": 30},
            START,
            target={"kind": "benefit", "code": "free_shipping"},
        )
        return str(experiment.public_id)


def cell(page: str, arm: str, label: str, table: str = "arms") -> str:
    """The text of the cell `label` in the row of `arm` of the table `table`."""
    rows = page.split(f'<table id="{table}"', 1)[1].split("</table>", 1)[0]
    row = rows.split(f'<tr data-arm="{arm}">', 1)[1].split("</tr>", 1)[0]
    found = row.split(f'data-label="{label}"', 1)[1].split(">", 1)[1].split("</td>", 1)[0]
    return html.unescape(found.replace("<br>", " | "))


def test_the_page_shows_each_arms_figures_and_its_uplifts_with_intervals(client, admin, win_back):
    sign_in(client, admin)

    page = client.get(page_of(win_back)).text

    assert cell(page, "holdout", "Exposed") == "6"
    assert cell(page, "holdout", "Conversion rate") == "33.3%"
    assert cell(page, "holdout", "Revenue / member") == "$6.67"
    assert cell(page, "fires", "Converted") == "4"
    assert cell(page, "fires", "Conversion rate") == "66.7%"
    assert cell(page, "fires", "Revenue / member") == "$20.00"
    assert '<tr data-arm="holdout">' not in page.split('<table id="uplifts"', 1)[1]
    uplift = cell(page, "fires", "Conversion uplift", "uplifts")
    assert uplift.startswith(
        '<span class="estimate"><strong>+33.3 pp</strong> | <span class="muted">'
    )
    assert " to " in uplift
    assert "p = 0.248" in uplift
    revenue = cell(page, "fires", "Revenue / member uplift", "uplifts")
    assert revenue.startswith('<span class="estimate"><strong>+$13.33</strong>')
    assert 'id="sample-ratio-fits"' in page
    assert 'id="sample-ratio-mismatch"' not in page


def test_each_charted_measure_draws_the_treated_arms_interval_against_zero(client, admin, win_back):
    sign_in(client, admin)

    page = client.get(page_of(win_back)).text

    for measure in ("conversion_uplift-chart", "net_value_per_member_uplift-chart"):
        chart = page.split(f'id="{measure}"', 1)[1].split("</svg>", 1)[0]
        assert 'class="zero"' in chart
        assert '<g class="arm" data-arm="fires" data-value=' in chart
        assert chart.count('class="interval"') == 1
        assert chart.count('class="estimate"') == 1


def test_a_sample_ratio_mismatch_is_a_visible_warning(app, client, admin):
    with services(app) as session:
        RuleFactory()
        experiment_id = str(
            concluded(
                session, {"holdout": HOLDOUT[:2], "fires": [f"f{n}" for n in range(40)]}, {}, START
            ).public_id
        )
    sign_in(client, admin)

    page = client.get(page_of(experiment_id)).text

    warning = html.unescape(page.split('id="sample-ratio-mismatch"', 1)[1].split("</p>", 1)[0])
    assert 'role="alert"' in page.split('id="sample-ratio-mismatch"', 1)[0][-60:]
    assert "p < 0.001" in warning
    assert "no uplift here can be trusted" in warning


def test_no_results_are_shown_until_every_arm_has_two_members(app, client, admin):
    with services(app) as session:
        RuleFactory()
        experiment_id = str(
            concluded(session, {"holdout": HOLDOUT, "fires": FIRES[:1]}, {}, START).public_id
        )
    sign_in(client, admin)

    page = client.get(page_of(experiment_id)).text

    assert 'id="no-results"' in page
    assert cell(page, "fires", "Exposed") == "1"
    assert 'id="uplifts"' not in page
    assert "<svg" not in page


def test_a_flagged_experiment_says_so_in_the_list_and_on_its_page(
    app, client, admin, double_points
):
    with services(app) as session:
        experiments.start_experiment(session, uuid.UUID(double_points), "seed")
        ratio = SampleRatio((2, 40), (21.0, 21.0), 34.4, 4e-9, True)
        assert flag_experiment(session, uuid.UUID(double_points), ratio, utcnow())
    sign_in(client, admin)

    listed = client.get("/admin/experiments").text
    page = client.get(page_of(double_points)).text

    assert '<td data-label="Flagged"><strong>sample-ratio mismatch</strong>' in listed
    assert 'id="flagged"' in page


# Promotion


def test_a_stopped_experiment_promotes_the_arm_chosen_once(app, client, admin, win_back):
    sign_in(client, admin)
    assert 'id="promote"' in client.get(page_of(win_back)).text

    promoted = post(client, win_back, "promote", arm="holdout")

    page = client.get(promoted.location)
    assert "Promoted holdout: its treatment is the program's now." in flashed(page)
    assert 'id="promote"' not in page.text
    assert "<code>holdout</code>" in page.text.split('id="promoted"', 1)[1]
    with services(app) as session:
        assert experiments.get_experiment(session, uuid.UUID(win_back)).promoted_arm == "holdout"
    assert audited(app)[-1] == ("ops-admin", "experiment.promote")


@pytest.mark.parametrize(
    ("arm", "said"),
    [("triple", "The experiment has no arm 'triple'."), ("", "choose an arm.")],
)
def test_a_promotion_refused_is_flashed_and_changes_nothing(
    app, client, admin, win_back, arm, said
):
    sign_in(client, admin)

    response = post(client, win_back, "promote", arm=arm)

    assert f"Not promoted: {said}" in flashed(client.get(response.location))
    with services(app) as session:
        assert experiments.get_experiment(session, uuid.UUID(win_back)).promoted_arm is None


def test_a_running_experiment_offers_no_promotion(client, admin, double_points):
    sign_in(client, admin)
    post(client, double_points, "start")

    assert 'id="promote"' not in client.get(page_of(double_points)).text


def test_an_unknown_experiment_is_a_404_page(client, admin):
    sign_in(client, admin)

    assert client.get(page_of(str(uuid.uuid4()))).status_code == 404


@pytest.mark.parametrize("sent", [None, "not-the-token"])
def test_every_experiment_write_needs_the_csrf_token(app, client, admin, double_points, sent):
    sign_in(client, admin)
    data = {} if sent is None else {"csrf_token": sent}

    for action in ("start", "stop", "promote"):
        response = client.post(f"{page_of(double_points)}/{action}", data=data)
        assert response.status_code == 400, action
        assert "security token" in response.text
    assert status_of(app, double_points) == ExperimentStatus.DRAFT


def test_the_pages_need_a_signed_in_admin(app, client, double_points):
    for response in (
        client.get("/admin/experiments"),
        client.get(page_of(double_points)),
        client.post(f"{page_of(double_points)}/start"),
    ):
        assert response.status_code == 302
        assert "/admin/login" in response.location
    assert status_of(app, double_points) == ExperimentStatus.DRAFT
