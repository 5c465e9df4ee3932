"""Workers leave for their memory only, one at a time (loyalty/recycling.py, issue 18)."""

from __future__ import annotations

import random

import pytest

from loyalty.recycling import Recycler, resident_kib

MB = 1024


def recycler(tmp_path, rss, **kwargs):
    readings = iter(rss)
    return Recycler(
        limit_kib=kwargs.pop("limit_kib", 100 * MB),
        stamp=kwargs.pop("stamp", tmp_path / "last-departure"),
        check_every=kwargs.pop("check_every", 1),
        measure=lambda: next(readings),
        **kwargs,
    )


def test_a_worker_under_its_limit_stays(tmp_path):
    worker = recycler(tmp_path, [50 * MB, 99 * MB, 100 * MB])

    assert [worker.after_request(now=1000.0 + i) for i in range(3)] == [False] * 3
    assert worker.last_rss_kib == 100 * MB


def test_a_worker_past_its_limit_leaves(tmp_path):
    worker = recycler(tmp_path, [99 * MB, 101 * MB])

    assert worker.after_request(now=1000.0) is False
    assert worker.after_request(now=1001.0) is True


def test_memory_is_read_every_check_every_requests_only(tmp_path):
    reads = []
    worker = Recycler(
        limit_kib=100 * MB,
        stamp=tmp_path / "stamp",
        check_every=3,
        measure=lambda: reads.append(1) or 200 * MB,
    )

    answers = [worker.after_request(now=1000.0) for _ in range(3)]

    assert answers == [False, False, True]
    assert len(reads) == 1


def test_two_workers_past_their_limit_never_leave_within_the_spacing(tmp_path):
    first = recycler(tmp_path, [200 * MB], spacing=60.0)
    second = recycler(tmp_path, [200 * MB] * 3, spacing=60.0)

    assert first.after_request(now=1000.0) is True
    assert second.after_request(now=1000.0) is False
    assert second.after_request(now=1059.9) is False
    assert second.after_request(now=1060.0) is True


def test_a_worker_that_cannot_read_its_memory_stays(tmp_path):
    assert recycler(tmp_path, [None]).after_request(now=1000.0) is False


def test_the_limit_and_its_jitter_come_from_the_environment(tmp_path):
    environ = {"LOYALTY_WORKER_MAX_RSS_MB": "400", "LOYALTY_WORKER_RSS_JITTER": "0.1"}
    limits = {
        Recycler.from_environment(tmp_path / "s", environ, random.Random(seed)).limit_kib
        for seed in range(20)
    }

    assert all(400 * MB <= limit <= 440 * MB for limit in limits)
    assert len(limits) > 1, "workers draw different limits, so they do not cross them together"


def test_defaults_and_a_zero_limit(tmp_path):
    default = Recycler.from_environment(tmp_path / "s", {}, random.Random(1))
    assert default is not None
    assert 512 * MB <= default.limit_kib <= int(512 * MB * 1.1)
    assert default.spacing == 60.0
    assert Recycler.from_environment(tmp_path / "s", {"LOYALTY_WORKER_MAX_RSS_MB": "0"}) is None


@pytest.mark.skipif(resident_kib() is None, reason="no /proc/self/status here")
def test_resident_memory_is_read_from_proc(tmp_path):
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmPeak:\t  9000 kB\nVmRSS:\t  123456 kB\n")

    assert resident_kib(status) == 123456
    assert resident_kib(tmp_path / "missing") is None
    assert (resident_kib() or 0) > 1024
