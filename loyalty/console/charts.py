"""Inline SVG charts, drawn on the server: no script and no outside asset needed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from loyalty.reports.services import Day

WIDTH, HEIGHT, PAD = 720, 220, 32
SERIES = (("earned", "#2f6f4f"), ("redeemed", "#1f5fa8"), ("expired", "#b5472d"))


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    lines: list[tuple[str, str, str]]  # (name, colour, SVG points)
    max_value: int
    first: str
    last: str


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
        lines.append((name, colour, points))
    return Chart(
        WIDTH,
        HEIGHT,
        lines,
        top,
        days[0].date.isoformat() if days else "",
        days[-1].date.isoformat() if days else "",
    )
