import time
import uuid

import pytest

from loyalty.ids import time_ordered_uuid


def test_a_time_ordered_uuid_is_version_7_with_the_milliseconds_first() -> None:
    made = time_ordered_uuid(1_796_169_600_123)

    assert made.version == 7
    assert made.variant == uuid.RFC_4122
    assert made.int >> 80 == 1_796_169_600_123


def test_ids_sort_by_time_and_differ_within_a_millisecond() -> None:
    earlier = [time_ordered_uuid(5_000) for _ in range(1000)]
    later = time_ordered_uuid(5_001)

    assert len(set(earlier)) == 1000
    assert all(made < later for made in earlier)
    assert str(later).startswith("00000000-1389-7")


def test_the_default_time_is_now() -> None:
    before = time.time_ns() // 1_000_000
    made = time_ordered_uuid()
    after = time.time_ns() // 1_000_000

    assert before <= made.int >> 80 <= after


@pytest.mark.parametrize("millis", [-1, 1 << 48])
def test_milliseconds_out_of_range_are_refused(millis: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        time_ordered_uuid(millis)
