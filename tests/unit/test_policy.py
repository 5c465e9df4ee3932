"""The pure ledger arithmetic: expiry dates, consumption order, debt repayment, settlement."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loyalty.ledger import policy
from loyalty.ledger.policy import DueLot, LotView, NotEnoughPoints

T0 = dt.datetime(2025, 3, 10, 9, 30, tzinfo=dt.UTC)


def utc_times(first_year: int, last_year: int) -> st.SearchStrategy[dt.datetime]:
    """Aware UTC datetimes from the start of `first_year` to the start of `last_year`."""
    # hypothesis takes naive bounds and attaches the timezone itself.
    bounds = (dt.datetime(first_year, 1, 1), dt.datetime(last_year, 1, 1))  # noqa: DTZ001
    return st.datetimes(min_value=bounds[0], max_value=bounds[1], timezones=st.just(dt.UTC))


def at(year: int, month: int, day: int, hour: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, tzinfo=dt.UTC)


# --- add_months --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (at(2025, 1, 15), 1, at(2025, 2, 15)),
        (at(2025, 1, 15), 12, at(2026, 1, 15)),
        (at(2025, 1, 15), 0, at(2025, 1, 15)),
        (at(2025, 11, 30), 2, at(2026, 1, 30)),
        (at(2025, 12, 1), 1, at(2026, 1, 1)),
        (at(2025, 12, 31), 12, at(2026, 12, 31)),
        (at(2025, 6, 30), 30, at(2027, 12, 30)),
    ],
)
def test_add_months_moves_by_calendar_months(start, months, expected):
    assert policy.add_months(start, months) == expected


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (at(2025, 1, 31), 1, at(2025, 2, 28)),
        (at(2025, 3, 31), 1, at(2025, 4, 30)),
        (at(2025, 8, 31), 1, at(2025, 9, 30)),
        (at(2025, 10, 31), 4, at(2026, 2, 28)),
        (at(2025, 5, 31), 1, at(2025, 6, 30)),
    ],
)
def test_add_months_clamps_to_the_last_day_of_a_shorter_month(start, months, expected):
    assert policy.add_months(start, months) == expected


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (at(2024, 1, 31), 1, at(2024, 2, 29)),
        (at(2024, 2, 29), 12, at(2025, 2, 28)),
        (at(2024, 2, 29), 48, at(2028, 2, 29)),
        (at(2023, 2, 28), 12, at(2024, 2, 28)),
        (at(2099, 12, 31), 2, at(2100, 2, 28)),
        (at(2099, 12, 31), 14, at(2101, 2, 28)),
        (at(1999, 12, 31), 2, at(2000, 2, 29)),
    ],
)
def test_add_months_knows_leap_years(start, months, expected):
    assert policy.add_months(start, months) == expected


def test_add_months_keeps_the_time_of_day_and_the_timezone():
    moved = policy.add_months(dt.datetime(2025, 1, 31, 23, 59, 58, 123, tzinfo=dt.UTC), 1)
    assert moved == dt.datetime(2025, 2, 28, 23, 59, 58, 123, tzinfo=dt.UTC)
    assert moved.tzinfo is dt.UTC


@given(
    start=utc_times(2000, 2200),
    months=st.integers(min_value=0, max_value=600),
)
def test_add_months_lands_in_the_right_month_on_the_same_or_last_day(start, months):
    moved = policy.add_months(start, months)
    assert (moved.year * 12 + moved.month) - (start.year * 12 + start.month) == months
    assert moved.day == start.day or (
        moved.day < start.day and (moved + dt.timedelta(days=1)).day == 1
    )
    assert moved.time() == start.time()
    assert moved >= start


# --- lot_expiry --------------------------------------------------------------------------


def test_fixed_policy_expires_a_lot_months_after_it_was_earned():
    assert policy.lot_expiry("fixed", 12, T0) == dt.datetime(2026, 3, 10, 9, 30, tzinfo=dt.UTC)


def test_inactivity_policy_expires_months_after_the_activity_if_nothing_else_happens():
    assert policy.lot_expiry("inactivity", 6, at(2025, 8, 31)) == at(2026, 2, 28)


def test_never_policy_lots_do_not_expire():
    assert policy.lot_expiry("never", None, T0) is None


def test_never_policy_ignores_stale_months():
    assert policy.lot_expiry("never", 12, T0) is None


def test_fixed_policy_clamps_a_month_end_earning():
    assert policy.lot_expiry("fixed", 1, at(2025, 1, 31, 12)) == at(2025, 2, 28, 12)


# --- plan_consumption --------------------------------------------------------------------


def lot(
    lot_id: int,
    remaining: int,
    expires_at: dt.datetime | None,
    available_at: dt.datetime = T0,
) -> LotView:
    return LotView(id=lot_id, remaining=remaining, available_at=available_at, expires_at=expires_at)


def test_consumption_takes_the_soonest_expiring_lot_first():
    lots = [lot(1, 50, at(2026, 6, 1)), lot(2, 50, at(2026, 1, 1)), lot(3, 50, at(2026, 3, 1))]
    assert policy.plan_consumption(lots, 70) == [(2, 50), (3, 20)]


def test_consumption_takes_never_expiring_lots_last():
    lots = [lot(1, 10, None), lot(2, 10, at(2099, 1, 1)), lot(3, 10, at(2030, 1, 1))]
    assert policy.plan_consumption(lots, 25) == [(3, 10), (2, 10), (1, 5)]


def test_consumption_breaks_expiry_ties_by_oldest_first_then_by_id():
    same_expiry = at(2026, 1, 1)
    lots = [
        lot(1, 10, same_expiry, available_at=at(2025, 2, 1)),
        lot(2, 10, same_expiry, available_at=at(2025, 2, 1)),
        lot(3, 10, same_expiry, available_at=at(2025, 1, 1)),
    ]
    assert policy.plan_consumption(lots, 25) == [(3, 10), (1, 10), (2, 5)]


def test_consumption_skips_empty_lots():
    lots = [lot(1, 0, at(2025, 12, 1)), lot(2, 10, at(2026, 1, 1))]
    assert policy.plan_consumption(lots, 5) == [(2, 5)]


def test_consumption_of_nothing_takes_nothing():
    assert policy.plan_consumption([lot(1, 10, None)], 0) == []


def test_consumption_of_everything_empties_every_lot():
    lots = [lot(1, 10, None), lot(2, 7, at(2026, 1, 1))]
    assert policy.plan_consumption(lots, 17) == [(2, 7), (1, 10)]


def test_consumption_beyond_what_the_lots_hold_raises_not_enough_points():
    with pytest.raises(NotEnoughPoints, match="short by 3"):
        policy.plan_consumption([lot(1, 10, None), lot(2, 7, at(2026, 1, 1))], 20)


def test_consumption_from_no_lots_raises_not_enough_points():
    with pytest.raises(NotEnoughPoints):
        policy.plan_consumption([], 1)


lot_views = st.lists(
    st.builds(
        LotView,
        id=st.integers(),  # replaced by a unique id below
        remaining=st.integers(min_value=0, max_value=1000),
        available_at=utc_times(2024, 2026),
        expires_at=st.none() | utc_times(2025, 2028),
    ),
    max_size=12,
).map(
    lambda views: [
        LotView(i, view.remaining, view.available_at, view.expires_at)
        for i, view in enumerate(views)
    ]
)


@given(lots=lot_views, data=st.data())
def test_consumption_takes_exactly_the_points_asked_and_never_more_than_a_lot_holds(lots, data):
    total = sum(view.remaining for view in lots)
    points = data.draw(st.integers(min_value=0, max_value=total))
    plan = policy.plan_consumption(lots, points)
    by_id = {view.id: view for view in lots}
    assert sum(take for _, take in plan) == points
    assert len({lot_id for lot_id, _ in plan}) == len(plan)
    for lot_id, take in plan:
        assert 0 < take <= by_id[lot_id].remaining


def expiry_key(view: LotView) -> dt.datetime:
    return view.expires_at or dt.datetime.max.replace(tzinfo=dt.UTC)


@given(lots=lot_views, data=st.data())
def test_consumption_never_leaves_a_sooner_expiring_lot_unspent_for_a_later_one(lots, data):
    points = data.draw(st.integers(min_value=0, max_value=sum(view.remaining for view in lots)))
    taken = dict(policy.plan_consumption(lots, points))
    for later in lots:
        if not taken.get(later.id):
            continue
        for sooner in lots:
            if expiry_key(sooner) < expiry_key(later):
                assert taken.get(sooner.id, 0) == sooner.remaining


@given(lots=lot_views, extra=st.integers(min_value=1, max_value=1000))
def test_consumption_of_more_than_all_lots_hold_always_raises(lots, extra):
    with pytest.raises(NotEnoughPoints):
        policy.plan_consumption(lots, sum(view.remaining for view in lots) + extra)


# --- lot_remaining_after_credit ----------------------------------------------------------


def test_a_credit_without_debt_stays_whole_in_its_lot():
    assert policy.lot_remaining_after_credit(available_before=40, credited=100) == 100


def test_a_credit_from_zero_stays_whole_in_its_lot():
    assert policy.lot_remaining_after_credit(available_before=0, credited=100) == 100


def test_a_credit_first_repays_the_debt_and_keeps_the_rest():
    assert policy.lot_remaining_after_credit(available_before=-30, credited=100) == 70


def test_a_credit_smaller_than_the_debt_is_used_up_entirely():
    assert policy.lot_remaining_after_credit(available_before=-300, credited=100) == 0


def test_a_credit_equal_to_the_debt_leaves_an_empty_lot():
    assert policy.lot_remaining_after_credit(available_before=-100, credited=100) == 0


@given(
    available_before=st.integers(min_value=-10_000, max_value=10_000),
    credited=st.integers(min_value=1, max_value=10_000),
)
def test_a_credit_keeps_what_is_left_after_the_debt_and_never_more_than_it_brought(
    available_before, credited
):
    remaining = policy.lot_remaining_after_credit(available_before, credited)
    debt = max(0, -available_before)
    assert 0 <= remaining <= credited
    assert remaining == credited - min(debt, credited)
    # Lots never hold more than the member has available afterwards.
    assert remaining == min(credited, max(0, available_before + credited))
    assert remaining <= max(0, available_before + credited)


# --- due_events --------------------------------------------------------------------------


def due(
    lot_id: int,
    state: str,
    available_at: dt.datetime,
    expires_at: dt.datetime | None,
    remaining: int = 10,
) -> DueLot:
    return DueLot(
        id=lot_id,
        state=state,
        remaining=remaining,
        available_at=available_at,
        expires_at=expires_at,
    )


def test_due_events_come_in_the_order_they_happened():
    lots = [
        due(1, "available", at(2025, 1, 1), at(2025, 3, 1)),
        due(2, "pending", at(2025, 2, 1), at(2026, 1, 1)),
        due(3, "available", at(2025, 1, 1), at(2025, 1, 15)),
    ]
    assert policy.due_events(lots, at(2025, 6, 1)) == [
        (at(2025, 1, 15), "expire", 3),
        (at(2025, 2, 1), "mature", 2),
        (at(2025, 3, 1), "expire", 1),
    ]


def test_at_the_same_instant_a_lot_matures_before_another_expires():
    instant = at(2025, 5, 1)
    lots = [
        due(1, "available", at(2024, 5, 1), instant),
        due(2, "pending", instant, at(2026, 5, 1)),
    ]
    assert policy.due_events(lots, instant) == [(instant, "mature", 2), (instant, "expire", 1)]


def test_a_lot_that_matures_and_expires_together_matures_first():
    instant = at(2025, 5, 1)
    lots = [due(7, "pending", instant, instant)]
    assert policy.due_events(lots, instant) == [(instant, "mature", 7), (instant, "expire", 7)]


def test_a_pending_lot_can_expire_before_it_would_have_matured():
    lots = [due(1, "pending", at(2025, 6, 1), at(2025, 5, 1))]
    assert policy.due_events(lots, at(2025, 7, 1))[0] == (at(2025, 5, 1), "expire", 1)


def test_nothing_is_due_before_its_time():
    lots = [due(1, "pending", at(2025, 6, 1), at(2026, 6, 1))]
    assert policy.due_events(lots, at(2025, 6, 1) - dt.timedelta(microseconds=1)) == []


def test_events_are_due_exactly_at_their_time():
    lots = [
        due(1, "pending", at(2025, 6, 1), at(2026, 6, 1)),
        due(2, "available", at(2025, 1, 1), at(2025, 6, 1)),
    ]
    assert policy.due_events(lots, at(2025, 6, 1)) == [
        (at(2025, 6, 1), "mature", 1),
        (at(2025, 6, 1), "expire", 2),
    ]


def test_empty_expired_and_never_expiring_lots_have_no_expiry_event():
    lots = [
        due(1, "available", at(2025, 1, 1), at(2025, 2, 1), remaining=0),
        due(2, "expired", at(2025, 1, 1), at(2025, 2, 1), remaining=0),
        due(3, "available", at(2025, 1, 1), None),
    ]
    assert policy.due_events(lots, at(2030, 1, 1)) == []
