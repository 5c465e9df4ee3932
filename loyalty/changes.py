"""Typed partial updates: a PATCH's command names every field it may change, and marks the
ones the request left alone as ``UNCHANGED`` (None is a value: it clears a field)."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Literal, TypeAlias, TypeVar


class _Unchanged(enum.Enum):
    UNCHANGED = "unchanged"

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED = _Unchanged.UNCHANGED
Value = TypeVar("Value")
Maybe: TypeAlias = Value | Literal[_Unchanged.UNCHANGED]


def given(changes: Any) -> dict[str, Any]:
    """The fields of a changes dataclass that the request set, by name."""
    return {
        field.name: value
        for field in dataclasses.fields(changes)
        if (value := getattr(changes, field.name)) is not UNCHANGED
    }
