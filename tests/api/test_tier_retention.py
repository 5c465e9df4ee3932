"""Keeping a tier for its retention, and moving down only after it.

The tiers' program, its defaults and how time is moved: see tests/api/tier_calls.py. After
every test the whole ledger must verify.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from loyalty.db import utcnow
from loyalty.jobs import services as jobs
from loyalty.ledger.policy import add_months
from loyalty.members.models import Member
from tests.api.tier_calls import (
    SECOND,
    card,
    card_at,
    history,
    moves,
    order,
    order_at,
    progress,
    refund,
    refund_at,
    settings,
    stored_tier,
    tier_code,
    tier_of,
)
from tests.helpers import services, when

# After every test the whole ledger must verify.
pytestmark = pytest.mark.usefixtures("ledger_verifies_after_each_test")


def test_a_full_refund_does_not_downgrade_before_the_retention_period_ends(
    client, admin, checkout, program, member
):
    placed = order(client, checkout, "o1", 600)
    # Gold while the order stays in the 12-month window, then its 6 months' retention.
    qualified_until = add_months(when(placed["placed_at"]), 12)
    retained_until = when(card(client, checkout)["tier_progress"]["retained_until"])
    assert retained_until == add_months(qualified_until, 6)

    refunded = refund(client, checkout, "o1", refund_id="r1", amount=60000)

    found = card(client, checkout)
    assert tier_of(found) == "gold"
    assert found["tier_progress"]["qualifying_points"] == 0
    # The refund ended the qualification: the retention runs from it.
    assert when(found["tier_progress"]["retained_until"]) == add_months(
        when(refunded["created_at"]), 6
    )
    assert moves(client, admin) == [(None, "gold", "qualified")]


def test_a_member_is_kept_in_their_tier_until_the_last_moment_of_retention(
    app, client, checkout, program, member
):
    order(client, checkout, "o1", 600)
    refund(client, checkout, "o1", refund_id="r1", amount=60000)
    retained_until = when(card(client, checkout)["tier_progress"]["retained_until"])

    found = card_at(app, retained_until - SECOND)

    assert tier_code(found) == "gold"


@pytest.mark.parametrize(
    "program_settings",
    [
        pytest.param({}, id="points-pending-and-expiring"),
        pytest.param(
            {"pending_days": 0, "expiry_policy": "never"}, id="points-available-and-never-expiring"
        ),
    ],
)
def test_after_retention_the_next_card_read_downgrades_the_member(
    app, client, admin, checkout, program, member, program_settings
):
    settings(app, **program_settings)
    order(client, checkout, "o1", 600)
    refund(client, checkout, "o1", refund_id="r1", amount=60000)
    retained_until = when(card(client, checkout)["tier_progress"]["retained_until"])
    later = retained_until + SECOND

    found = card_at(app, later)

    assert found.progress.tier is None
    assert found.progress.retained_until is None
    assert found.progress.next_tier is not None
    assert found.progress.next_tier.code == "silver"
    (downgrade, _) = history(client, admin)
    assert (downgrade["from_tier"], downgrade["to_tier"]) == ("gold", None)
    assert downgrade["reason"] == "retention_expired"
    assert downgrade["qualifying_points"] == 0
    assert when(downgrade["changed_at"]) == later


def test_after_retention_a_member_drops_to_the_highest_tier_they_still_qualify_for(
    app, client, admin, checkout, program, member
):
    first = order(client, checkout, "o1", 150)
    order(client, checkout, "o2", 500)
    refunded = refund(client, checkout, "o2", refund_id="r1", amount=50000)
    retained_until = when(card(client, checkout)["tier_progress"]["retained_until"])
    assert retained_until == add_months(when(refunded["created_at"]), 6)

    found = card_at(app, retained_until + SECOND)

    assert tier_code(found) == "silver"
    assert found.progress.qualifying_points == 150
    # Silver lasts while the first order stays in the 12-month window, then 12 months.
    silver_qualified_until = add_months(when(first["placed_at"]), 12)
    assert found.progress.retained_until == add_months(silver_qualified_until, 12)
    assert moves(client, admin)[0] == ("gold", "silver", "retention_expired")


def gold_from_now(app, window_months):
    """An order worth Gold placed now; returns now and the date Gold is retained until
    (checked: the qualifying window, then Gold's 6 months)."""
    start = utcnow()
    order_at(app, "o1", 600, start)
    retained_until = card_at(app, start).progress.retained_until
    assert retained_until == add_months(add_months(start, window_months), 6)
    return start, retained_until


def test_a_member_still_qualifying_when_retention_ends_keeps_the_tier_for_another_period(
    app, client, admin, checkout, program, member
):
    settings(app, pending_days=0)
    start, retained_until = gold_from_now(app, window_months=12)
    again = add_months(start, 10)
    order_at(app, "o2", 600, again)  # Gold again before the first order leaves the window
    later = retained_until + SECOND

    found = card_at(app, later)

    # Kept while the second order stays in the window, then another 6 months.
    assert progress(found) == ("gold", 600, add_months(add_months(again, 12), 6))
    assert moves(client, admin) == [(None, "gold", "qualified")]


def test_a_member_qualifying_when_retention_ends_under_a_longer_window_keeps_the_tier(
    app, client, admin, checkout, program, member
):
    settings(app, tier_window_months=3)
    start, retained_until = gold_from_now(app, window_months=3)
    settings(app, tier_window_months=12)  # the order counts again when the retention ends
    later = retained_until + SECOND

    found = card_at(app, later)

    assert progress(found) == ("gold", 600, add_months(add_months(start, 12), 6))
    assert moves(client, admin) == [(None, "gold", "qualified")]


def cards_until_the_retention_ends(app, first, ends):
    """The member's card at `first` and at `ends`, after checking it still shows Gold a
    second before `ends`."""
    assert tier_code(card_at(app, ends - SECOND)) == "gold"
    return card_at(app, first), card_at(app, ends)


def downgrade_after_the_upgrade(client, admin):
    """The newest of the member's two tier changes, a retention_expired downgrade, as (from,
    to, when)."""
    (downgrade, _) = history(client, admin)
    assert downgrade["reason"] == "retention_expired"
    return (downgrade["from_tier"], downgrade["to_tier"], when(downgrade["changed_at"]))


def test_a_member_who_qualified_once_keeps_the_tier_for_its_retention_after_the_lapse(
    app, client, admin, checkout, program, member
):
    # The example: Gold reached once; the order leaves the 12-month window; a later
    # order (Silver's worth) reviews the member, which does not restart Gold's retention.
    start = utcnow()
    order_at(app, "o1", 600, start)
    lapse = add_months(start, 12)
    ends = add_months(lapse, 6)  # not add_months(after_lapse, 6): the retention from the review
    assert card_at(app, start).progress.retained_until == ends
    after_lapse = add_months(start, 14)
    order_at(app, "o2", 150, after_lapse)

    reviewed, found = cards_until_the_retention_ends(app, after_lapse, ends)

    assert progress(reviewed) == ("gold", 150, ends)
    silver_until = add_months(add_months(after_lapse, 12), 12)
    assert (tier_code(found), found.progress.retained_until) == ("silver", silver_until)
    assert downgrade_after_the_upgrade(client, admin) == ("gold", "silver", ends)


def test_a_full_refund_ends_the_qualification_so_the_downgrade_comes_its_retention_later(
    app, client, admin, checkout, program, member
):
    start = utcnow()
    order_at(app, "o1", 600, start)  # Gold until 6 months after start + 12 months
    refunded_at = add_months(start, 2)
    ends = add_months(refunded_at, 6)

    refund_at(app, "o1", 600, refunded_at)

    refunded, found = cards_until_the_retention_ends(app, refunded_at, ends)
    assert progress(refunded) == ("gold", 0, ends)
    assert found.progress.tier is None
    assert found.progress.retained_until is None
    assert downgrade_after_the_upgrade(client, admin) == ("gold", None, ends)


def test_the_job_downgrades_a_member_whose_retention_ended_without_any_read(
    app, client, admin, checkout, program, member
):
    settings(app, pending_days=0, expiry_policy="never")
    order(client, checkout, "o1", 600)
    refund(client, checkout, "o1", refund_id="r1", amount=60000)
    with services(app) as session:
        retained_until = session.scalar(sa.select(Member.tier_retained_until))
    later = retained_until + SECOND

    with services(app) as session:
        summary = jobs.settle_due(session, now=later)

    assert summary.members_settled == 1
    assert stored_tier(app) is None
    assert client.get("/v1/admin/tiers/gold", headers=admin).json["members"] == 0
    assert moves(client, admin)[0] == ("gold", None, "retention_expired")


def test_the_job_leaves_a_member_alone_while_their_tier_is_retained(
    app, client, admin, checkout, program, member
):
    order(client, checkout, "o1", 600)
    refund(client, checkout, "o1", refund_id="r1", amount=60000)
    with services(app) as session:
        retained_until = session.scalar(sa.select(Member.tier_retained_until))

    with services(app) as session:
        jobs.settle_due(session, now=retained_until - SECOND)

    assert stored_tier(app) == "gold"
    assert moves(client, admin) == [(None, "gold", "qualified")]
