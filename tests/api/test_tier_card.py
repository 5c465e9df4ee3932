"""The member card's tier and the progress to the next tier.

The tiers' program, its defaults and how time is moved: see tests/api/tier_calls.py. After
every test the whole ledger must verify.
"""

from __future__ import annotations

import pytest

from loyalty.ledger.policy import add_months
from tests.api.tier_calls import (
    card,
    history,
    moves,
    order,
)
from tests.helpers import created, when

# After every test the whole ledger must verify.
pytestmark = pytest.mark.usefixtures("ledger_verifies_after_each_test")


def test_a_member_without_a_tier_sees_how_far_the_lowest_tier_is(client, checkout, program, member):
    found = card(client, checkout)

    assert found["tier"] is None
    assert found["tier_progress"] == {
        "qualifying_points": 0,
        "next_tier": {"code": "silver", "name": "Silver", "threshold": 100},
        "points_to_next": 100,
        "retained_until": None,
    }


def test_the_card_shows_the_tier_and_the_progress_to_the_next(
    client, admin, checkout, app_key, program, member
):
    order(client, checkout, "o1", 150)

    found = card(client, app_key)

    assert found["tier"] == {"code": "silver", "name": "Silver"}
    progress = found["tier_progress"]
    assert progress["qualifying_points"] == 150
    assert progress["next_tier"] == {"code": "gold", "name": "Gold", "threshold": 500}
    assert progress["points_to_next"] == 350
    (upgrade,) = history(client, admin)
    # Silver lasts while the order stays in the 12-month window, then 12 months' retention.
    qualified_until = add_months(when(upgrade["changed_at"]), 12)
    assert when(progress["retained_until"]) == add_months(qualified_until, 12)


def test_in_the_top_tier_there_is_no_next_tier(client, checkout, program, member):
    order(client, checkout, "o1", 2500)

    progress = card(client, checkout)["tier_progress"]

    assert progress["next_tier"] is None
    assert progress["points_to_next"] is None
    assert progress["qualifying_points"] == 2500


def test_a_program_without_tiers_shows_no_tier_and_no_next_tier(client, checkout, member):
    found = card(client, checkout)

    assert found["tier"] is None
    assert found["tier_progress"] == {
        "qualifying_points": 0,
        "next_tier": None,
        "points_to_next": None,
        "retained_until": None,
    }


def test_an_entry_tier_with_a_zero_threshold_applies_from_enrolment(client, admin, checkout):
    entry = {"code": "member", "name": "Member", "rank": 1, "threshold": 0}
    created(client.post("/v1/admin/tiers", json=entry, headers=admin))

    enrolled = created(client.post("/v1/members", json={"external_id": "c1"}, headers=checkout))

    assert enrolled["tier"] == {"code": "member", "name": "Member"}
    assert moves(client, admin) == [(None, "member", "qualified")]
