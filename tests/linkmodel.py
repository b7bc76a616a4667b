"""A viewer-side bottleneck for adaptation tests: when each frame would have crossed a FIFO link."""

from __future__ import annotations


class SlowLink:
    """Delivery times of a FIFO link of `rate` bytes/s (changeable on the fly)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.free_at = 0.0

    def deliver_at(self, now: float, nbytes: int) -> float:
        start = max(now, self.free_at)
        self.free_at = start + nbytes / self.rate
        return self.free_at
