"""The pure tier arithmetic: which tier qualifying points reach, when a member moves up or
down, and which tier comes next.

The program below has three tiers: Silver at 1,000 qualifying points, Gold at 5,000 and
Platinum at 10,000, kept 12, 12 and 6 months after the member last qualified, over a 12-month
rolling window. A review given the window's earnings counts the retention from the moment the
qualification would lapse (when enough of those points leave the window); one given none
counts it from the review itself, as if the qualification lapsed then.
"""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loyalty.ledger.policy import add_months
from loyalty.tiers.policy import (
    Decision,
    TierView,
    next_tier,
    qualified_tier,
    qualified_until,
    review,
)

NOW = dt.datetime(2025, 3, 10, 9, 30, tzinfo=dt.UTC)
SECOND = dt.timedelta(seconds=1)
DAY = dt.timedelta(days=1)
WINDOW = 12  # months

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


# --- qualified_until -----------------------------------------------------------------------


def test_a_qualification_lapses_when_its_only_earning_leaves_the_window():
    earned_at = NOW - 40 * DAY

    assert qualified_until([(earned_at, 6000)], GOLD.threshold, WINDOW, NOW) == add_months(
        earned_at, WINDOW
    )


def test_a_qualification_lasts_while_enough_points_stay_in_the_window():
    first, second = NOW - 200 * DAY, NOW - 20 * DAY
    earnings = [(second, 3000), (first, 3000)]  # in no particular order

    # Gold needs both earnings: it lapses when the first leaves.
    assert qualified_until(earnings, GOLD.threshold, WINDOW, NOW) == add_months(first, WINDOW)
    # Silver needs either one: it lasts until the second leaves too.
    assert qualified_until(earnings, SILVER.threshold, WINDOW, NOW) == add_months(second, WINDOW)


def test_a_qualification_reaching_the_threshold_exactly_lapses_when_any_of_it_leaves():
    first, second = NOW - 200 * DAY, NOW - 20 * DAY

    lapse = qualified_until([(first, 400), (second, 600)], SILVER.threshold, WINDOW, NOW)

    assert lapse == add_months(first, WINDOW)


def test_a_reversal_makes_the_qualification_lapse_sooner():
    first, second, refunded_at = NOW - 200 * DAY, NOW - 100 * DAY, NOW - 10 * DAY
    earnings = [(first, 800), (second, 1500)]

    assert qualified_until(earnings, SILVER.threshold, WINDOW, NOW) == add_months(second, WINDOW)
    # 600 of the second earning refunded: once the first leaves, 900 is not enough.
    reversed_ = [*earnings, (refunded_at, -600)]
    assert qualified_until(reversed_, SILVER.threshold, WINDOW, NOW) == add_months(first, WINDOW)


def test_a_reversal_taking_the_points_below_the_threshold_ends_the_qualification_now():
    earned_at = NOW - 30 * DAY

    lapse = qualified_until([(earned_at, 6000), (NOW, -6000)], GOLD.threshold, WINDOW, NOW)

    assert lapse == NOW


@pytest.mark.parametrize(
    "earnings",
    [
        pytest.param([], id="no-earnings"),
        pytest.param([(NOW - 30 * DAY, 999)], id="short-of-the-threshold"),
        # The reversal leaving the window later would take the points over: not reached now.
        pytest.param([(NOW - 300 * DAY, -500), (NOW - 30 * DAY, 1200)], id="net-of-a-reversal"),
    ],
)
def test_a_member_who_does_not_reach_the_threshold_qualifies_until_now(earnings):
    assert qualified_until(earnings, SILVER.threshold, WINDOW, NOW) == NOW


