"""Cursor pagination: opaque cursors over an increasing row position, newest first."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Generic, TypeVar

from loyalty.errors import ValidationFailed

Item = TypeVar("Item")


@dataclass(frozen=True, slots=True)
class Page(Generic[Item]):
    items: list[Item]
    next_cursor: str | None


def encode_cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f"t{position}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The position a cursor points at. Raises ValidationFailed for a cursor we never made."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        position = int(raw[1:]) if raw.startswith("t") else 0
        if not 0 < position < 2**63:  # ids are positive BIGINTs
            raise ValueError(raw)
        return position
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationFailed({"cursor": ["Not a valid cursor."]}) from None


def position_of(cursor: str | None) -> int | None:
    """The position a request's cursor points at, None without one. Raises ValidationFailed
    for a cursor we never made."""
    return decode_cursor(cursor) if cursor else None


def cursor_to(position: int | None) -> str | None:
    """The cursor of the next page, None when there is none."""
    return encode_cursor(position) if position else None
