"""A saved segment's filter: typed, validated strictly, and translated into one SQL condition
over members joined to their insight row and tier.

Every criterion given must hold (AND); a list criterion holds when any of its values does
(OR); a range holds when the figure is within its bounds, both included. A member without a
figure (no purchase, no fitted model) is outside every range on it. Metadata criteria compare
one top-level key of the member's ``metadata`` with a string, integer or boolean.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from loyalty.errors import ValidationFailed
from loyalty.insight.models import MemberInsight
from loyalty.insight.segments import SCORES, Segment
from loyalty.members.models import Member, MemberStatus
from loyalty.tiers.models import Tier

Number = int | float


@dataclass(frozen=True, slots=True)
class Range:
    """Bounds, both included; None is unbounded on that side."""

    min: Number | None = None
    max: Number | None = None

    def as_json(self) -> dict[str, Number | None]:
        return {"min": self.min, "max": self.max}


# The figures a range may filter on: name -> (column, lowest allowed bound, highest, integer).
RANGES: dict[str, tuple[Any, Number | None, Number | None, bool]] = {
    "recency_score": (MemberInsight.recency_score, SCORES[0], SCORES[-1], True),
    "frequency_score": (MemberInsight.frequency_score, SCORES[0], SCORES[-1], True),
    "monetary_score": (MemberInsight.monetary_score, SCORES[0], SCORES[-1], True),
    "orders": (MemberInsight.orders, 0, None, True),
    "net_revenue": (MemberInsight.net_revenue, None, None, True),
    "predicted_value": (MemberInsight.predicted_value, None, None, True),
    "days_since_last_order": (MemberInsight.days_since_last_order, 0, None, True),
    "probability_alive": (MemberInsight.probability_alive, 0, 1, False),
}
LISTS = ("rfm_segments", "tiers", "statuses")
MAX_BOUND = 2**62
MAX_ITEMS = 100
MetadataValue = str | int | bool


@dataclass(frozen=True, slots=True)
class SegmentFilter:
    rfm_segments: frozenset[Segment] = frozenset()
    tiers: frozenset[str] = frozenset()
    statuses: frozenset[MemberStatus] = frozenset()
    ranges: Mapping[str, Range] = field(default_factory=dict)
    metadata: Mapping[str, MetadataValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        errors: dict[str, list[str]] = {}
        for name, bounds in self.ranges.items():
            problem = _range_problem(name, bounds)
            if problem:
                errors[name] = [problem]
        for key, value in self.metadata.items():
            if not key or len(key) > 100:
                errors.setdefault("metadata", []).append("Keys are 1 to 100 characters.")
            elif not isinstance(value, str | int | bool) or (
                isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_BOUND
            ):
                errors.setdefault("metadata", []).append(
                    f"{key}: a string, an integer or a boolean."
                )
        if not (self.rfm_segments or self.tiers or self.statuses or self.ranges or self.metadata):
            errors["_schema"] = ["Name at least one criterion."]
        if errors:
            raise ValidationFailed({f"filter.{k}": v for k, v in errors.items()})

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SegmentFilter:
        """A filter from its JSON form (as stored, or as an API body already typed by its
        schema). Raises ValidationFailed for anything out of place."""
        unknown = set(data) - {*LISTS, *RANGES, "metadata"}
        if unknown:
            raise ValidationFailed({f"filter.{k}": ["Unknown field."] for k in sorted(unknown)})
        try:
            return cls(
                rfm_segments=frozenset(Segment(s) for s in data.get("rfm_segments") or ()),
                tiers=frozenset(str(t) for t in data.get("tiers") or ()),
                statuses=frozenset(MemberStatus(s) for s in data.get("statuses") or ()),
                ranges={
                    name: Range(data[name].get("min"), data[name].get("max"))
                    for name in RANGES
                    if data.get(name) is not None
                },
                metadata=dict(data.get("metadata") or {}),
            )
        except (ValueError, TypeError, AttributeError) as error:
            raise ValidationFailed({"filter": [str(error)]}) from None

    def as_json(self) -> dict[str, Any]:
        """The JSON form stored with the segment and shown by the API (lists sorted)."""
        return {
            "rfm_segments": sorted(s.value for s in self.rfm_segments),
            "tiers": sorted(self.tiers),
            "statuses": sorted(s.value for s in self.statuses),
            **{
                name: self.ranges[name].as_json() if name in self.ranges else None
                for name in RANGES
            },
            "metadata": dict(self.metadata),
        }


def _range_problem(name: str, bounds: Range) -> str | None:
    if name not in RANGES:
        return "Unknown figure."
    _, lowest, highest, integer = RANGES[name]
    given = [b for b in (bounds.min, bounds.max) if b is not None]
    if not given:
        return "Give min, max or both."
    for bound in given:
        if isinstance(bound, bool) or not isinstance(bound, int | float):
            return "Bounds are numbers."
        if integer and not isinstance(bound, int):
            return "Bounds are integers."
        if isinstance(bound, float) and not math.isfinite(bound):
            return "Bounds are finite."
        if abs(bound) > MAX_BOUND:
            return "Bound out of range."
        if (lowest is not None and bound < lowest) or (highest is not None and bound > highest):
            return f"Bounds are within {lowest} to {highest if highest is not None else 'any'}."
    if bounds.min is not None and bounds.max is not None and bounds.min > bounds.max:
        return "min is above max."
    return None


def metadata_condition(key: str, value: MetadataValue) -> sa.ColumnElement[bool]:
    """The member's top-level metadata `key` equals `value`, compared as its JSON type."""
    element = Member.metadata_[key]
    compared: sa.ColumnElement[bool]
    if isinstance(value, bool):
        compared = element.as_boolean() == value
    elif isinstance(value, int):
        compared = element.as_integer() == value
    else:
        compared = element.as_string() == value
    return compared


def matching_members(segment_filter: SegmentFilter) -> sa.Select[Any]:
    """SELECT members.id of every member the filter holds for, as of the last refresh: one
    statement over members, their insight row and their tier."""
    f = segment_filter
    conditions: list[sa.ColumnElement[bool]] = []
    if f.rfm_segments:
        conditions.append(MemberInsight.segment.in_(sorted(f.rfm_segments)))
    if f.tiers:
        conditions.append(Tier.code.in_(sorted(f.tiers)))
    if f.statuses:
        conditions.append(Member.status.in_(sorted(f.statuses)))
    for name, bounds in sorted(f.ranges.items()):
        column = RANGES[name][0]
        if bounds.min is not None:
            conditions.append(column >= bounds.min)
        if bounds.max is not None:
            conditions.append(column <= bounds.max)
    conditions.extend(metadata_condition(k, v) for k, v in sorted(f.metadata.items()))
    return (
        sa.select(Member.id)
        .select_from(Member)
        .outerjoin(MemberInsight, MemberInsight.member_id == Member.id)
        .outerjoin(Tier, Tier.id == Member.tier_id)
        .where(sa.and_(*conditions))
    )
