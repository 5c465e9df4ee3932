"""Public ids for rows written in bulk.

A random (version 4) UUID lands anywhere in its unique index: on the ledger's millions of
rows, each insert reads and dirties a page of its own, and the first change to a page after
a checkpoint writes the whole page to the WAL. A version 7 UUID (RFC 9562) starts with the
time in milliseconds, so new ids go to the index's right edge, a few pages per batch; its 74
random bits keep it unguessable. The time it carries is the row's creation time, which the
API shows anyway.
"""

from __future__ import annotations

import os
import time
import uuid

_VERSION = 0x7 << 76
_VARIANT = 0b10 << 62
_RANDOM_A = (1 << 12) - 1
_RANDOM_B = (1 << 62) - 1


def time_ordered_uuid(unix_ms: int | None = None) -> uuid.UUID:
    """A version 7 UUID for `unix_ms` (now by default): 48 bits of milliseconds, the version,
    12 random bits, the variant and 62 more random bits."""
    millis = time.time_ns() // 1_000_000 if unix_ms is None else unix_ms
    if not 0 <= millis < 1 << 48:
        raise ValueError(f"milliseconds out of range for a version 7 UUID: {millis}")
    rand = int.from_bytes(os.urandom(10))
    value = (
        (millis << 80) | _VERSION | ((rand >> 62) & _RANDOM_A) << 64 | _VARIANT | (rand & _RANDOM_B)
    )
    return uuid.UUID(int=value)
