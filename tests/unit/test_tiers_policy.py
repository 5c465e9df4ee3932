"""The pure tier arithmetic: which tier qualifying points reach, when a member moves up or
down, and which tier comes next.

The program below has three tiers: Silver at 1,000 qualifying points, Gold at 5,000 and
Platinum at 10,000, kept 12, 12 and 6 months after the member last qualified.
"""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loyalty.ledger.policy import add_months
from loyalty.tiers.policy import Decision, TierView, next_tier, qualified_tier, review

NOW = dt.datetime(2025, 3, 10, 9, 30, tzinfo=dt.UTC)
SECOND = dt.timedelta(seconds=1)

SILVER = TierView("silver", "Silver", 1, 1000, 12)
GOLD = TierView("gold", "Gold", 2, 5000, 12)
PLATINUM = TierView("platinum", "Platinum", 3, 10000, 6)
TIERS = [GOLD, PLATINUM, SILVER]  # deliberately not in rank order


# --- qualified_tier ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        (0, None),
        (999, None),
        (1000, SILVER),
        (4999, SILVER),
        (5000, GOLD),
        (9999, GOLD),
        (10000, PLATINUM),
        (10**9, PLATINUM),
    ],
)
def test_qualified_tier_is_the_highest_tier_whose_threshold_the_points_reach(points, expected):
    assert qualified_tier(TIERS, points) == expected


def test_qualified_tier_is_none_without_tiers():
    assert qualified_tier([], 10**6) is None


def test_qualified_tier_is_none_for_negative_points_after_refunds():
    assert qualified_tier(TIERS, -50) is None


def test_a_threshold_zero_tier_is_reached_with_no_points_at_all():
    entry = TierView("member", "Member", 0, 0, 12)
    assert qualified_tier([entry, *TIERS], 0) == entry


def test_qualified_tier_goes_by_rank_not_by_threshold():
    # An odd program where the higher rank is cheaper: rank decides.
    cheap_top = TierView("vip", "VIP", 9, 100, 12)
    assert qualified_tier([SILVER, cheap_top], 1000) == cheap_top


# --- review: moving up ---------------------------------------------------------------------


def test_a_member_without_a_tier_moves_up_the_moment_they_reach_a_threshold():
    decision = review(TIERS, None, None, 1000, NOW)

    assert decision == Decision(SILVER, add_months(NOW, 12), "qualified")


def test_a_member_below_every_threshold_stays_without_a_tier():
    assert review(TIERS, None, None, 999, NOW) == Decision(None, None, None)


def test_crossing_two_thresholds_at_once_lands_in_the_higher_tier():
    decision = review(TIERS, None, None, 6000, NOW)

    assert decision.tier == GOLD
    assert decision.reason == "qualified"


def test_crossing_every_threshold_from_the_lowest_tier_lands_in_the_top_tier():
    decision = review(TIERS, SILVER, add_months(NOW, 3), 12000, NOW)

    assert decision == Decision(PLATINUM, add_months(NOW, 6), "qualified")


def test_an_upgrade_is_kept_for_the_new_tiers_retention_not_the_old_ones():
    decision = review(TIERS, GOLD, add_months(NOW, 12), 10000, NOW)

    assert decision.retained_until == add_months(NOW, PLATINUM.retention_months)


def test_an_upgrade_happens_even_while_the_lower_tier_is_retained():
    decision = review(TIERS, SILVER, add_months(NOW, 11), 5000, NOW)

    assert decision.tier == GOLD
    assert decision.reason == "qualified"


# --- review: retention ---------------------------------------------------------------------


def test_still_qualifying_for_the_current_tier_restarts_its_retention():
    decision = review(TIERS, GOLD, NOW + SECOND, 5000, NOW)

    assert decision == Decision(GOLD, add_months(NOW, 12), None)


def test_still_qualifying_restarts_retention_even_after_it_ran_out():
    decision = review(TIERS, GOLD, NOW - dt.timedelta(days=30), 7000, NOW)

    assert decision == Decision(GOLD, add_months(NOW, 12), None)


def test_no_downgrade_before_the_retention_period_ends():
    retained_until = NOW + SECOND

    decision = review(TIERS, GOLD, retained_until, 0, NOW)

    assert decision == Decision(GOLD, retained_until, None)


def test_a_retained_member_qualifying_for_a_lower_tier_keeps_the_higher_one():
    retained_until = add_months(NOW, 2)

    decision = review(TIERS, PLATINUM, retained_until, 1500, NOW)

    assert decision == Decision(PLATINUM, retained_until, None)


def test_retention_ends_exactly_at_retained_until():
    decision = review(TIERS, GOLD, NOW, 1500, NOW)

    assert decision.tier == SILVER
    assert decision.reason == "retention_expired"


def test_after_retention_a_member_drops_to_the_highest_tier_they_still_qualify_for():
    decision = review(TIERS, PLATINUM, NOW - SECOND, 5500, NOW)

    assert decision == Decision(GOLD, add_months(NOW, 12), "retention_expired")


