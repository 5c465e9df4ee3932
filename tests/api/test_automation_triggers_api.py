"""/v1/admin/automations: the parameters of the segment, reward, tier and cart triggers,
checked as problem+json field errors."""

from __future__ import annotations

import pytest

from tests.api.test_automations_api import URL, WIN_BACK
from tests.helpers import problem


@pytest.mark.parametrize(
    ("trigger", "field"),
    [
        ({"kind": "segment_entered"}, "trigger.segment"),
        ({"kind": "segment_left", "segment": "Not A Key"}, "trigger.segment"),
        ({"kind": "segment_left", "segment": "vips", "days": 3}, "trigger.days"),
        ({"kind": "reward_affordable", "reward_id": "a mug"}, "trigger.reward_id"),
        ({"kind": "reward_affordable", "segment": "vips"}, "trigger.segment"),
        ({"kind": "cart_abandoned"}, "trigger.after_hours"),
        ({"kind": "cart_abandoned", "after_hours": 0}, "trigger.after_hours"),
        ({"kind": "cart_abandoned", "after_hours": 721}, "trigger.after_hours"),
        ({"kind": "cart_abandoned", "after_hours": 1.5}, "trigger.after_hours"),
        ({"kind": "cart_abandoned", "after_hours": "4"}, "trigger.after_hours"),
        ({"kind": "cart_abandoned", "after_hours": 4, "days": 2}, "trigger.days"),
        ({"kind": "inactive", "days": 30, "after_hours": 4}, "trigger.after_hours"),
    ],
)
def test_an_invalid_trigger_is_422(client, admin, trigger, field):
    response = client.post(URL, json={**WIN_BACK, "trigger": trigger}, headers=admin)

    body = problem(response, 422, "validation_error")
    assert any(key.startswith(field) for key in body["errors"]), body["errors"]


def test_a_segment_trigger_naming_no_live_segment_is_422(client, admin):
    trigger = {"kind": "segment_entered", "segment": "nobody"}
    response = client.post(URL, json={**WIN_BACK, "trigger": trigger}, headers=admin)

    body = problem(response, 422, "unknown_segment")
    assert "trigger.segment" in body["errors"]


def test_a_cart_abandoned_trigger_is_created_and_shown_as_sent(client, admin):
    body = {**WIN_BACK, "trigger": {"kind": "cart_abandoned", "after_hours": 720}}
    response = client.post(URL, json=body, headers=admin)

    assert response.status_code == 201, response.json
    assert response.json["trigger"] == {"kind": "cart_abandoned", "after_hours": 720}