def test_a_qualification_never_lapses_before_now():
    # At a month's end the window still holds an earning a month after it (Mar 31 - 1 month
    # is Feb 28): the lapse is now at the earliest.
    now = dt.datetime(2025, 3, 31, 9, 30, tzinfo=dt.UTC)
    earned_at = dt.datetime(2025, 2, 28, 12, 0, tzinfo=dt.UTC)

    assert qualified_until([(earned_at, 1000)], SILVER.threshold, 1, now) == now


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
    # With no date to go by, the retention runs from the review that finds them not qualifying.
    ends = add_months(NOW, GOLD.retention_months)

    kept = review(TIERS, GOLD, None, 0, NOW)

    assert kept == Decision(GOLD, ends, None)
    assert review(TIERS, GOLD, kept.retained_until, 0, ends - SECOND) == Decision(GOLD, ends, None)
    assert review(TIERS, GOLD, kept.retained_until, 0, ends) == Decision(
        None, None, "retention_expired"
    )


def test_a_tier_kept_no_months_without_a_retention_date_is_lost_at_once():
    gold_without_retention = TierView("gold", "Gold", 2, 5000, 0)

    decision = review([SILVER, gold_without_retention], gold_without_retention, None, 0, NOW)

    assert decision == Decision(None, None, "retention_expired")


def test_a_member_whose_tier_was_removed_from_the_program_leaves_it_when_retention_ends():
    retired = TierView("bronze", "Bronze", 0, 100, 12)

    decision = review(TIERS, retired, NOW - SECOND, 100, NOW)

    assert decision == Decision(None, None, "retention_expired")


# --- review: retention over the rolling window ---------------------------------------------


def test_qualifying_keeps_the_tier_until_its_retention_after_the_points_leave_the_window():
    earned_at = NOW - 40 * DAY

    decision = review(TIERS, None, None, 6000, NOW, ([(earned_at, 6000)], WINDOW))

    lapse = add_months(earned_at, WINDOW)
    assert decision == Decision(GOLD, add_months(lapse, GOLD.retention_months), "qualified")


def test_an_upgrade_is_kept_from_when_the_points_for_the_new_tier_leave_the_window():
    first, second = NOW - 200 * DAY, NOW
    earnings = [(first, 5000), (second, 6000)]

    decision = review(TIERS, GOLD, add_months(NOW, 12), 11000, NOW, (earnings, WINDOW))

    # Platinum needs both earnings: it lapses when the first leaves, Gold only with the second.
    lapse = add_months(first, WINDOW)
    assert decision == Decision(PLATINUM, add_months(lapse, PLATINUM.retention_months), "qualified")


def test_a_member_who_qualified_once_keeps_the_tier_for_its_retention_after_the_lapse():
    # The example: Gold reached once; the points leave the window a year later; later
    # reviews (on reads, jobs, small orders) do not restart the retention.
    earned_at = NOW
    lapse = add_months(earned_at, WINDOW)
    ends = add_months(lapse, GOLD.retention_months)
    qualified = review(TIERS, None, None, 6000, earned_at, ([(earned_at, 6000)], WINDOW))
    assert qualified == Decision(GOLD, ends, "qualified")

    for moment in (add_months(NOW, 6), lapse - SECOND):
        still = review(TIERS, GOLD, ends, 6000, moment, ([(earned_at, 6000)], WINDOW))
        assert still == Decision(GOLD, ends, None)
    for moment in (lapse, add_months(lapse, 3), ends - SECOND):
        # Points out of the window, but a small order still counts for Silver.
        retained = review(TIERS, GOLD, ends, 1200, moment, ([(moment, 1200)], WINDOW))
        # Not the retention from this review (the old rule): from the lapse.
        assert retained == Decision(GOLD, ends, None)

    dropped = review(TIERS, GOLD, ends, 1200, ends, ([(ends, 1200)], WINDOW))

    assert dropped == Decision(
        SILVER, add_months(add_months(ends, WINDOW), SILVER.retention_months), "retention_expired"
    )


def test_a_full_refund_ends_the_qualification_so_the_retention_runs_from_the_refund():
    earned_at, refunded_at = NOW - 30 * DAY, NOW
    earnings = [(earned_at, 6000), (refunded_at, -6000)]
    before = add_months(add_months(earned_at, WINDOW), GOLD.retention_months)
    ends = add_months(refunded_at, GOLD.retention_months)

    kept = review(TIERS, GOLD, before, 0, refunded_at, (earnings, WINDOW))

    assert kept == Decision(GOLD, ends, None)
    # By then the earning has left the window; the reversal leaves it at `ends`.
    last = review(TIERS, GOLD, ends, -6000, ends - SECOND, ([(refunded_at, -6000)], WINDOW))
    assert last == Decision(GOLD, ends, None)
    assert review(TIERS, GOLD, ends, 0, ends, ([], WINDOW)) == Decision(
        None, None, "retention_expired"
    )


