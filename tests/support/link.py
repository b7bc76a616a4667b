"""The one link model of the tests: a FIFO bottleneck of a given rate, plus a fixed one-way delay.

Integration tests put it on the viewer's side (each frame "arrives" when it would have crossed
the link; the viewer acks then), the fake-clock simulations between the edge's own
`framecast.edge.viewer.ViewerState` and the viewer. Times are in whatever unit `rate` is per
(seconds with bytes/s, microseconds with bytes/us: `FifoLink.per_us`). Real links (network
namespaces, tbf, a delay relay) are bench.linkemu's.
"""

from __future__ import annotations

from dataclasses import dataclass

US = 1_000_000


@dataclass
class FifoLink:
    """Delivery times of a FIFO link of `rate` bytes per time unit (changeable on the fly)."""

    rate: float
    one_way: float = 0.0  # propagation delay after the bottleneck
    free_at: float = 0.0  # when the bottleneck has sent everything queued so far

    @classmethod
    def per_us(cls, bytes_per_s: float, one_way_us: float = 0.0) -> FifoLink:
        """A link on a microsecond clock."""
        return cls(bytes_per_s / US, one_way_us)

    def deliver_at(self, now: float, nbytes: int) -> float:
        """When the last byte of a message of `nbytes` sent at `now` reaches the far end."""
        start = max(now, self.free_at)
        self.free_at = start + nbytes / self.rate
        return self.free_at + self.one_way