def test_after_retention_a_member_may_drop_more_than_one_tier():
    decision = review(TIERS, PLATINUM, NOW - SECOND, 1000, NOW)

    assert decision == Decision(SILVER, add_months(NOW, 12), "retention_expired")


def test_after_retention_a_member_qualifying_for_nothing_loses_their_tier():
    decision = review(TIERS, SILVER, NOW - SECOND, 999, NOW)

    assert decision == Decision(None, None, "retention_expired")


def test_a_tier_without_a_retention_date_is_lost_once_no_longer_qualified_for():
    decision = review(TIERS, GOLD, None, 0, NOW)

    assert decision == Decision(None, None, "retention_expired")


def test_a_member_whose_tier_was_removed_from_the_program_leaves_it_when_retention_ends():
    retired = TierView("bronze", "Bronze", 0, 100, 12)

    decision = review(TIERS, retired, NOW - SECOND, 100, NOW)

    assert decision == Decision(None, None, "retention_expired")


# --- next_tier -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "expected"),
    [(None, SILVER), (SILVER, GOLD), (GOLD, PLATINUM), (PLATINUM, None)],
)
def test_next_tier_is_the_tier_just_above_the_current_one(current, expected):
    assert next_tier(TIERS, current) == expected


def test_there_is_no_next_tier_without_tiers():
    assert next_tier([], None) is None


# --- properties ----------------------------------------------------------------------------


@st.composite
def programs(draw: st.DrawFn) -> list[TierView]:
    """One to six tiers with distinct codes and ranks and any thresholds and retentions."""
    ranks = draw(st.lists(st.integers(1, 50), min_size=1, max_size=6, unique=True))
    return [
        TierView(
            f"t{rank}",
            f"Tier {rank}",
            rank,
            draw(st.integers(0, 20000)),
            draw(st.integers(0, 24)),
        )
        for rank in ranks
    ]


@st.composite
def situations(draw: st.DrawFn) -> tuple[list[TierView], TierView | None, dt.datetime | None]:
    """A program, the member's current tier in it (or none) and when its retention ends."""
    tiers = draw(programs())
    current = draw(st.none() | st.sampled_from(tiers))
    offset = draw(st.integers(-400, 400))
    retained_until = None if current is None else NOW + dt.timedelta(days=offset)
    return tiers, current, retained_until


POINTS = st.integers(-5000, 30000)


@given(tiers=programs(), points=POINTS)
def test_qualified_tier_is_reached_and_no_higher_ranked_tier_is(tiers, points):
    tier = qualified_tier(tiers, points)

    reached = [t for t in tiers if points >= t.threshold]
    if tier is None:
        assert reached == []
    else:
        assert points >= tier.threshold
        assert all(t.rank <= tier.rank for t in reached)


@given(situation=situations(), points=POINTS)
def test_a_member_is_never_below_the_tier_they_qualify_for(situation, points):
    tiers, current, retained_until = situation
    reached = qualified_tier(tiers, points)

    decision = review(tiers, current, retained_until, points, NOW)

    if reached is not None:
        assert decision.tier is not None
        assert decision.tier.rank >= reached.rank


@given(situation=situations(), points=POINTS)
def test_a_member_never_moves_down_while_their_tier_is_retained(situation, points):
    tiers, current, retained_until = situation

    decision = review(tiers, current, retained_until, points, NOW)

    if current is not None and retained_until is not None and retained_until > NOW:
        assert decision.tier is not None
        assert decision.tier.rank >= current.rank


@given(situation=situations(), points=POINTS)
def test_a_reason_is_given_exactly_when_the_tier_changes(situation, points):
    tiers, current, retained_until = situation

    decision = review(tiers, current, retained_until, points, NOW)

    assert (decision.reason is not None) == (decision.tier != current)
    if decision.reason is not None:
        rising = current is None or (
            decision.tier is not None and decision.tier.rank > current.rank
        )
        assert decision.reason == ("qualified" if rising else "retention_expired")


@given(situation=situations(), points=POINTS)
def test_a_member_holds_a_retention_date_exactly_when_they_hold_a_tier(situation, points):
    tiers, current, retained_until = situation

    decision = review(tiers, current, retained_until, points, NOW)

    assert (decision.tier is None) == (decision.retained_until is None)
    if decision.tier is not None and decision.tier != current:
        assert decision.retained_until == add_months(NOW, decision.tier.retention_months)


@given(situation=situations(), points=POINTS)
def test_reviewing_twice_at_the_same_moment_changes_nothing_more(situation, points):
    tiers, current, retained_until = situation
    first = review(tiers, current, retained_until, points, NOW)

    second = review(tiers, first.tier, first.retained_until, points, NOW)

    assert second.tier == first.tier
    assert second.reason is None


@given(tiers=programs())
def test_next_tier_is_the_lowest_ranked_tier_above_the_current_one(tiers):
    ordered = sorted(tiers, key=lambda t: t.rank)

    assert next_tier(tiers, None) == ordered[0]
    for lower, upper in itertools.pairwise(ordered):
        assert next_tier(tiers, lower) == upper
    assert next_tier(tiers, ordered[-1]) is None