def test_a_partial_refund_below_the_tier_keeps_it_for_its_retention_then_drops_a_tier():
    earned_at, refunded_at = NOW - 30 * DAY, NOW
    earnings = [(earned_at, 11000), (refunded_at, -5000)]
    ends = add_months(refunded_at, PLATINUM.retention_months)
    before = add_months(add_months(earned_at, WINDOW), PLATINUM.retention_months)

    kept = review(TIERS, PLATINUM, before, 6000, refunded_at, (earnings, WINDOW))
    dropped = review(TIERS, PLATINUM, ends, 6000, ends, (earnings, WINDOW))

    assert kept == Decision(PLATINUM, ends, None)
    # Gold, reached with what is left, lapses when the earning leaves the window.
    gold_ends = add_months(add_months(earned_at, WINDOW), GOLD.retention_months)
    assert dropped == Decision(GOLD, gold_ends, "retention_expired")


def test_a_review_long_after_the_lapse_does_not_extend_the_retention():
    # Reviewed long after the points left the window: the retention from the lapse stands.
    earned_at = NOW - 400 * DAY
    ends = add_months(add_months(earned_at, WINDOW), GOLD.retention_months)

    decision = review(TIERS, GOLD, ends, 0, NOW, ([], WINDOW))

    assert decision == Decision(GOLD, ends, None)


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


def assert_not_below(decision, tier):
    assert decision.tier is not None
    assert decision.tier.rank >= tier.rank


def reviewed(situation, points):
    """The review of a member in `situation` (tiers, current tier, retained until) now."""
    tiers, current, retained_until = situation
    return review(tiers, current, retained_until, points, NOW)


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
    tiers, _current, _retained_until = situation
    reached = qualified_tier(tiers, points)
    decision = reviewed(situation, points)

    if reached is not None:
        assert_not_below(decision, reached)


@given(situation=situations(), points=POINTS)
def test_a_member_never_moves_down_while_their_tier_is_retained(situation, points):
    _tiers, current, retained_until = situation
    decision = reviewed(situation, points)

    # A member who no longer qualifies is retained until the stored date, or the current
    # tier's retention from now if that comes first (they stopped qualifying by now).
    if current is not None and retained_until is not None:
        retained_until = min(retained_until, add_months(NOW, current.retention_months))
    if current is not None and retained_until is not None and retained_until > NOW:
        assert_not_below(decision, current)


@given(situation=situations(), points=POINTS)
def test_a_reason_is_given_exactly_when_the_tier_changes(situation, points):
    _tiers, current, _retained_until = situation
    decision = reviewed(situation, points)

    assert (decision.reason is not None) == (decision.tier != current)
    if decision.reason is not None:
        rising = current is None or (
            decision.tier is not None and decision.tier.rank > current.rank
        )
        assert decision.reason == ("qualified" if rising else "retention_expired")


@given(situation=situations(), points=POINTS)
def test_a_member_holds_a_retention_date_exactly_when_they_hold_a_tier(situation, points):
    _tiers, current, _retained_until = situation
    decision = reviewed(situation, points)

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


@given(situation=situations(), points=POINTS)
def test_a_member_no_longer_qualifying_keeps_their_tier_at_most_its_retention_from_now(
    situation, points
):
    tiers, current, retained_until = situation
    reached = qualified_tier(tiers, points)
    decision = reviewed(situation, points)

    if current is not None and (reached is None or reached.rank < current.rank):
        latest = add_months(NOW, current.retention_months)
        if decision.tier == current:
            assert decision.retained_until == min(retained_until, latest)
            assert NOW < decision.retained_until <= latest
        else:
            assert min(retained_until, latest) <= NOW


