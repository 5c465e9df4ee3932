"""The export's sections fed by the jobs and experiments: automation firings and experiment
assignments, each as the member sees it."""

from __future__ import annotations

import datetime as dt

from loyalty.automations import firing, services
from loyalty.experiments.models import ExposureSource
from loyalty.privacy.export import export
from loyalty.schemas.automations import AutomationInSchema
from tests.experiments import T0, expose, running
from tests.factories import MemberFactory

DAY = dt.timedelta(days=1)


def test_the_export_lists_the_members_automation_firings(session):
    welcome = services.create_automation(
        session,
        AutomationInSchema().load(
            {
                "name": "Welcome",
                "trigger": {"kind": "enrolled", "delay_days": 1},
                "actions": [{"type": "webhook"}],
            }
        ),
        "test",
        now=T0 - 30 * DAY,
    )
    MemberFactory(c1=True, now=T0)
    firing.fire_due(session, now=T0 + DAY)

    [fired] = export(session, "c1", "test", now=T0 + DAY).automation_firings

    assert (fired["automation_id"], fired["automation_name"], fired["version"]) == (
        welcome.public_id,
        "Welcome",
        1,
    )
    assert fired["fired_at"] == T0 + DAY


def test_the_export_lists_the_members_experiment_arms(session):
    MemberFactory(c1=True, now=T0 - DAY)
    experiment = running(session)
    expose(session, experiment, ["c1"], "holdout", T0 + DAY, ExposureSource.ORDER)

    [assigned] = export(session, "c1", "test", now=T0 + 2 * DAY).experiment_assignments

    assert assigned == {
        "experiment": "winback",
        "experiment_name": "Win-back bonus",
        "arm": "holdout",
        "first_exposed_at": T0 + DAY,
        "exposure_source": ExposureSource.ORDER,
    }
