"""Running work in threads that start together, for the concurrency tests."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from flask import Flask


def race(app: Flask, racers: int, work: Callable[[int], Any]) -> list[Any]:
    """Run work(0..racers-1) at once, each in its own thread and app context. Returns each
    racer's result, or the exception it raised."""
    barrier = threading.Barrier(racers, timeout=30)
    results: list[Any] = [None] * racers

    def run(number: int) -> None:
        with app.app_context():
            barrier.wait()
            try:
                results[number] = work(number)
            except Exception as error:
                results[number] = error

    threads = [threading.Thread(target=run, args=(n,)) for n in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a racer hung"
    return results
