"""Time for tests and benches: the slow-machine factor, the one deadline poll, the clocks in microseconds.

Readiness is polled against a deadline (`wait_until`, `wait_until_async`), never slept; every
time-out a test states is stretched by FRAMECAST_TEST_TIMEOUT_FACTOR through `scaled`.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable

from framecast.bus import now_us as wall_us

TIMEOUT_FACTOR = float(os.environ.get("FRAMECAST_TEST_TIMEOUT_FACTOR", "1"))


def scaled(seconds: float) -> float:
    """A test time-out stretched for slow machines."""
    return seconds * TIMEOUT_FACTOR


def mono_us() -> int:
    """The monotonic clock in integer microseconds (the edge's pacing clock)."""
    return time.monotonic_ns() // 1000


def wait_until(what: str, check: Callable[[], object], timeout: float, *, interval: float = 0.05,
               alive: Callable[[], str | None] | None = None) -> float:
    """Poll `check` until it returns something true; returns the seconds it took. After `timeout` (scaled)
    seconds raise TimeoutError naming `what`. `alive` returns an error text when something the wait depends
    on has died (fail fast, RuntimeError); an exception from `check` counts as "not yet" and is reported on
    time-out."""
    start = time.monotonic()
    deadline = start + scaled(timeout)
    last: BaseException | None = None
    while True:
        try:
            if check():
                return time.monotonic() - start
        except Exception as exc:  # remembered and reported on time-out
            last = exc
        if alive is not None:
            dead = alive()
            if dead:
                raise RuntimeError(f"waiting for {what}: {dead}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {scaled(timeout):g}s"
                               + (f" (last error: {last!r})" if last is not None else ""))
        time.sleep(interval)


async def wait_until_async(what: str, check: Callable[[], object], within: float, *,
                           interval: float = 0.02) -> float:
    """`wait_until` inside an event loop: yields to the loop between polls; returns the seconds it took."""
    start = time.monotonic()
    deadline = start + scaled(within)
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {scaled(within):g}s")
        await asyncio.sleep(interval)
    return time.monotonic() - start


__all__ = ["TIMEOUT_FACTOR", "mono_us", "scaled", "wait_until", "wait_until_async", "wall_us"]
