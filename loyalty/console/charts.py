"""Inline SVG charts, drawn on the server: no script and no outside asset needed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from flask_babel import lazy_gettext

from loyalty.reports.services import Day

WIDTH, HEIGHT, PAD = 720, 220, 32
SERIES = (("earned", "#2f6f4f"), ("redeemed", "#1f5fa8"), ("expired", "#b5472d"))
SERIES_NAMES = {
    "earned": lazy_gettext("earned"),
    "redeemed": lazy_gettext("redeemed"),
    "expired": lazy_gettext("expired"),
}


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    lines: list[tuple[str, str, str]]  # (name in the reader's language, colour, SVG points)
    max_value: int
    first: dt.date | None
    last: dt.date | None


def activity_chart(days: Sequence[Day]) -> Chart:
    """Points earned, redeemed and expired per day as polylines scaled to the chart."""
    top = max([1, *(getattr(day, name) for day in days for name, _ in SERIES)])
    step = (WIDTH - 2 * PAD) / max(len(days) - 1, 1)
    scale = (HEIGHT - 2 * PAD) / top
    lines = []
    for name, colour in SERIES:
        points = " ".join(
            f"{PAD + i * step:.1f},{HEIGHT - PAD - getattr(day, name) * scale:.1f}"
            for i, day in enumerate(days)
        )
        lines.append((str(SERIES_NAMES[name]), colour, points))
    return Chart(
        WIDTH,
        HEIGHT,
        lines,
        top,
        days[0].date if days else None,
        days[-1].date if days else None,
    )


# --- member insight -------------------------------------------------------------------------

GRID_LEFT, GRID_TOP, CELL_WIDTH, CELL_HEIGHT = 64, 12, 128, 52


@dataclass(frozen=True)
class HeatCell:
    x: int
    y: int
    opacity: str  # of the accent colour: the cell's value against the largest cell's
    dark: bool  # light text on it
    value: int
    recency_score: int
    fm_score: int
    segment: str


@dataclass(frozen=True)
class HeatMap:
    width: int
    height: int
    cells: list[HeatCell]
    max_value: int


def heat_map(cells: Sequence[tuple[int, int, str, int]]) -> HeatMap:
    """The R x FM grid, R 5 at the top and FM 1 on the left, each cell (recency score, FM
    score, segment label, value) shaded by its value against the largest."""
    highest = max((value for *_, value in cells), default=0)
    top = max(highest, 1)
    drawn = []
    for recency, fm, label, value in cells:
        share = value / top
        drawn.append(
            HeatCell(
                x=GRID_LEFT + (fm - 1) * CELL_WIDTH,
                y=GRID_TOP + (5 - recency) * CELL_HEIGHT,
                opacity=f"{0.06 + 0.94 * share:.3f}",
                dark=share > 0.5,
                value=value,
                recency_score=recency,
                fm_score=fm,
                segment=label,
            )
        )
    return HeatMap(GRID_LEFT + 5 * CELL_WIDTH, GRID_TOP + 5 * CELL_HEIGHT + 36, drawn, highest)


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: str
    value: float
    label: str  # under the bar (its group)
    name: str  # what the bar counts, for its tooltip


@dataclass(frozen=True)
class BarChart:
    width: int
    height: int
    bars: list[Bar]
    max_value: float


def bar_chart(
    groups: Sequence[tuple[str, Sequence[float]]], series: Sequence[tuple[str, str]]
) -> BarChart:
    """Grouped bars: one group per (label, values), one bar per series (name, colour) in
    each, scaled to the largest value."""
    top = max([1.0, *(float(v) for _, values in groups for v in values)])
    slot = (WIDTH - 2 * PAD) / max(len(groups), 1)
    bar_width = slot * 0.8 / max(len(series), 1)
    scale = (HEIGHT - 2 * PAD) / top
    bars = []
    for i, (label, values) in enumerate(groups):
        for j, ((name, colour), value) in enumerate(zip(series, values, strict=True)):
            height = float(value) * scale
            bars.append(
                Bar(
                    x=round(PAD + i * slot + slot * 0.1 + j * bar_width, 1),
                    y=round(HEIGHT - PAD - height, 1),
                    width=round(bar_width, 1),
                    height=round(height, 1),
                    colour=colour,
                    value=value,
                    label=label,
                    name=name,
                )
            )
    return BarChart(WIDTH, HEIGHT, bars, top)


# --- experiments ----------------------------------------------------------------------------

INTERVAL_WIDTH, INTERVAL_LEFT, INTERVAL_RIGHT, INTERVAL_TOP, INTERVAL_ROW = 560, 120, 32, 16, 40
AHEAD, BEHIND, UNSURE = "#2f6f4f", "#b5472d", "#8a93a5"


@dataclass(frozen=True)
class IntervalRow:
    """One treated arm: its estimate against control and the interval, placed on the chart
    (x positions None when the estimate is undefined)."""

    label: str
    y: float
    value: float | None
    low: float | None
    high: float | None
    x_value: float | None
    x_low: float | None
    x_high: float | None
    colour: str


@dataclass(frozen=True)
class IntervalChart:
    width: int
    height: int
    zero_x: float
    axis_y: float
    lowest: float
    highest: float
    rows: list[IntervalRow]


def interval_chart(
    estimates: Sequence[tuple[str, float | None, float | None, float | None]],
) -> IntervalChart:
    """One row per (label, estimate, low, high): the interval as a bar and the estimate as a
    dot against a zero line, on one scale that always shows zero. A bar is green when the
    whole interval is above zero, red when below, grey when it spans zero (no difference
    shown)."""
    defined = [
        (value, low, high)
        for _, value, low, high in estimates
        if value is not None and low is not None and high is not None
    ]
    lowest = min([0.0, *(low for _, low, _ in defined)])
    highest = max([0.0, *(high for _, _, high in defined)])
    if lowest == highest:  # nothing but zeros: any scale shows them
        highest = 1.0
    span = highest - lowest
    # Inset, so a dot at either end of the scale is drawn whole.
    inset = 8
    plot = INTERVAL_WIDTH - INTERVAL_LEFT - INTERVAL_RIGHT - 2 * inset

    def x(value: float) -> float:
        return round(INTERVAL_LEFT + inset + (value - lowest) / span * plot, 1)

    rows = []
    for i, (label, value, low, high) in enumerate(estimates):
        y = INTERVAL_TOP + INTERVAL_ROW * i + INTERVAL_ROW / 2
        if value is None or low is None or high is None:
            rows.append(IntervalRow(label, y, value, low, high, None, None, None, UNSURE))
            continue
        colour = AHEAD if low > 0 else BEHIND if high < 0 else UNSURE
        rows.append(IntervalRow(label, y, value, low, high, x(value), x(low), x(high), colour))
    axis_y = INTERVAL_TOP + INTERVAL_ROW * max(len(estimates), 1)
    return IntervalChart(INTERVAL_WIDTH, int(axis_y) + 28, x(0.0), axis_y, lowest, highest, rows)
