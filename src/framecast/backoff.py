"""Jittered exponential back-off, the one formula of every retry (bus readers, publishers, sources, viewers).

"Equal jitter": a delay drawn uniformly between half and all of the ceiling `min(cap, base * 2**attempt)`,
so retries spread out (no thundering herd after an outage) yet never come sooner than half the ceiling.
Pure apart from the RNG, which the caller may pass in.
"""

from __future__ import annotations

import random

MAX_DOUBLINGS = 30  # 2**30 times the base is past every cap; keeps the float finite for any attempt count


def equal_jitter(base: float, cap: float, attempt: int, rng: random.Random) -> float:
    """Seconds to wait before retry number `attempt` (0 = the first)."""
    ceiling = min(cap, base * 2 ** max(0, min(attempt, MAX_DOUBLINGS)))
    return rng.uniform(ceiling / 2, ceiling)


class Backoff:
    """`equal_jitter` with its attempt count: `next_delay()` after each failure, `reset()` after a success."""

    def __init__(self, base: float = 0.1, cap: float = 5.0, rng: random.Random | None = None) -> None:
        self.base, self.cap = base, cap
        self.attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        delay = equal_jitter(self.base, self.cap, self.attempt, self._rng)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0