@st.composite
def window_earnings(draw: st.DrawFn, reversals: bool = True) -> list[tuple[dt.datetime, int]]:
    """What a member's 12-month window at NOW holds: earnings whole days back (the window
    reaches back 365 days from NOW, no month-end clamping on the way), and unless told not
    to, reversals."""
    points = st.integers(-3000, 8000).filter(bool) if reversals else st.integers(1, 8000)
    moments = st.integers(0, 364).map(lambda days: NOW - days * DAY)
    return draw(st.lists(st.tuples(moments, points), max_size=8))


def in_window(earnings: list[tuple[dt.datetime, int]], moment: dt.datetime) -> int:
    """The qualifying points at `moment` from `earnings`, counted as the service counts them."""
    since = add_months(moment, -WINDOW)
    return sum(points for when, points in earnings if when > since)


@given(earnings=window_earnings(), threshold=st.integers(1, 20000))
def test_a_qualification_lapses_at_the_first_moment_the_window_holds_too_few_points(
    earnings, threshold
):
    lapse = qualified_until(earnings, threshold, WINDOW, NOW)

    if in_window(earnings, NOW) < threshold:
        assert lapse == NOW
    else:
        assert lapse > NOW
        assert in_window(earnings, lapse) < threshold
        # Until then the window holds enough at every moment it changes.
        changes = {add_months(when, WINDOW) for when, _ in earnings} | {NOW}
        assert all(in_window(earnings, c) >= threshold for c in changes if c < lapse)
        assert in_window(earnings, lapse - SECOND) >= threshold


@given(tiers=programs(), earnings=window_earnings())
def test_a_tier_reached_is_kept_for_its_retention_after_the_qualification_lapses(tiers, earnings):
    points = in_window(earnings, NOW)

    decision = review(tiers, None, None, points, NOW, (earnings, WINDOW))

    if decision.tier is not None:
        lapse = qualified_until(earnings, decision.tier.threshold, WINDOW, NOW)
        until = add_months(lapse, decision.tier.retention_months)
        assert decision == Decision(decision.tier, until, "qualified")
        assert decision.retained_until >= add_months(NOW, decision.tier.retention_months)


@given(
    tiers=programs(),
    earnings=window_earnings(reversals=False),
    later=st.integers(0, 40 * 31 * 24).map(lambda hours: NOW + dt.timedelta(hours=hours)),
)
def test_without_new_earnings_later_reviews_never_move_the_retention_date(tiers, earnings, later):
    # The example in general: however often the member is reviewed while their points
    # leave the window, they keep the tier exactly until its retention after the lapse.
    first = review(tiers, None, None, in_window(earnings, NOW), NOW, (earnings, WINDOW))
    if first.tier is None or first.tier.threshold == 0:
        return  # nothing to keep, or an entry tier nobody stops qualifying for
    left = [(when, points) for when, points in earnings if when > add_months(later, -WINDOW)]

    decision = review(
        tiers, first.tier, first.retained_until, in_window(left, later), later, (left, WINDOW)
    )

    if later < first.retained_until:
        assert decision == Decision(first.tier, first.retained_until, None)
    else:
        assert decision.reason == "retention_expired"
        assert decision.tier is None or decision.tier.rank < first.tier.rank


@given(tiers=programs())
def test_next_tier_is_the_lowest_ranked_tier_above_the_current_one(tiers):
    ordered = sorted(tiers, key=lambda t: t.rank)

    assert next_tier(tiers, None) == ordered[0]
    for lower, upper in itertools.pairwise(ordered):
        assert next_tier(tiers, lower) == upper
    assert next_tier(tiers, ordered[-1]) is None


def test_a_refunded_earning_and_its_reversal_leave_the_window_together():
    # o1 earns 300 on Jan 1 and is refunded on Feb 1; the reversal counts at o1's time, so
    # the window never dips below Gold's 500 while o2's 600 points are in it.
    jan = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    june = dt.datetime(2027, 6, 1, tzinfo=dt.UTC)
    earnings = [(jan, 300), (jan, -300), (june, 600)]

    lapse = qualified_until(earnings, 500, 12, june)

    assert lapse == dt.datetime(2028, 6, 1, tzinfo=dt.UTC)
