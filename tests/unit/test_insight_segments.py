"""The RFM segment table (loyalty.insight.segments): every cell named, every segment reached,
and the cells the README's table promises."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loyalty.insight.segments import GRID, LABELS, MEANING, SCORES, Segment, fm_score, segment_for

ALL_SCORES = list(itertools.product(SCORES, SCORES, SCORES))


def test_fm_is_the_average_of_f_and_m_rounded_half_up():
    assert fm_score(1, 1) == 1
    assert fm_score(1, 2) == 2
    assert fm_score(4, 5) == 5
    assert fm_score(3, 4) == 4
    assert fm_score(2, 5) == 4
    assert fm_score(5, 5) == 5


def test_every_score_combination_has_a_segment():
    assert {segment_for(r, f, m) for r, f, m in ALL_SCORES} == set(Segment)


def test_every_segment_has_a_label_and_a_meaning():
    assert set(LABELS) == set(Segment)
    assert set(MEANING) == set(Segment)


@pytest.mark.parametrize(
    ("scores", "segment"),
    [
        ((5, 5, 5), Segment.CHAMPIONS),
        ((5, 4, 4), Segment.CHAMPIONS),
        ((4, 5, 5), Segment.LOYAL),
        ((3, 4, 4), Segment.LOYAL),
        ((5, 2, 3), Segment.POTENTIAL_LOYALISTS),
        ((4, 3, 3), Segment.POTENTIAL_LOYALISTS),
        ((5, 1, 1), Segment.NEW),
        ((4, 1, 1), Segment.PROMISING),
        ((3, 3, 3), Segment.NEED_ATTENTION),
        ((3, 1, 2), Segment.ABOUT_TO_SLEEP),
        ((2, 3, 3), Segment.AT_RISK),
        ((1, 4, 4), Segment.AT_RISK),
        ((2, 5, 5), Segment.CANNOT_LOSE_THEM),
        ((1, 5, 4), Segment.CANNOT_LOSE_THEM),
        ((2, 1, 2), Segment.HIBERNATING),
        ((1, 2, 2), Segment.LOST),
        ((1, 1, 1), Segment.LOST),
    ],
)
def test_named_segment_of_crafted_scores(scores, segment):
    assert segment_for(*scores) == segment


def test_the_grid_has_five_rows_of_five():
    assert sorted(GRID) == list(SCORES)
    assert all(len(row) == 5 for row in GRID.values())


@given(st.sampled_from(SCORES), st.sampled_from(SCORES), st.sampled_from(SCORES))
def test_cold_segments_need_low_recency_and_warm_ones_high_recency(r, f, m):
    # Lost, Hibernating, At risk, Cannot lose them: R 1-2.
    # Champions, New, Potential loyalists, Promising: R 4-5.
    segment = segment_for(r, f, m)
    if segment in (Segment.LOST, Segment.HIBERNATING, Segment.AT_RISK, Segment.CANNOT_LOSE_THEM):
        assert r <= 2
    if segment in (Segment.CHAMPIONS, Segment.NEW, Segment.POTENTIAL_LOYALISTS, Segment.PROMISING):
        assert r >= 4


@pytest.mark.parametrize("bad", [(0, 3, 3), (3, 6, 3), (3, 3, -1)])
def test_a_score_out_of_range_is_refused(bad):
    with pytest.raises(ValueError, match="1 to 5"):
        segment_for(*bad)
