"""The pure rules of reward codes: percentages held exactly in basis points, and where a code
stands at a moment."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loyalty.rewards.policy import (
    CodeState,
    code_expiry,
    code_state,
    format_percent,
    parse_percent,
)

T0 = dt.datetime(2031, 3, 12, 12, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("text", "bps"), [("12.5", 1250), ("12.50", 1250), ("15", 1500), ("0.01", 1), ("100", 10000)]
)
def test_a_percentage_is_read_as_basis_points(text, bps):
    assert parse_percent(text) == bps


@pytest.mark.parametrize("text", ["0", "0.00", "100.01", "1000", "12.345", "-1", "1e1", " 5", ""])
def test_a_percentage_outside_0_01_to_100_or_with_three_places_is_refused(text):
    with pytest.raises(ValueError, match=r"0\.01 to 100"):
        parse_percent(text)


@given(st.integers(min_value=1, max_value=10_000))
def test_every_percentage_is_written_as_the_shortest_decimal_that_reads_back_the_same(bps):
    text = format_percent(bps)
    assert parse_percent(text) == bps
    assert not text.endswith("0") or "." not in text


def test_an_active_code_is_expired_from_its_expiry_on():
    expires_at = T0 + dt.timedelta(days=1)
    assert code_state("active", expires_at, expires_at - dt.timedelta(seconds=1)) == "active"
    assert code_state("active", expires_at, expires_at) == CodeState.EXPIRED


@pytest.mark.parametrize("stored", ["used", "cancelled"])
def test_a_used_or_cancelled_code_stays_so_past_its_expiry(stored):
    assert code_state(stored, T0, T0 + dt.timedelta(days=30)) == stored


def test_a_code_expires_valid_days_after_it_was_redeemed_or_never():
    assert code_expiry(30, T0) == T0 + dt.timedelta(days=30)
    assert code_expiry(None, T0) is None
