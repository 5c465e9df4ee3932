"""RFM segments: pure policy, no I/O (the refresh turns this table into SQL).

A buyer's recency (R), frequency (F) and monetary (M) scores are quintiles, 1 to 5, over the
program's buyers (5: the most recent, most frequent, highest spending fifth). The named
segment comes from R and FM, the average of F and M rounded half up (``fm_score``), on the
grid below. It is the widely used R x F segment map (Champions ``5[4-5]``, Loyal
``[3-4][4-5]``, Potential loyalists ``[4-5][2-3]``, New ``51``, Promising ``41``, Need
attention ``33``, About to sleep ``3[1-2]``, At risk ``[1-2][3-4]``, Cannot lose them
``[1-2]5``, Hibernating ``[1-2][1-2]``) read on FM instead of F, so big spenders who buy
rarely count too, with its Hibernating square split: R 2 stays Hibernating, R 1 is Lost.

    R \\ FM   1               2                    3                    4          5
    5        New             Potential loyalists  Potential loyalists  Champions  Champions
    4        Promising       Potential loyalists  Potential loyalists  Loyal      Loyal
    3        About to sleep  About to sleep       Need attention       Loyal      Loyal
    2        Hibernating     Hibernating          At risk              At risk    Cannot lose them
    1        Lost            Lost                 At risk              At risk    Cannot lose them

Members without a purchase as of the refresh have no scores and no segment (NULL).
"""

from __future__ import annotations

import enum


class Segment(enum.StrEnum):
    CHAMPIONS = "champions"
    LOYAL = "loyal"
    POTENTIAL_LOYALISTS = "potential_loyalists"
    NEW = "new"
    PROMISING = "promising"
    NEED_ATTENTION = "need_attention"
    ABOUT_TO_SLEEP = "about_to_sleep"
    AT_RISK = "at_risk"
    CANNOT_LOSE_THEM = "cannot_lose_them"
    HIBERNATING = "hibernating"
    LOST = "lost"


SCORES = (1, 2, 3, 4, 5)

_S = Segment
# GRID[R][FM - 1]: the table in the module docstring, row for row.
GRID: dict[int, tuple[Segment, Segment, Segment, Segment, Segment]] = {
    5: (_S.NEW, _S.POTENTIAL_LOYALISTS, _S.POTENTIAL_LOYALISTS, _S.CHAMPIONS, _S.CHAMPIONS),
    4: (_S.PROMISING, _S.POTENTIAL_LOYALISTS, _S.POTENTIAL_LOYALISTS, _S.LOYAL, _S.LOYAL),
    3: (_S.ABOUT_TO_SLEEP, _S.ABOUT_TO_SLEEP, _S.NEED_ATTENTION, _S.LOYAL, _S.LOYAL),
    2: (_S.HIBERNATING, _S.HIBERNATING, _S.AT_RISK, _S.AT_RISK, _S.CANNOT_LOSE_THEM),
    1: (_S.LOST, _S.LOST, _S.AT_RISK, _S.AT_RISK, _S.CANNOT_LOSE_THEM),
}

# How people call them (the stored value is the enum's snake_case code).
LABELS: dict[Segment, str] = {
    _S.CHAMPIONS: "Champions",
    _S.LOYAL: "Loyal",
    _S.POTENTIAL_LOYALISTS: "Potential loyalists",
    _S.NEW: "New",
    _S.PROMISING: "Promising",
    _S.NEED_ATTENTION: "Need attention",
    _S.ABOUT_TO_SLEEP: "About to sleep",
    _S.AT_RISK: "At risk",
    _S.CANNOT_LOSE_THEM: "Cannot lose them",
    _S.HIBERNATING: "Hibernating",
    _S.LOST: "Lost",
}

# What each segment means for the shop, for the README and whoever shows the segments.
MEANING: dict[Segment, str] = {
    _S.CHAMPIONS: "bought recently, often and the most",
    _S.LOYAL: "buy often and spend well; not necessarily the very latest",
    _S.POTENTIAL_LOYALISTS: "recent, with a few purchases: could become loyal",
    _S.NEW: "bought very recently, once or little",
    _S.PROMISING: "bought recently, once or little",
    _S.NEED_ATTENTION: "middling on every score: slipping without a nudge",
    _S.ABOUT_TO_SLEEP: "not recent, little bought",
    _S.AT_RISK: "used to buy a fair amount, but not for a long time",
    _S.CANNOT_LOSE_THEM: "among the best buyers once, gone quiet",
    _S.HIBERNATING: "long gone quiet, little bought",
    _S.LOST: "the longest gone, little bought",
}


def fm_score(frequency: int, monetary: int) -> int:
    """The average of the F and M scores, rounded half up (F 4 and M 5 give 5)."""
    return (frequency + monetary + 1) // 2


def segment_for(recency: int, frequency: int, monetary: int) -> Segment:
    """The named segment of a buyer with these scores (each 1-5). Raises ValueError for a
    score out of range."""
    for score in (recency, frequency, monetary):
        if score not in SCORES:
            raise ValueError(f"RFM scores are 1 to 5, not {score}")
    return GRID[recency][fm_score(frequency, monetary) - 1]
